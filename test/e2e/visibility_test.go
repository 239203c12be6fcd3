package e2e

import (
	"net/http"
	"net/url"
	"slices"
	"testing"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"
)

// TestHistoryVisibility checks m.room.history_visibility is enforced on every read path.
func TestHistoryVisibility(t *testing.T) {
	t.Parallel()
	srv := startServer(t, serverOpts{})
	t.Run("JoinedInviteeJoinLeaveForget", func(t *testing.T) { testVisibilityJoined(t, srv) })
	t.Run("SharedShowsHistoryAfterJoining", func(t *testing.T) { testVisibilityShared(t, srv) })
	t.Run("WorldReadableToStrangers", func(t *testing.T) { testVisibilityWorldReadable(t, srv) })
	t.Run("MessagesLimitZero", func(t *testing.T) { testMessagesLimitZero(t, srv) })
	t.Run("LeftRoomInSync", func(t *testing.T) { testLeftRoomInSync(t, srv) })
	t.Run("MembersAt", func(t *testing.T) { testMembersAt(t, srv) })
	t.Run("RejectedInviteInSync", func(t *testing.T) { testRejectedInviteInSync(t, srv) })
	t.Run("AwayWhileKickedInSync", func(t *testing.T) { testAwayWhileKickedInSync(t, srv) })
	t.Run("StateHiddenAsHistoryKnownAtJoin", func(t *testing.T) { testStateAtJoin(t, srv) })
}

// timelineHas reports whether a sync timeline holds a message with the body.
func timelineHas(events []*event.Event, body string) bool {
	return slices.Contains(bodies(events), body)
}

// testRejectedInviteInSync: an invitee who rejects sees only their own leave, none of the
// messages sent while they were invited and none of the room's state.
func testRejectedInviteInSync(t *testing.T, srv *server) {
	alice, bob := registerUser(t, srv, "alice"), registerUser(t, srv, "bob")
	room := alice.createRoom(t, &mautrix.ReqCreateRoom{Preset: "private_chat"})
	alice.invite(t, room, bob)
	since := bob.syncToken(t)
	alice.sendText(t, room, "sent while bob was only invited")
	_, err := bob.LeaveRoom(testCtx(t), room)
	mustOK(t, err, "reject the invite")
	resp, err := bob.FullSyncRequest(testCtx(t), mautrix.ReqSync{Since: since})
	mustOK(t, err, "sync after rejecting")
	left := resp.Rooms.Leave[room]
	if left == nil {
		t.Fatal("rejected room not in the leave section")
	}
	if timelineHas(left.Timeline.Events, "sent while bob was only invited") || len(left.State.Events) > 0 {
		t.Errorf("an invitee who never joined got %d timeline and %d state events", len(left.Timeline.Events), len(left.State.Events))
	}
}

// testAwayWhileKickedInSync: a device that syncs after its user was kicked and came back does
// not get what was said while the user was out of a "joined" room.
func testAwayWhileKickedInSync(t *testing.T, srv *server) {
	alice, bob := registerUser(t, srv, "alice"), registerUser(t, srv, "bob")
	room := roomWithVisibility(t, alice, event.HistoryVisibilityJoined)
	alice.invite(t, room, bob)
	bob.join(t, room.String(), room)
	since := bob.syncToken(t)
	_, err := alice.KickUser(testCtx(t), room, &mautrix.ReqKickUser{UserID: bob.UserID})
	mustOK(t, err, "kick")
	alice.sendText(t, room, "said while bob was out")
	alice.invite(t, room, bob)
	bob.join(t, room.String(), room)
	alice.sendText(t, room, "said after bob came back")
	resp, err := bob.FullSyncRequest(testCtx(t), mautrix.ReqSync{Since: since})
	mustOK(t, err, "sync of a device that was away")
	joined := resp.Rooms.Join[room]
	if joined == nil {
		t.Fatal("room not in the join section")
	}
	if timelineHas(joined.Timeline.Events, "said while bob was out") {
		t.Errorf("a device that was away got what was said while its user was out of the room")
	}
	if !timelineHas(joined.Timeline.Events, "said after bob came back") {
		t.Errorf("the message after bob came back is missing")
	}
}

// testStateAtJoin: a user joining a "joined" room, whose earlier history they may not read,
// still learns the room's state from sync (a member who joined, a topic set, while the
// history was hidden from them), incrementally and in a first sync; the hidden messages stay
// hidden, and the timeline says it is limited. The same holds for a topic set while they
// were out of the room.
func testStateAtJoin(t *testing.T, srv *server) {
	alice, bob, carol := registerUser(t, srv, "alice"), registerUser(t, srv, "bob"), registerUser(t, srv, "carol")
	room := roomWithVisibility(t, alice, event.HistoryVisibilityJoined)
	alice.invite(t, room, carol)
	carol.join(t, room.String(), room)
	setTopic := func(topic string) {
		_, err := alice.SendStateEvent(testCtx(t), room, event.StateTopic, "", &event.TopicEventContent{Topic: topic})
		mustOK(t, err, "set the topic")
	}
	setTopic("set while hidden")
	alice.sendText(t, room, "hidden message")
	since := bob.syncToken(t)
	alice.invite(t, room, bob)
	bob.join(t, room.String(), room)

	// carolJoined: carol's membership changed since the token, so it must be sent.
	check := func(name string, req mautrix.ReqSync, wantTopic string, carolJoined bool) {
		t.Helper()
		resp, err := bob.FullSyncRequest(testCtx(t), req)
		mustOK(t, err, name)
		joined := resp.Rooms.Join[room]
		if joined == nil {
			t.Fatalf("%s: room not in the join section", name)
		}
		state := map[string]*event.Event{}
		for _, evs := range [][]*event.Event{joined.State.Events, joined.Timeline.Events} {
			for _, e := range evs {
				if e.StateKey != nil {
					_ = e.Content.ParseRaw(e.Type)
					state[e.Type.Type+"|"+*e.StateKey] = e
				}
			}
		}
		if _, ok := state["m.room.member|"+carol.UserID.String()]; carolJoined && !ok {
			t.Errorf("%s: carol's membership, made while history was hidden from bob, is not in his state", name)
		}
		if topic, ok := state["m.room.topic|"]; !ok || topic.Content.AsTopic().Topic != wantTopic {
			t.Errorf("%s: topic %v, want %q", name, topic, wantTopic)
		}
		if timelineHas(joined.Timeline.Events, "hidden message") {
			t.Errorf("%s: bob got a message sent before he joined a \"joined\" room", name)
		}
		if !joined.Timeline.Limited {
			t.Errorf("%s: the timeline leaves hidden events out but is not limited", name)
		}
	}
	check("incremental sync", mautrix.ReqSync{Since: since}, "set while hidden", true)
	check("first sync", mautrix.ReqSync{}, "set while hidden", true)

	since = bob.syncToken(t)
	_, err := bob.LeaveRoom(testCtx(t), room)
	mustOK(t, err, "leave")
	setTopic("set while bob was out")
	alice.invite(t, room, bob)
	bob.join(t, room.String(), room)
	check("sync after rejoining", mautrix.ReqSync{Since: since}, "set while bob was out", false)
}

// testMembersAt: /members?at=token lists the members as of that token.
func testMembersAt(t *testing.T, srv *server) {
	alice, bob, carol := registerUser(t, srv, "alice"), registerUser(t, srv, "bob"), registerUser(t, srv, "carol")
	room := sharedRoom(t, alice, bob)
	before := alice.syncToken(t)
	alice.invite(t, room, carol)
	carol.join(t, room.String(), room)
	members := func(query string) []string {
		t.Helper()
		resp := roomGet(t, srv, alice, room, "/members"+query)
		resp.expectOK(t)
		var out []string
		for _, ev := range resp.Body["chunk"].([]any) {
			out = append(out, ev.(map[string]any)["state_key"].(string))
		}
		slices.Sort(out)
		return out
	}
	if got := members("?at=" + url.QueryEscape(before)); slices.Contains(got, carol.UserID.String()) {
		t.Errorf("members at a token from before carol joined: %v", got)
	}
	if got := members(""); !slices.Contains(got, carol.UserID.String()) {
		t.Errorf("current members lack carol: %v", got)
	}
	roomGet(t, srv, alice, room, "/members?at=garbage").expectError(t, http.StatusBadRequest, "M_INVALID_PARAM")

	// Under "joined", a newcomer may not look at the members from before they joined.
	private := roomWithVisibility(t, alice, event.HistoryVisibilityJoined)
	alice.sendText(t, private, "before carol") // the token's point is this message, not the change
	early := alice.syncToken(t)
	alice.invite(t, private, carol)
	carol.join(t, private.String(), private)
	roomGet(t, srv, carol, private, "/members?at="+url.QueryEscape(early)).expectError(t, http.StatusForbidden, "M_FORBIDDEN")
}

// testLeftRoomInSync: a kicked user's sync shows the room as it was when they left: the kick
// alone in an incremental sync, and none of the state set after it.
func testLeftRoomInSync(t *testing.T, srv *server) {
	alice, bob := registerUser(t, srv, "alice"), registerUser(t, srv, "bob")
	room := sharedRoom(t, alice, bob)
	for _, text := range []string{"m1", "m2", "m3"} {
		alice.sendText(t, room, text)
	}
	since := bob.syncToken(t)
	_, err := alice.KickUser(testCtx(t), room, &mautrix.ReqKickUser{UserID: bob.UserID})
	mustOK(t, err, "kick")
	_, err = alice.SendStateEvent(testCtx(t), room, event.StateRoomName, "", &event.RoomNameEventContent{Name: "secret after the kick"})
	mustOK(t, err, "rename")

	checkLeft := func(what string, req mautrix.ReqSync, wantTimeline int) {
		t.Helper()
		resp, err := bob.FullSyncRequest(testCtx(t), req)
		mustOK(t, err, what)
		left, ok := resp.Rooms.Leave[room]
		if !ok {
			t.Fatalf("%s: room not in the leave section", what)
		}
		for _, evt := range append(left.State.Events, left.Timeline.Events...) {
			if evt.Type == event.StateRoomName && evt.Content.Raw["name"] == "secret after the kick" {
				t.Errorf("%s: shows state set after the kick", what)
			}
		}
		tl := left.Timeline.Events
		if last := tl[len(tl)-1]; last.Type != event.StateMember || last.GetStateKey() != bob.UserID.String() {
			t.Errorf("%s: timeline does not end with the kick: %s", what, last.Type.Type)
		}
		if wantTimeline > 0 && (len(tl) != wantTimeline || left.Timeline.Limited) {
			t.Errorf("%s: timeline has %d events (limited %v), want only the kick", what, len(tl), left.Timeline.Limited)
		}
	}
	checkLeft("incremental sync", mautrix.ReqSync{Since: since}, 1)
	checkLeft("initial sync with include_leave", mautrix.ReqSync{FilterID: `{"room":{"include_leave":true}}`}, 0)
}

// roomWithVisibility creates a private room owned by u with the given history_visibility.
func roomWithVisibility(t *testing.T, u *user, visibility event.HistoryVisibility) id.RoomID {
	t.Helper()
	room := u.createRoom(t, &mautrix.ReqCreateRoom{Preset: "private_chat"})
	_, err := u.SendStateEvent(testCtx(t), room, event.StateHistoryVisibility, "",
		&event.HistoryVisibilityEventContent{HistoryVisibility: visibility})
	mustOK(t, err, "set history_visibility")
	return room
}

func (u *user) invite(t *testing.T, room id.RoomID, invitee *user) {
	t.Helper()
	_, err := u.InviteUser(testCtx(t), room, &mautrix.ReqInviteUser{UserID: invitee.UserID})
	mustOK(t, err, "invite "+invitee.UserID.String())
}

// roomGet is a GET of /rooms/{room}/path as u.
func roomGet(t *testing.T, srv *server, u *user, room id.RoomID, path string) rawResponse {
	t.Helper()
	return rawRequest(t, "GET", clientURL(srv, "v3/rooms/"+url.PathEscape(room.String())+path), u.AccessToken, nil)
}

// roomReads are the read endpoints of a room, with evt as the event asked about.
func roomReads(evt id.EventID) []string {
	e := url.PathEscape(evt.String())
	return []string{"/messages?dir=b", "/state", "/state/m.room.create/", "/members", "/joined_members",
		"/event/" + e, "/context/" + e}
}

func expectForbidden(t *testing.T, srv *server, u *user, room id.RoomID, paths ...string) {
	t.Helper()
	expectRefused(t, srv, u, room, http.StatusForbidden, "M_FORBIDDEN", paths...)
}

// expectHidden: a member's read of an event they may not see is the spec's 404, as for an
// event that does not exist, so the answer does not confirm the id.
func expectHidden(t *testing.T, srv *server, u *user, room id.RoomID, paths ...string) {
	t.Helper()
	expectRefused(t, srv, u, room, http.StatusNotFound, "M_NOT_FOUND", paths...)
}

func expectRefused(t *testing.T, srv *server, u *user, room id.RoomID, status int, errcode string, paths ...string) {
	t.Helper()
	for _, p := range paths {
		if resp := roomGet(t, srv, u, room, p); resp.Status != status || resp.Body["errcode"] != errcode {
			t.Errorf("GET %s as %s: %d %.200s, want %d %s", p, u.UserID, resp.Status, resp.Raw, status, errcode)
		}
	}
}

// messageBodies pages back through everything u may read of the room.
func messageBodies(t *testing.T, u *user, room id.RoomID) []string {
	t.Helper()
	events, _ := roomMessages(t, u, room, u.syncToken(t), "", mautrix.DirectionBackward, nil, 50)
	return bodies(reversed(events))
}

func testVisibilityJoined(t *testing.T, srv *server) {
	alice, bob := registerUser(t, srv, "alice"), registerUser(t, srv, "bob")
	room := roomWithVisibility(t, alice, event.HistoryVisibilityJoined)
	early := alice.sendText(t, room, "secret before the invite")
	alice.invite(t, room, bob)
	alice.sendText(t, room, "secret after the invite")

	// An invitee who never joined reads nothing (bug 1).
	expectForbidden(t, srv, bob, room, roomReads(early)...)

	bob.join(t, room.String(), room)
	alice.sendText(t, room, "after bob joined")
	if got, want := messageBodies(t, bob, room), []string{"after bob joined"}; !slices.Equal(got, want) {
		t.Errorf("bob's /messages after joining = %q, want %q", got, want)
	}
	expectHidden(t, srv, bob, room, "/event/"+url.PathEscape(early.String()), "/context/"+url.PathEscape(early.String()))
	initial := bob.syncOnce(t, 0)
	timeline := roomTimeline(initial, room)
	if got := bodies(timeline); !slices.Equal(got, []string{"after bob joined"}) {
		t.Errorf("bob's initial sync timeline bodies = %q, want only what came after his join", got)
	}
	if jr := joinedRoom(initial, room); jr == nil || !hasState(slices.Concat(jr.State.Events, timeline), event.StateCreate) {
		t.Errorf("bob's initial sync lacks the room's m.room.create")
	}

	_, err := bob.LeaveRoom(testCtx(t), room)
	mustOK(t, err, "bob leaves")
	alice.sendText(t, room, "after bob left")
	_, err = alice.SendStateEvent(testCtx(t), room, event.StateRoomName, "", &event.RoomNameEventContent{Name: "renamed"})
	mustOK(t, err, "rename")

	// A former member sees the room up to their leave, and not its current members (bug 2).
	expectForbidden(t, srv, bob, room, "/joined_members")
	if got, want := messageBodies(t, bob, room), []string{"after bob joined"}; !slices.Equal(got, want) {
		t.Errorf("bob's /messages after leaving = %q, want %q", got, want)
	}
	state, err := bob.State(testCtx(t), room)
	mustOK(t, err, "bob reads the state he left")
	if ev := state[event.StateRoomName][""]; ev != nil {
		t.Errorf("bob sees the name set after he left: %s", ev.Content.VeryRaw)
	}
	if ev := state[event.StateMember][bob.UserID.String()]; ev == nil || ev.Content.AsMember().Membership != event.MembershipLeave {
		t.Errorf("bob's own member state = %+v, want his leave", ev)
	}

	// After forgetting, nothing at all (bug 2).
	_, err = bob.ForgetRoom(testCtx(t), room)
	mustOK(t, err, "bob forgets")
	expectForbidden(t, srv, bob, room, roomReads(early)...)
}

func hasState(events []*event.Event, evType event.Type) bool {
	return slices.ContainsFunc(events, func(e *event.Event) bool { return e.Type.Type == evType.Type })
}

func testVisibilityShared(t *testing.T, srv *server) {
	alice, bob := registerUser(t, srv, "alice"), registerUser(t, srv, "bob")
	room := roomWithVisibility(t, alice, event.HistoryVisibilityShared)
	alice.sendText(t, room, "early")
	alice.invite(t, room, bob)
	expectForbidden(t, srv, bob, room, "/messages?dir=b", "/state")
	bob.join(t, room.String(), room)
	if got, want := messageBodies(t, bob, room), []string{"early"}; !slices.Equal(got, want) {
		t.Errorf("bob's /messages in a shared room = %q, want %q", got, want)
	}
}

func testVisibilityWorldReadable(t *testing.T, srv *server) {
	alice, carol := registerUser(t, srv, "alice"), registerUser(t, srv, "carol")
	room := roomWithVisibility(t, alice, event.HistoryVisibilityWorldReadable)
	alice.sendText(t, room, "for everyone")
	if got, want := messageBodies(t, carol, room), []string{"for everyone"}; !slices.Equal(got, want) {
		t.Errorf("a stranger's /messages in a world-readable room = %q, want %q", got, want)
	}
	expectForbidden(t, srv, carol, room, "/joined_members")
}

func testMessagesLimitZero(t *testing.T, srv *server) {
	alice := registerUser(t, srv, "alice")
	room := sharedRoom(t, alice)
	alice.sendText(t, room, "one")
	resp := roomGet(t, srv, alice, room, "/messages?dir=b&limit=0")
	resp.expectOK(t)
	if chunk, _ := resp.Body["chunk"].([]any); chunk == nil || len(chunk) != 0 {
		t.Errorf("/messages?limit=0 = %s, want an empty chunk", resp.Raw)
	}
}
