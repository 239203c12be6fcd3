package store

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"
)

func TestStalled(t *testing.T) {
	cases := []struct {
		name                                  string
		appliedBefore, headBefore, appliedNow uint64
		want                                  bool
	}{
		{"stood still behind the head", 5, 10, 5, true},
		{"moved", 5, 10, 7, false},
		{"caught up", 10, 10, 10, false},
		{"the head was not read", 5, 0, 5, false},
		{"nothing written yet", 0, 0, 0, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := Stalled(tc.appliedBefore, tc.headBefore, tc.appliedNow); got != tc.want {
				t.Errorf("Stalled(%d, %d, %d) = %v, want %v", tc.appliedBefore, tc.headBefore, tc.appliedNow, got, tc.want)
			}
		})
	}
}

func TestWatchForStall(t *testing.T) {
	cases := []struct {
		name    string
		head    uint64
		moving  bool // the follower applies something every millisecond
		stalled bool
	}{
		{"standing still behind its stream", 10, false, true},
		{"moving behind its stream", 1 << 40, true, false},
		{"caught up", 5, false, false},
		{"the head cannot be read", 0, false, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(t.Context(), 200*time.Millisecond)
			defer cancel()
			var applied atomic.Uint64
			applied.Store(5)
			if tc.moving {
				go func() {
					for ctx.Err() == nil {
						applied.Add(1)
						time.Sleep(time.Millisecond)
					}
				}()
			}
			head := func(context.Context) uint64 { return tc.head }
			err := watchForStall(ctx, 10*time.Millisecond, head, &applied)
			if got := errors.Is(err, errWatchStalled); got != tc.stalled {
				t.Errorf("watchForStall = %v, want stalled %v", err, tc.stalled)
			}
		})
	}
}

// TestWatchEndsWhenItStandsStill: a watch that keeps up goes on; one that stops applying while
// its bucket moves on ends with errWatchStalled once a whole check has passed that way, for its
// caller to start it again. (Here the caller's apply blocks; in a cluster it is a consumer on a
// replica that no longer receives.)
func TestWatchEndsWhenItStandsStill(t *testing.T) {
	st := openStore(t)
	st.stallCheck = 100 * time.Millisecond
	ctx := t.Context()
	release := make(chan struct{})
	done := make(chan error, 1)
	go func() {
		done <- st.Watch(ctx, BucketReceipts, 0, nil, func(c Change) {
			if c.Key == "stuck" {
				<-release
			}
		})
	}()
	put := func(key string) {
		t.Helper()
		if _, err := st.Put(ctx, BucketReceipts, key, []byte("x")); err != nil {
			t.Fatal(err)
		}
	}
	put("a")
	time.Sleep(5 * st.stallCheck)
	select {
	case err := <-done:
		t.Fatalf("a watch that kept up ended: %v", err)
	default:
	}
	put("stuck")
	put("b") // moves the head past what the watch applied
	time.Sleep(5 * st.stallCheck)
	close(release)
	select {
	case err := <-done:
		if !errors.Is(err, errWatchStalled) {
			t.Fatalf("Watch ended with %v, want errWatchStalled", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("a watch that stood still behind its bucket did not end")
	}
}
