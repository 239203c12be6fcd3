package bench

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// A rate-limited setup step waits as the server asks and is not given up after the 20
// attempts other passing errors get; a busy server is tried again after a growing pause; an
// error that is not passing ends it at once.
func TestRetry(t *testing.T) {
	for _, tc := range []struct {
		name     string
		status   int // answered before the first 200
		failures int32
		wantErr  bool
		wantMin  time.Duration
	}{
		// 150 ms a turn, more than the 100 ms pause a passing error gets: only waiting as asked
		// takes this long.
		{"rate limited longer than the attempts", http.StatusTooManyRequests, 25, false, 25 * 150 * time.Millisecond},
		{"busy a while", http.StatusServiceUnavailable, 3, false, 600 * time.Millisecond},
		{"refused", http.StatusForbidden, 1, true, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var calls atomic.Int32
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if calls.Add(1) <= tc.failures {
					w.WriteHeader(tc.status)
					_, _ = w.Write([]byte(`{"errcode":"M_X","error":"no","retry_after_ms":150}`))
					return
				}
				_, _ = w.Write([]byte(`{"versions":["v1.11"]}`))
			}))
			defer srv.Close()
			start := time.Now()
			err := retry(t.Context(), func(ctx context.Context) error { return versions(ctx, srv.Client(), srv.URL) })
			if (err != nil) != tc.wantErr {
				t.Fatalf("retry = %v after %d calls, want error %v", err, calls.Load(), tc.wantErr)
			}
			if took := time.Since(start); took < tc.wantMin {
				t.Errorf("took %v, less than the %v the server asked for", took, tc.wantMin)
			}
			if tc.status == http.StatusForbidden && calls.Load() != 1 {
				t.Errorf("a refusal was tried %d times", calls.Load())
			}
		})
	}
}

// A homeserver that takes the connection and never answers ends the run instead of holding
// it (versionsTimeout).
func TestSilentHomeserverEndsTheRun(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			defer c.Close() // held open, unanswered, until the listener closes
		}
	}()
	cfg := Defaults(WorkloadMax)
	cfg.Homeservers = []string{"http://" + ln.Addr().String()}
	ctx, cancel := context.WithTimeout(t.Context(), 2*versionsTimeout)
	defer cancel()
	_, err = Run(ctx, cfg)
	if err == nil || !strings.Contains(err.Error(), "does not answer") || errors.Is(ctx.Err(), context.DeadlineExceeded) {
		t.Fatalf("Run against a silent server = %v (run context: %v)", err, ctx.Err())
	}
}
