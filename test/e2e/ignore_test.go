package e2e

import (
	"net/http"
	"slices"
	"testing"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"
)

// testIgnoredUsers: once bob lists carol in m.ignored_user_list, neither his syncs nor his
// /messages carry her messages, her state events still come, and her invites do not; taking
// her off the list brings her new messages back.
func testIgnoredUsers(t *testing.T, srv *server) {
	alice, bob, carol := registerUser(t, srv, "alice"), registerUser(t, srv, "bob"), registerUser(t, srv, "carol")
	room := sharedRoom(t, alice, bob, carol)
	ignore := func(users ...id.UserID) {
		t.Helper()
		list := map[string]any{}
		for _, u := range users {
			list[u.String()] = map[string]any{}
		}
		mustOK(t, bob.SetAccountData(testCtx(t), event.AccountDataIgnoredUserList.Type, map[string]any{"ignored_users": list}), "set the ignore list")
	}
	root := alice.sendText(t, room, "a thread")
	ignore(carol.UserID)
	since := bob.syncToken(t)
	spoke := carol.sendText(t, room, "carol speaks")
	reply := carol.send(t, room, event.EventMessage, relatedTo("carol's reply", event.RelThread, root, nil))
	// Her new name is a state event, her member event, in every room she is in.
	mustOK(t, carol.SetDisplayName(testCtx(t), "Carol the Ignored"), "carol changes her name")
	alice.sendText(t, room, "alice speaks")
	other := carol.createRoom(t, &mautrix.ReqCreateRoom{Preset: "private_chat", Invite: []id.UserID{bob.UserID}})

	resp, err := bob.FullSyncRequest(testCtx(t), mautrix.ReqSync{Since: since, FilterID: `{"room":{"timeline":{"limit":50}}}`})
	mustOK(t, err, "bob's sync")
	tl := roomTimeline(resp, room)
	if got := bodies(tl); !slices.Equal(got, []string{"alice speaks"}) {
		t.Errorf("bob's timeline holds %v, want only alice's message", got)
	}
	if !slices.ContainsFunc(tl, func(e *event.Event) bool { return e.Type == event.StateMember && e.Sender == carol.UserID }) {
		t.Errorf("an ignored user's state event is missing from the timeline")
	}
	if _, invited := resp.Rooms.Invite[other]; invited {
		t.Errorf("an invite from an ignored user reached bob")
	}
	history, _ := roomMessages(t, bob, room, resp.NextBatch, "", mautrix.DirectionBackward, nil, 50)
	if slices.Contains(bodies(history), "carol speaks") {
		t.Errorf("/messages holds an ignored user's message")
	}
	_, err = bob.GetEvent(testCtx(t), room, spoke)
	expectMatrixError(t, err, http.StatusNotFound, "M_NOT_FOUND")
	relations, err := bob.GetRelations(testCtx(t), room, root, &mautrix.ReqGetRelations{})
	mustOK(t, err, "relations")
	if slices.Contains(eventIDs(relations.Chunk), reply) {
		t.Errorf("/relations holds an ignored user's reply")
	}

	ignore()
	since = resp.NextBatch
	carol.sendText(t, room, "carol again")
	// The same kind of invite, made the same way, which bob's sync shows now: the one above
	// was held back, not merely not there yet.
	again := carol.createRoom(t, &mautrix.ReqCreateRoom{Preset: "private_chat", Invite: []id.UserID{bob.UserID}})
	resp, err = bob.FullSyncRequest(testCtx(t), mautrix.ReqSync{Since: since})
	mustOK(t, err, "bob's sync after unignoring")
	if got := bodies(roomTimeline(resp, room)); !slices.Contains(got, "carol again") {
		t.Errorf("after unignoring carol, bob's timeline holds %v", got)
	}
	if _, invited := resp.Rooms.Invite[again]; !invited {
		t.Errorf("after unignoring carol, her invite did not reach bob")
	}
}
