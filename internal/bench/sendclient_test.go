package bench

import (
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"
)

// TestSend holds the fasthttp send to what a homeserver must see (method, path exactly as
// escaped, token, JSON body) and to how its answers are reported.
func TestSend(t *testing.T) {
	tests := []struct {
		name    string
		status  int
		body    string
		delay   time.Duration
		drop    bool   // close the connection without an answer
		wantErr string // errCode of the error; "" for none
	}{
		{"accepted", 200, `{"event_id":"$e"}`, 0, false, ""},
		{"refused with an errcode", 403, `{"errcode":"M_FORBIDDEN","error":"not in room"}`, 0, false, "M_FORBIDDEN"},
		{"refused without one", 502, `bad gateway`, 0, false, "HTTP_502"},
		{"no answer before the deadline", 200, `{}`, 700 * time.Millisecond, false, "TIMEOUT"},
		// Sent once and counted as an error, not quietly sent again.
		{"connection dropped", 0, ``, 0, true, "NETWORK"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got struct {
				method, path, auth, contentType string
				content                         messageContent
			}
			var requests atomic.Int32
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				requests.Add(1)
				got.method, got.path = r.Method, r.URL.EscapedPath()
				got.auth, got.contentType = r.Header.Get("Authorization"), r.Header.Get("Content-Type")
				b, _ := io.ReadAll(r.Body)
				if err := json.Unmarshal(b, &got.content); err != nil {
					t.Errorf("body %q: %v", b, err)
				}
				time.Sleep(tt.delay)
				if tt.drop {
					conn, _, _ := w.(http.Hijacker).Hijack()
					conn.Close()
					return
				}
				w.WriteHeader(tt.status)
				io.WriteString(w, tt.body)
			}))
			defer srv.Close()
			fc := newSendClient(4)
			defer fc.CloseIdleConnections()
			c := &client{base: srv.URL, token: "tok"}
			ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
			defer cancel()
			sent := messageContent{MsgType: "m.text", Body: "hi", Bench: benchMark{Run: "r", N: 7, TSus: 1}}
			err := c.send(ctx, fc, "!room:example.org", "r-7", sent)
			if code := ""; err != nil {
				code = errCode(err)
				if code != tt.wantErr {
					t.Errorf("error %v (%s), want %s", err, code, tt.wantErr)
				}
			} else if tt.wantErr != "" {
				t.Errorf("no error, want %s", tt.wantErr)
			}
			if n := requests.Load(); n != 1 {
				t.Errorf("the server saw %d requests, want 1", n)
			}
			if tt.delay > 0 {
				return
			}
			wantPath := "/_matrix/client/v3/rooms/%21room:example.org/send/m.room.message/r-7"
			if got.method != http.MethodPut || got.path != wantPath || got.auth != "Bearer tok" ||
				got.contentType != "application/json" || got.content != sent {
				t.Errorf("server saw %+v, want PUT %s", got, wantPath)
			}
		})
	}
}

// TestSendOverIPv6: fasthttp dials IPv4 only unless told otherwise.
func TestSendOverIPv6(t *testing.T) {
	ln, err := net.Listen("tcp", "[::1]:0")
	if err != nil {
		t.Skip("no IPv6 loopback here:", err)
	}
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, `{"event_id":"$e"}`)
	}))
	srv.Listener = ln
	srv.Start()
	defer srv.Close()
	fc := newSendClient(1)
	defer fc.CloseIdleConnections()
	c := &client{base: srv.URL, token: "tok"}
	if err := c.send(t.Context(), fc, "!room:example.org", "t-1", messageContent{MsgType: "m.text", Body: "hi"}); err != nil {
		t.Fatalf("send to %s: %v", srv.URL, err)
	}
}
