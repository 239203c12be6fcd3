package syncer

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"sync"
	"testing"

	"github.com/firebreak/firebreak/internal/accountdata"
	"github.com/firebreak/firebreak/internal/e2ee"
	"github.com/firebreak/firebreak/internal/rooms"
	"github.com/firebreak/firebreak/internal/store"
)

// The benchmarks assemble syncs for one user from a real node's read model (embedded JetStream
// in b.TempDir(), fsync on every write), wired as internal/server wires it.

const benchMe = "@me:bench"

var benchLog = slog.New(slog.DiscardHandler)

type benchNode struct {
	rooms *rooms.Service
	data  *accountdata.Service
	sync  *Service
}

// startBenchNode runs a single-node store, rooms and account data, and a syncer whose long
// polls end with an error when fencing (nil: never) closes.
func startBenchNode(b testing.TB, fencing <-chan struct{}) *benchNode {
	b.Helper()
	ctx := context.Background()
	st, err := store.Open(ctx, store.Options{DataDir: b.TempDir(), NodeName: "bench", Replicas: 1,
		RoomShards: 1, GroupCommit: true, Logger: benchLog})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(st.Close)
	rs, err := rooms.New(ctx, st, "bench", "10", benchLog)
	if err != nil {
		b.Fatal(err)
	}
	runCtx, cancel := context.WithCancel(ctx)
	data := accountdata.New(st)
	keys := e2ee.New(st, nil) // no devices: the benchmarks send no to-device messages
	var mirrors sync.WaitGroup
	loaded := store.StartMirrors(&mirrors,
		func(loaded func()) { data.Run(runCtx, benchLog, loaded) },
		func(loaded func()) { keys.Run(runCtx, benchLog, loaded) })
	// Cleanups run last first: followers stop before the store closes.
	b.Cleanup(func() { cancel(); rs.Wait(); mirrors.Wait() })
	n := &benchNode{rooms: rs, data: data, sync: New(runCtx, rs, data, keys, func() <-chan struct{} { return fencing })}
	if err := rs.Start(runCtx); err != nil {
		b.Fatal(err)
	}
	<-loaded
	return n
}

// room creates a public room with benchMe and members-1 others in it, and sends msgs messages.
func (n *benchNode) room(b testing.TB, i, members, msgs int) string {
	b.Helper()
	ctx := context.Background()
	roomID, err := n.rooms.CreateRoom(ctx, rooms.CreateRequest{Creator: benchMe, Preset: "public_chat"})
	if err != nil {
		b.Fatal(err)
	}
	for m := 1; m < members; m++ {
		who := fmt.Sprintf("@r%dm%d:bench", i, m)
		if _, err := n.rooms.ChangeMembership(ctx, rooms.MembershipChange{RoomID: roomID, Sender: who, Target: who, Membership: "join"}); err != nil {
			b.Fatal(err)
		}
	}
	for j := 0; j < msgs; j++ {
		n.say(b, roomID, fmt.Sprintf("@r%dm%d:bench", i, 1+j%(members-1)), j)
	}
	return roomID
}

func (n *benchNode) say(b testing.TB, roomID, sender string, j int) {
	b.Helper()
	_, err := n.rooms.Send(context.Background(), rooms.Proto{RoomID: roomID, Sender: sender, Type: "m.room.message",
		Content: []byte(fmt.Sprintf(`{"msgtype":"m.text","body":"message %d"}`, j))}, rooms.SendOptions{})
	if err != nil {
		b.Fatal(err)
	}
}

// population puts benchMe in 20 rooms like the bench's mix: 12 DMs, 6 groups of 6 and 2 of
// 50, each with 20 messages of history. It returns the 50-member rooms.
func (n *benchNode) population(b *testing.B) []string {
	var large []string
	for i := 0; i < 20; i++ {
		switch {
		case i < 12:
			n.room(b, i, 2, 20)
		case i < 18:
			n.room(b, i, 6, 20)
		default:
			large = append(large, n.room(b, i, 50, 20))
		}
	}
	return large
}

// BenchmarkIncrementalSync is the sync a long-polling client makes after one new message in
// a 50-member room: the read model walked for every room of the user, the one room's
// timeline, summary and unread counts assembled, and (json) the response encoded.
func BenchmarkIncrementalSync(b *testing.B) {
	n := startBenchNode(b, nil)
	large := n.population(b)
	since := n.sync.current().String()
	n.say(b, large[0], "@r18m1:bench", 1000)
	req := Request{UserID: benchMe, DeviceID: "DEV", Since: since}
	ctx := context.Background()
	b.Run("build", func(b *testing.B) {
		for b.Loop() {
			resp, err := n.sync.Sync(ctx, req)
			if err != nil || len(resp.Rooms.Join) != 1 {
				b.Fatalf("sync: %v, %d rooms", err, len(resp.Rooms.Join))
			}
		}
	})
	b.Run("json", func(b *testing.B) {
		for b.Loop() {
			resp, err := n.sync.Sync(ctx, req)
			if err != nil {
				b.Fatal(err)
			}
			if _, err := json.Marshal(resp); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkLargeRoomSync is the incremental sync of one member of a 1,000-member room after a
// message and after another user joins: every member makes it, so its cost is paid a
// thousand times per event.
func BenchmarkLargeRoomSync(b *testing.B) {
	ctx := context.Background()
	for _, tc := range []struct {
		name string
		then func(n *benchNode, roomID string) error
	}{
		{"message", func(n *benchNode, roomID string) error {
			_, err := n.rooms.Send(ctx, rooms.Proto{RoomID: roomID, Sender: "@r0m1:bench", Type: "m.room.message",
				Content: []byte(`{"msgtype":"m.text","body":"hello"}`)}, rooms.SendOptions{})
			return err
		}},
		{"join", func(n *benchNode, roomID string) error {
			_, err := n.rooms.ChangeMembership(ctx, rooms.MembershipChange{RoomID: roomID, Sender: "@new:bench",
				Target: "@new:bench", Membership: "join"})
			return err
		}},
	} {
		b.Run(tc.name, func(b *testing.B) {
			n := startBenchNode(b, nil)
			roomID := n.room(b, 0, 1000, 1)
			since := n.sync.current().String()
			if err := tc.then(n, roomID); err != nil {
				b.Fatal(err)
			}
			req := Request{UserID: benchMe, DeviceID: "DEV", Since: since}
			for b.Loop() {
				resp, err := n.sync.Sync(ctx, req)
				if err != nil || len(resp.Rooms.Join) != 1 {
					b.Fatalf("sync: %v, %d rooms", err, len(resp.Rooms.Join))
				}
			}
		})
	}
}

// BenchmarkEmptySync is a sync with nothing new (timeout 0): the floor every woken long poll
// pays.
func BenchmarkEmptySync(b *testing.B) {
	n := startBenchNode(b, nil)
	n.population(b)
	req := Request{UserID: benchMe, DeviceID: "DEV", Since: n.sync.current().String()}
	ctx := context.Background()
	for b.Loop() {
		if _, err := n.sync.Sync(ctx, req); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkInitialSync is a client's first sync: every room in full.
func BenchmarkInitialSync(b *testing.B) {
	n := startBenchNode(b, nil)
	n.population(b)
	req := Request{UserID: benchMe, DeviceID: "DEV"}
	ctx := context.Background()
	for b.Loop() {
		if _, err := n.sync.Sync(ctx, req); err != nil {
			b.Fatal(err)
		}
	}
}
