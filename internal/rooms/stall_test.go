package rooms

import (
	"context"
	"slices"
	"testing"
	"time"
)

// TestStalledFollowerIsFilled: a node whose shard followers deliver nothing still gets a
// shard's new events once a check has seen it stand still behind its stream's head, and that
// shard's follower is started again; a shard that is up to date is left alone.
func TestStalledFollowerIsFilled(t *testing.T) {
	s, stalled, stopFollowing := twoNodes(t)
	roomID := createRoom(t, s, CreateRequest{Preset: "public_chat"})
	catchUpWith(t, stalled, s)
	stopFollowing() // stalled's followers are gone; only the checks below move its read model
	// A stand-in for the shard's follower, stuck until it is started again.
	shard := stalled.st.RoomShard(roomID)
	running, restarted := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(restarted)
		_ = stalled.followers[shard].run(t.Context(), func(ctx context.Context) error {
			close(running)
			<-ctx.Done()
			return ctx.Err()
		})
	}()
	<-running

	var w stallWatch
	stalled.checkStalls(t.Context(), &w) // the first check only notes the heads
	var want []string
	for _, body := range []string{"one", "two", "three"} {
		want = append(want, sendText(t, s, roomID, alice, body))
	}
	stalled.checkStalls(t.Context(), &w) // behind, but these events came after the heads it noted
	if got := len(allEvents(stalled, roomID)); got != len(allEvents(s, roomID))-len(want) {
		t.Fatalf("filled before a check saw the shard stand still: %d events", got)
	}
	select {
	case <-restarted:
		t.Fatal("the follower was started again before a check saw its shard stand still")
	default:
	}
	stalled.checkStalls(t.Context(), &w)
	select {
	case <-restarted:
	case <-time.After(10 * time.Second):
		t.Fatal("the stalled shard's follower was not started again")
	}
	var got []string
	for _, ev := range allEvents(stalled, roomID) {
		got = append(got, ev.PDU.EventID())
	}
	if len(got) < len(want) || !slices.Equal(got[len(got)-len(want):], want) {
		t.Fatalf("after the stall was seen the node holds %v, want it to end with %v", got, want)
	}
	if !slices.Equal(stalled.Model().Applied(), s.Model().Applied()) {
		t.Errorf("applied %v, want %v", stalled.Model().Applied(), s.Model().Applied())
	}
}
