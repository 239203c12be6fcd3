package rooms

import (
	"cmp"
	"encoding/json"
	"errors"
	"slices"
	"testing"
)

// at is the position of the event every case of TestCanSee asks about.
const at = 10

// TestCanSee checks the spec's rules for an ordinary event at seq 10, for each
// history_visibility in force then and each membership history around it.
func TestCanSee(t *testing.T) {
	histories := []struct {
		name        string
		memberships []change
		// want per history_visibility: world_readable, shared, invited, joined
		world, shared, invited, joined bool
	}{
		{"never a member", nil, true, false, false, false},
		{"invited before, never joined", []change{{5, "invite"}}, true, false, true, false},
		{"invited before, joined after", []change{{5, "invite"}, {15, "join"}}, true, true, true, false},
		{"joined before", []change{{5, "join"}}, true, true, true, true},
		{"joined before, left after", []change{{5, "join"}, {15, "leave"}}, true, true, true, true},
		{"left before", []change{{3, "join"}, {5, "leave"}}, true, false, false, false},
		{"banned before", []change{{3, "join"}, {5, "ban"}}, true, false, false, false},
		{"joined after", []change{{15, "join"}}, true, true, false, false},
		{"joined after, then left", []change{{15, "join"}, {20, "leave"}}, true, true, false, false},
		{"left before, rejoined after", []change{{3, "join"}, {5, "leave"}, {15, "join"}}, true, true, false, false},
		{"invited after, never joined", []change{{15, "invite"}}, true, false, false, false},
		{"invite rejected before", []change{{3, "invite"}, {5, "leave"}}, true, false, false, false},
	}
	for _, hc := range histories {
		for vis, want := range map[string]bool{"world_readable": hc.world, "shared": hc.shared, "invited": hc.invited, "joined": hc.joined} {
			h := newHistory(30, []change{{1, vis}}, hc.memberships)
			if got := h.canSee(at); got != want {
				t.Errorf("%s, %s: canSee = %v, want %v", hc.name, vis, got, want)
			}
		}
		// Without any history_visibility event the room is "shared".
		if got := newHistory(30, nil, hc.memberships).canSee(at); got != hc.shared {
			t.Errorf("%s, no history_visibility: canSee = %v, want %v as shared", hc.name, got, hc.shared)
		}
	}
}

// TestCanSeeChangeEvents checks the events that change what decides: the user's own member
// events and history_visibility events, which the user sees if the state before or after
// allows it, and the rules moving with history_visibility over time.
func TestCanSeeChangeEvents(t *testing.T) {
	cases := []struct {
		name        string
		visibility  []change
		memberships []change
		seq         uint64
		want        bool
	}{
		{"own join under joined", []change{{1, "joined"}}, []change{{10, "join"}}, 10, true},
		{"own leave under joined", []change{{1, "joined"}}, []change{{5, "join"}, {10, "leave"}}, 10, true},
		{"own invite under joined", []change{{1, "joined"}}, []change{{10, "invite"}}, 10, false},
		{"own invite under invited", []change{{1, "invited"}}, []change{{10, "invite"}}, 10, true},
		{"own invite under shared, joined later", []change{{1, "shared"}}, []change{{10, "invite"}, {12, "join"}}, 10, true},
		{"change to world_readable, stranger", []change{{1, "joined"}, {10, "world_readable"}}, nil, 10, true},
		{"change from world_readable, stranger", []change{{1, "world_readable"}, {10, "joined"}}, nil, 10, true},
		{"after a change from world_readable, stranger", []change{{1, "world_readable"}, {10, "joined"}}, nil, 11, false},
		{"shared before a change to joined, joined later", []change{{1, "shared"}, {8, "joined"}}, []change{{15, "join"}}, 7, true},
		{"joined after a change from shared, joined later", []change{{1, "shared"}, {8, "joined"}}, []change{{15, "join"}}, 10, false},
	}
	for _, c := range cases {
		if got := newHistory(30, c.visibility, c.memberships).canSee(c.seq); got != c.want {
			t.Errorf("%s: canSee(%d) = %v, want %v", c.name, c.seq, got, c.want)
		}
	}
}

// TestSpans checks the stretches VisibleRange reads agree with canSee event by event.
func TestSpans(t *testing.T) {
	h := newHistory(40,
		[]change{{2, "shared"}, {12, "joined"}, {25, "invited"}, {33, "world_readable"}},
		[]change{{5, "join"}, {8, "leave"}, {18, "join"}, {21, "leave"}, {28, "invite"}, {31, "leave"}})
	var fromSpans []uint64
	for _, sp := range h.spans() {
		for seq := sp.after + 1; seq <= sp.upTo; seq++ {
			fromSpans = append(fromSpans, seq)
		}
	}
	var want []uint64
	for seq := uint64(1); seq <= h.head; seq++ {
		if h.canSee(seq) {
			want = append(want, seq)
		}
	}
	if !slices.Equal(fromSpans, want) {
		t.Errorf("spans cover %v, canSee allows %v", fromSpans, want)
	}
}

// TestVisibilityThroughTheModel runs a room with history_visibility "joined" through the
// service: the index kept as events are applied, /messages-style ranges, single events, state.
// Values the spec does not define count as the default, "shared", as Synapse counts them.
func TestHistoryVisibilityValue(t *testing.T) {
	for content, want := range map[string]string{
		`{"history_visibility":"joined"}`:         "joined",
		`{"history_visibility":"world_readable"}`: "world_readable",
		`{"history_visibility":"secret"}`:         "shared",
		`{"history_visibility":5}`:                "shared",
		`{}`:                                      "shared",
	} {
		if got := historyVisibility([]byte(content)); got != want {
			t.Errorf("historyVisibility(%s) = %q, want %q", content, got, want)
		}
	}
}

func TestVisibilityThroughTheModel(t *testing.T) {
	s := newService(t)
	roomID := createRoom(t, s, CreateRequest{Preset: "private_chat", InitialState: []StateEvent{
		{Type: "m.room.history_visibility", Content: json.RawMessage(`{"history_visibility":"joined"}`)}}})
	before := sendText(t, s, roomID, alice, "before bob")
	if _, err := s.ChangeMembership(t.Context(), MembershipChange{RoomID: roomID, Sender: alice, Target: bob, Membership: "invite"}); err != nil {
		t.Fatalf("invite: %v", err)
	}
	invited := sendText(t, s, roomID, alice, "bob invited")

	if _, err := s.ReadableUpTo(roomID, bob); !errors.Is(err, ErrForbidden) {
		t.Errorf("ReadableUpTo for an invitee: %v, want ErrForbidden", err)
	}
	if _, err := s.VisibleEvent(t.Context(), roomID, bob, invited); !errors.Is(err, ErrNotFound) {
		t.Errorf("VisibleEvent for an invitee under joined: %v, want ErrNotFound", err)
	}

	join(t, s, roomID, bob)
	during := sendText(t, s, roomID, alice, "bob here")
	if err := changeMembership(t, s, roomID, bob, "leave"); err != nil {
		t.Fatalf("leave: %v", err)
	}
	leaveSeq := s.Model().StateEvent(roomID, "m.room.member", bob).Seq
	nameKey := ""
	if _, err := s.Send(t.Context(), Proto{RoomID: roomID, Sender: alice, Type: "m.room.name", StateKey: &nameKey,
		Content: json.RawMessage(`{"name":"after bob"}`)}, SendOptions{}); err != nil {
		t.Fatalf("set name: %v", err)
	}
	after := sendText(t, s, roomID, alice, "bob gone")

	// The room's creation, up to the change to "joined", was "shared", so bob sees it.
	if evs := s.Model().VisibleRange(roomID, bob, 0, End, true, 1, nil); len(evs) != 1 || evs[0].PDU.Type() != "m.room.create" {
		t.Errorf("bob's first visible event = %v, want the create event", evs)
	}
	first, _ := s.Model().Event(roomID, before)
	var got []string
	for _, ev := range s.Model().VisibleRange(roomID, bob, first.Seq-1, End, true, 100, nil) {
		if b, ok := body(ev); ok {
			got = append(got, b)
		} else {
			got = append(got, ev.PDU.Type())
		}
	}
	if want := []string{"m.room.member", "bob here", "m.room.member"}; !slices.Equal(got, want) {
		t.Errorf("bob sees %v, want his join, %q and his leave", got, "bob here")
	}
	for id, want := range map[string]error{before: ErrNotFound, invited: ErrNotFound, during: nil, after: ErrNotFound} {
		if _, err := s.VisibleEvent(t.Context(), roomID, bob, id); !errors.Is(err, want) {
			t.Errorf("VisibleEvent(%s) = %v, want %v", id, err, want)
		}
	}
	if got := s.Model().VisibleRange(roomID, bob, 0, End, false, 0, nil); len(got) != 0 {
		t.Errorf("limit 0 returned %d events", len(got))
	}
	// Sync's timeline: only the newest run bob may see, and a gap before it where events were
	// hidden from him (the creation he may see lies behind that gap).
	run, gap := s.Model().NewestVisibleRun(roomID, bob, 0, leaveSeq, 100, nil)
	if len(run) != 3 || run[0].Seq != leaveSeq || !gap {
		t.Fatalf("newest run up to bob's leave = %d events (newest %v), gap %v; want his leave, %q and his join, and a gap",
			len(run), run, gap, "bob here")
	}
	joinSeq := run[2].Seq
	if run, gap := s.Model().NewestVisibleRun(roomID, bob, joinSeq-1, leaveSeq, 100, nil); len(run) != 3 || gap {
		t.Errorf("newest run from just before bob's join = %d events, gap %v; want 3 and none", len(run), gap)
	}
	if run, gap := s.Model().NewestVisibleRun(roomID, bob, leaveSeq, End, 100, nil); len(run) != 0 || !gap {
		t.Errorf("after bob left = %d events, gap %v; want none he may see, and a gap (the name and %q)", len(run), gap, "bob gone")
	}

	if upTo, err := s.ReadableUpTo(roomID, bob); err != nil || upTo != leaveSeq {
		t.Errorf("ReadableUpTo after leaving = %d, %v; want the leave at %d", upTo, err, leaveSeq)
	}
	if _, err := s.VisibleStateEvent(roomID, bob, "m.room.name", ""); !errors.Is(err, ErrNotFound) {
		t.Errorf("a name set after bob left: %v, want ErrNotFound", err)
	}
	state, err := s.VisibleState(roomID, bob, End)
	if err != nil {
		t.Fatalf("VisibleState: %v", err)
	}
	for _, ev := range state {
		if ev.Seq > leaveSeq {
			t.Errorf("state after the leave: %s at %d", ev.PDU.Type(), ev.Seq)
		}
	}
	if me, err := s.VisibleStateEvent(roomID, bob, "m.room.member", bob); err != nil || me.Seq != leaveSeq {
		t.Errorf("bob's own member state = %v, %v; want his leave", me, err)
	}
}

func changeMembership(t *testing.T, s *Service, roomID, user, membership string) error {
	t.Helper()
	_, err := s.ChangeMembership(t.Context(), MembershipChange{RoomID: roomID, Sender: user, Target: user, Membership: membership})
	return err
}

// TestStateAt checks a former member gets each state entry as it was when they left, not the
// entry's later value, and not entries set only after.
func TestStateAt(t *testing.T) {
	s := newService(t)
	roomID := createRoom(t, s, CreateRequest{Preset: "public_chat", Name: "first"})
	join(t, s, roomID, bob)
	if err := changeMembership(t, s, roomID, bob, "leave"); err != nil {
		t.Fatalf("leave: %v", err)
	}
	key := ""
	for _, p := range []Proto{
		{RoomID: roomID, Sender: alice, Type: "m.room.name", StateKey: &key, Content: json.RawMessage(`{"name":"second"}`)},
		{RoomID: roomID, Sender: alice, Type: "m.room.topic", StateKey: &key, Content: json.RawMessage(`{"topic":"new"}`)},
	} {
		if _, err := s.Send(t.Context(), p, SendOptions{}); err != nil {
			t.Fatalf("send %s: %v", p.Type, err)
		}
	}
	name, err := s.VisibleStateEvent(roomID, bob, "m.room.name", "")
	if err != nil || string(name.PDU.Content()) != `{"name":"first"}` {
		t.Errorf("name bob sees = %v, %v; want the one when he left", name, err)
	}
	if _, err := s.VisibleStateEvent(roomID, bob, "m.room.topic", ""); !errors.Is(err, ErrNotFound) {
		t.Errorf("topic set after bob left: %v, want ErrNotFound", err)
	}
	if cur, err := s.VisibleStateEvent(roomID, alice, "m.room.name", ""); err != nil || string(cur.PDU.Content()) != `{"name":"second"}` {
		t.Errorf("name alice sees = %v, %v; want the current one", cur, err)
	}
	leaveSeq := s.Model().StateEvent(roomID, "m.room.member", bob).Seq
	if !slices.IsSortedFunc(s.Model().StateAt(roomID, leaveSeq), func(a, b Event) int { return cmp.Compare(a.Seq, b.Seq) }) {
		t.Errorf("StateAt is not in stream order")
	}
}
