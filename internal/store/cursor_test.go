package store

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"
)

func TestCursorLoadAdvance(t *testing.T) {
	c := NewCursor()
	if got := c.Load(); got != 0 {
		t.Fatalf("new cursor at %d, want 0", got)
	}
	for _, p := range []uint64{1, 2, 10, 1 << 40} {
		c.Advance(p)
		if got := c.Load(); got != p {
			t.Fatalf("after Advance(%d), Load() = %d", p, got)
		}
	}
}

func TestCursorWaitReached(t *testing.T) {
	c := NewCursor()
	// An ended ctx makes Wait answer at once: nil for a position already reached (without
	// waiting), the ctx's error for one not reached.
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if err := c.Wait(ctx, 0); err != nil {
		t.Errorf("Wait(0) on a new cursor = %v, want nil", err)
	}
	c.Advance(5)
	for _, p := range []uint64{0, 1, 4, 5} {
		if err := c.Wait(ctx, p); err != nil {
			t.Errorf("Wait(%d) at 5 = %v, want nil", p, err)
		}
	}
	for _, p := range []uint64{6, 1 << 63} {
		if err := c.Wait(ctx, p); !errors.Is(err, context.Canceled) {
			t.Errorf("Wait(%d) at 5 with an ended ctx = %v, want context.Canceled", p, err)
		}
	}
	if err := c.Wait(t.Context(), 5); err != nil {
		t.Errorf("Wait(5) at 5 = %v", err)
	}
}

func TestCursorWaiterWokenByAdvance(t *testing.T) {
	c := NewCursor()
	const waiters = 8
	errs := make(chan error, waiters)
	var started sync.WaitGroup
	for i := 0; i < waiters; i++ {
		started.Add(1)
		go func() {
			started.Done()
			errs <- c.Wait(t.Context(), 3)
		}()
	}
	started.Wait()
	c.Advance(3)
	for i := 0; i < waiters; i++ {
		if err := <-errs; err != nil {
			t.Errorf("waiter %d: %v", i, err)
		}
	}
}

func TestCursorWaiterPastTarget(t *testing.T) {
	c := NewCursor()
	done := make(chan error, 1)
	go func() { done <- c.Wait(t.Context(), 3) }()
	// Several advances, the last one past the target.
	for p := uint64(1); p <= 10; p++ {
		c.Advance(p)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

// An advance short of the target does not release the waiter; only ctx ends it.
func TestCursorWaitCancelled(t *testing.T) {
	c := NewCursor()
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- c.Wait(ctx, 10) }()
	c.Advance(4)
	c.Advance(9)
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("Wait(10) with the cursor at 9 returned %v, want context.Canceled", err)
	}
}

// A follower that restarts replays from an earlier position: the cursor stays where it was.
func TestCursorNeverMovesBack(t *testing.T) {
	c := NewCursor()
	for _, step := range []struct{ advance, want uint64 }{
		{7, 7}, {3, 7}, {7, 7}, {0, 7}, {8, 8},
	} {
		c.Advance(step.advance)
		if got := c.Load(); got != step.want {
			t.Fatalf("after Advance(%d), Load() = %d, want %d", step.advance, got, step.want)
		}
	}
}

// WaitUpTo reports a stalled cursor as storage unavailable, and a caller's own end as such.
func TestCursorWaitUpTo(t *testing.T) {
	c := NewCursor()
	c.Advance(2)
	if err := c.WaitUpTo(t.Context(), 2, time.Millisecond); err != nil {
		t.Errorf("WaitUpTo a reached position = %v", err)
	}
	if err := c.WaitUpTo(t.Context(), 3, 20*time.Millisecond); !errors.Is(err, ErrUnavailable) {
		t.Errorf("WaitUpTo past a stalled cursor = %v, want ErrUnavailable", err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if err := c.WaitUpTo(ctx, 3, time.Minute); !errors.Is(err, context.Canceled) {
		t.Errorf("WaitUpTo with an ended ctx = %v, want context.Canceled", err)
	}
}
