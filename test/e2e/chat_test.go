package e2e

import (
	"context"
	"fmt"
	"maps"
	"math"
	"net/http"
	"net/http/httptrace"
	"slices"
	"sync"
	"testing"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"
)

// testThreeUsersChat: a direct chat between two users and a group room of
// three, with messages in both directions seen by everyone through /sync.
func testThreeUsersChat(t *testing.T, srv *server) {
	var users []*user
	for _, name := range []string{"alice", "bob", "charlie"} {
		registered := registerUser(t, srv, name)
		// Continue on a second device obtained with m.login.password.
		u := registered.login(t, srv)
		if u.DeviceID == registered.DeviceID {
			t.Errorf("login reused device %s of registration", u.DeviceID)
		}
		who, err := u.Whoami(testCtx(t))
		mustOK(t, err, "whoami")
		if who.UserID != registered.UserID || who.DeviceID != u.DeviceID {
			t.Errorf("whoami = %+v, want %s on %s", who, registered.UserID, u.DeviceID)
		}
		u.syncOnce(t, 0)
		users = append(users, u)
	}
	alice, bob, charlie := users[0], users[1], users[2]

	dm := alice.createRoom(t, &mautrix.ReqCreateRoom{
		Preset: "trusted_private_chat", IsDirect: true, Invite: []id.UserID{bob.UserID},
	})
	var invite event.MemberEventContent
	mustOK(t, alice.StateEvent(testCtx(t), dm, event.StateMember, bob.UserID.String(), &invite), "read bob's invite")
	if invite.Membership != event.MembershipInvite || !invite.IsDirect {
		t.Errorf("bob's member event in the direct chat = %+v, want invite with is_direct", invite)
	}
	bob.syncUntil(t, "the direct chat invite", func(r *mautrix.RespSync) bool { return r.Rooms.Invite[dm] != nil })
	bob.join(t, dm.String(), dm)

	const name, topic = "Tea Party", "Why is a raven like a writing-desk?"
	group := alice.createRoom(t, &mautrix.ReqCreateRoom{Preset: "private_chat", Name: name, Topic: topic})
	for _, u := range []*user{bob, charlie} {
		_, err := alice.InviteUser(testCtx(t), group, &mautrix.ReqInviteUser{UserID: u.UserID})
		mustOK(t, err, "invite to group")
		u.syncUntil(t, "the group invite", func(r *mautrix.RespSync) bool { return r.Rooms.Invite[group] != nil })
		u.join(t, group.String(), group)
	}

	sent := map[string]id.UserID{} // body -> sender
	send := func(u *user, room id.RoomID, body string) {
		u.sendText(t, room, body)
		sent[body] = u.UserID
	}
	send(alice, dm, "dm: hello bob")
	send(bob, dm, "dm: hello alice")
	for _, u := range users {
		send(u, group, "group: hello from "+u.Localpart)
	}

	// Every user must see every message of the others, with the right sender.
	for _, u := range users {
		want := map[id.RoomID][]string{group: nil}
		for _, other := range users {
			if other != u {
				want[group] = append(want[group], "group: hello from "+other.Localpart)
			}
		}
		switch u {
		case alice:
			want[dm] = []string{"dm: hello alice"}
		case bob:
			want[dm] = []string{"dm: hello bob"}
		}
		for body, evt := range u.waitForMessages(t, want) {
			if sender, ok := sent[body]; ok && evt.Sender != sender {
				t.Errorf("%s sees %q from %s, want %s", u.UserID, body, evt.Sender, sender)
			}
		}
	}

	expectJoinedMembers(t, charlie, group, alice, bob, charlie)
	expectJoinedMembers(t, bob, dm, alice, bob)
	expectJoinedRooms(t, alice, dm, group)
	expectJoinedRooms(t, bob, dm, group)
	expectJoinedRooms(t, charlie, group)
	checkGroupState(t, charlie, group, name, topic, alice, bob, charlie)
	checkDirectChatState(t, bob, dm, bob)
}

func expectJoinedMembers(t *testing.T, viewer *user, room id.RoomID, members ...*user) {
	t.Helper()
	resp, err := viewer.JoinedMembers(testCtx(t), room)
	mustOK(t, err, "joined_members")
	got := slices.Sorted(maps.Keys(resp.Joined))
	if !slices.Equal(got, userIDsOf(members)) {
		t.Errorf("joined_members of %s = %v, want %v", room, got, userIDsOf(members))
	}
}

func expectJoinedRooms(t *testing.T, u *user, rooms ...id.RoomID) {
	t.Helper()
	resp, err := u.JoinedRooms(testCtx(t))
	mustOK(t, err, "joined_rooms")
	got, want := slices.Sorted(slices.Values(resp.JoinedRooms)), slices.Sorted(slices.Values(rooms))
	if !slices.Equal(got, want) {
		t.Errorf("joined_rooms of %s = %v, want %v", u.UserID, got, want)
	}
}

func userIDsOf(users []*user) []id.UserID {
	ids := make([]id.UserID, len(users))
	for i, u := range users {
		ids[i] = u.UserID
	}
	slices.Sort(ids)
	return ids
}

// checkGroupState reads the full room state and checks what createRoom and
// the joins put there.
func checkGroupState(t *testing.T, viewer *user, room id.RoomID, name, topic string, members ...*user) {
	t.Helper()
	state, err := viewer.State(testCtx(t), room)
	mustOK(t, err, "room state")
	if ev := state[event.StateRoomName][""]; ev == nil || ev.Content.AsRoomName().Name != name {
		t.Errorf("m.room.name = %+v, want %q", ev, name)
	}
	if ev := state[event.StateTopic][""]; ev == nil || ev.Content.AsTopic().Topic != topic {
		t.Errorf("m.room.topic = %+v, want %q", ev, topic)
	}
	if ev := state[event.StateCreate][""]; ev == nil || ev.Content.AsCreate().RoomVersion != "10" {
		t.Errorf("m.room.create = %+v, want room_version 10", ev)
	}
	var joined []id.UserID
	for key, ev := range state[event.StateMember] {
		if ev.Content.AsMember().Membership == event.MembershipJoin {
			joined = append(joined, id.UserID(key))
		}
	}
	slices.Sort(joined)
	if !slices.Equal(joined, userIDsOf(members)) {
		t.Errorf("joined members in state = %v, want %v", joined, userIDsOf(members))
	}
}

// checkDirectChatState: trusted_private_chat is invite-only and gives the
// invitee the creator's power level.
func checkDirectChatState(t *testing.T, viewer *user, room id.RoomID, invitee *user) {
	t.Helper()
	var rules event.JoinRulesEventContent
	mustOK(t, viewer.StateEvent(testCtx(t), room, event.StateJoinRules, "", &rules), "join rules")
	if rules.JoinRule != event.JoinRuleInvite {
		t.Errorf("direct chat join_rule = %q, want invite", rules.JoinRule)
	}
	var pl event.PowerLevelsEventContent
	mustOK(t, viewer.StateEvent(testCtx(t), room, event.StatePowerLevels, "", &pl), "power levels")
	if pl.Users[invitee.UserID] != 100 {
		t.Errorf("invitee power level in trusted_private_chat = %d, want 100 (users: %v)", pl.Users[invitee.UserID], pl.Users)
	}
}

// syncSettled advances u.since until u's own sync has seen member join
// the room, so later syncs do not pick up the join.
func syncSettled(t *testing.T, u *user, room id.RoomID, member id.UserID) {
	t.Helper()
	u.syncUntil(t, member.String()+" joined", func(r *mautrix.RespSync) bool {
		jr := joinedRoom(r, room)
		if jr == nil {
			return false
		}
		for _, evt := range slices.Concat(jr.State.Events, jr.Timeline.Events) {
			if evt.Type.Type == event.StateMember.Type && evt.GetStateKey() == member.String() &&
				evt.Content.Raw["membership"] == string(event.MembershipJoin) {
				return true
			}
		}
		return false
	})
}

// testLongPollSync: a /sync long-poll that is already waiting must wake up
// with a message sent after it was issued, also when its timeout is larger
// than a Go Duration holds (it once wrapped round and answered at once).
func testLongPollSync(t *testing.T, srv *server) {
	for _, timeout := range []int{30000, math.MaxInt64} {
		t.Run(fmt.Sprint(timeout), func(t *testing.T) { longPollWakes(t, srv, timeout) })
	}
}

func longPollWakes(t *testing.T, srv *server, timeout int) {
	alice, bob := registerUser(t, srv, "alice"), registerUser(t, srv, "bob")
	room := sharedRoom(t, alice, bob)
	syncSettled(t, alice, room, bob.UserID)

	type result struct {
		resp *mautrix.RespSync
		err  error
	}
	issued := make(chan struct{})
	var once sync.Once
	trace := &httptrace.ClientTrace{WroteRequest: func(httptrace.WroteRequestInfo) { once.Do(func() { close(issued) }) }}
	longPoll := func(ctx context.Context) <-chan result {
		done := make(chan result, 1)
		go func() {
			resp, err := alice.FullSyncRequest(ctx, mautrix.ReqSync{Since: alice.since, Timeout: timeout})
			done <- result{resp, err}
		}()
		return done
	}

	ctx := testCtx(t)
	done := longPoll(httptrace.WithClientTrace(ctx, trace))
	select {
	case <-issued:
	case <-ctx.Done():
		t.Fatalf("long-poll request was never written")
	}
	msg := bob.sendText(t, room, "wake up, alice")

	// Responses before the message may carry other updates, but none may be
	// empty: the long-poll must not time out with the message pending.
	for attempt := 0; ; attempt++ {
		res := <-done
		mustOK(t, res.err, "long-poll sync")
		if slices.Contains(eventIDs(roomTimeline(res.resp, room)), msg) {
			return
		}
		if res.resp.Rooms.IsZero() && res.resp.AccountData.IsZero() && res.resp.Presence.IsZero() && res.resp.ToDevice.IsZero() {
			t.Fatalf("long-poll returned an empty response instead of message %s", msg)
		}
		if attempt == 5 {
			t.Fatalf("message %s not delivered after %d long-polls", msg, attempt+1)
		}
		alice.since = res.resp.NextBatch
		done = longPoll(testCtx(t))
	}
}

// unreadCount reads the room's notification_count from a fresh full sync.
func unreadCount(t *testing.T, u *user, room id.RoomID) (int, bool) {
	resp, err := u.FullSyncRequest(testCtx(t), mautrix.ReqSync{})
	mustOK(t, err, "full sync")
	jr := joinedRoom(resp, room)
	if jr == nil || jr.UnreadNotifications == nil {
		return 0, false
	}
	return jr.UnreadNotifications.NotificationCount, true
}

func expectUnread(t *testing.T, u *user, room id.RoomID, want int) {
	t.Helper()
	waitFor(t, fmt.Sprintf("notification_count %d", want), func() (bool, string) {
		got, ok := unreadCount(t, u, room)
		return ok && got == want, fmt.Sprintf("notification_count=%d present=%v", got, ok)
	})
}

// testReceiptsAndUnread: unread notification counts follow read receipts
// and read markers.
func testReceiptsAndUnread(t *testing.T, srv *server) {
	alice, bob := registerUser(t, srv, "alice"), registerUser(t, srv, "bob")
	room := sharedRoom(t, alice, bob)
	bob.syncOnce(t, 0)

	const n = 5
	var msgs []id.EventID
	for i := range n {
		msgs = append(msgs, bob.sendText(t, room, fmt.Sprintf("unread %d", i)))
	}
	expectUnread(t, alice, room, n)

	mustOK(t, alice.MarkRead(testCtx(t), room, msgs[2]), "receipt for the third message")
	expectUnread(t, alice, room, n-3)

	mustOK(t, alice.SendReceipt(testCtx(t), room, msgs[n-1], event.ReceiptTypeRead, nil), "receipt for the last message")
	expectUnread(t, alice, room, 0)
	bob.syncUntil(t, "alice's read receipt", func(r *mautrix.RespSync) bool {
		return hasReceipt(r, room, msgs[n-1], alice.UserID)
	})

	last := bob.sendText(t, room, "one more")
	expectUnread(t, alice, room, 1)
	// A request refused for one marker moves none of them.
	err := alice.SetReadMarkers(testCtx(t), room, map[string]any{"m.fully_read": "$nope", "m.read": last})
	expectMatrixError(t, err, http.StatusNotFound, "M_NOT_FOUND")
	expectUnread(t, alice, room, 1)
	mustOK(t, alice.SetReadMarkers(testCtx(t), room, map[string]any{"m.fully_read": last, "m.read": last}), "read_markers")
	expectUnread(t, alice, room, 0)
	var fullyRead event.FullyReadEventContent
	mustOK(t, alice.GetRoomAccountData(testCtx(t), room, event.AccountDataFullyRead.Type, &fullyRead), "m.fully_read")
	if fullyRead.EventID != last {
		t.Errorf("m.fully_read = %s, want %s", fullyRead.EventID, last)
	}
}

// hasReceipt reports whether the sync carries an m.read receipt by reader for evtID.
func hasReceipt(resp *mautrix.RespSync, room id.RoomID, evtID id.EventID, reader id.UserID) bool {
	jr := joinedRoom(resp, room)
	if jr == nil {
		return false
	}
	for _, evt := range jr.Ephemeral.Events {
		if evt.Type.Type != event.EphemeralEventReceipt.Type {
			continue
		}
		byType, _ := evt.Content.Raw[evtID.String()].(map[string]any)
		readers, _ := byType[string(event.ReceiptTypeRead)].(map[string]any)
		if _, ok := readers[reader.String()]; ok {
			return true
		}
	}
	return false
}

// testIdempotentSend: a retried PUT with the same transaction id must not
// create a second event.
func testIdempotentSend(t *testing.T, srv *server) {
	alice, bob := registerUser(t, srv, "alice"), registerUser(t, srv, "bob")
	room := sharedRoom(t, alice, bob)
	const txn = "fixed-txn-1"
	content := map[string]any{"msgtype": "m.text", "body": "said only once"}
	send := func(u *user) id.EventID {
		resp, err := u.SendMessageEvent(testCtx(t), room, event.EventMessage, content, mautrix.ReqSendEvent{TransactionID: txn})
		mustOK(t, err, "send with fixed txn id")
		return resp.EventID
	}
	first, second := send(alice), send(alice)
	if first != second {
		t.Errorf("same txn id gave two event ids: %s and %s", first, second)
	}
	if other := send(bob); other == first {
		t.Errorf("another user's txn id %q was treated as alice's", txn)
	}
	// The id is scoped to the endpoint, whose path names the event type.
	custom, err := alice.SendMessageEvent(testCtx(t), room, event.NewEventType("org.example.custom"), content, mautrix.ReqSendEvent{TransactionID: txn})
	mustOK(t, err, "send another event type with the same txn id")
	if custom.EventID == first {
		t.Errorf("txn id %q for another event type returned the m.room.message %s", txn, first)
	}

	events, _ := roomMessages(t, alice, room, alice.syncToken(t), "", mautrix.DirectionBackward, nil, 50)
	var fromAlice int
	for _, evt := range events {
		if msgBody(evt) == "said only once" && evt.Sender == alice.UserID {
			fromAlice++
		}
	}
	if fromAlice != 1 {
		t.Errorf("history holds %d copies of alice's message, want 1", fromAlice)
	}
}
