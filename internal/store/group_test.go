package store

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
)

func openGrouped(t *testing.T, dir string, shards int) *Store {
	t.Helper()
	return openWith(t, Options{DataDir: dir, RoomShards: shards, GroupCommit: true})
}

// TestGroupCommitStoresQueuedAppendsTogether: appends to different rooms that queue while a
// message is in flight share the next one, each room at most once per message, and a
// follower hands each message's events over together at the sequence their appends returned.
func TestGroupCommitStoresQueuedAppendsTogether(t *testing.T) {
	st := openGrouped(t, t.TempDir(), 1)
	defer st.Close()
	ctx := t.Context()
	const rooms, perRoom = 40, 3
	type stored struct {
		room string
		n    int
		seq  uint64
	}
	results := make(chan stored, rooms*perRoom)
	var wg sync.WaitGroup
	for r := range rooms {
		wg.Go(func() {
			room := fmt.Sprintf("!g%d:test", r)
			var head uint64
			for n := range perRoom {
				seq, err := st.AppendRoomEvent(ctx, room, head, NewRoomEvent{
					JSON: fmt.Appendf(nil, `{"room":%q,"n":%d}`, room, n), EventID: fmt.Sprintf("$%d.%d", r, n), Device: "D", TxnID: fmt.Sprint(n)})
				if err != nil {
					t.Errorf("append %s #%d: %v", room, n, err)
					return
				}
				head = seq
				results <- stored{room, n, seq}
			}
		})
	}
	wg.Wait()
	close(results)
	bySeq := map[uint64][]string{}
	for r := range results {
		bySeq[r.seq] = append(bySeq[r.seq], fmt.Sprintf("$%s", r.room))
	}
	if len(bySeq) >= rooms*perRoom {
		t.Errorf("%d appends made %d messages: none were stored together", rooms*perRoom, len(bySeq))
	}
	var msgs [][]RoomEvent
	ch := make(chan []RoomEvent, rooms*perRoom)
	fctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- st.FollowShard(fctx, 0, 0, func(evs []RoomEvent) { ch <- evs }) }()
	for got := 0; got < rooms*perRoom; {
		evs := <-ch
		msgs = append(msgs, evs)
		got += len(evs)
	}
	cancel()
	<-done
	if len(msgs) != len(bySeq) {
		t.Errorf("the follower read %d messages, the appends returned %d sequences", len(msgs), len(bySeq))
	}
	for _, evs := range msgs {
		seen := map[string]bool{}
		for _, ev := range evs {
			var room string
			var n int
			if _, err := fmt.Sscanf(string(ev.JSON), `{"room":%q,"n":%d}`, &room, &n); err != nil {
				t.Fatalf("stored event %s: %v", ev.JSON, err)
			}
			if seen[room] {
				t.Errorf("message %d holds two events of %s", ev.Seq, room)
			}
			seen[room] = true
			if ev.Seq != evs[0].Seq || ev.Device != "D" || ev.TxnID != fmt.Sprint(n) || ev.EventID == "" {
				t.Errorf("event %+v in message %d", ev, evs[0].Seq)
			}
		}
		if len(evs) != len(bySeq[evs[0].Seq]) {
			t.Errorf("message %d holds %d events; %d appends returned it", evs[0].Seq, len(evs), len(bySeq[evs[0].Seq]))
		}
	}
	// One by position, as a gap fill reads them.
	at, err := st.RoomEventsAt(ctx, 0, msgs[len(msgs)-1][0].Seq)
	if err != nil || !slices.EqualFunc(at, msgs[len(msgs)-1], func(a, b RoomEvent) bool { return a.EventID == b.EventID }) {
		t.Errorf("RoomEventsAt = %+v, %v; want the last message's events", at, err)
	}
}

// TestGroupCommitCompares: an append is stored only on the room's head as this writer stored
// it, and only when built on a view that includes every event stored by another writer.
func TestGroupCommitCompares(t *testing.T) {
	st := openGrouped(t, t.TempDir(), 1)
	defer st.Close()
	ctx := t.Context()
	room := "!cmp:test"
	first, err := st.AppendRoomEvent(ctx, room, 0, NewRoomEvent{JSON: []byte(`{"n":1}`), EventID: "$1"})
	if err != nil {
		t.Fatal(err)
	}
	var c *ConflictError
	if _, err := st.AppendRoomEvent(ctx, room, 0, NewRoomEvent{JSON: []byte(`{"n":2}`), EventID: "$2"}); !errors.As(err, &c) || c.Head != first {
		t.Fatalf("an append on a stale room head: %v, want a conflict naming %d", err, first)
	}
	if head, err := st.RoomHeadSeq(ctx, room); err != nil || head < first {
		t.Errorf("RoomHeadSeq = %d, %v; want at least %d", head, err, first)
	}

	// Another writer stores on the shard behind this writer's back.
	foreign := nats.NewMsg(st.groups.writers[0].subject)
	foreign.Data = []byte("{}")
	foreignSeq, err := st.publishAcked(ctx, foreign)
	if err != nil {
		t.Fatal(err)
	}
	other := "!other:test"
	if _, err := st.AppendRoomEvent(ctx, other, 0, NewRoomEvent{JSON: []byte(`{}`), EventID: "$o", Seen: first}); !errors.As(err, &c) || c.Head != foreignSeq {
		t.Fatalf("an append built before another writer's event: %v, want a conflict naming %d", err, foreignSeq)
	}
	// Built again on a view that has it, it is stored; so is the first room's next event.
	seq, err := st.AppendRoomEvent(ctx, other, 0, NewRoomEvent{JSON: []byte(`{}`), EventID: "$o", Seen: foreignSeq})
	if err != nil || seq != foreignSeq+1 {
		t.Fatalf("append after catching up = %d, %v; want %d", seq, err, foreignSeq+1)
	}
	if _, err := st.AppendRoomEvent(ctx, room, first, NewRoomEvent{JSON: []byte(`{"n":2}`), EventID: "$2", Seen: seq}); err != nil {
		t.Fatalf("append on the room's head: %v", err)
	}
}

// TestGroupCommitNewRoom: a new room's events are stored atomically, one message each, so
// each keeps a position of its own; reopened, the store reads them back and goes on after them.
func TestGroupCommitNewRoom(t *testing.T) {
	dir := t.TempDir()
	st := openGrouped(t, dir, 1)
	ctx := t.Context()
	room := "!new:test"
	evs := []NewRoomEvent{{JSON: []byte(`{"n":1}`), EventID: "$a"}, {JSON: []byte(`{"n":2}`), EventID: "$b"}, {JSON: []byte(`{"n":3}`), EventID: "$c"}}
	last, err := st.AppendRoomEvents(ctx, room, 0, evs)
	if err != nil || last != 3 {
		t.Fatalf("AppendRoomEvents = %d, %v; want 3", last, err)
	}
	st.Close()

	st = openGrouped(t, dir, 1)
	defer st.Close()
	got := follow(t, st, st.RoomShard(room), 0, 3)
	for i, ev := range got {
		if ev.Seq != uint64(i+1) || ev.EventID != evs[i].EventID || string(ev.JSON) != string(evs[i].JSON) {
			t.Errorf("event %d = %+v", i, ev)
		}
	}
	if _, err := st.AppendRoomEvent(ctx, room, last, NewRoomEvent{JSON: []byte(`{"n":4}`), EventID: "$d", Seen: last}); err != nil {
		t.Errorf("append after reopening: %v", err)
	}
	var c *ConflictError
	if _, err := st.AppendRoomEvent(ctx, "!stale:test", 0, NewRoomEvent{JSON: []byte(`{}`), Seen: 1}); !errors.As(err, &c) {
		t.Errorf("an append built on a view from before the reopened store's head: %v, want a conflict", err)
	}
}

// TestGroupCommitNeedsAnEmbeddedServer: a node groups on its own server, alone or in a
// cluster (which asks it what it leads), never on an external NATS or with replicas it cannot
// have.
func TestGroupCommitNeedsAnEmbeddedServer(t *testing.T) {
	external := startExternalNATS(t) // a live one: the refusal must not be a failed connection
	for _, opts := range []Options{
		{Replicas: 3, GroupCommit: true},
		{NATSURL: external.ClientURL(), GroupCommit: true},
	} {
		opts.DataDir = t.TempDir()
		ctx, cancel := context.WithTimeout(t.Context(), 15*time.Second) // unguarded, Open may wait for replicas that never come
		st, err := Open(ctx, opts)
		cancel()
		if err == nil {
			st.Close()
		}
		if !errors.Is(err, errGroupNeedsEmbedded) {
			t.Errorf("Open(%+v) with group commit: %v, want %v", opts, err, errGroupNeedsEmbedded)
		}
	}
}

func TestDecodeGroup(t *testing.T) {
	evs := []NewRoomEvent{{JSON: []byte(`{"a":1}`), EventID: "$a", Device: "DEV", TxnID: "t1"}, {JSON: []byte(`{}`)}}
	var data []byte
	for _, ev := range evs {
		data = appendGroupEvent(data, ev)
	}
	got, err := decodeGroup(3, 9, data)
	if err != nil || len(got) != 2 || got[0].EventID != "$a" || got[0].Device != "DEV" || got[0].TxnID != "t1" ||
		string(got[0].JSON) != `{"a":1}` || string(got[1].JSON) != `{}` || got[1].Shard != 3 || got[1].Seq != 9 {
		t.Fatalf("decodeGroup = %+v, %v", got, err)
	}
	for _, bad := range [][]byte{nil, data[:len(data)-1], data[:3], {0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01}, {5, 'a'}} {
		if _, err := decodeGroup(0, 1, bad); !errors.Is(err, errBadGroup) {
			t.Errorf("decodeGroup(%q) = %v, want errBadGroup", bad, err)
		}
	}
	// A follower hands an unreadable message on as one unreadable event at its position.
	if got := roomEvents(0, 7, "fb.room.0.g", data[:3], nil); len(got) != 1 || got[0].Seq != 7 || got[0].JSON != nil {
		t.Errorf("roomEvents of a broken group = %+v", got)
	}
}

// TestGroupCommitAfterALostAnswer: a message stored while its writer heard nothing back (its
// answer lost past every retry) leaves the writer's room heads behind the rooms' real heads;
// the next append built on the real head is stored, not refused forever.
func TestGroupCommitAfterALostAnswer(t *testing.T) {
	st := openGrouped(t, t.TempDir(), 1)
	defer st.Close()
	ctx := t.Context()
	room := "!lost:test"
	if _, err := st.AppendRoomEvent(ctx, room, 0, NewRoomEvent{JSON: []byte(`{"n":1}`), EventID: "$1"}); err != nil {
		t.Fatal(err)
	}
	lost := st.groups.writers[0].message([]NewRoomEvent{{JSON: []byte(`{"n":2}`), EventID: "$2"}})
	lostSeq, err := st.publishAcked(ctx, lost)
	if err != nil {
		t.Fatal(err)
	}
	seq, err := st.AppendRoomEvent(ctx, room, lostSeq, NewRoomEvent{JSON: []byte(`{"n":3}`), EventID: "$3", Seen: lostSeq})
	if err != nil || seq != lostSeq+1 {
		t.Fatalf("append on the room's real head = %d, %v; want %d", seq, err, lostSeq+1)
	}
}

// TestGroupCommitLargeNewRoom: a new room's events are one message each, so together they may
// exceed what one message holds, as in a cluster; one event too large for a message is refused.
func TestGroupCommitLargeNewRoom(t *testing.T) {
	st := openGrouped(t, t.TempDir(), 1)
	defer st.Close()
	big := []byte(`"` + strings.Repeat("x", 60<<10) + `"`)
	var evs []NewRoomEvent
	for i := range 4 {
		evs = append(evs, NewRoomEvent{JSON: big, EventID: fmt.Sprintf("$%d", i)})
	}
	if last, err := st.AppendRoomEvents(t.Context(), "!big:test", 0, evs); err != nil || last != 4 {
		t.Fatalf("AppendRoomEvents of 4 events of 60 KiB = %d, %v", last, err)
	}
	huge := NewRoomEvent{JSON: make([]byte, maxGroupBytes), EventID: "$huge"}
	if _, err := st.AppendRoomEvent(t.Context(), "!huge:test", 0, huge); !errors.Is(err, ErrValueTooLarge) {
		t.Errorf("an event over a message's size: %v, want ErrValueTooLarge", err)
	}
}

// TestGroupHolds: a retried message counts as stored only where a message holds exactly its
// events. One that merely ends with its last event may be another writer's, which stored that
// append alone after its forward was tried again.
func TestGroupHolds(t *testing.T) {
	st := openGrouped(t, t.TempDir(), 1)
	defer st.Close()
	w := st.groups.writers[0]
	msg := w.message([]NewRoomEvent{{JSON: []byte(`{}`), EventID: "$y"}, {JSON: []byte(`{}`), EventID: "$e"}})
	seq, err := st.publishAtomic(t.Context(), []*nats.Msg{msg})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		ids  []string
		want bool
	}{
		{[]string{"$y", "$e"}, true},
		{[]string{"$e"}, false},
		{[]string{"$x", "$e"}, false},
		{[]string{"$e", "$y"}, false},
		{[]string{"$y", "$e", "$z"}, false},
		{[]string{"", "$e"}, false},
	} {
		if got := w.holds(t.Context(), seq, tc.ids); got != tc.want {
			t.Errorf("holds(%v) = %v, want %v", tc.ids, got, tc.want)
		}
	}
}
