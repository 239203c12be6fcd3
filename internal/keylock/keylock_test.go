package keylock

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"
)

// TestLocks: one holder of a key at a time, others of that key wait in turn, other keys do
// not; a wait ends with its context; nothing is left behind once all are done.
func TestLocks(t *testing.T) {
	l := New[string]()
	ctx := t.Context()
	unlock, err := l.Lock(ctx, "a")
	if err != nil {
		t.Fatal(err)
	}
	other, err := l.Lock(ctx, "b")
	if err != nil {
		t.Fatalf("lock of another key: %v", err)
	}
	other()
	short, cancel := context.WithTimeout(ctx, 20*time.Millisecond)
	defer cancel()
	if _, err := l.Lock(short, "a"); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("second lock of a held key: %v, want the context's error", err)
	}
	var (
		wg      sync.WaitGroup
		mu      sync.Mutex
		inside  int
		overlap bool
	)
	for range 8 {
		wg.Go(func() {
			u, err := l.Lock(ctx, "a")
			if err != nil {
				t.Error(err)
				return
			}
			mu.Lock()
			inside++
			overlap = overlap || inside > 1
			mu.Unlock()
			time.Sleep(time.Millisecond)
			mu.Lock()
			inside--
			mu.Unlock()
			u()
		})
	}
	time.Sleep(10 * time.Millisecond)
	unlock() // the first holder lets the queue in
	wg.Wait()
	if overlap {
		t.Error("two holders of one key at once")
	}
	if n := l.held(); n != 0 {
		t.Errorf("%d lock entries left after every holder released", n)
	}
}

// held is how many keys are held or waited for.
func (l *Locks[K]) held() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.locks)
}
