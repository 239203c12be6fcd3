package rooms

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"math"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"unsafe"

	"github.com/matrix-org/gomatrixserverlib"
	"github.com/tidwall/gjson"

	"github.com/firebreak/firebreak/internal/store"
	"github.com/firebreak/firebreak/internal/wire"
)

const (
	alice = "@alice:test"
	bob   = "@bob:test"
	carol = "@carol:test"
)

var discard = slog.New(slog.DiscardHandler)

func openStoreAt(t *testing.T, dir string) *store.Store {
	t.Helper()
	return openStoreWith(t, store.Options{DataDir: dir, RoomShards: 4})
}

// openStoreWith opens a one-replica store with the options' data dir, shards and group
// commit.
func openStoreWith(t *testing.T, opts store.Options) *store.Store {
	t.Helper()
	opts.NodeName, opts.Replicas, opts.Logger = "test", 1, discard
	st, err := store.Open(context.Background(), opts)
	if err != nil {
		t.Fatalf("open store: %v", err)
	}
	return st
}

// startService runs a rooms service on st and returns it with the function that stops it.
// The stop also runs in Cleanup, before the store (opened earlier) is closed.
func startService(t *testing.T, st *store.Store) (*Service, func()) {
	t.Helper()
	s, err := New(context.Background(), st, "test", "10", discard)
	if err != nil {
		t.Fatalf("rooms.New: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var once sync.Once
	stop := func() { once.Do(func() { cancel(); s.Wait() }) }
	t.Cleanup(stop)
	if err := s.Start(ctx); err != nil {
		t.Fatalf("Start: %v", err)
	}
	return s, stop
}

// twoNodes runs two services on one store, as two nodes of a cluster share one JetStream; the
// function stops the second one's followers.
func twoNodes(t *testing.T) (first, second *Service, stopSecond func()) {
	t.Helper()
	st := openStoreAt(t, t.TempDir())
	t.Cleanup(st.Close)
	first, _ = startService(t, st)
	second, stopSecond = startService(t, st)
	return first, second, stopSecond
}

// catchUpWith waits until node's read model holds everything other's does.
func catchUpWith(t *testing.T, node, other *Service) {
	t.Helper()
	if err := node.CatchUpShards(t.Context(), other.Model().Applied()); err != nil {
		t.Fatalf("catching up with the other node: %v", err)
	}
}

func newService(t *testing.T) *Service {
	t.Helper()
	st := openStoreAt(t, t.TempDir())
	t.Cleanup(st.Close)
	s, _ := startService(t, st)
	return s
}

func createRoom(t *testing.T, s *Service, req CreateRequest) string {
	t.Helper()
	if req.Creator == "" {
		req.Creator = alice
	}
	id, err := s.CreateRoom(t.Context(), req)
	if err != nil {
		t.Fatalf("CreateRoom: %v", err)
	}
	return id
}

func sendText(t *testing.T, s *Service, roomID, sender, body string) string {
	t.Helper()
	id, err := s.Send(t.Context(), message(roomID, sender, body), SendOptions{})
	if err != nil {
		t.Fatalf("%s sending %q: %v", sender, body, err)
	}
	return id
}

// sendReply sends a text reply in the thread under root.
func sendReply(t *testing.T, s *Service, roomID, sender, root, body string) string {
	t.Helper()
	content := mustJSON(map[string]any{"msgtype": "m.text", "body": body,
		"m.relates_to": map[string]any{"rel_type": "m.thread", "event_id": root}})
	id, err := s.Send(t.Context(), Proto{RoomID: roomID, Sender: sender, Type: "m.room.message", Content: content}, SendOptions{})
	if err != nil {
		t.Fatalf("%s replying %q: %v", sender, body, err)
	}
	return id
}

func message(roomID, sender, body string) Proto {
	return Proto{RoomID: roomID, Sender: sender, Type: "m.room.message",
		Content: mustJSON(map[string]string{"msgtype": "m.text", "body": body})}
}

func join(t *testing.T, s *Service, roomID, user string) {
	t.Helper()
	if _, err := s.ChangeMembership(t.Context(), MembershipChange{RoomID: roomID, Sender: user, Target: user, Membership: "join"}); err != nil {
		t.Fatalf("%s joining: %v", user, err)
	}
}

func allEvents(s *Service, roomID string) []Event {
	return s.Model().Range(roomID, 0, End, true, math.MaxInt, nil)
}

// checkChain checks the room's history is one line: each event's only prev_event is the
// event before it, and depths count up by one.
func checkChain(t *testing.T, evs []Event) {
	t.Helper()
	for i, ev := range evs {
		prev := ev.PDU.PrevEventIDs()
		if i == 0 {
			if len(prev) != 0 || ev.PDU.Type() != "m.room.create" {
				t.Errorf("first event is %s with prev_events %v, want m.room.create with none", ev.PDU.Type(), prev)
			}
			continue
		}
		if want := evs[i-1].PDU.EventID(); len(prev) != 1 || prev[0] != want {
			t.Errorf("event %d (%s) has prev_events %v, want [%s]", i, ev.PDU.EventID(), prev, want)
		}
		if ev.PDU.Depth() != evs[i-1].PDU.Depth()+1 {
			t.Errorf("event %d has depth %d after %d", i, ev.PDU.Depth(), evs[i-1].PDU.Depth())
		}
		if ev.Seq <= evs[i-1].Seq {
			t.Errorf("event %d at seq %d after seq %d", i, ev.Seq, evs[i-1].Seq)
		}
	}
}

func body(ev Event) (string, bool) {
	var c map[string]any
	_ = json.Unmarshal(ev.PDU.Content(), &c)
	b, ok := c["body"].(string)
	return b, ok
}

func TestCreateRoom(t *testing.T) {
	s := newService(t)
	roomID := createRoom(t, s, CreateRequest{Preset: "public_chat", Name: "Lobby", Topic: "chat", AliasLocalpart: "lobby",
		Invite: []string{carol}, InitialState: []StateEvent{{Type: "org.example.state", StateKey: "k", Content: json.RawMessage(`{"v":1}`)}}})
	if !strings.HasPrefix(roomID, "!") || !strings.HasSuffix(roomID, ":test") {
		t.Errorf("room id %q", roomID)
	}
	m := s.Model()
	info, ok := m.Info(roomID)
	if !ok {
		t.Fatal("Info: room unknown after CreateRoom")
	}
	if info.ID != roomID || info.Shard != s.st.RoomShard(roomID) || info.Version.Version() != "10" || info.Head == nil || info.HeadSeq != info.Head.Seq {
		t.Errorf("Info = %+v", info)
	}
	evs := allEvents(s, roomID)
	checkChain(t, evs)
	if info.Head.PDU.EventID() != evs[len(evs)-1].PDU.EventID() {
		t.Errorf("head %s is not the last event %s", info.Head.PDU.EventID(), evs[len(evs)-1].PDU.EventID())
	}
	var types []string
	for _, ev := range evs {
		types = append(types, ev.PDU.Type()+"/"+*ev.PDU.StateKey())
	}
	want := []string{"m.room.create/", "m.room.member/" + alice, "m.room.power_levels/", "m.room.canonical_alias/",
		"m.room.join_rules/", "m.room.history_visibility/", "m.room.guest_access/", "org.example.state/k",
		"m.room.name/", "m.room.topic/", "m.room.member/" + carol}
	if !slices.Equal(types, want) {
		t.Errorf("creation events\n got %q\nwant %q", types, want)
	}
	if got := len(m.State(roomID)); got != len(want) {
		t.Errorf("State has %d events, want %d", got, len(want))
	}
	stateContent := func(evType, key string) map[string]any {
		t.Helper()
		ev := m.StateEvent(roomID, evType, key)
		if ev == nil {
			t.Fatalf("no %s/%s state", evType, key)
		}
		var c map[string]any
		if err := json.Unmarshal(ev.PDU.Content(), &c); err != nil {
			t.Fatal(err)
		}
		return c
	}
	if c := stateContent("m.room.create", ""); c["room_version"] != "10" || c["creator"] != alice {
		t.Errorf("create content %v", c)
	}
	if c := stateContent("m.room.join_rules", ""); c["join_rule"] != "public" {
		t.Errorf("join rules %v", c)
	}
	if c := stateContent("m.room.name", ""); c["name"] != "Lobby" {
		t.Errorf("name %v", c)
	}
	if c := stateContent("m.room.canonical_alias", ""); c["alias"] != "#lobby:test" {
		t.Errorf("canonical alias %v", c)
	}
	for user, want := range map[string]string{alice: "join", carol: "invite", bob: ""} {
		if got := m.Membership(roomID, user); got != want {
			t.Errorf("Membership(%s) = %q, want %q", user, got, want)
		}
	}
	if got := m.UserRooms(alice); len(got) != 1 || got[roomID] != "join" {
		t.Errorf("UserRooms(alice) = %v", got)
	}
	if got, err := s.ResolveAlias(t.Context(), "#lobby:test"); err != nil || got != roomID {
		t.Errorf("ResolveAlias = %q, %v", got, err)
	}
	if _, err := s.CreateRoom(t.Context(), CreateRequest{Creator: bob, AliasLocalpart: "lobby"}); !errors.Is(err, ErrAliasInUse) {
		t.Errorf("CreateRoom with a taken alias: %v, want ErrAliasInUse", err)
	}
	if got := m.UserRooms(bob); len(got) != 0 {
		t.Errorf("a refused CreateRoom left bob in %v", got)
	}
}

func TestCreateRoomRefused(t *testing.T) {
	s := newService(t)
	cases := []struct {
		name string
		req  CreateRequest
		want error
	}{
		{"unknown preset", CreateRequest{Creator: alice, Preset: "party"}, ErrBadRequest},
		{"unknown version", CreateRequest{Creator: alice, RoomVersion: "999"}, ErrUnsupportedVersion},
		{"initial state sets membership", CreateRequest{Creator: alice, InitialState: []StateEvent{{Type: "m.room.member", StateKey: bob}}}, ErrBadRequest},
		{"initial state sets create", CreateRequest{Creator: alice, InitialState: []StateEvent{{Type: "m.room.create"}}}, ErrBadRequest},
		{"initial state without content", CreateRequest{Creator: alice, InitialState: []StateEvent{{Type: "m.room.power_levels"}}}, ErrBadRequest},
		{"initial state with null content", CreateRequest{Creator: alice, InitialState: []StateEvent{{Type: "m.room.name", Content: json.RawMessage(`null`)}}}, ErrBadRequest},
		{"initial state names an alias of no room here", CreateRequest{Creator: alice, InitialState: []StateEvent{
			{Type: "m.room.canonical_alias", Content: json.RawMessage(`{"alias":"#nowhere:test"}`)}}}, ErrCanonicalAlias},
		{"initial state names no alias", CreateRequest{Creator: alice, InitialState: []StateEvent{
			{Type: "m.room.canonical_alias", Content: json.RawMessage(`{"alt_aliases":["not an alias"]}`)}}}, ErrCanonicalAlias},
		{"creation content not an object", CreateRequest{Creator: alice, CreationContent: json.RawMessage(`[1]`)}, ErrBadRequest},
		{"power levels not an object", CreateRequest{Creator: alice, PowerLevelOverride: json.RawMessage(`"x"`)}, ErrBadRequest},
		// The failing event comes after the create event and the creator's join.
		{"initial state too large", CreateRequest{Creator: alice, AliasLocalpart: "big", InitialState: []StateEvent{
			{Type: "org.example.big", Content: mustJSON(map[string]string{"x": strings.Repeat("x", 70000)})}}}, ErrTooLarge},
		{"more first events than one batch takes", CreateRequest{Creator: alice, Invite: manyUsers(store.MaxAtomicBatch)}, ErrInvalidParam},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if id, err := s.CreateRoom(t.Context(), tc.req); !errors.Is(err, tc.want) {
				t.Fatalf("CreateRoom = %q, %v; want %v", id, err, tc.want)
			}
		})
	}
	if got := s.Model().UserRooms(alice); len(got) != 0 {
		t.Errorf("refused creations left rooms behind: %v", got)
	}
	for shard := 0; shard < s.st.Shards(); shard++ {
		if head, err := s.st.ShardHead(t.Context(), shard); err != nil || head != 0 {
			t.Errorf("refused creations stored events: shard %d head %d, %v", shard, head, err)
		}
	}
	if _, err := s.ResolveAlias(t.Context(), "#big:test"); !errors.Is(err, ErrNotFound) {
		t.Errorf("the alias of a refused creation: %v, want ErrNotFound", err)
	}
}

// A null creation_content is none at all, as a null power_level_content_override is: the
// room is made, with its alias.
func TestCreateRoomNullObjects(t *testing.T) {
	s := newService(t)
	id := createRoom(t, s, CreateRequest{AliasLocalpart: "nulls",
		CreationContent: json.RawMessage(`null`), PowerLevelOverride: json.RawMessage(`null`)})
	if got, err := s.ResolveAlias(t.Context(), "#nulls:test"); err != nil || got != id {
		t.Fatalf("alias resolves to %q, %v; want %q", got, err, id)
	}
}

// TestCreateRoomAtTheBatchLimit: a new room of exactly as many first events as one atomic
// batch takes is stored (one more is refused in TestCreateRoomRefused).
func TestCreateRoomAtTheBatchLimit(t *testing.T) {
	s := newService(t)
	probe, _ := s.Model().Info(createRoom(t, s, CreateRequest{Invite: manyUsers(1)}))
	others := int(probe.Head.PDU.Depth()) - 1 // the events besides the invites
	id := createRoom(t, s, CreateRequest{Invite: manyUsers(store.MaxAtomicBatch - others)})
	if info, ok := s.Model().Info(id); !ok || info.Head.PDU.Depth() != store.MaxAtomicBatch {
		t.Fatalf("room of %d first events: known %v, depth %d", store.MaxAtomicBatch, ok, info.Head.PDU.Depth())
	}
}

// manyUsers are n distinct user ids.
func manyUsers(n int) []string {
	users := make([]string, n)
	for i := range users {
		users[i] = fmt.Sprintf("@u%d:test", i)
	}
	return users
}

func TestSendAndFind(t *testing.T) {
	s := newService(t)
	roomID := createRoom(t, s, CreateRequest{})
	before, _ := s.Model().Info(roomID)
	id := sendText(t, s, roomID, alice, "hello")
	ev, ok := s.Model().Event(roomID, id)
	if !ok {
		t.Fatalf("Event(%s) not found right after Send", id)
	}
	if b, _ := body(ev); b != "hello" || ev.Sender != alice || ev.PDU.Type() != "m.room.message" || ev.IsState() {
		t.Errorf("event = %s from %s", ev.PDU.JSON(), ev.Sender)
	}
	info, _ := s.Model().Info(roomID)
	if info.HeadSeq != ev.Seq || info.HeadSeq <= before.HeadSeq {
		t.Errorf("head at %d, event at %d, previous head %d", info.HeadSeq, ev.Seq, before.HeadSeq)
	}
	if prev := ev.PDU.PrevEventIDs(); len(prev) != 1 || prev[0] != before.Head.PDU.EventID() {
		t.Errorf("prev_events %v, want the previous head %s", prev, before.Head.PDU.EventID())
	}
	if _, err := s.Send(t.Context(), message("!nowhere:test", alice, "x"), SendOptions{}); !errors.Is(err, ErrNotFound) {
		t.Errorf("Send to an unknown room: %v, want ErrNotFound", err)
	}
	ce := s.ClientEvent(roomID, ev, Viewer{UserID: alice}, true)
	if ce.EventID != id || ce.RoomID != roomID || ce.Sender != alice || ce.Type != "m.room.message" || ce.Unsigned.TransactionID != "" {
		t.Errorf("ClientEvent = %+v", ce)
	}
}

func TestSendTxnIdempotent(t *testing.T) {
	s := newService(t)
	roomID := createRoom(t, s, CreateRequest{})
	other := createRoom(t, s, CreateRequest{})
	opt := SendOptions{Device: "DEV", TxnID: "txn1"}
	id1, err := s.Send(t.Context(), message(roomID, alice, "once"), opt)
	if err != nil {
		t.Fatal(err)
	}
	id2, err := s.Send(t.Context(), message(roomID, alice, "once"), opt)
	if err != nil {
		t.Fatal(err)
	}
	if id1 != id2 {
		t.Fatalf("a retried send returned %s, then %s", id1, id2)
	}
	n := 0
	for _, ev := range allEvents(s, roomID) {
		if b, _ := body(ev); b == "once" {
			n++
		}
	}
	if n != 1 {
		t.Fatalf("the room holds %d copies of a send retried with the same transaction id", n)
	}
	if got := s.Model().TxnEvent(roomID, alice, "DEV", "m.room.message", "txn1"); got != id1 {
		t.Errorf("TxnEvent = %q, want %s", got, id1)
	}
	// The same transaction id from another device, or into another room, is another send.
	id3, err := s.Send(t.Context(), message(roomID, alice, "once"), SendOptions{Device: "DEV2", TxnID: "txn1"})
	if err != nil || id3 == id1 {
		t.Errorf("send from another device = %s, %v; want a new event", id3, err)
	}
	id4, err := s.Send(t.Context(), message(other, alice, "once"), opt)
	if err != nil || id4 == id1 {
		t.Errorf("send into another room = %s, %v; want a new event", id4, err)
	}
	// The transaction id is echoed to the sending device only.
	ev, _ := s.Model().Event(roomID, id1)
	if got := s.ClientEvent(roomID, ev, Viewer{UserID: alice, DeviceID: "DEV"}, false).Unsigned.TransactionID; got != "txn1" {
		t.Errorf("transaction id shown to the sending device = %q", got)
	}
	for _, v := range []Viewer{{UserID: alice, DeviceID: "DEV2"}, {UserID: bob, DeviceID: "DEV"}} {
		if got := s.ClientEvent(roomID, ev, v, false).Unsigned.TransactionID; got != "" {
			t.Errorf("transaction id shown to %+v = %q", v, got)
		}
	}
}

func TestSendRefused(t *testing.T) {
	s := newService(t)
	roomID := createRoom(t, s, CreateRequest{Preset: "public_chat"})
	head := func() uint64 { info, _ := s.Model().Info(roomID); return info.HeadSeq }
	before := head()
	unmoved := func(what string) {
		t.Helper()
		if after := head(); after != before {
			t.Errorf("%s moved the head from %d to %d", what, before, after)
		}
	}

	if _, err := s.Send(t.Context(), message(roomID, bob, "let me in"), SendOptions{}); !errors.Is(err, ErrForbidden) {
		t.Errorf("a non-member's Send: %v, want ErrForbidden", err)
	}
	big := strings.Repeat("x", 70000)
	if _, err := s.Send(t.Context(), message(roomID, alice, big), SendOptions{}); !errors.Is(err, ErrTooLarge) {
		t.Errorf("a %d-byte message: %v, want ErrTooLarge", len(big), err)
	}
	// Just over the limit once signed and hashed, though the body alone is under it.
	if _, err := s.Send(t.Context(), message(roomID, alice, strings.Repeat("y", 65400)), SendOptions{}); !errors.Is(err, ErrTooLarge) {
		t.Errorf("a message near 65536 bytes: %v, want ErrTooLarge", err)
	}
	if _, err := s.Send(t.Context(), Proto{RoomID: roomID, Sender: alice, Type: "m.room.message", Content: json.RawMessage(`[]`)}, SendOptions{}); err == nil {
		t.Errorf("content that is not an object was accepted")
	}
	unmoved("refused messages")
	join(t, s, roomID, bob)
	before = head()
	key := ""
	if _, err := s.Send(t.Context(), Proto{RoomID: roomID, Sender: bob, Type: "m.room.power_levels", StateKey: &key,
		Content: json.RawMessage(`{"users":{"@bob:test":100}}`)}, SendOptions{}); !errors.Is(err, ErrForbidden) {
		t.Errorf("a member without power changing power levels: %v, want ErrForbidden", err)
	}
	unmoved("a refused power levels change")
	// A message near the limit but under it is fine.
	if _, err := s.Send(t.Context(), message(roomID, alice, strings.Repeat("z", 60000)), SendOptions{}); err != nil {
		t.Errorf("a 60000-byte body: %v", err)
	}
	checkThreadRoots(t, s, roomID)
}

// checkThreadRoots: a thread may start off a plain message, a rich reply or an event whose
// relation has no type, not off an event that relates to another (a thread's reply, an edit);
// a refused start stores nothing.
func checkThreadRoots(t *testing.T, s *Service, roomID string) {
	t.Helper()
	root := sendText(t, s, roomID, alice, "a root")
	inThread := sendReply(t, s, roomID, alice, root, "in the thread")
	edit := relatedTo(t, s, roomID, map[string]any{"rel_type": "m.replace", "event_id": root})
	richReply := relatedTo(t, s, roomID, map[string]any{"m.in_reply_to": map[string]any{"event_id": root}})
	sendReply(t, s, roomID, alice, richReply, "a thread off a rich reply")
	noType := relatedTo(t, s, roomID, map[string]any{"rel_type": nil, "event_id": root})
	sendReply(t, s, roomID, alice, noType, "a thread off a relation without a type")
	for _, target := range []string{inThread, edit} {
		before, _ := s.Model().Info(roomID)
		content := mustJSON(map[string]any{"msgtype": "m.text", "body": "nested",
			"m.relates_to": map[string]any{"rel_type": "m.thread", "event_id": target}})
		_, err := s.Send(t.Context(), Proto{RoomID: roomID, Sender: alice, Type: "m.room.message", Content: content}, SendOptions{})
		if !errors.Is(err, ErrNestedThread) {
			t.Errorf("a thread started off %s: %v, want ErrNestedThread", target, err)
		}
		if after, _ := s.Model().Info(roomID); after.HeadSeq != before.HeadSeq {
			t.Errorf("a refused thread start moved the head")
		}
	}
}

// relatedTo sends alice's message with the given m.relates_to.
func relatedTo(t *testing.T, s *Service, roomID string, rel map[string]any) string {
	t.Helper()
	content := mustJSON(map[string]any{"msgtype": "m.text", "body": "related", "m.relates_to": rel})
	id, err := s.Send(t.Context(), Proto{RoomID: roomID, Sender: alice, Type: "m.room.message", Content: content}, SendOptions{})
	if err != nil {
		t.Fatalf("send related to %v: %v", rel, err)
	}
	return id
}

func TestMembership(t *testing.T) {
	s := newService(t)
	ctx := t.Context()
	m := s.Model()
	change := func(roomID, sender, target, membership string) error {
		_, err := s.ChangeMembership(ctx, MembershipChange{RoomID: roomID, Sender: sender, Target: target, Membership: membership})
		return err
	}

	private := createRoom(t, s, CreateRequest{Preset: "private_chat"})
	if err := change(private, bob, bob, "join"); !errors.Is(err, ErrForbidden) {
		t.Fatalf("joining an invite-only room uninvited: %v, want ErrForbidden", err)
	}
	if got := m.Membership(private, bob); got != "" {
		t.Fatalf("after a refused join, membership %q", got)
	}
	if err := change(private, alice, bob, "invite"); err != nil {
		t.Fatalf("invite: %v", err)
	}
	if got := m.Membership(private, bob); got != "invite" {
		t.Fatalf("after invite, membership %q", got)
	}
	for who, user := range map[string]string{"invitee": bob, "stranger": carol} {
		if _, err := s.ReadableUpTo(private, user); !errors.Is(err, ErrForbidden) {
			t.Errorf("ReadableUpTo for the %s = %v, want ErrForbidden", who, err)
		}
	}
	if err := change(private, bob, bob, "join"); err != nil {
		t.Fatalf("invited join: %v", err)
	}
	if got := m.Membership(private, bob); got != "join" {
		t.Fatalf("after join, membership %q", got)
	}
	sendText(t, s, private, bob, "hi from bob")
	// Joining again changes nothing and returns the current member event.
	head, _ := m.Info(private)
	memberID, err := s.ChangeMembership(ctx, MembershipChange{RoomID: private, Sender: bob, Target: bob, Membership: "join"})
	if err != nil || memberID != m.StateEvent(private, "m.room.member", bob).PDU.EventID() {
		t.Errorf("second join = %s, %v", memberID, err)
	}
	if again, _ := m.Info(private); again.HeadSeq != head.HeadSeq {
		t.Errorf("a second join appended an event")
	}
	joined, invited, heroes := s.MemberSummary(private, alice, 5)
	if joined != 2 || invited != 0 || !slices.Equal(heroes, []string{bob}) {
		t.Errorf("MemberSummary = %d, %d, %v", joined, invited, heroes)
	}
	if err := change(private, bob, bob, "leave"); err != nil {
		t.Fatalf("leave: %v", err)
	}
	if got := m.Membership(private, bob); got != "leave" {
		t.Fatalf("after leave, membership %q", got)
	}
	leaveSeq := m.StateEvent(private, "m.room.member", bob).Seq
	sendText(t, s, private, alice, "after bob left")
	if got, _ := s.ReadableUpTo(private, bob); got != leaveSeq {
		t.Errorf("ReadableUpTo after leaving = %d, want the leave at %d", got, leaveSeq)
	}
	if got, _ := s.ReadableUpTo(private, alice); got != End {
		t.Errorf("ReadableUpTo for a member = %d, want End", got)
	}
	if _, err := s.Send(ctx, message(private, bob, "still here?"), SendOptions{}); !errors.Is(err, ErrForbidden) {
		t.Errorf("Send after leaving: %v, want ErrForbidden", err)
	}
	if err := change(private, bob, bob, "join"); !errors.Is(err, ErrForbidden) {
		t.Errorf("rejoining an invite-only room uninvited: %v, want ErrForbidden", err)
	}

	public := createRoom(t, s, CreateRequest{Preset: "public_chat"})
	if err := change(public, carol, carol, "join"); err != nil {
		t.Fatalf("joining a public room: %v", err)
	}
	if err := change(public, carol, bob, "ban"); !errors.Is(err, ErrForbidden) {
		t.Errorf("a member without power banning: %v, want ErrForbidden", err)
	}
	if err := change(public, alice, carol, "ban"); err != nil {
		t.Fatalf("ban: %v", err)
	}
	if got := m.Membership(public, carol); got != "ban" {
		t.Fatalf("after ban, membership %q", got)
	}
	if err := change(public, carol, carol, "join"); !errors.Is(err, ErrForbidden) {
		t.Errorf("a banned user joining: %v, want ErrForbidden", err)
	}
	if got := m.Membership(public, carol); got != "ban" {
		t.Errorf("after a refused join, membership %q", got)
	}
	if err := change(public, alice, carol, "leave"); err != nil { // unban
		t.Fatalf("unban: %v", err)
	}
	if err := change(public, carol, carol, "join"); err != nil {
		t.Errorf("joining after the unban: %v", err)
	}
	if err := change("!nowhere:test", alice, alice, "join"); !errors.Is(err, ErrNotFound) {
		t.Errorf("joining an unknown room: %v, want ErrNotFound", err)
	}
	if got := m.UserRooms(bob); got[private] != "leave" || len(got) != 1 {
		t.Errorf("UserRooms(bob) = %v", got)
	}
}

// TestJoinThroughALaggingNode: an invite made through one node and the join through another
// whose read model has not seen the invite yet (here its followers are stopped outright): the
// join is not refused on stale state; the node reads what it missed from the stream first.
func TestJoinThroughALaggingNode(t *testing.T) {
	s, lagging, stopFollowing := twoNodes(t)
	roomID := createRoom(t, s, CreateRequest{Preset: "private_chat"})
	catchUpWith(t, lagging, s)
	stopFollowing()
	if _, err := s.ChangeMembership(t.Context(), MembershipChange{RoomID: roomID, Sender: alice, Target: bob, Membership: "invite"}); err != nil {
		t.Fatalf("invite: %v", err)
	}
	if _, err := lagging.ChangeMembership(t.Context(), MembershipChange{RoomID: roomID, Sender: bob, Target: bob, Membership: "join"}); err != nil {
		t.Fatalf("join through the lagging node: %v", err)
	}
	if got := lagging.Model().Membership(roomID, bob); got != "join" {
		t.Errorf("membership on the lagging node = %q, want join", got)
	}
	// A refusal that fresh state confirms is still a refusal.
	if _, err := lagging.ChangeMembership(t.Context(), MembershipChange{RoomID: roomID, Sender: carol, Target: carol, Membership: "join"}); !errors.Is(err, ErrForbidden) {
		t.Errorf("uninvited join: %v, want ErrForbidden", err)
	}
	// Changes made elsewhere reach a node that is asked to catch up with the room.
	if _, err := s.ChangeMembership(t.Context(), MembershipChange{RoomID: roomID, Sender: alice, Target: carol, Membership: "invite"}); err != nil {
		t.Fatalf("invite carol: %v", err)
	}
	if err := lagging.CatchUpRoom(t.Context(), roomID); err != nil {
		t.Fatalf("CatchUpRoom: %v", err)
	}
	if got := lagging.Model().Membership(roomID, carol); got != "invite" {
		t.Errorf("after CatchUpRoom, carol's membership on the lagging node = %q, want invite", got)
	}
}

// TestMemberSummaryHeroes: heroes are the earliest other joined or invited members, at most
// the number asked for, and the counts follow every membership change.
func TestMemberSummaryHeroes(t *testing.T) {
	s := newService(t)
	roomID := createRoom(t, s, CreateRequest{Preset: "public_chat"})
	users := []string{"@u6:test", "@u5:test", "@u4:test", "@u3:test", "@u2:test", "@u1:test"}
	for _, u := range users {
		join(t, s, roomID, u)
	}
	if _, err := s.ChangeMembership(t.Context(), MembershipChange{RoomID: roomID, Sender: alice, Target: bob, Membership: "invite"}); err != nil {
		t.Fatalf("invite: %v", err)
	}
	if _, err := s.ChangeMembership(t.Context(), MembershipChange{RoomID: roomID, Sender: "@u5:test", Target: "@u5:test", Membership: "leave"}); err != nil {
		t.Fatalf("leave: %v", err)
	}
	tests := []struct {
		viewer         string
		max            int
		joined, invite int
		heroes         []string
	}{
		{alice, 3, 6, 1, []string{"@u3:test", "@u4:test", "@u6:test"}},
		{"@u6:test", 2, 6, 1, []string{"@alice:test", "@u4:test"}},
		{alice, 0, 6, 1, nil},
		{alice, 10, 6, 1, []string{"@bob:test", "@u1:test", "@u2:test", "@u3:test", "@u4:test", "@u6:test"}},
	}
	for _, tc := range tests {
		joined, invited, heroes := s.MemberSummary(roomID, tc.viewer, tc.max)
		if joined != tc.joined || invited != tc.invite || !slices.Equal(heroes, tc.heroes) {
			t.Errorf("MemberSummary(%s, %d) = %d, %d, %v; want %d, %d, %v", tc.viewer, tc.max,
				joined, invited, heroes, tc.joined, tc.invite, tc.heroes)
		}
	}
	// Everyone else gone: the heroes are those who left or were banned, earliest first.
	for _, u := range users {
		membership := "leave"
		if u == "@u6:test" {
			membership = "ban"
		}
		if u != "@u5:test" {
			if _, err := s.ChangeMembership(t.Context(), MembershipChange{RoomID: roomID, Sender: alice, Target: u, Membership: membership}); err != nil {
				t.Fatalf("%s %s: %v", membership, u, err)
			}
		}
	}
	if _, err := s.ChangeMembership(t.Context(), MembershipChange{RoomID: roomID, Sender: alice, Target: bob, Membership: "leave"}); err != nil {
		t.Fatalf("uninvite: %v", err)
	}
	joined, invited, heroes := s.MemberSummary(roomID, alice, 3)
	if want := []string{"@u4:test", "@u5:test", "@u6:test"}; joined != 1 || invited != 0 || !slices.Equal(heroes, want) {
		t.Errorf("with everyone else gone MemberSummary = %d, %d, %v; want 1, 0, %v", joined, invited, heroes, want)
	}
}

// TestMemberSummaryWhileJoining: syncs read a room's member tally while members join. The
// counts never go back, heroes never name the reader, and the last tally counts everyone
// (with -race, it also checks that the tally is only read and replaced under the model's lock).
func TestMemberSummaryWhileJoining(t *testing.T) {
	s := newService(t)
	roomID := createRoom(t, s, CreateRequest{Preset: "public_chat"})
	const joiners = 30
	done := make(chan struct{})
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			last := 0
			for {
				select {
				case <-done:
					return
				default:
				}
				joined, invited, heroes := s.MemberSummary(roomID, alice, 5)
				if joined < last || invited != 0 || slices.Contains(heroes, alice) || len(heroes) > 5 {
					t.Errorf("summary went from %d joined to %d, %d invited, heroes %v", last, joined, invited, heroes)
					return
				}
				last = joined
			}
		}()
	}
	for i := range joiners {
		join(t, s, roomID, fmt.Sprintf("@joiner%d:test", i))
	}
	close(done)
	wg.Wait()
	if joined, _, heroes := s.MemberSummary(roomID, alice, 5); joined != joiners+1 || len(heroes) != 5 {
		t.Errorf("after the joins: %d joined, heroes %v; want %d and 5", joined, heroes, joiners+1)
	}
}

func TestRedaction(t *testing.T) {
	s := newService(t)
	roomID := createRoom(t, s, CreateRequest{Preset: "public_chat"})
	target := sendText(t, s, roomID, alice, "secret")
	kept := sendText(t, s, roomID, alice, "not redacted")
	join(t, s, roomID, bob)
	bobs := sendText(t, s, roomID, bob, "bob's words")

	redaction, err := s.Send(t.Context(), Proto{RoomID: roomID, Sender: alice, Type: "m.room.redaction", Redacts: target,
		Content: json.RawMessage(`{"reason":"oops"}`)}, SendOptions{})
	if err != nil {
		t.Fatalf("redact: %v", err)
	}
	ev, ok := s.Model().Event(roomID, target)
	if !ok {
		t.Fatal("the redacted event is gone")
	}
	if b, has := body(ev); has {
		t.Errorf("redacted event still has body %q: %s", b, ev.PDU.Content())
	}
	if ev.RedactedBy != redaction {
		t.Errorf("RedactedBy = %q, want %s", ev.RedactedBy, redaction)
	}
	if ev.PDU.EventID() != target {
		t.Errorf("redaction changed the event id to %s", ev.PDU.EventID())
	}
	ce := s.ClientEvent(roomID, ev, Viewer{UserID: alice}, true)
	if ce.Unsigned.RedactedBecause == nil || ce.Unsigned.RedactedBecause.EventID != redaction {
		t.Errorf("redacted_because = %+v", ce.Unsigned.RedactedBecause)
	}
	if strings.Contains(string(ce.Content), "secret") {
		t.Errorf("client event content %s", ce.Content)
	}
	// Range returns the redacted form too.
	for _, e := range allEvents(s, roomID) {
		if e.PDU.EventID() == target && strings.Contains(string(e.PDU.JSON()), "secret") {
			t.Errorf("Range returns the unredacted event: %s", e.PDU.JSON())
		}
	}
	for _, id := range []string{kept, bobs} {
		if ev, _ := s.Model().Event(roomID, id); ev.RedactedBy != "" {
			t.Errorf("event %s was redacted too", id)
		} else if _, has := body(ev); !has {
			t.Errorf("event %s lost its body", id)
		}
	}
	// Redacting it again changes nothing.
	if _, err := s.Send(t.Context(), Proto{RoomID: roomID, Sender: alice, Type: "m.room.redaction", Redacts: target,
		Content: json.RawMessage(`{"reason":"again"}`)}, SendOptions{}); err != nil {
		t.Fatalf("second redaction: %v", err)
	}
	if ev, _ := s.Model().Event(roomID, target); ev.RedactedBy != redaction {
		t.Errorf("after a second redaction, RedactedBy = %s, want the first %s", ev.RedactedBy, redaction)
	}
	// A member may redact their own event.
	if _, err := s.Send(t.Context(), Proto{RoomID: roomID, Sender: bob, Type: "m.room.redaction", Redacts: bobs,
		Content: json.RawMessage(`{}`)}, SendOptions{}); err != nil {
		t.Fatalf("bob redacting his own event: %v", err)
	}
	if ev, _ := s.Model().Event(roomID, bobs); ev.RedactedBy == "" {
		t.Errorf("bob's own event was not redacted")
	}
}

// TestRedactionNeedsPower: in room versions 3 and up the auth rules accept every redaction and
// leave it to the sending server to check that the sender redacts their own event or has the
// "redact" power level. Firebreak checks it when it builds the redaction, so a member without
// that power is refused and the event stays as it was.
func TestRedactionNeedsPower(t *testing.T) {
	s := newService(t)
	roomID := createRoom(t, s, CreateRequest{Preset: "public_chat"})
	target := sendText(t, s, roomID, alice, "alice's words")
	join(t, s, roomID, bob)
	_, err := s.Send(t.Context(), Proto{RoomID: roomID, Sender: bob, Type: "m.room.redaction", Redacts: target,
		Content: json.RawMessage(`{}`)}, SendOptions{})
	if !errors.Is(err, ErrForbidden) {
		t.Errorf("bob (power 0, redact needs 50) redacting alice's event: %v, want ErrForbidden", err)
	}
	if ev, _ := s.Model().Event(roomID, target); ev.RedactedBy != "" {
		t.Errorf("alice's event was redacted by %s", ev.RedactedBy)
	}
}

func TestReceiptsAndUnread(t *testing.T) {
	s := newService(t)
	ctx := t.Context()
	roomID := createRoom(t, s, CreateRequest{Preset: "public_chat"})
	sendText(t, s, roomID, alice, "before bob joined")
	sendText(t, s, roomID, alice, "also before")
	join(t, s, roomID, bob)
	// What was said before bob joined is not unread for him.
	if n, h := s.UnreadCounts(roomID, bob); n != 0 || h != 0 {
		t.Fatalf("unread right after joining = %d, %d; want 0, 0", n, h)
	}
	const n = 4
	var ids []string
	for i := 0; i < n; i++ {
		ids = append(ids, sendText(t, s, roomID, alice, fmt.Sprintf("message %d", i)))
	}
	if got, _ := s.UnreadCounts(roomID, bob); got != n {
		t.Fatalf("bob's notifications after %d messages from alice = %d", n, got)
	}
	if got, _ := s.UnreadCounts(roomID, alice); got != 0 {
		t.Errorf("alice's notifications for her own messages = %d", got)
	}
	if err := s.SetReceipt(ctx, roomID, bob, "m.read", ids[1], ""); err != nil {
		t.Fatal(err)
	}
	if got, _ := s.UnreadCounts(roomID, bob); got != n-2 {
		t.Errorf("after a receipt on message 1, notifications = %d, want %d", got, n-2)
	}
	pos := s.ReceiptPosition()
	if err := s.SetReceipt(ctx, roomID, bob, "m.read", ids[n-1], ""); err != nil {
		t.Fatal(err)
	}
	if got, _ := s.UnreadCounts(roomID, bob); got != 0 {
		t.Errorf("after a receipt on the last message, notifications = %d, want 0", got)
	}
	rs := s.ReceiptsSince(roomID, alice, pos)
	if len(rs) != 1 || rs[0].UserID != bob || rs[0].EventID != ids[n-1] || rs[0].Type != "m.read" || rs[0].Rev <= pos {
		t.Errorf("ReceiptsSince = %+v", rs)
	}
	// Receipts only move forward: an older one is accepted and ignored.
	if err := s.SetReceipt(ctx, roomID, bob, "m.read", ids[0], ""); err != nil {
		t.Fatal(err)
	}
	if rs := s.ReceiptsSince(roomID, bob, 0); len(rs) != 1 || rs[0].EventID != ids[n-1] {
		t.Errorf("after an older receipt, receipts = %+v", rs)
	}
	if got, _ := s.UnreadCounts(roomID, bob); got != 0 {
		t.Errorf("an older receipt brought back %d notifications", got)
	}
	// A private receipt is the owner's only.
	if err := s.SetReceipt(ctx, roomID, alice, "m.read.private", ids[n-1], ""); err != nil {
		t.Fatal(err)
	}
	for viewer, want := range map[string]int{alice: 2, bob: 1} {
		if got := len(s.ReceiptsSince(roomID, viewer, 0)); got != want {
			t.Errorf("%s sees %d receipts, want %d", viewer, got, want)
		}
	}
	// New messages count again, by the push rules: a notice does not notify, a mention of
	// bob's name highlights, and bob's own message marks everything before it read.
	sendText(t, s, roomID, alice, "one more")
	if n, h := s.UnreadCounts(roomID, bob); n != 1 || h != 0 {
		t.Errorf("after one more message, unread = %d, %d; want 1, 0", n, h)
	}
	if _, err := s.Send(ctx, Proto{RoomID: roomID, Sender: alice, Type: "m.room.message",
		Content: json.RawMessage(`{"msgtype":"m.notice","body":"a notice"}`)}, SendOptions{}); err != nil {
		t.Fatal(err)
	}
	if n, h := s.UnreadCounts(roomID, bob); n != 1 || h != 0 {
		t.Errorf("after a notice, unread = %d, %d; want 1, 0", n, h)
	}
	sendText(t, s, roomID, alice, "ping bob")
	if n, h := s.UnreadCounts(roomID, bob); n != 2 || h != 1 {
		t.Errorf("after a mention, unread = %d, %d; want 2, 1", n, h)
	}
	sendText(t, s, roomID, bob, "read it all")
	if n, h := s.UnreadCounts(roomID, bob); n != 0 || h != 0 {
		t.Errorf("after bob's own message, unread = %d, %d; want 0, 0", n, h)
	}

	for _, tc := range []struct {
		name          string
		user, typ, ev string
		want          error
	}{
		{"unknown type", bob, "m.seen", ids[0], ErrBadRequest},
		{"non-member", carol, "m.read", ids[0], ErrForbidden},
		{"unknown event", bob, "m.read", "$nope", ErrNotFound},
	} {
		if err := s.SetReceipt(ctx, roomID, tc.user, tc.typ, tc.ev, ""); !errors.Is(err, tc.want) {
			t.Errorf("%s: SetReceipt = %v, want %v", tc.name, err, tc.want)
		}
	}
}

// TestConcurrentSends: two services on one store, as two nodes of a cluster are, race for the
// same room's head; each send loses some races, catches up and rebuilds, and the history
// stays one chain with every send in it once.
func TestConcurrentSends(t *testing.T) {
	s, other, _ := twoNodes(t)
	roomID := createRoom(t, s, CreateRequest{Preset: "public_chat"})
	join(t, s, roomID, bob)
	catchUpWith(t, other, s)
	const perWriter = 25
	var wg sync.WaitGroup
	ids := make(chan string, 2*perWriter)
	errs := make(chan error, 2*perWriter)
	for sender, node := range map[string]*Service{alice: s, bob: other} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < perWriter; i++ {
				id, err := node.Send(t.Context(), message(roomID, sender, fmt.Sprintf("%s %d", sender, i)), SendOptions{})
				if err != nil {
					errs <- err
					return
				}
				ids <- id
			}
		}()
	}
	wg.Wait()
	// The history is read from the first service: it must first hold what the second wrote.
	catchUpWith(t, s, other)
	close(ids)
	close(errs)
	for err := range errs {
		t.Fatalf("concurrent Send: %v", err)
	}
	sent := map[string]bool{}
	for id := range ids {
		sent[id] = true
	}
	if len(sent) != 2*perWriter {
		t.Fatalf("%d distinct event ids from %d sends", len(sent), 2*perWriter)
	}
	evs := allEvents(s, roomID)
	checkChain(t, evs)
	found := 0
	seen := map[string]bool{}
	next := map[string]int{}
	for _, ev := range evs {
		if seen[ev.PDU.EventID()] {
			t.Errorf("event %s is in the room twice", ev.PDU.EventID())
		}
		seen[ev.PDU.EventID()] = true
		if sent[ev.PDU.EventID()] {
			found++
			// Each writer's messages appear in the order it sent them.
			b, _ := body(ev)
			if want := fmt.Sprintf("%s %d", ev.Sender, next[ev.Sender]); b != want {
				t.Errorf("message %q where %q was due", b, want)
			}
			next[ev.Sender]++
		}
	}
	if found != 2*perWriter {
		t.Errorf("the room holds %d of the %d sent events", found, 2*perWriter)
	}
}

// TestSingleNodeSendsTogether: on a single node, sends to different rooms that queue while a
// message is being stored go into the next message together, and every room's history is
// still one line with each of its events at a position of its own.
func TestSingleNodeSendsTogether(t *testing.T) {
	st := openStoreWith(t, store.Options{DataDir: t.TempDir(), RoomShards: 1, GroupCommit: true})
	t.Cleanup(st.Close)
	s, _ := startService(t, st)
	const rooms, perWriter = 8, 10
	var roomIDs []string
	for range rooms {
		roomIDs = append(roomIDs, createRoom(t, s, CreateRequest{Preset: "public_chat"}))
	}
	var wg sync.WaitGroup
	errs := make(chan error, 2*rooms*perWriter)
	for _, roomID := range roomIDs {
		for _, sender := range []string{"first", "second"} { // two writers per room take turns
			wg.Go(func() {
				for i := range perWriter {
					if _, err := s.Send(t.Context(), message(roomID, alice, fmt.Sprintf("%s %d", sender, i)), SendOptions{}); err != nil {
						errs <- err
						return
					}
				}
			})
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("Send: %v", err)
	}
	roomsAt := map[uint64]int{}
	for _, roomID := range roomIDs {
		evs := allEvents(s, roomID)
		checkChain(t, evs)
		messages := 0
		for _, ev := range evs {
			roomsAt[ev.Seq]++
			if ev.PDU.Type() == "m.room.message" {
				messages++
			}
		}
		if messages != 2*perWriter {
			t.Errorf("room %s holds %d of %d messages", roomID, messages, 2*perWriter)
		}
	}
	shared := 0
	for _, n := range roomsAt {
		if n > 1 {
			shared++
		}
	}
	if shared == 0 {
		t.Errorf("no two rooms' events were stored together in %d positions", len(roomsAt))
	}
}

// TestRestartRebuilds: a new service on the reopened store rebuilds the same rooms, whether
// the store keeps one event per message, a single node's events stored together, or both (a
// single node that began before group commit).
func TestRestartRebuilds(t *testing.T) {
	perRoom, grouped := store.Options{RoomShards: 4}, store.Options{RoomShards: 1, GroupCommit: true}
	upgraded := store.Options{RoomShards: 4, GroupCommit: true}
	for _, tc := range []struct {
		name          string
		before, after store.Options
	}{
		{"one event per message", perRoom, perRoom},
		{"group commit", grouped, grouped},
		{"group commit after one event per message", perRoom, upgraded},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			tc.before.DataDir, tc.after.DataDir = dir, dir
			testRestartRebuilds(t, tc.before, tc.after)
		})
	}
}

func testRestartRebuilds(t *testing.T, before, after store.Options) {
	ctx := t.Context()
	st := openStoreWith(t, before)
	s, stop := startService(t, st)
	roomID := createRoom(t, s, CreateRequest{Preset: "public_chat", Name: "Persistent"})
	join(t, s, roomID, bob)
	msg := sendText(t, s, roomID, alice, "before the restart")
	txnID, err := s.Send(ctx, message(roomID, alice, "with a txn"), SendOptions{Device: "D", TxnID: "t"})
	if err != nil {
		t.Fatal(err)
	}
	gone := sendText(t, s, roomID, alice, "to be redacted")
	if _, err := s.Send(ctx, Proto{RoomID: roomID, Sender: alice, Type: "m.room.redaction", Redacts: gone, Content: json.RawMessage(`{}`)}, SendOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := s.SetReceipt(ctx, roomID, bob, "m.read", msg, ""); err != nil {
		t.Fatal(err)
	}
	wantInfo, _ := s.Model().Info(roomID)
	wantEvents := allEvents(s, roomID)
	wantState := s.Model().State(roomID)
	wantUnread, _ := s.UnreadCounts(roomID, bob)
	wantKey := s.signer.key
	stop()
	st.Close()

	st2 := openStoreWith(t, after)
	t.Cleanup(st2.Close)
	s2, _ := startService(t, st2)
	m := s2.Model()
	// Start returns once the model has caught up with everything stored before it.
	for shard, applied := range m.Applied() {
		if head, err := st2.ShardHead(ctx, shard); err != nil || applied < head {
			t.Errorf("right after Start, shard %d applied %d of %d (%v)", shard, applied, head, err)
		}
	}
	info, ok := m.Info(roomID)
	if !ok || info.HeadSeq != wantInfo.HeadSeq || info.Shard != wantInfo.Shard || info.Head.PDU.EventID() != wantInfo.Head.PDU.EventID() {
		t.Fatalf("Info after restart = %+v, %v; want head %d", info, ok, wantInfo.HeadSeq)
	}
	ids := func(evs []Event) []string {
		var out []string
		for _, e := range evs {
			out = append(out, fmt.Sprintf("%d %s %s", e.Seq, e.PDU.EventID(), e.RedactedBy))
		}
		return out
	}
	if got, want := ids(allEvents(s2, roomID)), ids(wantEvents); !slices.Equal(got, want) {
		t.Errorf("events after restart\n got %q\nwant %q", got, want)
	}
	if got, want := ids(m.State(roomID)), ids(wantState); !slices.Equal(got, want) {
		t.Errorf("state after restart\n got %q\nwant %q", got, want)
	}
	if m.Membership(roomID, bob) != "join" || m.Membership(roomID, alice) != "join" {
		t.Errorf("memberships after restart: alice %q, bob %q", m.Membership(roomID, alice), m.Membership(roomID, bob))
	}
	if ev, ok := m.Event(roomID, gone); !ok || ev.RedactedBy == "" || strings.Contains(string(ev.PDU.JSON()), "to be redacted") {
		t.Errorf("the redaction was not reapplied: %s", ev.PDU.JSON())
	}
	if got, _ := s2.UnreadCounts(roomID, bob); got != wantUnread {
		t.Errorf("bob's unread after restart = %d, want %d", got, wantUnread)
	}
	if s2.signer.key.ID != wantKey.ID || !s2.signer.key.Priv.Equal(wantKey.Priv) {
		t.Errorf("the signing key changed across the restart")
	}
	// A client retrying a send across the restart gets the first event back.
	again, err := s2.Send(ctx, message(roomID, alice, "with a txn"), SendOptions{Device: "D", TxnID: "t"})
	if err != nil || again != txnID {
		t.Errorf("retry after restart = %s, %v; want %s", again, err, txnID)
	}
	// And the room goes on from its head.
	next := sendText(t, s2, roomID, bob, "after the restart")
	evs := allEvents(s2, roomID)
	checkChain(t, evs)
	if evs[len(evs)-1].PDU.EventID() != next {
		t.Errorf("the new event is not the head")
	}
}

// TestModelSkipsUnreadableEvents: the read model skips what it cannot read and still advances.
func TestModelSkipsUnreadableEvents(t *testing.T) {
	m := newModel(1, discard)
	create := `{"auth_events":[],"content":{"creator":"@a:test","room_version":"10"},"depth":1,"origin_server_ts":1,"prev_events":[],"room_id":"!r:test","sender":"@a:test","signatures":{},"state_key":"","type":"m.room.create"}`
	for i, b := range []string{
		``, `not json`, `[]`, `{}`,
		`{"type":"m.room.message","room_id":"!r:test","sender":"@a:test","content":{}}`, // no create yet
		`{"type":"m.room.create","room_id":"!v:test","content":{"room_version":"nope"}}`,
		create,
	} {
		m.apply([]store.RoomEvent{{Shard: 0, Seq: uint64(i + 1), JSON: []byte(b)}})
		if got := m.Applied()[0]; got != uint64(i+1) {
			t.Fatalf("after stored event %d, applied = %d", i+1, got)
		}
	}
	if _, ok := m.Info("!v:test"); ok {
		t.Errorf("a create event with an unknown room version made a room")
	}
	info, ok := m.Info("!r:test")
	if !ok || info.HeadSeq != 7 || info.Version.Version() != "10" {
		t.Fatalf("Info = %+v, %v", info, ok)
	}
	if evs := m.Range("!r:test", 0, End, true, 10, nil); len(evs) != 1 {
		t.Errorf("the room holds %d events, want only the create", len(evs))
	}
}

// TestModelTakesBuiltEvents: a stored event this node built is applied as the event it built,
// in the room the event names (a create event starting it with the event's room version), and
// one whose bytes differ from what was built is read from the stream.
func TestModelTakesBuiltEvents(t *testing.T) {
	m := newModel(1, discard)
	v10 := gomatrixserverlib.MustGetRoomVersion("10")
	parsed := func(eventJSON string) gomatrixserverlib.PDU {
		t.Helper()
		pdu, err := v10.NewEventFromTrustedJSONWithEventID("$"+strconv.Itoa(len(eventJSON)), []byte(eventJSON), false)
		if err != nil {
			t.Fatal(err)
		}
		return pdu
	}
	create := parsed(`{"auth_events":[],"content":{"creator":"@a:test","room_version":"10"},"depth":1,"origin_server_ts":1,"prev_events":[],"room_id":"!built:test","sender":"@a:test","signatures":{},"state_key":"","type":"m.room.create"}`)
	message := parsed(`{"auth_events":[],"content":{"body":"hi"},"depth":2,"origin_server_ts":2,"prev_events":[],"room_id":"!built:test","sender":"@a:test","signatures":{},"type":"m.room.message"}`)
	other := parsed(`{"auth_events":[],"content":{"body":"hello"},"depth":3,"origin_server_ts":3,"prev_events":[],"room_id":"!built:test","sender":"@a:test","signatures":{},"type":"m.room.message"}`)
	// Before its create event, the room is unknown even to an event this node built.
	done := m.built.add(message)
	m.apply([]store.RoomEvent{{Shard: 0, Seq: 1, EventID: message.EventID(), JSON: message.JSON()}})
	done()
	if info, ok := m.Info("!built:test"); ok {
		t.Fatalf("a built message made a room without a create event: %+v", info)
	}
	for i, tc := range []struct {
		pdu    gomatrixserverlib.PDU
		stored []byte
		taken  bool
	}{
		{create, create.JSON(), true},
		{message, message.JSON(), true},
		{other, append(append([]byte{}, other.JSON()...), ' '), false},
	} {
		seq := uint64(i + 2)
		done := m.built.add(tc.pdu)
		m.apply([]store.RoomEvent{{Shard: 0, Seq: seq, EventID: tc.pdu.EventID(), JSON: tc.stored}})
		done()
		info, ok := m.Info("!built:test")
		if !ok || info.HeadSeq != seq || info.Version.Version() != "10" {
			t.Fatalf("event %d: Info = %+v, %v", seq, info, ok)
		}
		if taken := info.Head.PDU == tc.pdu; taken != tc.taken {
			t.Errorf("event %d: applied the built event itself: %v, want %v", seq, taken, tc.taken)
		}
	}
}

// TestModelTxnIndex: a transaction id is looked up per sender, device and event type, however
// many events of the room share it (the newest of one stored twice), also once its event is
// redacted; and a built event's device and transaction id are kept as copies, not as views of
// the stored message that only the event itself would keep alive.
func TestModelTxnIndex(t *testing.T) {
	m := newModel(1, discard)
	event := func(depth int, sender, evType string) string {
		return fmt.Sprintf(`{"auth_events":[],"content":{},"depth":%d,"origin_server_ts":1,"prev_events":[],"room_id":"!t:test","sender":%q,"signatures":{},"type":%q}`, depth, sender, evType)
	}
	m.apply([]store.RoomEvent{{Shard: 0, Seq: 1, EventID: "$create", JSON: []byte(`{"auth_events":[],"content":{"creator":"@a:test","room_version":"10"},"depth":1,"origin_server_ts":1,"prev_events":[],"room_id":"!t:test","sender":"@a:test","signatures":{},"state_key":"","type":"m.room.create"}`)}})
	stored := []struct{ id, sender, device, evType string }{
		{"$a", "@a:test", "D", "m.room.message"},
		{"$b", "@b:test", "D", "m.room.message"},
		{"$c", "@a:test", "E", "m.room.message"},
		{"$d", "@a:test", "D", "m.reaction"},
		{"$e", "@b:test", "D", "m.room.message"},
		{"$r", "@c:test", "D", "m.room.redaction"},
	}
	for i, e := range stored {
		js := event(i+2, e.sender, e.evType)
		if e.evType == "m.room.redaction" {
			js = strings.Replace(js, `"prev_events"`, `"redacts":"$a","prev_events"`, 1)
		}
		m.apply([]store.RoomEvent{{Shard: 0, Seq: uint64(i + 2), EventID: e.id, Device: e.device, TxnID: "T", JSON: []byte(js)}})
	}
	if ev, ok := m.Event("!t:test", "$a"); !ok || ev.RedactedBy != "$r" {
		t.Fatalf("$a = %+v, %v; want it redacted by $r", ev, ok)
	}
	for _, tc := range []struct {
		name, sender, device, evType, txn, want string
	}{
		{"redacted", "@a:test", "D", "m.room.message", "T", "$a"},
		{"stored twice", "@b:test", "D", "m.room.message", "T", "$e"},
		{"another device", "@a:test", "E", "m.room.message", "T", "$c"},
		{"another type", "@a:test", "D", "m.reaction", "T", "$d"},
		{"no such sender", "@c:test", "D", "m.room.message", "T", ""},
		{"no such txn", "@a:test", "D", "m.room.message", "U", ""},
		{"no device", "@a:test", "", "m.room.message", "T", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := m.TxnEvent("!t:test", tc.sender, tc.device, tc.evType, tc.txn); got != tc.want {
				t.Errorf("TxnEvent = %q, want %q", got, tc.want)
			}
		})
	}

	v10 := gomatrixserverlib.MustGetRoomVersion("10")
	built, err := v10.NewEventFromTrustedJSONWithEventID("$built", []byte(event(9, "@a:test", "m.room.message")), false)
	if err != nil {
		t.Fatal(err)
	}
	message := []byte("DEVICETXN")
	done := m.built.add(built)
	m.apply([]store.RoomEvent{{Shard: 0, Seq: 9, EventID: "$built", Device: wire.View(message[:6]), TxnID: wire.View(message[6:]), JSON: built.JSON()}})
	done()
	ev, ok := m.Event("!t:test", "$built")
	if !ok || ev.Device != "DEVICE" || ev.TxnID != "TXN" {
		t.Fatalf("the built event = %+v, %v", ev, ok)
	}
	if unsafe.StringData(ev.Device) == &message[0] || unsafe.StringData(ev.TxnID) == &message[6] {
		t.Error("a built event keeps strings of the stored message")
	}
}

// TestRedactedEventReadConcurrently: readers share a redacted event's PDU, so reading its id
// must not write to it, as a PDU that hashes its id lazily would (the race detector sees it).
func TestRedactedEventReadConcurrently(t *testing.T) {
	m := newModel(1, discard)
	for i, js := range []string{
		`{"auth_events":[],"content":{"creator":"@a:test","room_version":"10"},"depth":1,"origin_server_ts":1,"prev_events":[],"room_id":"!t:test","sender":"@a:test","signatures":{},"state_key":"","type":"m.room.create"}`,
		`{"auth_events":[],"content":{"body":"hi"},"depth":2,"origin_server_ts":1,"prev_events":[],"room_id":"!t:test","sender":"@a:test","signatures":{},"type":"m.room.message"}`,
		`{"auth_events":[],"content":{},"depth":3,"origin_server_ts":1,"prev_events":[],"redacts":"$m","room_id":"!t:test","sender":"@a:test","signatures":{},"type":"m.room.redaction"}`,
	} {
		m.apply([]store.RoomEvent{{Shard: 0, Seq: uint64(i + 1), EventID: []string{"$c", "$m", "$r"}[i], JSON: []byte(js)}})
	}
	var wg sync.WaitGroup
	for range 2 {
		wg.Go(func() {
			if ev, ok := m.Event("!t:test", "$m"); !ok || ev.RedactedBy != "$r" || ev.PDU.EventID() != "$m" {
				t.Errorf("$m = %+v, %v; want it redacted by $r, with its id", ev, ok)
			}
		})
	}
	wg.Wait()
}

// TestModelUnreadableCreateMakesNoRoom: the model registers a room as soon as it sees a create
// event's room id and version, before the event itself has parsed. An unreadable create event
// then leaves a room without events that later events are applied to.
func TestModelUnreadableCreateMakesNoRoom(t *testing.T) {
	m := newModel(1, discard)
	m.apply([]store.RoomEvent{{Shard: 0, Seq: 1, JSON: []byte(`{"type":"m.room.create","room_id":"!x:test","content":{"room_version":"10"},"depth":"deep"}`)}})
	if info, ok := m.Info("!x:test"); ok {
		t.Errorf("Info after an unreadable create event = %+v, want no room", info)
	}
	m.apply([]store.RoomEvent{{Shard: 0, Seq: 2, JSON: []byte(`{"type":"m.room.member","room_id":"!x:test","sender":"@e:test","state_key":"@e:test","content":{"membership":"join"}}`)}})
	if got := m.Membership("!x:test", "@e:test"); got != "" {
		t.Errorf("a member event in a room without a create event gave membership %q", got)
	}
}

// TestStateDelta: the state changed after a position, which every incremental sync asks for
// (and which answers at once when nothing has changed since).
func TestStateDelta(t *testing.T) {
	s := newService(t)
	roomID := createRoom(t, s, CreateRequest{Preset: "public_chat"})
	head := func() uint64 { info, _ := s.Model().Info(roomID); return info.HeadSeq }
	created := head()
	sendText(t, s, roomID, alice, "not state")
	emptyKey := ""
	if _, err := s.Send(t.Context(), Proto{RoomID: roomID, Sender: alice, Type: "m.room.topic", StateKey: &emptyKey,
		Content: json.RawMessage(`{"topic":"new"}`)}, SendOptions{}); err != nil {
		t.Fatal(err)
	}
	topicAt := head()
	sendText(t, s, roomID, alice, "not state either")
	types := func(evs []Event) []string {
		var out []string
		for _, ev := range evs {
			out = append(out, ev.PDU.Type())
		}
		return out
	}
	cases := []struct {
		name  string
		since uint64
		want  []string
	}{
		{"since the topic change", topicAt, nil},
		{"since just before it", topicAt - 1, []string{"m.room.topic"}},
		{"since the room was made", created, []string{"m.room.topic"}},
		{"since the head", head(), nil},
	}
	for _, c := range cases {
		if got := types(s.Model().StateDelta(roomID, c.since, End)); !slices.Equal(got, c.want) {
			t.Errorf("%s: %v, want %v", c.name, got, c.want)
		}
	}
	if n := len(s.Model().StateDelta(roomID, 0, End)); n != len(s.Model().State(roomID)) || n < 5 {
		t.Errorf("since 0: %d events, want the whole state (%d)", n, len(s.Model().State(roomID)))
	}
}

// TestStateDeltaEveryPosition: between every two positions in a room's history, StateDelta is
// the state as it stood at the second, limited to what was set after the first, whether it
// walks the events between them (close together) or every key's log (far apart); MemberAt is
// a member's event at each position. Both are checked against replaying the room's events.
func TestStateDeltaEveryPosition(t *testing.T) {
	s := newService(t)
	roomID := createRoom(t, s, CreateRequest{Preset: "public_chat"})
	emptyKey := ""
	topic := func(text string) {
		if _, err := s.Send(t.Context(), Proto{RoomID: roomID, Sender: alice, Type: "m.room.topic", StateKey: &emptyKey,
			Content: json.RawMessage(`{"topic":"` + text + `"}`)}, SendOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	topic("first")
	for _, u := range []string{bob, "@carol:test", "@dan:test"} {
		join(t, s, roomID, u)
		sendText(t, s, roomID, u, "hello")
	}
	topic("second")
	if _, err := s.ChangeMembership(t.Context(), MembershipChange{RoomID: roomID, Sender: bob, Target: bob, Membership: "leave"}); err != nil {
		t.Fatal(err)
	}
	sendText(t, s, roomID, alice, "bob left")
	join(t, s, roomID, bob)
	sendText(t, s, roomID, alice, "bob is back")

	m := s.Model()
	info, _ := m.Info(roomID)
	// replay is the state after each position, worked out the slow way.
	replay := map[uint64]map[stateKey]Event{}
	cur := map[stateKey]Event{}
	events := m.Range(roomID, 0, info.HeadSeq, true, math.MaxInt, nil)
	for seq, i := uint64(0), 0; seq <= info.HeadSeq; seq++ {
		for ; i < len(events) && events[i].Seq == seq; i++ {
			if sk := events[i].PDU.StateKey(); sk != nil {
				cur[stateKey{events[i].PDU.Type(), *sk}] = events[i]
			}
		}
		replay[seq] = maps.Clone(cur)
	}
	for at := uint64(0); at <= info.HeadSeq; at++ {
		for after := uint64(0); after <= at; after++ {
			var want []string
			for _, ev := range replay[at] {
				if ev.Seq > after {
					want = append(want, ev.PDU.EventID())
				}
			}
			var got []string
			for _, ev := range m.StateDelta(roomID, after, at) {
				got = append(got, ev.PDU.EventID())
			}
			slices.Sort(want)
			slices.Sort(got)
			if !slices.Equal(got, want) {
				t.Errorf("after %d, at %d: %v, want %v", after, at, got, want)
			}
		}
		for _, user := range []string{alice, bob, "@carol:test", "@nobody:test"} {
			want, had := replay[at][stateKey{"m.room.member", user}]
			got, ok := m.MemberAt(roomID, user, at)
			if ok != had || ok && got.PDU.EventID() != want.PDU.EventID() {
				t.Errorf("MemberAt(%s, %d): found %v, want %v", user, at, ok, had)
			}
		}
	}
}

// threadedRoom is a room of alice and bob where alice has said one thing and started a
// thread with a second (its root, returned).
func threadedRoom(t *testing.T) (s *Service, roomID, root string) {
	t.Helper()
	s = newService(t)
	roomID = createRoom(t, s, CreateRequest{Preset: "public_chat"})
	join(t, s, roomID, bob)
	sendText(t, s, roomID, alice, "main 1")
	return s, roomID, sendText(t, s, roomID, alice, "thread root")
}

// TestThreadedReceipts: a receipt for a thread marks only that thread's events read and is
// kept beside the room's other receipts; a main-timeline receipt marks the main timeline read,
// and every event before it, as an unthreaded one does.
func TestThreadedReceipts(t *testing.T) {
	s, roomID, root := threadedRoom(t)
	ctx := t.Context()
	sendReply(t, s, roomID, alice, root, "reply 1")
	main2 := sendText(t, s, roomID, alice, "main 2")
	reply2 := sendReply(t, s, roomID, alice, root, "reply 2")
	unread := func(want int, when string) {
		t.Helper()
		if got, _ := s.UnreadCounts(roomID, bob); got != want {
			t.Errorf("%s: bob's notifications = %d, want %d", when, got, want)
		}
	}
	unread(5, "before any receipt")
	if err := s.SetReceipt(ctx, roomID, bob, "m.read", reply2, "$no-such-root"); !errors.Is(err, ErrInvalidParam) {
		t.Errorf("a receipt in a thread that is not the room's: %v, want ErrInvalidParam", err)
	}
	if err := s.SetReceipt(ctx, roomID, bob, "m.read", reply2, root); err != nil {
		t.Fatal(err)
	}
	unread(3, "after reading the thread") // main 1, the root and main 2 are left
	if err := s.SetReceipt(ctx, roomID, bob, "m.read", main2, "main"); err != nil {
		t.Fatal(err)
	}
	unread(0, "after reading the main timeline too")
	// An unthreaded receipt on an older event is a receipt of its own, not a step back.
	if err := s.SetReceipt(ctx, roomID, bob, "m.read", root, ""); err != nil {
		t.Fatal(err)
	}
	unread(0, "after an older unthreaded receipt")
	threads := map[string]string{}
	for _, r := range s.ReceiptsSince(roomID, bob, 0) {
		if r.UserID == bob {
			threads[r.ThreadID] = r.EventID
		}
	}
	if want := map[string]string{root: reply2, "main": main2, "": root}; !maps.Equal(threads, want) {
		t.Errorf("bob's receipts by thread = %v, want %v", threads, want)
	}
	// A new reply in the thread is unread; so is a new message in the main timeline.
	sendReply(t, s, roomID, alice, root, "reply 3")
	sendText(t, s, roomID, alice, "main 3")
	unread(2, "after a new reply and a new message")
}

// TestThreadUnreadCounts: counts split by thread give the main timeline's and each thread's;
// a thread's receipt, or the user's own event there (a reaction to a reply too), clears only
// that thread's, and a main-timeline receipt or the user's profile update only the main
// timeline's.
func TestThreadUnreadCounts(t *testing.T) {
	s, roomID, root := threadedRoom(t)
	ctx := t.Context()
	first := sendReply(t, s, roomID, alice, root, "reply 1")
	sendReply(t, s, roomID, alice, root, "reply 2")
	sendText(t, s, roomID, alice, "main 2")
	check := func(when string, wantMain, wantThread int) {
		t.Helper()
		main, threads := s.ThreadUnreadCounts(roomID, bob)
		if main.Notifications != wantMain || threads[root].Notifications != wantThread || len(threads) > 1 ||
			(wantThread == 0 && len(threads) != 0) {
			t.Errorf("%s: main %+v, threads %+v; want %d and %d in the thread", when, main, threads, wantMain, wantThread)
		}
	}
	check("before any receipt", 3, 2)
	if n, _ := s.UnreadCounts(roomID, bob); n != 5 {
		t.Errorf("the room's count not split = %d, want 5", n)
	}
	reaction := mustJSON(map[string]any{"m.relates_to": map[string]any{"rel_type": "m.annotation", "event_id": first, "key": "+1"}})
	if _, err := s.Send(ctx, Proto{RoomID: roomID, Sender: bob, Type: "m.reaction", Content: reaction}, SendOptions{}); err != nil {
		t.Fatal(err)
	}
	check("after bob's reaction to a reply", 3, 0)
	last := sendReply(t, s, roomID, alice, root, "reply 3")
	check("after another reply", 3, 1)
	profile := mustJSON(map[string]any{"membership": "join", "displayname": "Bobby"})
	if _, err := s.Send(ctx, Proto{RoomID: roomID, Sender: bob, Type: "m.room.member", StateKey: &[]string{bob}[0], Content: profile}, SendOptions{}); err != nil {
		t.Fatal(err)
	}
	check("after bob's profile update", 0, 1)
	if err := s.SetReceipt(ctx, roomID, bob, "m.read", last, root); err != nil {
		t.Fatal(err)
	}
	check("after reading the thread", 0, 0)
	sendReply(t, s, roomID, alice, root, "reply 4")
	check("after a fourth reply", 0, 1)
	main3 := sendText(t, s, roomID, alice, "main 3")
	check("after a third message", 1, 1)
	if err := s.SetReceipt(ctx, roomID, bob, "m.read", main3, "main"); err != nil {
		t.Fatal(err)
	}
	check("after reading the main timeline", 0, 1) // the thread's reply before it stays unread
	// Both cursors stand at the room's last event, so the next sync reads only what is new.
	info, _ := s.Model().Info(roomID)
	s.unreadMu.Lock()
	st := s.unread[unreadKey{roomID, bob, true}]
	s.unreadMu.Unlock()
	if st.upTo != info.HeadSeq || st.threadsUpTo != info.HeadSeq {
		t.Errorf("split counts' cursors at %d and %d, want both at the room's head %d", st.upTo, st.threadsUpTo, info.HeadSeq)
	}
	if n, _ := s.UnreadCounts(roomID, bob); n != 0 {
		t.Errorf("the room's count not split after the main receipt = %d, want 0 (it covers what came before)", n)
	}
	sendReply(t, s, roomID, bob, root, "bob replies")
	check("after bob's own reply in the thread", 0, 0)
}

// A threaded receipt must name an event in its thread: "main" takes the main timeline (a
// thread's root included), a root takes itself and its replies.
func TestReceiptThreadMustHoldTheEvent(t *testing.T) {
	s := newService(t)
	roomID := createRoom(t, s, CreateRequest{Preset: "public_chat"})
	root := sendText(t, s, roomID, alice, "root")
	reply := sendReply(t, s, roomID, alice, root, "reply")
	plain := sendText(t, s, roomID, alice, "plain")
	for _, tc := range []struct {
		name, event, thread string
		want                error
	}{
		{"unthreaded, a reply", reply, "", nil},
		{"main, the root", root, "main", nil},
		{"main, a plain message", plain, "main", nil},
		{"main, a reply", reply, "main", ErrInvalidParam},
		{"the thread, its root", root, root, nil},
		{"the thread, its reply", reply, root, nil},
		{"the thread, a plain message", plain, root, ErrInvalidParam},
		{"a reply as the thread", root, reply, ErrInvalidParam},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := s.SetReceipt(t.Context(), roomID, alice, "m.read", tc.event, tc.thread); !errors.Is(err, tc.want) {
				t.Errorf("SetReceipt = %v, want %v", err, tc.want)
			}
		})
	}
}

// A restricted room admits members of the rooms its join rules name, through a member who
// may invite (join_authorised_via_users_server), and no one else uninvited.
func TestRestrictedJoin(t *testing.T) {
	s := newService(t)
	space := createRoom(t, s, CreateRequest{Preset: "public_chat"})
	join(t, s, space, bob)
	for _, rule := range []string{"restricted", "knock_restricted"} {
		t.Run(rule, func(t *testing.T) {
			rules := mustJSON(map[string]any{"join_rule": rule,
				"allow": []map[string]string{{"type": "m.room_membership", "room_id": space}}})
			room := createRoom(t, s, CreateRequest{Preset: "private_chat", RoomVersion: "10",
				InitialState: []StateEvent{{Type: "m.room.join_rules", Content: rules}}})

			join(t, s, room, bob)
			member := s.Model().StateEvent(room, "m.room.member", bob)
			if via := gjson.GetBytes(member.PDU.Content(), "join_authorised_via_users_server").Str; via != alice {
				t.Errorf("the join was admitted by %q, want %s, the member who may invite", via, alice)
			}
			_, err := s.ChangeMembership(t.Context(), MembershipChange{RoomID: room, Sender: carol, Target: carol, Membership: "join"})
			if !errors.Is(err, ErrForbidden) {
				t.Errorf("a user in none of the allowed rooms joined: %v, want ErrForbidden", err)
			}
			if got := s.Model().Membership(room, carol); got != "" {
				t.Errorf("after the refused join carol's membership is %q", got)
			}
		})
	}
}
