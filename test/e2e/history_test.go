package e2e

import (
	"fmt"
	"slices"
	"testing"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"
)

const historySize = 320

// testHistoryPagination sends 320 messages and reads them back through
// /messages in both directions, with `to` and with filters.
func testHistoryPagination(t *testing.T, srv *server) {
	alice, bob := registerUser(t, srv, "alice"), registerUser(t, srv, "bob")
	room := sharedRoom(t, alice, bob)
	var want []string
	for i := range historySize {
		want = append(want, fmt.Sprintf("history %03d", i))
		alice.sendText(t, room, want[i])
	}
	want = append(want, "bob's last word")
	bob.sendText(t, room, want[historySize])

	initial := alice.syncOnce(t, 0)
	jr := joinedRoom(initial, room)
	if jr == nil {
		t.Fatalf("initial sync lacks room %s", room)
	}
	back, pages := roomMessages(t, alice, room, initial.NextBatch, "", mautrix.DirectionBackward, nil, 50)

	t.Run("BackwardFromNextBatch", func(t *testing.T) {
		if pages[0].Start != initial.NextBatch {
			t.Errorf("the first page's start is %q, want the from token %q", pages[0].Start, initial.NextBatch)
		}
		expectUniqueIDs(t, back)
		expectBodies(t, reversed(back), want)
		if oldest := back[len(back)-1]; oldest.Type.Type != event.StateCreate.Type {
			t.Errorf("oldest event reached is %s, want m.room.create", oldest.Type.Type)
		}
	})
	t.Run("BackwardFromPrevBatch", func(t *testing.T) {
		if jr.Timeline.PrevBatch == "" {
			t.Fatalf("initial sync timeline has no prev_batch")
		}
		older, _ := roomMessages(t, alice, room, jr.Timeline.PrevBatch, "", mautrix.DirectionBackward, nil, 50)
		all := slices.Concat(reversed(older), jr.Timeline.Events)
		expectUniqueIDs(t, all)
		expectBodies(t, all, want)
	})
	if len(pages) < 5 {
		t.Fatalf("%d events came in %d pages of 50, want at least 5 pages", len(back), len(pages))
	}
	// offset[k] is the index in back of the first event of pages[k].
	offset := make([]int, len(pages)+1)
	for k, p := range pages {
		offset[k+1] = offset[k] + len(p.Chunk)
	}
	t.Run("BackwardWithTo", func(t *testing.T) {
		got, err := alice.Messages(testCtx(t), room, initial.NextBatch, pages[0].End, mautrix.DirectionBackward, nil, 200)
		mustOK(t, err, "/messages with to")
		expectSameEvents(t, got.Chunk, pages[0].Chunk)
	})
	t.Run("ForwardWithTo", func(t *testing.T) {
		got, err := alice.Messages(testCtx(t), room, pages[3].End, pages[1].End, mautrix.DirectionForward, nil, 200)
		mustOK(t, err, "/messages dir=f with to")
		expectSameEvents(t, got.Chunk, reversed(back[offset[2]:offset[4]]))
	})
	t.Run("ForwardToTheEnd", func(t *testing.T) {
		k := len(pages) / 2
		fwd, _ := roomMessages(t, alice, room, pages[k].End, "", mautrix.DirectionForward, nil, 50)
		expectSameEvents(t, fwd, reversed(back[:offset[k+1]]))
	})
	t.Run("TypesFilter", func(t *testing.T) {
		filter := &mautrix.FilterPart{Types: []event.Type{event.EventMessage}}
		got, err := alice.Messages(testCtx(t), room, initial.NextBatch, "", mautrix.DirectionBackward, filter, 10)
		mustOK(t, err, "/messages with types filter")
		if len(got.Chunk) != 10 {
			t.Fatalf("types filter returned %d events, want 10", len(got.Chunk))
		}
		expectBodies(t, reversed(got.Chunk), want[len(want)-10:])
	})
	t.Run("NotSendersFilter", func(t *testing.T) {
		filter := &mautrix.FilterPart{NotSenders: []id.UserID{alice.UserID}}
		got, _ := roomMessages(t, alice, room, initial.NextBatch, "", mautrix.DirectionBackward, filter, 50)
		for _, evt := range got {
			if evt.Sender == alice.UserID {
				t.Fatalf("not_senders filter let through %s from alice", evt.ID)
			}
		}
		expectBodies(t, got, want[historySize:])
	})
	t.Run("ForwardGoesOnFromItsEnd", func(t *testing.T) {
		// A page read forwards that reaches the newest event still ends with a token, from
		// which the events sent since are read.
		got, err := alice.Messages(testCtx(t), room, pages[0].End, "", mautrix.DirectionForward, nil, 200)
		mustOK(t, err, "/messages forward to the newest event")
		if len(got.Chunk) != len(pages[0].Chunk) || got.End == "" {
			t.Fatalf("a forward page of %d events (want %d) ends with %q, want a token", len(got.Chunk), len(pages[0].Chunk), got.End)
		}
		later := bob.sendText(t, room, "after the page")
		next, err := alice.Messages(testCtx(t), room, got.End, "", mautrix.DirectionForward, nil, 200)
		mustOK(t, err, "/messages from the forward page's end")
		if len(next.Chunk) != 1 || next.Chunk[0].ID != later {
			t.Errorf("from the end token came %v, want only %s", eventIDs(next.Chunk), later)
		}
	})
}

func reversed[T any](in []T) []T {
	out := slices.Clone(in)
	slices.Reverse(out)
	return out
}

func expectUniqueIDs(t *testing.T, events []*event.Event) {
	t.Helper()
	seen := map[id.EventID]bool{}
	for _, evt := range events {
		if seen[evt.ID] {
			t.Errorf("event %s returned twice", evt.ID)
		}
		seen[evt.ID] = true
	}
}

// expectBodies compares the message bodies of events with want and reports
// the first difference.
func expectBodies(t *testing.T, events []*event.Event, want []string) {
	t.Helper()
	got := bodies(events)
	for i := range max(len(got), len(want)) {
		if i >= len(got) || i >= len(want) || got[i] != want[i] {
			t.Fatalf("got %d message bodies, want %d; first difference at #%d: got %q, want %q",
				len(got), len(want), i, at(got, i), at(want, i))
		}
	}
}

func expectSameEvents(t *testing.T, got, want []*event.Event) {
	t.Helper()
	g, w := eventIDs(got), eventIDs(want)
	if !slices.Equal(g, w) {
		t.Fatalf("got %d events, want %d:\n got  %v\n want %v", len(g), len(w), g, w)
	}
}

func at(s []string, i int) string {
	if i < len(s) {
		return s[i]
	}
	return "<none>"
}
