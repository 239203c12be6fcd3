package rooms

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/firebreak/firebreak/internal/store"
	"github.com/firebreak/firebreak/internal/wire"

	"github.com/firebreak/firebreak/internal/testnet"
)

// TestSendAnswer: an owner's answer gives the asking node the event and position, or an error
// the API maps as it would its own (same kind, same text); anything else, an unavailable
// owner first, has the asking node send the event itself.
func TestSendAnswer(t *testing.T) {
	for _, tc := range []struct {
		name string
		err  error
		want error // nil: the event and position come back
	}{
		{"stored", nil, nil},
		{"forbidden", fmt.Errorf("%w: not allowed to send", ErrForbidden), ErrForbidden},
		{"too large", fmt.Errorf("%w: 70000 bytes", ErrTooLarge), ErrTooLarge},
		{"not found", fmt.Errorf("%w: unknown room", ErrNotFound), ErrNotFound},
		{"bad request", fmt.Errorf("%w: content", ErrBadRequest), ErrBadRequest},
		{"canonical alias", fmt.Errorf("%w: #a:b points elsewhere", ErrCanonicalAlias), ErrCanonicalAlias},
		{"nested thread", fmt.Errorf("%w: $x relates to another event", ErrNestedThread), ErrNestedThread},
		{"unavailable", fmt.Errorf("%w: no leader", ErrUnavailable), store.ErrAskHere},
		{"unknown", errors.New("boom"), store.ErrAskHere},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a, ok := decodeSendAnswer(encodeSendAnswer("$ev", 42, tc.err))
			if !ok {
				t.Fatal("the answer does not decode")
			}
			if tc.err == nil {
				if a.Kind != "" || a.EventID != "$ev" || a.Seq != 42 {
					t.Fatalf("answer %+v, want $ev at 42", a)
				}
				return
			}
			err := answeredError(a)
			if !errors.Is(err, tc.want) {
				t.Fatalf("answeredError = %v, want %v", err, tc.want)
			}
			if tc.want != store.ErrAskHere && err.Error() != tc.err.Error() {
				t.Errorf("text %q, want %q", err.Error(), tc.err.Error())
			}
		})
	}
	if err := answeredError(sendAnswer{Kind: "from a later build"}); !errors.Is(err, store.ErrAskHere) {
		t.Errorf("an unknown kind: %v, want ErrAskHere", err)
	}
}

// TestForwardedSendEncoding: a forwarded send reads back as it was, an absent state key and
// content included, and anything cut short or followed by more is refused.
func TestForwardedSendEncoding(t *testing.T) {
	empty := ""
	for _, tc := range []struct {
		name string
		f    forwardedSend
	}{
		{"message", forwardedSend{Proto: Proto{RoomID: "!r:x", Sender: "@a:x", Type: "m.room.message", Content: json.RawMessage(`{"body":"hé"}`)},
			Device: "DEV", TxnID: "t1", Seen: 1 << 40}},
		{"state event with an empty key", forwardedSend{Proto: Proto{RoomID: "!r:x", Sender: "@a:x", Type: "m.room.topic", StateKey: &empty,
			Content: json.RawMessage(`{}`)}, Device: "D", TxnID: "t"}},
		{"redaction without content", forwardedSend{Proto: Proto{RoomID: "!r:x", Sender: "@a:x", Type: "m.room.redaction", Redacts: "$e"},
			Device: "D", TxnID: "t"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			data := tc.f.encode()
			got, err := decodeForwardedSend(data)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tc.f) {
				t.Errorf("decoded %+v, want %+v", got, tc.f)
			}
			flag := wire.AppendUvarint(nil, tc.f.Seen)
			flag = wire.AppendFields(flag, tc.f.RoomID, tc.f.Sender, tc.f.Type)
			badFlag := slices.Clone(data)
			badFlag[len(flag)] = 2 // the state key's flag
			for _, bad := range [][]byte{nil, data[:len(data)-1], append(slices.Clone(data), 0), badFlag} {
				if _, err := decodeForwardedSend(bad); !errors.Is(err, errBadForwardedSend) {
					t.Errorf("decodeForwardedSend(%q) = %v, want errBadForwardedSend", bad, err)
				}
			}
		})
	}
}

// TestSendBuiltAtOwner, on three JetStream nodes clustered over loopback with one shard: a
// send through a node that does not own the shard is built by the owner and read back at
// once on the node that was asked; a refusal comes back as itself; and when the owner's
// answer is lost after it stored the event, the asking node's own send of it finds that
// event instead of storing a second one.
func TestSendBuiltAtOwner(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a three-node JetStream cluster")
	}
	nodes, stops := clusterNodes(t, 3)
	owner := shardOwner(t, nodes)
	asker := nodes[(owner+1)%len(nodes)]
	ctx := t.Context()
	roomID := createRoom(t, nodes[owner], CreateRequest{Creator: alice, Preset: "public_chat"})
	if err := asker.AwaitRoom(ctx, roomID); err != nil {
		t.Fatal(err)
	}
	join(t, asker, roomID, bob) // built where it arrives: no transaction id

	id, err := asker.Send(ctx, message(roomID, bob, "through another node"), SendOptions{Device: "D", TxnID: "t1"})
	if err != nil {
		t.Fatalf("send through a node that does not own the shard: %v", err)
	}
	if _, ok := asker.Model().Event(roomID, id); !ok {
		t.Errorf("the asking node does not have %s when the send returns", id)
	}
	if _, err := asker.Send(ctx, message(roomID, carol, "not a member"), SendOptions{Device: "D", TxnID: "t2"}); !errors.Is(err, ErrForbidden) {
		t.Errorf("a non-member's send through another node: %v, want ErrForbidden", err)
	}

	// The owner stores the event and its answer is lost (its handler answers nothing).
	stops[owner]()
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		_, err := asker.st.AskShardOwner(ctx, sendService, 0, func() ([]byte, error) { return []byte("{}"), nil }, time.Second)
		if errors.Is(err, store.ErrAskHere) {
			break // the stopped service no longer serves
		}
		if time.Now().After(deadline) {
			t.Fatal("the stopped service still serves sends")
		}
	}
	var served atomic.Int32
	lossy := nodes[owner].st.ServeAtShardOwner(sendService, func(ctx context.Context, shard int, req []byte, _ func([]byte)) {
		served.Add(1)
		nodes[owner].serveSend(ctx, shard, req, func([]byte) {})
	})
	defer lossy()
	waitForOwner(t, asker)
	lost := message(roomID, bob, "answer lost")
	id, err = asker.Send(ctx, lost, SendOptions{Device: "D", TxnID: "t3"})
	if err != nil {
		t.Fatalf("send whose answer is lost: %v", err)
	}
	if served.Load() < 2 { // waitForOwner's and the send's
		t.Errorf("the owner's lossy handler served %d requests; the send did not reach it", served.Load())
	}
	var copies []string
	for _, ev := range allEvents(asker, roomID) {
		if b, _ := body(ev); b == "answer lost" {
			copies = append(copies, ev.PDU.EventID())
		}
	}
	if len(copies) != 1 || copies[0] != id {
		t.Errorf("the room holds %v for the send answered %s, want it once", copies, id)
	}
}

// clusterNodes runs a rooms service on each of n JetStream nodes clustered over loopback, with
// one shard, and returns them with the functions that stop each service.
func clusterNodes(t *testing.T, n int) ([]*Service, []func()) {
	t.Helper()
	routes := testnet.LoopbackAddrs(t, n)
	stores := make([]*store.Store, n)
	var wg sync.WaitGroup
	for i := range stores {
		wg.Go(func() { // each node waits for the others to place the streams
			stores[i], _ = store.Open(t.Context(), store.Options{DataDir: t.TempDir(), NodeName: fmt.Sprintf("n%d", i+1),
				Replicas: n, RoomShards: 1, GroupCommit: true, Logger: discard,
				Cluster: &store.ClusterOptions{Name: "rooms-test", DC: fmt.Sprintf("dc%d", i+1), Listen: routes[i], Routes: routes}})
		})
	}
	wg.Wait()
	nodes, stops := make([]*Service, n), make([]func(), n)
	for i, st := range stores {
		if st == nil {
			t.Fatalf("node %d did not open", i+1)
		}
		t.Cleanup(st.Close)
	}
	for i, st := range stores {
		nodes[i], stops[i] = startService(t, st)
	}
	return nodes, stops
}

// shardOwner returns the index of the node that owns the shard, once another node's requests
// reach it.
func shardOwner(t *testing.T, nodes []*Service) int {
	t.Helper()
	for i, s := range nodes {
		s.st.ServeAtShardOwner("whoami.v1", func(_ context.Context, _ int, _ []byte, answer func([]byte)) {
			answer([]byte(strconv.Itoa(i)))
		})
	}
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		for i, s := range nodes {
			got, err := s.st.AskShardOwner(t.Context(), "whoami.v1", 0, func() ([]byte, error) { return nil, nil }, time.Second)
			if owner, convErr := strconv.Atoi(string(got)); err == nil && convErr == nil && owner != i {
				waitForOwner(t, nodes[(owner+1)%len(nodes)])
				return owner
			}
		}
	}
	t.Fatal("no node owns the shard")
	return -1
}

// waitForOwner waits until the node's forwarded sends reach a handler at the shard's owner.
func waitForOwner(t *testing.T, s *Service) {
	t.Helper()
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		if _, err := s.st.AskShardOwner(t.Context(), sendService, 0, func() ([]byte, error) { return []byte("{}"), nil }, time.Second); err == nil {
			return
		}
	}
	t.Fatal("the shard's owner serves no sends")
}

// TestEventsFoundOnEveryNode: an event acknowledged through one node is found at once through
// another, whose follower may not have applied it yet: a client that sends through one node
// and redacts, reads or marks it read through another must not be told it does not exist.
func TestEventsFoundOnEveryNode(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a three-node JetStream cluster")
	}
	nodes, _ := clusterNodes(t, 3)
	ctx := t.Context()
	roomID := roomOnEveryNode(t, nodes, CreateRequest{Creator: alice, Preset: "public_chat"})
	join(t, nodes[1], roomID, bob)
	const rounds = 100
	missing := 0
	for i := range rounds {
		sender, reader := nodes[i%3], nodes[(i+1)%3]
		id, err := sender.Send(ctx, message(roomID, alice, fmt.Sprint(i)), SendOptions{})
		if err != nil {
			t.Fatalf("send: %v", err)
		}
		if _, err := reader.VisibleEvent(ctx, roomID, bob, id); err != nil {
			missing++
		} else if err := reader.SetReceipt(ctx, roomID, bob, "m.read", id, ""); err != nil {
			t.Fatalf("receipt through another node: %v", err)
		}
	}
	if missing > 0 {
		t.Errorf("%d of %d events acknowledged through one node were unknown through the next", missing, rounds)
	}
}

// TestRestrictedJoinOnTheLatestState: only this server checks a restricted room's allowed
// memberships, so a join through one node is decided on the latest state even when the
// space was changed through another a moment before: one just banned from it is refused,
// one who just joined it gets in.
func TestRestrictedJoinOnTheLatestState(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a three-node JetStream cluster")
	}
	nodes, _ := clusterNodes(t, 3)
	ctx := t.Context()
	space := createRoom(t, nodes[0], CreateRequest{Creator: alice, Preset: "public_chat"})
	rules := mustJSON(map[string]any{"join_rule": "restricted",
		"allow": []map[string]string{{"type": "m.room_membership", "room_id": space}}})
	room := roomOnEveryNode(t, nodes, CreateRequest{Creator: alice, Preset: "private_chat", RoomVersion: "10",
		InitialState: []StateEvent{{Type: "m.room.join_rules", Content: rules}}})
	const rounds = 10
	admittedBanned, refusedMember := 0, 0
	for i := range rounds {
		writer, joiner := nodes[i%3], nodes[(i+1)%3]
		banned, member := fmt.Sprintf("@banned%d:test", i), fmt.Sprintf("@member%d:test", i)
		join(t, writer, space, banned)
		if _, err := writer.ChangeMembership(ctx, MembershipChange{RoomID: space, Sender: alice, Target: banned, Membership: "ban"}); err != nil {
			t.Fatal(err)
		}
		join(t, writer, space, member)
		if _, err := joiner.ChangeMembership(ctx, MembershipChange{RoomID: room, Sender: banned, Target: banned, Membership: "join"}); err == nil {
			admittedBanned++
		}
		if _, err := joiner.ChangeMembership(ctx, MembershipChange{RoomID: room, Sender: member, Target: member, Membership: "join"}); err != nil {
			refusedMember++
		}
	}
	if admittedBanned > 0 || refusedMember > 0 {
		t.Errorf("of %d rounds, %d let in a user just banned from the space and %d refused one who had just joined it", rounds, admittedBanned, refusedMember)
	}
}

// roomOnEveryNode creates a room through the first node and waits until every node has it.
func roomOnEveryNode(t *testing.T, nodes []*Service, req CreateRequest) string {
	t.Helper()
	roomID := createRoom(t, nodes[0], req)
	for _, n := range nodes {
		if err := n.AwaitRoom(t.Context(), roomID); err != nil {
			t.Fatal(err)
		}
	}
	return roomID
}
