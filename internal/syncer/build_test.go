package syncer

import (
	"context"
	"maps"
	"slices"
	"testing"
	"time"
)

// TestIncrementalSyncQuietRooms: a room with no new event since the token is skipped without
// reading its timeline and state (window.quiet), but still comes back when it has news of
// another kind: typing, a receipt, room account data.
func TestIncrementalSyncQuietRooms(t *testing.T) {
	ctx := context.Background()
	n := startBenchNode(t, nil)
	quiet := n.room(t, 0, 2, 1)
	n.room(t, 1, 2, 1) // a room that stays quiet throughout
	info, _ := n.rooms.Model().Info(quiet)
	lastEvent := info.Head.PDU.EventID()
	const peer = "@r0m1:bench"
	// In this order each change is the only news since its token: typing, heard back from
	// the node's own publish, comes last, and nothing lifts it.
	tests := []struct {
		name          string
		change        func() error
		wantTimeline  int
		wantEphemeral int
		wantData      int
	}{
		{"message", func() error { n.say(t, quiet, peer, 1); return nil }, 1, 0, 0},
		{"room account data", func() error {
			return n.data.Set(ctx, benchMe, quiet, "m.tag", []byte(`{"tags":{"u.work":{}}}`))
		}, 0, 0, 1},
		{"receipt", func() error { return n.rooms.SetReceipt(ctx, quiet, peer, "m.read", lastEvent, "") }, 0, 1, 0},
		{"typing", func() error { return n.rooms.SetTyping(ctx, quiet, peer, true, time.Minute.Milliseconds()) }, 0, 1, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			since := n.sync.current().String()
			if err := tt.change(); err != nil {
				t.Fatal(err)
			}
			// A long poll: it answers once the change has reached the syncer.
			resp, err := n.sync.Sync(ctx, Request{UserID: benchMe, DeviceID: "DEV", Since: since, Timeout: 5 * time.Second})
			if err != nil {
				t.Fatal(err)
			}
			jr := resp.Rooms.Join[quiet]
			if jr == nil {
				t.Fatalf("the room with news is missing from the sync (rooms: %v)", slices.Collect(maps.Keys(resp.Rooms.Join)))
			}
			if got := len(jr.Timeline.Events); got != tt.wantTimeline || jr.Timeline.Limited || jr.Timeline.PrevBatch == "" {
				t.Errorf("timeline: %d events (limited %v, prev_batch %q), want %d", got, jr.Timeline.Limited, jr.Timeline.PrevBatch, tt.wantTimeline)
			}
			if len(jr.Ephemeral.Events) != tt.wantEphemeral || len(jr.AccountData.Events) != tt.wantData {
				t.Errorf("ephemeral %d, account data %d; want %d and %d",
					len(jr.Ephemeral.Events), len(jr.AccountData.Events), tt.wantEphemeral, tt.wantData)
			}
			if len(resp.Rooms.Join) != 1 {
				t.Errorf("rooms %v, want only the one with news", slices.Collect(maps.Keys(resp.Rooms.Join)))
			}
		})
	}
	// Nothing new anywhere: no room at all.
	now := n.sync.current().String()
	resp, err := n.sync.Sync(ctx, Request{UserID: benchMe, DeviceID: "DEV", Since: now})
	if err != nil || len(resp.Rooms.Join) != 0 {
		t.Errorf("an empty sync: %v, rooms %v", err, slices.Collect(maps.Keys(resp.Rooms.Join)))
	}
	// full_state sends every room again, with its state, however quiet; its timeline is still
	// only what came after the token: nothing.
	resp, err = n.sync.Sync(ctx, Request{UserID: benchMe, DeviceID: "DEV", Since: now, FullState: true})
	if err != nil || len(resp.Rooms.Join) != 2 {
		t.Fatalf("a full_state sync: %v, rooms %v", err, slices.Collect(maps.Keys(resp.Rooms.Join)))
	}
	for roomID, jr := range resp.Rooms.Join {
		if len(jr.State.Events) == 0 || len(jr.Timeline.Events) != 0 || jr.Timeline.Limited {
			t.Errorf("full_state sync: room %s came back with %d state events and %d timeline events (limited %v), want its state and no timeline",
				roomID, len(jr.State.Events), len(jr.Timeline.Events), jr.Timeline.Limited)
		}
	}
}

// TestTypingAfterARestart: a token from before this process started says nothing of the
// typing indicators its client shows; every room's indicator is sent once, even an empty one
// (the client may show someone typing whose indicator this process never heard of), and from
// the next token on only changes are. A token another node issued since, with nothing new,
// gets nothing.
func TestTypingAfterARestart(t *testing.T) {
	ctx := context.Background()
	n := startBenchNode(t, nil)
	rooms := []string{n.room(t, 0, 2, 1), n.room(t, 1, 2, 1)}
	before := uint64(time.Now().UnixMicro())
	here := n.sync.current()
	if here.Typing < before {
		t.Errorf("a token's typing serial %d is not the clock now (%d): a node started since would take it for one from before its start", here.Typing, before)
	}
	otherNode := here
	otherNode.Typing = uint64(time.Now().UnixMicro()) // another node's token: its clock now
	elsewhere := here
	elsewhere.Typing = 1 // before this process started
	typingRooms := func(since Token) (typing map[string][]string, next string) {
		t.Helper()
		resp, err := n.sync.Sync(ctx, Request{UserID: benchMe, DeviceID: "DEV", Since: since.String()})
		if err != nil {
			t.Fatal(err)
		}
		typing = map[string][]string{}
		for roomID, jr := range resp.Rooms.Join {
			for _, e := range jr.Ephemeral.Events {
				if ev := e.(map[string]any); ev["type"] == "m.typing" {
					typing[roomID] = ev["content"].(map[string]any)["user_ids"].([]string)
				}
			}
		}
		return typing, resp.NextBatch
	}
	for name, token := range map[string]Token{"this node's": here, "another node's": otherNode} {
		if got, _ := typingRooms(token); len(got) != 0 {
			t.Errorf("%s token with nothing new got typing in %v", name, got)
		}
	}
	got, next := typingRooms(elsewhere)
	for _, roomID := range rooms {
		if users, ok := got[roomID]; !ok || len(users) != 0 {
			t.Errorf("a token from before the process started: room %s typing %v (sent: %v), want an empty list", roomID, users, ok)
		}
	}
	token, err := ParseToken(next, n.sync.Shards())
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := typingRooms(token); len(got) != 0 {
		t.Errorf("the token that answer gave got typing again in %v", got)
	}
}
