package rooms

import (
	"context"
	"errors"
	"testing"
	"time"
)

func TestRoomLocks(t *testing.T) {
	l := newRoomLocks()
	unlock, err := l.lock(t.Context(), "!a:test")
	if err != nil {
		t.Fatalf("first lock: %v", err)
	}
	// Another room is not held up by the first.
	unlockB, err := l.lock(t.Context(), "!b:test")
	if err != nil {
		t.Fatalf("lock of another room: %v", err)
	}
	unlockB()
	// The same room waits, and gives up when its context ends.
	ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
	defer cancel()
	if _, err := l.lock(ctx, "!a:test"); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("second lock of a held room: %v, want the context's error", err)
	}
	acquired := make(chan func())
	go func() {
		u, err := l.lock(t.Context(), "!a:test")
		if err != nil {
			t.Errorf("waiting lock: %v", err)
		}
		acquired <- u
	}()
	unlock()
	(<-acquired)()
	if n := len(l.locks); n != 0 {
		t.Errorf("%d lock entries left after every holder released", n)
	}
}
