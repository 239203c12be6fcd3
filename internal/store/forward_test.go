package store

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
)

// TestClusterGroupCommit: in a three-node cluster every node's appends go to the writer of
// the node that leads the shard, so one message holds several nodes' events; each room's
// history stays a line, also while the shard's leader moves to another node; a leader whose
// node serves nobody still gets its shard written; and a cluster created before its nodes
// grouped keeps one message per event.
func TestClusterGroupCommit(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a three-node JetStream cluster")
	}
	opts := clusterOptions(t, 3)
	for i := range opts {
		opts[i].RoomShards, opts[i].GroupCommit = 1, true
	}
	stores := openAll(t, opts)
	for _, st := range stores {
		defer st.Close()
		if !st.grouped {
			t.Fatalf("%s does not group its appends in a new cluster", st.opts.NodeName)
		}
	}
	ctx := t.Context()
	const roomsPerNode, perRoom = 8, 12
	var (
		wg      sync.WaitGroup
		mu      sync.Mutex
		written = map[string][]string{} // room: event ids in the order their appends returned
	)
	moved := make(chan struct{})
	for n, st := range stores {
		for r := range roomsPerNode {
			wg.Go(func() {
				room := fmt.Sprintf("!n%dr%d:test", n, r)
				var head, seen uint64
				for i := range perRoom {
					if n == 0 && r == 0 && i == perRoom/2 {
						<-moved // half way, once the shard's leader has moved
					}
					id := fmt.Sprintf("$%s.%d", room, i)
					seq, err := appendUntilStored(ctx, st, room, head, &seen, NewRoomEvent{
						JSON: fmt.Appendf(nil, `{"i":%d}`, i), EventID: id, Device: st.opts.NodeName, TxnID: fmt.Sprint(i)})
					if err != nil {
						t.Errorf("append %s: %v", id, err)
						return
					}
					head = seq
					mu.Lock()
					written[room] = append(written[room], id)
					mu.Unlock()
				}
			})
		}
	}
	moveShardLeader(t, stores)
	close(moved)
	wg.Wait()

	mixed, byRoom := 0, map[string][]string{}
	head, err := stores[0].ShardHead(ctx, 0)
	if err != nil {
		t.Fatal(err)
	}
	for seq := uint64(1); seq <= head; seq++ {
		var evs []RoomEvent
		waitFor(t, fmt.Sprintf("message %d is readable", seq), func() bool {
			evs, err = stores[1].RoomEventsAt(ctx, 0, seq) // a replica may trail for a moment
			return err == nil
		})
		nodes := map[string]bool{}
		for _, ev := range evs {
			room, _, _ := strings.Cut(strings.TrimPrefix(ev.EventID, "$"), ".")
			byRoom[room] = append(byRoom[room], ev.EventID)
			nodes[ev.Device] = true
		}
		if len(nodes) > 1 {
			mixed++
		}
	}
	// Without an index of a room's events in its shard, its head is the shard's last
	// sequence.
	waitFor(t, "RoomHeadSeq gives the shard's head", func() bool {
		got, err := stores[2].RoomHeadSeq(ctx, "!n0r0:test")
		return err == nil && got == head
	})
	t.Logf("%d messages, %d of them with events sent through different nodes", head, mixed)
	if mixed == 0 {
		t.Error("no message holds events sent through different nodes: nothing was forwarded")
	}
	for room, ids := range written {
		if got := strings.Join(byRoom[room], " "); got != strings.Join(ids, " ") {
			t.Errorf("room %s stored %s, want %s", room, got, strings.Join(ids, " "))
		}
	}

	checkAskShardOwner(t, stores)

	// A leader whose node serves no forwards (here: its watch stopped) still gets the shard
	// written: after noOwnerGrace of finding nobody, a node writes it itself.
	owner := -1
	for i, st := range stores {
		if st.groups.owners.owns(0) {
			owner = i
		}
	}
	if owner < 0 {
		t.Fatal("shard 0 has no leader")
	}
	stores[owner].groups.owners.stop()
	other := stores[(owner+1)%len(stores)]
	waitFor(t, "the leader's node stops serving forwards", func() bool {
		_, err := other.nc.Request(ownerSubject(appendService, 0), nil, time.Second)
		return errors.Is(err, nats.ErrNoResponders)
	})
	var seen uint64
	if _, err := appendUntilStored(ctx, other, "!unserved:test", 0, &seen,
		NewRoomEvent{JSON: []byte(`{}`), EventID: "$unserved", Device: other.opts.NodeName}); err != nil {
		t.Errorf("append while the leader's node serves nobody: %v", err)
	}

	// A node not asked to group does as the cluster does.
	stores[1].opts.GroupCommit = false
	if grouped, err := stores[1].agreeOnRoomWrites(ctx); err != nil || !grouped {
		t.Errorf("agreeOnRoomWrites without GroupCommit in a grouping cluster = %v, %v; want true", grouped, err)
	}
	// A cluster that has room_shards but no room_writes was created by nodes that stored
	// one message per event.
	if err := stores[0].Delete(ctx, BucketServer, roomWritesKey); err != nil {
		t.Fatal(err)
	}
	// (Asked until the replica that answers has the deletion and the new value: a deployment
	// never deletes the key, and a value once made never changes.)
	waitFor(t, "agreeOnRoomWrites in a cluster created before says one message per event", func() bool {
		grouped, err := stores[0].agreeOnRoomWrites(ctx)
		return err == nil && !grouped
	})
}

// checkAskShardOwner: a request registered with ServeAtShardOwner is answered by the node
// that owns the shard, whichever node asks, with its handler's first answer, or an empty one
// if it gave none; the owner itself, and a node asking for a service nobody serves (any
// longer), are told to do the work themselves; an owner that does not answer in time makes
// the request unavailable, and the owner's handler is told to stop.
func checkAskShardOwner(t *testing.T, stores []*Store) {
	t.Helper()
	ctx := t.Context()
	stopped, release := make(chan struct{}, len(stores)), make(chan struct{})
	defer close(release)
	for _, st := range stores {
		st.ServeAtShardOwner("echo.v1", func(_ context.Context, shard int, req []byte, answer func([]byte)) {
			answer(fmt.Appendf(nil, "%s:%d:%s", st.opts.NodeName, shard, req))
			answer([]byte("a second answer is dropped"))
		})
		st.ServeAtShardOwner("stuck.v1", func(ctx context.Context, _ int, _ []byte, _ func([]byte)) {
			<-ctx.Done()
			stopped <- struct{}{}
			<-release // returns only after the asking node has stopped waiting
		})
		stopSilent := st.ServeAtShardOwner("silent.v1", func(context.Context, int, []byte, func([]byte)) {})
		defer stopSilent()
		stopGone := st.ServeAtShardOwner("gone.v1", func(context.Context, int, []byte, func([]byte)) {})
		stopGone()
	}
	owner := -1
	waitFor(t, "shard 0's owner answers", func() bool {
		for i, st := range stores {
			if st.groups.owners.owns(0) {
				owner = i
				_, err := stores[(i+1)%len(stores)].AskShardOwner(ctx, "echo.v1", 0, request("ping"), time.Second)
				return err == nil
			}
		}
		return false
	})
	for i, st := range stores {
		got, err := st.AskShardOwner(ctx, "echo.v1", 0, request("hi"), time.Second)
		switch {
		case i == owner && !errors.Is(err, ErrAskHere):
			t.Errorf("the owner asking itself: %q, %v; want ErrAskHere", got, err)
		case i != owner && (err != nil || string(got) != stores[owner].opts.NodeName+":0:hi"):
			t.Errorf("%s asking: %q, %v; want the answer of %s", st.opts.NodeName, got, err, stores[owner].opts.NodeName)
		}
	}
	asker := stores[(owner+1)%len(stores)]
	for _, service := range []string{"nobody.v1", "gone.v1"} {
		if _, err := asker.AskShardOwner(ctx, service, 0, request(""), time.Second); !errors.Is(err, ErrAskHere) {
			t.Errorf("%s, which nobody serves: %v, want ErrAskHere", service, err)
		}
	}
	if got, err := asker.AskShardOwner(ctx, "silent.v1", 0, request("x"), time.Second); err != nil || len(got) != 0 {
		t.Errorf("a handler that does not answer: %q, %v; want an empty answer", got, err)
	}
	if _, err := asker.AskShardOwner(ctx, "stuck.v1", 0, request(""), 100*time.Millisecond); !errors.Is(err, ErrUnavailable) {
		t.Errorf("an owner that does not answer: %v, want ErrUnavailable", err)
	}
	select {
	case <-stopped:
	case <-time.After(10 * time.Second):
		t.Error("the stuck handler's context did not end")
	}
}

func request(s string) func() ([]byte, error) {
	return func() ([]byte, error) { return []byte(s), nil }
}

// appendUntilStored appends ev to a room only this caller writes, building again (here: only
// taking the later shard position) whenever the shard's writer says its view is stale. Like
// the rooms' send, it first looks for ev among the messages it missed: a forward tried again
// after its first try was stored unanswered (the shard's leader moving) is refused by the next
// writer, and building it again would store it twice.
func appendUntilStored(ctx context.Context, st *Store, room string, head uint64, seen *uint64, ev NewRoomEvent) (uint64, error) {
	for attempt := 0; attempt < 50; attempt++ {
		ev.Seen = *seen
		seq, err := st.AppendRoomEvent(ctx, room, head, ev)
		var c *ConflictError
		if !errors.As(err, &c) {
			if err == nil {
				*seen = max(*seen, seq)
			}
			return seq, err
		}
		if c.Head <= *seen { // only the view can be stale: nobody else writes the room
			return 0, fmt.Errorf("refused on head %d with view %d: %w", head, *seen, err)
		}
		missed := *seen
		*seen = c.Head
		if seq, ok, err := storedBetween(ctx, st, st.RoomShard(room), missed, c.Head, ev.EventID); ok || err != nil {
			return seq, err
		}
	}
	return 0, errors.New("refused 50 times")
}

// storedBetween finds the shard position after from and up to to that holds the event id. A
// replica that trails the leader's head for a moment is asked again.
func storedBetween(ctx context.Context, st *Store, shard int, from, to uint64, eventID string) (uint64, bool, error) {
	for seq := from + 1; seq <= to; seq++ {
		evs, err := st.RoomEventsAt(ctx, shard, seq)
		for tries := 0; errors.Is(err, ErrNotFound) && tries < 50; tries++ {
			time.Sleep(20 * time.Millisecond)
			evs, err = st.RoomEventsAt(ctx, shard, seq)
		}
		if err != nil {
			return 0, false, err
		}
		for _, ev := range evs {
			if ev.EventID == eventID {
				return seq, true, nil
			}
		}
	}
	return 0, false, nil
}

// moveShardLeader asks shard 0's leader to step down and waits until another node leads it.
func moveShardLeader(t *testing.T, stores []*Store) {
	t.Helper()
	leader := func() int {
		for i, st := range stores {
			if st.groups.owners.owns(0) {
				return i
			}
		}
		return -1
	}
	var before int
	waitFor(t, "shard 0 has a leader", func() bool { before = leader(); return before >= 0 })
	subject := "$JS.API.STREAM.LEADER.STEPDOWN." + shardStreamName(0)
	if _, err := stores[before].nc.Request(subject, nil, 5*time.Second); err != nil {
		t.Fatalf("step down: %v", err)
	}
	waitFor(t, "another node leads shard 0", func() bool { now := leader(); return now >= 0 && now != before })
}

func TestForwardEncoding(t *testing.T) {
	evs := []NewRoomEvent{{JSON: []byte(`{"a":1}`), EventID: "$a", Device: "DEV", TxnID: "t1", Seen: 7}, {JSON: []byte(`{}`), Seen: 9}}
	data := encodeForward("!r:test", 5, evs)
	room, after, got, err := decodeForward(data)
	if err != nil || room != "!r:test" || after != 5 || len(got) != 2 || got[0].EventID != "$a" || got[0].Device != "DEV" ||
		got[0].TxnID != "t1" || got[0].Seen != 7 || string(got[0].JSON) != `{"a":1}` || got[1].Seen != 9 || string(got[1].JSON) != `{}` {
		t.Fatalf("decodeForward = %q %d %+v %v", room, after, got, err)
	}
	for _, bad := range [][]byte{nil, data[:len(data)-1], data[:4], encodeForward("", 1, evs), encodeForward("!r:test", 1, nil)} {
		if _, _, _, err := decodeForward(bad); !errors.Is(err, errBadForward) {
			t.Errorf("decodeForward(%q) = %v, want errBadForward", bad, err)
		}
	}
}

func TestForwardReply(t *testing.T) {
	for _, tc := range []struct {
		name    string
		seq     uint64
		err     error
		wantSeq uint64
		want    error
	}{
		{"stored", 42, nil, 42, nil},
		{"conflict", 0, &ConflictError{Head: 17}, 0, ErrConflict},
		{"unavailable", 0, fmt.Errorf("%w: no leader", ErrUnavailable), 0, ErrUnavailable},
		{"too large", 0, fmt.Errorf("%w: big", ErrValueTooLarge), 0, ErrValueTooLarge},
		{"other", 0, errors.New("boom"), 0, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			seq, err := decodeForwardReply(encodeForwardReply(tc.seq, tc.err))
			if seq != tc.wantSeq {
				t.Errorf("seq %d, want %d", seq, tc.wantSeq)
			}
			switch {
			case tc.err == nil && err != nil:
				t.Errorf("err %v, want none", err)
			case tc.err != nil && err == nil:
				t.Errorf("no error, want %v", tc.err)
			case tc.want != nil && !errors.Is(err, tc.want):
				t.Errorf("err %v, want %v", err, tc.want)
			}
			var c *ConflictError
			if errors.As(tc.err, &c) && (!errors.As(err, &c) || c.Head != 17) {
				t.Errorf("conflict %v, want head 17", err)
			}
		})
	}
	if _, err := decodeForwardReply(nil); !errors.Is(err, errBadForward) {
		t.Errorf("an empty reply: %v", err)
	}
}
