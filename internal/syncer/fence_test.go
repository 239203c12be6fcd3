package syncer

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/firebreak/firebreak/internal/store"
)

// TestLongPollEndsWhenTheNodeFences: a sync waiting for news on a node that fences itself ends
// with store.ErrCutOff (503) instead of waiting out its timeout, and so does one that arrives
// after; news already there is still answered.
func TestLongPollEndsWhenTheNodeFences(t *testing.T) {
	t.Parallel()
	fencing := make(chan struct{})
	n := startBenchNode(t, fencing)
	roomID := n.room(t, 0, 2, 1)
	since := n.sync.current().String()
	ctx := t.Context()
	waiting := Request{UserID: benchMe, DeviceID: "DEV", Since: since, Timeout: time.Minute}

	ended := make(chan error, 1)
	go func() {
		_, err := n.sync.Sync(ctx, waiting)
		ended <- err
	}()
	for !n.sync.hasWaiter(benchMe) { // parked, not just started
		time.Sleep(time.Millisecond)
	}
	close(fencing)
	select {
	case err := <-ended:
		if !errors.Is(err, store.ErrCutOff) {
			t.Fatalf("long poll on a fencing node ended with %v, want store.ErrCutOff", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the long poll still waited 30 s after its node fenced")
	}

	if _, err := n.sync.Sync(ctx, waiting); !errors.Is(err, store.ErrCutOff) {
		t.Errorf("a long poll arriving on a fenced node: %v, want store.ErrCutOff", err)
	}
	n.say(t, roomID, "@r0m1:bench", 1)
	resp, err := n.sync.Sync(context.Background(), waiting)
	if err != nil || len(resp.Rooms.Join) != 1 {
		t.Errorf("a sync with news on a fenced node: %v, %+v; want the news", err, resp)
	}
}

func (s *Service) hasWaiter(user string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, ok := s.waiters[user]
	return ok
}
