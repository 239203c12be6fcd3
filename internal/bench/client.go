package bench

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/firebreak/firebreak/internal/matrixclient"
)

// newTransport makes one HTTP transport for the whole run. Every open long poll holds a
// connection, so the idle pool must be as large as the number of syncs held at once, or
// connections are closed and redialled on every poll.
func newTransport(conns int) *http.Transport {
	return &http.Transport{
		Proxy:               nil, // traffic goes to the homeserver named, never through a proxy
		DialContext:         (&net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConns:        conns + 64,
		MaxIdleConnsPerHost: conns + 64,
		IdleConnTimeout:     90 * time.Second,
		DisableCompression:  true, // loopback: gzip would only cost both sides CPU
		ForceAttemptHTTP2:   false,
	}
}

// client is one logged-in user speaking the Client-Server API.
type client struct {
	base     string // homeserver base URL, no trailing slash
	hc       *http.Client
	userID   string
	deviceID string
	token    string
}

// do sends one request with a JSON body (if any) as this user and decodes a 200's JSON into
// out (if any); any other answer is a *matrixclient.Error.
func (c *client) do(ctx context.Context, method, path string, q url.Values, body, out any) error {
	return matrixclient.Do(ctx, c.hc, c.base, c.token, method, path, q, body, out)
}

// esc escapes one path segment (room ids contain '!' and ':', user ids '@').
func esc(s string) string { return url.PathEscape(s) }

// versions checks that a homeserver answers the Client-Server API.
func versions(ctx context.Context, hc *http.Client, base string) error {
	c := &client{base: base, hc: hc}
	var out struct {
		Versions []string `json:"versions"`
	}
	if err := c.do(ctx, http.MethodGet, "/_matrix/client/versions", nil, nil, &out); err != nil {
		return err
	}
	if len(out.Versions) == 0 {
		return fmt.Errorf("%s: /versions lists no versions", base)
	}
	return nil
}

// trimBase normalises a homeserver URL.
func trimBase(u string) string { return strings.TrimRight(u, "/") }
