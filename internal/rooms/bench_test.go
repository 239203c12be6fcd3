package rooms

import (
	"context"
	"fmt"
	"log/slog"
	"sync/atomic"
	"testing"

	"github.com/matrix-org/gomatrixserverlib"
	"github.com/matrix-org/gomatrixserverlib/spec"

	"github.com/firebreak/firebreak/internal/store"
)

// The benchmarks run a rooms service on a real embedded JetStream in b.TempDir() with a
// single node's production settings (fsync on every write, one shard, group commit).

var benchLog = slog.New(slog.DiscardHandler)

func startBenchService(b *testing.B) *Service {
	b.Helper()
	st, err := store.Open(context.Background(), store.Options{DataDir: b.TempDir(), NodeName: "bench",
		Replicas: 1, RoomShards: 1, GroupCommit: true, Logger: benchLog})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(st.Close)
	s, err := New(context.Background(), st, "bench", "10", benchLog)
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	b.Cleanup(func() { cancel(); s.Wait() }) // runs before st.Close: cleanups run last first
	if err := s.Start(ctx); err != nil {
		b.Fatal(err)
	}
	return s
}

func benchUser(i int) string { return fmt.Sprintf("@user%d:bench", i) }

// benchRoom creates a public room and joins members-1 more users to it.
func benchRoom(b *testing.B, s *Service, members int) string {
	b.Helper()
	ctx := context.Background()
	roomID, err := s.CreateRoom(ctx, CreateRequest{Creator: benchUser(0), Preset: "public_chat"})
	if err != nil {
		b.Fatal(err)
	}
	for i := 1; i < members; i++ {
		if _, err := s.ChangeMembership(ctx, MembershipChange{RoomID: roomID, Sender: benchUser(i),
			Target: benchUser(i), Membership: "join"}); err != nil {
			b.Fatal(err)
		}
	}
	return roomID
}

// benchMessage is message i, sent by one of the room's first `members` users.
func benchMessage(roomID string, i, members int) Proto {
	return Proto{RoomID: roomID, Sender: benchUser(i % members), Type: "m.room.message",
		Content: []byte(fmt.Sprintf(`{"msgtype":"m.text","body":"benchmark message %d"}`, i))}
}

// BenchmarkBuildEvent builds a message on the room's head, hashes and signs it and checks it
// against the auth rules with the room's state: the CPU a send spends before it is stored.
func BenchmarkBuildEvent(b *testing.B) {
	s := startBenchService(b)
	roomID := benchRoom(b, s, 10)
	info, _ := s.model.Info(roomID)
	i := 0
	for b.Loop() {
		i++
		if _, err := s.build(benchMessage(roomID, i, 10), info, s.model); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkAuthCheck checks a built message against the room version's auth rules with the
// auth events taken from the room's current state: "rules" runs them, as for a sender's first
// message on a state, "remembered" is every later one (authVerdicts).
func BenchmarkAuthCheck(b *testing.B) {
	s := startBenchService(b)
	roomID := benchRoom(b, s, 10)
	info, _ := s.model.Info(roomID)
	p := benchMessage(roomID, 1, 10)
	pdu, err := s.build(p, info, s.model)
	if err != nil {
		b.Fatal(err)
	}
	pe := &gomatrixserverlib.ProtoEvent{SenderID: p.Sender, RoomID: p.RoomID, Type: p.Type, Content: spec.RawJSON(p.Content)}
	checks := map[string]func(gomatrixserverlib.AuthEventProvider) error{
		"rules": func(auth gomatrixserverlib.AuthEventProvider) error {
			return gomatrixserverlib.Allowed(pdu, auth, userIDForSender)
		},
		"remembered": func(auth gomatrixserverlib.AuthEventProvider) error { return s.verdicts.check(pdu, auth) },
	}
	for name, check := range checks {
		b.Run(name, func(b *testing.B) {
			for b.Loop() {
				auth, err := authEventsFor(pe, s.model)
				if err != nil {
					b.Fatal(err)
				}
				if err := check(auth); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkSend is a whole send: build, sign, check, append (fsync), and wait until this
// node's read model has applied it.
func BenchmarkSend(b *testing.B) {
	s := startBenchService(b)
	roomID := benchRoom(b, s, 10)
	ctx := context.Background()
	i := 0
	for b.Loop() {
		i++
		if _, err := s.Send(ctx, benchMessage(roomID, i, 10), SendOptions{Device: "DEV", TxnID: fmt.Sprint(i)}); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkSendParallel sends from many goroutines into 32 rooms at once, so appends race
// for room heads as they do under load.
func BenchmarkSendParallel(b *testing.B) {
	s := startBenchService(b)
	rooms := make([]string, 32)
	for i := range rooms {
		rooms[i] = benchRoom(b, s, 2)
	}
	ctx := context.Background()
	var workers atomic.Int64
	b.SetParallelism(16)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		w := int(workers.Add(1))
		for i := 0; pb.Next(); i++ {
			roomID := rooms[(w+i*7)%len(rooms)]
			if _, err := s.Send(ctx, benchMessage(roomID, i, 2), SendOptions{}); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

// BenchmarkModelApply parses a stored message event (its id read from the record) and adds it
// to the read model, as every node does for every event of every shard, in a room of 10 and
// one of 1,000 members (each event names the members to wake).
func BenchmarkModelApply(b *testing.B) {
	for _, members := range []int{10, 1000} {
		b.Run(fmt.Sprintf("members=%d", members), func(b *testing.B) {
			s := startBenchService(b)
			roomID := benchRoom(b, s, members)
			if _, err := s.Send(context.Background(), benchMessage(roomID, 1, members), SendOptions{}); err != nil {
				b.Fatal(err)
			}
			var stored []store.RoomEvent
			for _, ev := range s.model.Range(roomID, 0, End, true, members+10, nil) {
				stored = append(stored, store.RoomEvent{Shard: 0, Seq: ev.Seq, JSON: ev.PDU.JSON(), EventID: ev.PDU.EventID()})
			}
			m := newModel(1, benchLog)
			for _, se := range stored {
				m.apply([]store.RoomEvent{se})
			}
			msg := stored[len(stored)-1]
			seq := msg.Seq
			for b.Loop() {
				seq++
				msg.Seq = seq
				m.apply([]store.RoomEvent{msg})
			}
		})
	}
}
