package bench

import (
	"context"
	"encoding/json"
	"net/http"
	"slices"
	"time"

	"github.com/firebreak/firebreak/internal/matrixclient"
	"github.com/valyala/fasthttp"
)

// newSendClient makes the HTTP client the bench's sends go through. Sends are the one request
// the bench makes thousands of times a second, on the machine the server runs on, so they use
// fasthttp, a client made for load generators: net/http's client took 0.086 ms of CPU per send
// at maximum load, fasthttp's 0.042 ms, and what the bench does not spend the server can.
// Everything else (setup, syncs, long polls) goes through net/http.
func newSendClient(conns int) *fasthttp.Client {
	return &fasthttp.Client{
		Name:               "firebreak-bench",
		MaxConnsPerHost:    conns,
		MaxConnWaitTimeout: sendTimeout, // wait for a free connection rather than fail the send
		// Short of any server's idle timeout (nginx's default is 75 s): with every attempt made
		// once, a send on a connection the server had closed would count as an error.
		MaxIdleConnDuration: 10 * time.Second,
		// Paths go out exactly as escaped: room ids hold '!' and ':'.
		DisablePathNormalizing: true,
		// fasthttp sends a PUT again when its connection fails, up to five times by default:
		// a send the server dropped must count as an error, as with net/http.
		MaxIdemponentCallAttempts: 1,
		DialDualStack:             true, // homeservers on IPv6 too (fasthttp dials IPv4 only by default)
	}
}

// putJSON PUTs body as JSON to the homeserver as this user and returns a *matrixclient.Error
// for any answer but 200. fasthttp has no contexts, so ctx bounds the request only through its
// deadline (sendTimeout when it has none).
func (c *client) putJSON(ctx context.Context, fc *fasthttp.Client, path string, body any) error {
	b, err := json.Marshal(body)
	if err != nil {
		return err
	}
	req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
	defer fasthttp.ReleaseRequest(req)
	defer fasthttp.ReleaseResponse(resp)
	req.SetRequestURI(c.base + path)
	req.Header.SetMethod(http.MethodPut)
	req.Header.SetContentType("application/json")
	req.Header.Set("Authorization", "Bearer "+c.token)
	req.SetBodyRaw(b)
	deadline, ok := ctx.Deadline()
	if !ok {
		deadline = time.Now().Add(sendTimeout)
	}
	if err := fc.DoDeadline(req, resp, deadline); err != nil {
		return err
	}
	if status := resp.StatusCode(); status != http.StatusOK {
		return matrixclient.ErrorFrom(status, slices.Clone(resp.Body()))
	}
	return nil
}
