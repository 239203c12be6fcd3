// Package matrixclient is the small Client-Server API client Firebreak's own tools use (the
// drill, the bench, `firebreak register`): plain JSON over net/http, so they see a homeserver
// exactly as any client does, and can be pointed at any homeserver.
package matrixclient

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"time"
)

// V3 is the prefix of the Client-Server API's current endpoints.
const V3 = "/_matrix/client/v3"

// maxResponse bounds what one response may make the client hold.
const maxResponse = 64 << 20

// Error is a non-200 answer: the status and the spec's errcode and message.
type Error struct {
	Status     int
	Code       string
	Msg        string
	RetryAfter time.Duration
	Body       []byte
}

func (e *Error) Error() string { return fmt.Sprintf("HTTP %d %s: %s", e.Status, e.Code, e.Msg) }

// Do sends one request to base+path (with the query q and a JSON body, when given) as the
// holder of token ("" for none), and decodes a 200's JSON body into out (when given).
func Do(ctx context.Context, hc *http.Client, base, token, method, path string, q url.Values, body, out any) error {
	u := base + path
	if len(q) > 0 {
		u += "?" + q.Encode()
	}
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, u, rd)
	if err != nil {
		return err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, maxResponse))
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		return ErrorFrom(resp.StatusCode, raw)
	}
	if out == nil {
		return nil
	}
	return json.Unmarshal(raw, out)
}

// ErrorFrom reads a non-200 answer's body, the spec's error JSON when it is that.
func ErrorFrom(status int, raw []byte) *Error {
	var e struct {
		Code         string `json:"errcode"`
		Msg          string `json:"error"`
		RetryAfterMS int64  `json:"retry_after_ms"`
	}
	_ = json.Unmarshal(raw, &e)
	return &Error{Status: status, Code: e.Code, Msg: e.Msg, RetryAfter: time.Duration(e.RetryAfterMS) * time.Millisecond, Body: raw}
}
