package syncer

import (
	"context"
	"encoding/json"
	"slices"
	"strings"
	"testing"

	"github.com/firebreak/firebreak/internal/filter"
	"github.com/firebreak/firebreak/internal/rooms"
)

// TestSyncStateAtTimelineStart: a sync's state is the room's state where its timeline starts,
// as the spec says, not the current state less the timeline's events, with the last value of
// what a timeline filter hid after that start; full_state sends all of that state but leaves
// the timeline limited by the token.
func TestSyncStateAtTimelineStart(t *testing.T) {
	ctx := context.Background()
	n := startBenchNode(t, nil)
	roomID := n.room(t, 0, 8, 1)
	const peer = "@r0m1:bench"
	state := func(sender, evType, key, content string) {
		t.Helper()
		_, err := n.rooms.Send(ctx, rooms.Proto{RoomID: roomID, Sender: sender, Type: evType, StateKey: &key,
			Content: json.RawMessage(content)}, rooms.SendOptions{})
		if err != nil {
			t.Fatal(err)
		}
	}
	since := n.sync.current().String()
	// After the token: topic A, three messages, the peer's new name, topic B, one message.
	state(benchMe, "m.room.topic", "", `{"topic":"A"}`)
	for j := range 3 {
		n.say(t, roomID, peer, j)
	}
	state(peer, "m.room.member", peer, `{"membership":"join","displayname":"New"}`)
	state(benchMe, "m.room.topic", "", `{"topic":"B"}`)
	n.say(t, roomID, peer, 3)

	parse := func(raw string) filter.Filter {
		f, err := filter.Parse([]byte(raw))
		if err != nil {
			t.Fatal(err)
		}
		return f
	}
	limit3 := parse(`{"room":{"timeline":{"limit":3}}}`)
	limit3Lazy := parse(`{"room":{"timeline":{"limit":3},"state":{"lazy_load_members":true}}}`)
	messagesOnly := parse(`{"room":{"timeline":{"limit":3,"types":["m.room.message"]}}}`)
	newest := []string{"m.room.member", "m.room.topic", "m.room.message"} // the new name, topic B, a message
	tests := []struct {
		name         string
		req          Request
		wantTimeline []string
		wantState    []string // "type/key=value" of the topic and members expected in state
		noState      []string // what must not be there
	}{
		{"incremental, limited", Request{Since: since, Filter: limit3}, newest,
			[]string{"m.room.topic=A"}, []string{"m.room.topic=B", "m.room.member/" + benchMe}},
		{"incremental, limited, lazy members", Request{Since: since, Filter: limit3Lazy}, newest,
			[]string{"m.room.topic=A", "m.room.member/" + peer}, []string{"m.room.topic=B", "m.room.member/" + peer + "=New"}},
		{"initial, limited", Request{Filter: limit3}, newest,
			[]string{"m.room.topic=A", "m.room.member/" + benchMe, "m.room.member/@r0m2:bench", "m.room.create"}, []string{"m.room.topic=B"}},
		// Heroes (the first five others) are sent with the senders; the seventh is neither.
		{"initial, limited, lazy members", Request{Filter: limit3Lazy}, newest,
			[]string{"m.room.topic=A", "m.room.member/" + benchMe, "m.room.member/" + peer, "m.room.member/@r0m2:bench", "m.room.create"},
			[]string{"m.room.topic=B", "m.room.member/@r0m7:bench", "m.room.member/" + peer + "=New"}},
		{"full_state", Request{Since: since, FullState: true, Filter: limit3}, newest,
			[]string{"m.room.topic=A", "m.room.member/" + benchMe, "m.room.create"}, []string{"m.room.topic=B"}},
		// The filter hides the new name and topic B after the timeline's start: their values
		// come in state, or the client would never learn them.
		{"incremental, messages only", Request{Since: since, Filter: messagesOnly},
			[]string{"m.room.message", "m.room.message", "m.room.message"},
			[]string{"m.room.topic=B", "m.room.member/" + peer + "=New"}, []string{"m.room.topic=A"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.req.UserID, tt.req.DeviceID = benchMe, "DEV"
			resp, err := n.sync.Sync(ctx, tt.req)
			if err != nil {
				t.Fatal(err)
			}
			jr := resp.Rooms.Join[roomID]
			if jr == nil {
				t.Fatal("the room is missing")
			}
			var timeline []string
			for _, e := range jr.Timeline.Events {
				timeline = append(timeline, e.Type)
			}
			if !slices.Equal(timeline, tt.wantTimeline) || !jr.Timeline.Limited {
				t.Fatalf("timeline %v (limited %v), want %v with a gap before it", timeline, jr.Timeline.Limited, tt.wantTimeline)
			}
			got := map[string]bool{}
			for _, e := range jr.State.Events {
				k := e.Type
				if e.StateKey != nil && *e.StateKey != "" {
					k += "/" + *e.StateKey
				}
				if v := valueOf(e.Content); v != "" {
					k += "=" + v
				}
				got[k] = true
			}
			for _, want := range tt.wantState {
				if !got[want] {
					t.Errorf("state lacks %s (has %v)", want, keys(got))
				}
			}
			for _, not := range tt.noState {
				if got[not] {
					t.Errorf("state has %s, which is not the state where the timeline starts", not)
				}
			}
		})
	}
}

// valueOf is what the test tells state events apart by: a topic, or a member's display name.
func valueOf(content json.RawMessage) string {
	var c struct {
		Topic       string `json:"topic"`
		DisplayName string `json:"displayname"`
	}
	_ = json.Unmarshal(content, &c)
	return c.Topic + c.DisplayName
}

func keys(m map[string]bool) string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return strings.Join(out, ", ")
}

// TestJoinAndLeaveInOneWindow: a user who joins a room and leaves it again between two syncs
// gets the room in rooms.leave with its state up to the leave, as for a room new to the
// client, not an empty one.
func TestJoinAndLeaveInOneWindow(t *testing.T) {
	ctx := context.Background()
	n, roomID := ownersRoom(t)
	since := n.sync.current().String()
	for _, ms := range []string{"join", "leave"} {
		if _, err := n.rooms.ChangeMembership(ctx, rooms.MembershipChange{RoomID: roomID, Sender: benchMe, Target: benchMe, Membership: ms}); err != nil {
			t.Fatal(err)
		}
		n.say(t, roomID, owner, 0)
	}
	left := leftSince(t, n, roomID, since)
	var stateTypes, timelineTypes []string
	for _, e := range left.State.Events {
		stateTypes = append(stateTypes, e.Type)
	}
	for _, e := range left.Timeline.Events {
		timelineTypes = append(timelineTypes, e.Type)
	}
	if !slices.Contains(slices.Concat(stateTypes, timelineTypes), "m.room.create") {
		t.Errorf("rooms.leave has no m.room.create: state %v, timeline %v", stateTypes, timelineTypes)
	}
	if n := len(timelineTypes); n == 0 || timelineTypes[n-1] != "m.room.member" {
		t.Errorf("the timeline %v does not end with the leave", timelineTypes)
	}
}

// TestFormerMemberLearnsNothingNew: a user who left a room with joined history visibility and
// is then banned, or re-invited and declines, gets rooms.leave with that last event of their
// own, and nothing of the room's state after they left (a topic, another user's invite).
func TestFormerMemberLearnsNothingNew(t *testing.T) {
	tests := []struct {
		name  string
		after []rooms.MembershipChange
	}{
		{"banned", []rooms.MembershipChange{{Sender: owner, Target: benchMe, Membership: "ban"}}},
		{"re-invited, declines", []rooms.MembershipChange{
			{Sender: owner, Target: benchMe, Membership: "invite"},
			{Sender: benchMe, Target: benchMe, Membership: "leave"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := context.Background()
			n, roomID := ownersRoom(t)
			change := membershipChanger(t, n, roomID)
			key := ""
			send := func(evType, content string) {
				t.Helper()
				if _, err := n.rooms.Send(ctx, rooms.Proto{RoomID: roomID, Sender: owner, Type: evType, StateKey: &key,
					Content: json.RawMessage(content)}, rooms.SendOptions{}); err != nil {
					t.Fatal(err)
				}
			}
			send("m.room.history_visibility", `{"history_visibility":"joined"}`)
			change(rooms.MembershipChange{Sender: benchMe, Target: benchMe, Membership: "join"})
			n.say(t, roomID, owner, 0)
			change(rooms.MembershipChange{Sender: benchMe, Target: benchMe, Membership: "leave"})
			since := n.sync.current().String()
			send("m.room.topic", `{"topic":"SECRET"}`)
			change(rooms.MembershipChange{Sender: owner, Target: "@carol:bench", Membership: "invite"})
			for _, c := range tt.after {
				change(c)
			}
			left := leftSince(t, n, roomID, since)
			body, _ := json.Marshal(left)
			if strings.Contains(string(body), "SECRET") || strings.Contains(string(body), "@carol:bench") {
				t.Errorf("rooms.leave shows what happened after the user left: %s", body)
			}
			last := tt.after[len(tt.after)-1]
			if n := len(left.Timeline.Events); n == 0 || left.Timeline.Events[n-1].Sender != last.Sender ||
				left.Timeline.Events[n-1].Type != "m.room.member" {
				t.Errorf("the timeline does not end with the user's own %s: %s", last.Membership, body)
			}
		})
	}
}

// TestDeviceListsTellFormerMembersNothing: device_lists (and /keys/changes) of a user who
// left a room, or was only ever invited to it, name none of those who joined or left it
// after: a former member would otherwise learn its members whenever they liked.
func TestDeviceListsTellFormerMembersNothing(t *testing.T) {
	tests := []struct {
		name   string
		before []rooms.MembershipChange // benchMe's stay, ended by the last
		banned bool                     // the stay ends after the token: owner is then left
	}{
		{"banned", []rooms.MembershipChange{
			{Sender: benchMe, Target: benchMe, Membership: "join"},
			{Sender: owner, Target: benchMe, Membership: "ban"}}, true},
		{"declined an invite", []rooms.MembershipChange{
			{Sender: owner, Target: benchMe, Membership: "invite"},
			{Sender: benchMe, Target: benchMe, Membership: "leave"}}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := context.Background()
			n, roomID := ownersRoom(t)
			change := membershipChanger(t, n, roomID)
			changes := tt.before
			if tt.banned {
				change(changes[0])
				changes = changes[1:]
			}
			since := n.sync.current().String()
			for _, c := range changes {
				change(c)
			}
			for _, later := range []string{"@carol:bench", "@dave:bench"} {
				change(rooms.MembershipChange{Sender: later, Target: later, Membership: "join"})
			}
			change(rooms.MembershipChange{Sender: "@dave:bench", Target: "@dave:bench", Membership: "leave"})
			lists, err := n.sync.DeviceListChanges(ctx, benchMe, since, "")
			if err != nil {
				t.Fatal(err)
			}
			named := slices.Concat(lists.Changed, lists.Left)
			if slices.Contains(named, "@carol:bench") || slices.Contains(named, "@dave:bench") {
				t.Errorf("device lists %+v name users who came after benchMe was gone", lists)
			}
			if tt.banned && !slices.Contains(lists.Left, owner) {
				t.Errorf("device lists %+v: the owner, shared until the ban, is not left", lists)
			}
		})
	}
}

// TestDeviceListsJoinAndLeaveInOneWindow: a user who joined a room and left it again between
// two tokens no longer shares it with its members: they are left, not changed.
func TestDeviceListsJoinAndLeaveInOneWindow(t *testing.T) {
	ctx := context.Background()
	n, roomID := ownersRoom(t)
	change := membershipChanger(t, n, roomID)
	since := n.sync.current().String()
	change(rooms.MembershipChange{Sender: benchMe, Target: benchMe, Membership: "join"})
	change(rooms.MembershipChange{Sender: benchMe, Target: benchMe, Membership: "leave"})
	lists, err := n.sync.DeviceListChanges(ctx, benchMe, since, "")
	if err != nil {
		t.Fatal(err)
	}
	if slices.Contains(lists.Changed, owner) || !slices.Contains(lists.Left, owner) {
		t.Errorf("device lists %+v: want the owner left, not changed", lists)
	}
}

// TestInviteStateAsInvited: an invitee sees the room's stripped state as it was when they
// were invited, with their inviter's member event; a name set after is the room's business
// until they join.
func TestInviteStateAsInvited(t *testing.T) {
	ctx := context.Background()
	n, roomID := ownersRoom(t)
	key := ""
	name := func(name string) {
		t.Helper()
		if _, err := n.rooms.Send(ctx, rooms.Proto{RoomID: roomID, Sender: owner, Type: "m.room.name", StateKey: &key,
			Content: json.RawMessage(`{"name":"` + name + `"}`)}, rooms.SendOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	name("Before the invite")
	membershipChanger(t, n, roomID)(rooms.MembershipChange{Sender: owner, Target: benchMe, Membership: "invite"})
	name("SECRET after the invite")
	resp, err := n.sync.Sync(ctx, Request{UserID: benchMe, DeviceID: "DEV"})
	if err != nil {
		t.Fatal(err)
	}
	invited := resp.Rooms.Invite[roomID]
	if invited == nil {
		t.Fatal("the room is not in rooms.invite")
	}
	body, _ := json.Marshal(invited.InviteState)
	if strings.Contains(string(body), "SECRET") || !strings.Contains(string(body), "Before the invite") {
		t.Errorf("invite_state %s: want the name as it was at the invite", body)
	}
	if !strings.Contains(string(body), `"state_key":"`+owner+`"`) {
		t.Errorf("invite_state %s: want the inviter's member event", body)
	}
}

// leftSince is the room's entry in rooms.leave of benchMe's sync since the token.
func leftSince(t *testing.T, n *benchNode, roomID, since string) *LeftRoom {
	t.Helper()
	resp, err := n.sync.Sync(context.Background(), Request{UserID: benchMe, DeviceID: "DEV", Since: since})
	if err != nil {
		t.Fatal(err)
	}
	left := resp.Rooms.Leave[roomID]
	if left == nil {
		t.Fatal("the room is not in rooms.leave")
	}
	return left
}

// membershipChanger makes membership changes in the room, failing the test on an error.
func membershipChanger(t *testing.T, n *benchNode, roomID string) func(rooms.MembershipChange) {
	return func(c rooms.MembershipChange) {
		t.Helper()
		c.RoomID = roomID
		if _, err := n.rooms.ChangeMembership(context.Background(), c); err != nil {
			t.Fatal(err)
		}
	}
}

// owner made ownersRoom, a public room on a node of its own, which benchMe is not in.
const owner = "@owner:bench"

func ownersRoom(t *testing.T) (*benchNode, string) {
	t.Helper()
	n := startBenchNode(t, nil)
	roomID, err := n.rooms.CreateRoom(context.Background(), rooms.CreateRequest{Creator: owner, Preset: "public_chat"})
	if err != nil {
		t.Fatal(err)
	}
	return n, roomID
}

// TestLazyMembersNotRedundant: with lazy-loaded members a device's next sync leaves out the
// member events its last response gave it (include_redundant_members false), and sends them
// again when it syncs again from a token whose response it may have lost, to another device,
// and when redundant ones are asked for.
func TestLazyMembersNotRedundant(t *testing.T) {
	ctx := context.Background()
	n := startBenchNode(t, nil)
	roomID := n.room(t, 0, 3, 1)
	const peer = "@r0m1:bench"
	parse := func(raw string) filter.Filter {
		f, err := filter.Parse([]byte(raw))
		if err != nil {
			t.Fatal(err)
		}
		return f
	}
	lazy := parse(`{"room":{"timeline":{"limit":5},"state":{"lazy_load_members":true}}}`)
	redundant := parse(`{"room":{"timeline":{"limit":5},"state":{"lazy_load_members":true,"include_redundant_members":true}}}`)
	// syncPeer syncs and reports whether the state carried the peer's member event.
	syncPeer := func(device, since string, f filter.Filter) (sent bool, next string) {
		t.Helper()
		resp, err := n.sync.Sync(ctx, Request{UserID: benchMe, DeviceID: device, Since: since, Filter: f})
		if err != nil {
			t.Fatal(err)
		}
		jr := resp.Rooms.Join[roomID]
		if jr == nil {
			t.Fatalf("the room is missing from the sync since %q", since)
		}
		for _, e := range jr.State.Events {
			sent = sent || (e.Type == "m.room.member" && e.StateKey != nil && *e.StateKey == peer)
		}
		return sent, resp.NextBatch
	}
	_, first := syncPeer("D1", "", lazy)
	n.say(t, roomID, peer, 1)
	if sent, _ := syncPeer("D1", first, lazy); sent {
		t.Error("the device's next sync sent the peer's member event its first one gave it")
	}
	// The same token again: the client may not have got the answer to it.
	sent, newest := syncPeer("D1", first, lazy)
	if !sent {
		t.Error("a sync from a token already answered left out the peer's member event")
	}
	n.say(t, roomID, peer, 2)
	if sent, _ := syncPeer("D2", newest, lazy); !sent {
		t.Error("another device syncing from the newest token did not get the peer's member event")
	}
	if sent, _ := syncPeer("D1", newest, redundant); !sent {
		t.Error("include_redundant_members did not get the peer's member event")
	}
}

// TestLazyMembersIncludeHeroes: with lazy-loaded members the summary's heroes' member events
// are in the state, as the spec requires (clients name a room without a name after them),
// though they sent nothing in the timeline; and once only, like any lazy member.
func TestLazyMembersIncludeHeroes(t *testing.T) {
	ctx := context.Background()
	n := startBenchNode(t, nil)
	roomID := n.room(t, 0, 4, 0) // benchMe and three members who never speak
	n.say(t, roomID, benchMe, 0) // the one event in the timeline
	lazy, err := filter.Parse([]byte(`{"room":{"timeline":{"limit":1},"state":{"lazy_load_members":true}}}`))
	if err != nil {
		t.Fatal(err)
	}
	members := func(since string) (heroes []string, sent map[string]bool, next string) {
		t.Helper()
		resp, err := n.sync.Sync(ctx, Request{UserID: benchMe, DeviceID: "D1", Since: since, Filter: lazy})
		if err != nil {
			t.Fatal(err)
		}
		jr := resp.Rooms.Join[roomID]
		if jr == nil {
			t.Fatalf("the room is missing from the sync since %q", since)
		}
		sent = map[string]bool{}
		for _, e := range jr.State.Events {
			if e.Type == "m.room.member" && e.StateKey != nil {
				sent[*e.StateKey] = true
			}
		}
		return jr.Summary.Heroes, sent, resp.NextBatch
	}
	heroes, sent, next := members("")
	if len(heroes) != 3 {
		t.Fatalf("heroes %v, want the three other members", heroes)
	}
	for _, hero := range heroes {
		if !sent[hero] {
			t.Errorf("hero %s's member event is not in the lazy-loaded state %v", hero, sent)
		}
	}
	n.say(t, roomID, benchMe, 1)
	if _, sent, _ := members(next); len(sent) > 0 {
		t.Errorf("the next sync sent the heroes' member events again: %v", sent)
	}
}
