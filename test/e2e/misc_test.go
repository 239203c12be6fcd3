package e2e

import (
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"
)

func testVersions(t *testing.T, srv *server) {
	alice := registerUser(t, srv, "alice")
	versions, err := alice.Versions(testCtx(t))
	mustOK(t, err, "/versions")
	if !versions.Contains(mautrix.SpecV111) {
		t.Errorf("/versions = %v, want v1.11 listed", versions.Versions)
	}
	r0 := rawRequest(t, "GET", clientURL(srv, "r0/account/whoami"), alice.AccessToken, nil)
	r0.expectOK(t)
	if r0.Body["user_id"] != alice.UserID.String() {
		t.Errorf("r0 whoami = %s, want user_id %s", r0.Raw, alice.UserID)
	}
}

func testCapabilities(t *testing.T, srv *server) {
	caps, err := registerUser(t, srv, "alice").Capabilities(testCtx(t))
	mustOK(t, err, "/capabilities")
	if caps.RoomVersions == nil || caps.RoomVersions.Default != "10" {
		t.Fatalf("m.room_versions = %+v, want default 10", caps.RoomVersions)
	}
	if _, ok := caps.RoomVersions.Available["10"]; !ok {
		t.Errorf("room version 10 not in available %v", caps.RoomVersions.Available)
	}
}

func testPushRules(t *testing.T, srv *server) {
	alice := registerUser(t, srv, "alice")
	resp := rawRequest(t, "GET", clientURL(srv, "v3/pushrules/"), alice.AccessToken, nil)
	resp.expectOK(t)
	global, _ := resp.Body["global"].(map[string]any)
	ruleIDs := func(kind string) []string {
		var ids []string
		rules, _ := global[kind].([]any)
		for _, r := range rules {
			rule, _ := r.(map[string]any)
			if ruleID, ok := rule["rule_id"].(string); ok {
				ids = append(ids, ruleID)
			}
		}
		return ids
	}
	for kind, want := range map[string]string{"override": ".m.rule.master", "underride": ".m.rule.message"} {
		if !slices.Contains(ruleIDs(kind), want) {
			t.Errorf("global %s rules %v lack %s", kind, ruleIDs(kind), want)
		}
	}
	// The master rule has no conditions, written as [] as in the spec's default rules.
	override, _ := global["override"].([]any)
	if master, _ := override[0].(map[string]any); master["rule_id"] != ".m.rule.master" || master["conditions"] == nil {
		t.Errorf("first override rule %v, want .m.rule.master with \"conditions\": []", master)
	}
	// Without the trailing slash: the same answer, not a redirect.
	for path, key := range map[string]string{"v3/pushrules": "global", "v3/pushrules/global": "override"} {
		resp := rawRequest(t, "GET", clientURL(srv, path), alice.AccessToken, nil)
		if _, ok := resp.Body[key]; resp.Status != http.StatusOK || !ok {
			t.Errorf("GET %s: %d %.120s, want 200 with %q", path, resp.Status, resp.Raw, key)
		}
	}
}

func testFilters(t *testing.T, srv *server) {
	alice := registerUser(t, srv, "alice")
	room := sharedRoom(t, alice)
	var sent []string
	for i := range 10 {
		sent = append(sent, fmt.Sprintf("filtered %d", i))
		alice.sendText(t, room, sent[i])
	}
	filter := &mautrix.Filter{Room: &mautrix.RoomFilter{
		Timeline: &mautrix.FilterPart{Limit: 7, Types: []event.Type{event.EventMessage}},
	}}
	created, err := alice.CreateFilter(testCtx(t), filter)
	mustOK(t, err, "create filter")
	var stored mautrix.Filter
	_, err = alice.MakeRequest(testCtx(t), http.MethodGet, alice.BuildClientURL("v3", "user", alice.UserID, "filter", created.FilterID), nil, &stored)
	mustOK(t, err, "get filter")
	if tl := stored.Room.Timeline; tl == nil || tl.Limit != 7 || len(tl.Types) != 1 || tl.Types[0].Type != event.EventMessage.Type {
		t.Fatalf("stored filter = %+v, want timeline limit 7 of m.room.message", stored.Room)
	}

	resp, err := alice.FullSyncRequest(testCtx(t), mautrix.ReqSync{FilterID: created.FilterID})
	mustOK(t, err, "sync with filter")
	timeline := roomTimeline(resp, room)
	if len(timeline) != 7 {
		t.Fatalf("filtered timeline has %d events, want 7", len(timeline))
	}
	expectBodies(t, timeline, sent[3:])
}

func testProfile(t *testing.T, srv *server) {
	alice, bob := registerUser(t, srv, "alice"), registerUser(t, srv, "bob")
	const name = "Alice Liddell"
	mustOK(t, alice.SetDisplayName(testCtx(t), name), "set displayname")
	got, err := bob.GetDisplayName(testCtx(t), alice.UserID)
	mustOK(t, err, "get displayname")
	profile, err := bob.GetProfile(testCtx(t), alice.UserID)
	mustOK(t, err, "get profile")
	if got.DisplayName != name || profile.DisplayName != name {
		t.Errorf("displayname = %q, profile displayname = %q, want %q", got.DisplayName, profile.DisplayName, name)
	}

	// A room-specific name (Element's /myroomnick) is the member's own event sent as state;
	// changing someone else's membership that way is refused.
	room := sharedRoom(t, alice, bob)
	_, err = alice.SendStateEvent(testCtx(t), room, event.StateMember, alice.UserID.String(),
		&event.MemberEventContent{Membership: event.MembershipJoin, Displayname: "Alice in this room"})
	mustOK(t, err, "room nickname")
	if memberContent(t, bob, room, alice).Displayname != "Alice in this room" {
		t.Errorf("bob does not see alice's room nickname")
	}
	_, err = alice.SendStateEvent(testCtx(t), room, event.StateMember, bob.UserID.String(),
		&event.MemberEventContent{Membership: event.MembershipLeave})
	expectMatrixError(t, err, http.StatusForbidden, "M_FORBIDDEN")
	_, err = alice.SendStateEvent(testCtx(t), room, event.StateMember, alice.UserID.String(),
		map[string]any{"membership": "join", "displayname": 5})
	expectMatrixError(t, err, http.StatusBadRequest, "M_BAD_JSON")
}

// withPasswordAuth performs a request guarded by user-interactive auth: the
// first attempt must be refused with 401 and flows, the second carries
// m.login.password auth with the session from the first.
func withPasswordAuth(t *testing.T, u *user, method, url string, body map[string]any) error {
	t.Helper()
	data, err := u.MakeRequest(testCtx(t), method, url, body, nil)
	var httpErr mautrix.HTTPError
	if !errors.As(err, &httpErr) || !httpErr.IsStatus(http.StatusUnauthorized) {
		t.Fatalf("%s %s without auth: got %v, want 401 with UIA flows", method, url, err)
	}
	var uia mautrix.RespUserInteractive
	if err := json.Unmarshal(data, &uia); err != nil || !uia.HasSingleStageFlow(mautrix.AuthTypePassword) {
		t.Fatalf("UIA response %s lacks an m.login.password flow", data)
	}
	authed := maps.Clone(body)
	authed["auth"] = map[string]any{
		"type":       mautrix.AuthTypePassword,
		"identifier": map[string]any{"type": mautrix.IdentifierTypeUser, "user": u.Localpart},
		"password":   u.Password,
		"session":    uia.Session,
	}
	_, err = u.MakeRequest(testCtx(t), method, url, authed, nil)
	return err
}

func deviceIDs(t *testing.T, u *user) []id.DeviceID {
	t.Helper()
	resp, err := u.GetDevicesInfo(testCtx(t))
	mustOK(t, err, "list devices")
	var ids []id.DeviceID
	for _, d := range resp.Devices {
		ids = append(ids, d.DeviceID)
	}
	return ids
}

func expectTokenDead(t *testing.T, u *user) {
	t.Helper()
	_, err := u.Whoami(testCtx(t))
	expectMatrixError(t, err, http.StatusUnauthorized, "M_UNKNOWN_TOKEN")
}

func testDevices(t *testing.T, srv *server) {
	alice := registerUser(t, srv, "alice")
	second := alice.login(t, srv)
	if ids := deviceIDs(t, alice); !slices.Contains(ids, alice.DeviceID) || !slices.Contains(ids, second.DeviceID) {
		t.Fatalf("devices = %v, want both %s and %s", ids, alice.DeviceID, second.DeviceID)
	}
	const name = "Looking glass"
	mustOK(t, alice.SetDeviceInfo(testCtx(t), second.DeviceID, &mautrix.ReqDeviceInfo{DisplayName: name}), "rename device")
	info, err := alice.GetDeviceInfo(testCtx(t), second.DeviceID)
	mustOK(t, err, "get device")
	if info.DisplayName != name {
		t.Errorf("device display_name = %q, want %q", info.DisplayName, name)
	}
	err = withPasswordAuth(t, alice, http.MethodDelete, alice.BuildClientURL("v3", "devices", second.DeviceID), map[string]any{})
	mustOK(t, err, "delete device")
	if ids := deviceIDs(t, alice); slices.Contains(ids, second.DeviceID) {
		t.Errorf("deleted device %s still listed: %v", second.DeviceID, ids)
	}
	expectTokenDead(t, second)
	// A device already gone is logged out: 200, as the spec has it.
	err = withPasswordAuth(t, alice, http.MethodDelete, alice.BuildClientURL("v3", "devices", second.DeviceID), map[string]any{})
	mustOK(t, err, "delete a deleted device")

	// POST /delete_devices logs several out at once (Element's session manager uses it).
	third, fourth := alice.login(t, srv), alice.login(t, srv)
	err = withPasswordAuth(t, alice, http.MethodPost, alice.BuildClientURL("v3", "delete_devices"),
		map[string]any{"devices": []id.DeviceID{third.DeviceID, fourth.DeviceID, "NEVERSEEN"}})
	mustOK(t, err, "delete_devices")
	expectTokenDead(t, third)
	expectTokenDead(t, fourth)
	if ids := deviceIDs(t, alice); !slices.Equal(ids, []id.DeviceID{alice.DeviceID}) {
		t.Errorf("devices after delete_devices = %v, want only %s", ids, alice.DeviceID)
	}
	rawRequest(t, "POST", clientURL(srv, "v3/delete_devices"), alice.AccessToken, []byte(`{}`)).
		expectError(t, http.StatusBadRequest, "M_MISSING_PARAM")
	threePIDs := rawRequest(t, "GET", clientURL(srv, "v3/account/3pid"), alice.AccessToken, nil)
	threePIDs.expectOK(t)
	if strings.TrimSpace(string(threePIDs.Raw)) != `{"threepids":[]}` {
		t.Errorf("GET /account/3pid = %s, want no third-party ids", threePIDs.Raw)
	}
}

// testDeactivate: a deactivated account leaves its rooms, every device is logged out, it
// cannot log in again, and its name cannot be registered again.
func testDeactivate(t *testing.T, srv *server) {
	alice, bob := registerUser(t, srv, "alice"), registerUser(t, srv, "bob")
	room := sharedRoom(t, bob, alice)
	invitedTo := bob.createRoom(t, &mautrix.ReqCreateRoom{Preset: "private_chat"})
	bob.invite(t, invitedTo, alice)
	second := alice.login(t, srv)
	resp := rawRequest(t, "POST", clientURL(srv, "v3/account/deactivate"), alice.AccessToken, []byte(`{}`))
	if resp.Status != http.StatusUnauthorized || resp.Body["flows"] == nil {
		t.Fatalf("deactivate without auth: %d %s, want 401 with UIA flows", resp.Status, resp.Raw)
	}
	err := withPasswordAuth(t, alice, http.MethodPost, alice.BuildClientURL("v3", "account", "deactivate"), map[string]any{})
	mustOK(t, err, "deactivate")
	expectTokenDead(t, alice)
	expectTokenDead(t, second)
	_, err = newClient(t, srv, "", "").Login(testCtx(t), passwordLogin(alice.Localpart, alice.Password))
	expectMatrixError(t, err, http.StatusForbidden, "M_USER_DEACTIVATED")
	// A wrong password does not tell a guesser the account is closed.
	_, err = newClient(t, srv, "", "").Login(testCtx(t), passwordLogin(alice.Localpart, "wrong"))
	expectMatrixError(t, err, http.StatusForbidden, "M_FORBIDDEN")
	_, err = newClient(t, srv, "", "").RegisterDummy(testCtx(t), &mautrix.ReqRegister[any]{Username: alice.Localpart, Password: "pw"})
	expectMatrixError(t, err, http.StatusBadRequest, "M_USER_IN_USE")
	for _, r := range []id.RoomID{room, invitedTo} {
		member := roomGet(t, srv, bob, r, "/state/m.room.member/"+url.PathEscape(alice.UserID.String()))
		if member.Status != http.StatusOK || member.Body["membership"] != "leave" {
			t.Errorf("alice's member event in %s after deactivation: %d %s, want leave", r, member.Status, member.Raw)
		}
	}
}

func testLogout(t *testing.T, srv *server) {
	alice := registerUser(t, srv, "alice")
	second := alice.login(t, srv)
	logout(t, second)
	expectTokenDead(t, second)
	_, err := alice.Whoami(testCtx(t))
	mustOK(t, err, "the other device's token after logout")

	// A long poll that outlives its token answers 401, at once, not when it times out.
	polling := alice.login(t, srv)
	expectLongPollEnds(t, polling, func() { logout(t, polling) })

	// Logging in again as the same device replaces the device's token: that ends it too.
	relogging := alice.login(t, srv)
	expectLongPollEnds(t, relogging, func() {
		req := passwordLogin(alice.Localpart, alice.Password)
		req.DeviceID = relogging.DeviceID
		_, err := newClient(t, srv, "", "").Login(testCtx(t), req)
		mustOK(t, err, "log in again as the same device")
	})
	expectTokenDead(t, relogging)
}

func logout(t *testing.T, u *user) {
	t.Helper()
	_, err := u.Logout(testCtx(t))
	mustOK(t, err, "logout")
}

// expectLongPollEnds starts a long poll as poller, calls endToken, which must end the poll's
// token (on the same node or another), and expects the poll to answer 401 well before its
// timeout.
func expectLongPollEnds(t *testing.T, poller *user, endToken func()) {
	t.Helper()
	since := poller.syncToken(t)
	done := make(chan error, 1)
	go func() {
		_, err := poller.FullSyncRequest(testCtx(t), mautrix.ReqSync{Since: since, Timeout: 20000})
		done <- err
	}()
	time.Sleep(300 * time.Millisecond) // let the poll start waiting; a 401 at once would pass too
	endToken()
	select {
	case err := <-done:
		expectMatrixError(t, err, http.StatusUnauthorized, "M_UNKNOWN_TOKEN")
	case <-time.After(10 * time.Second): // half the poll's timeout: ending the token must end it
		t.Fatal("a long poll outlived its token")
	}
}

func testPasswordChange(t *testing.T, srv *server) {
	alice := registerUser(t, srv, "alice")
	other := alice.login(t, srv)
	const newPassword = "through the looking glass"
	err := withPasswordAuth(t, alice, http.MethodPost, alice.BuildClientURL("v3", "account", "password"),
		map[string]any{"new_password": newPassword, "logout_devices": true})
	mustOK(t, err, "change password")
	_, err = newClient(t, srv, "", "").Login(testCtx(t), passwordLogin(alice.Localpart, alice.Password))
	expectMatrixError(t, err, http.StatusForbidden, "M_FORBIDDEN")
	loginAs(t, srv, alice.Localpart, newPassword)
	_, err = alice.Whoami(testCtx(t))
	mustOK(t, err, "the requesting device's token after a password change")
	expectTokenDead(t, other)
}

func testRegisterAvailable(t *testing.T, srv *server) {
	alice := registerUser(t, srv, "alice")
	_, err := alice.RegisterAvailable(testCtx(t), uniqueName("free"))
	mustOK(t, err, "register/available for a free name")
	_, err = alice.RegisterAvailable(testCtx(t), alice.Localpart)
	expectMatrixError(t, err, http.StatusBadRequest, "M_USER_IN_USE")
}

func testLeaveForget(t *testing.T, srv *server) {
	alice, bob := registerUser(t, srv, "alice"), registerUser(t, srv, "bob")
	room := sharedRoom(t, alice, bob)
	_, err := bob.LeaveRoom(testCtx(t), room)
	mustOK(t, err, "leave")
	expectJoinedRooms(t, bob)
	expectJoinedMembers(t, alice, room, alice)
	_, err = bob.SendText(testCtx(t), room, "after leaving")
	expectMatrixError(t, err, http.StatusForbidden, "M_FORBIDDEN")
	_, err = bob.ForgetRoom(testCtx(t), room)
	mustOK(t, err, "forget")
	readHistory := func() error {
		_, err := bob.Messages(testCtx(t), room, "", "", mautrix.DirectionBackward, nil, 10)
		return err
	}
	expectMatrixError(t, readHistory(), http.StatusForbidden, "M_FORBIDDEN")

	// Forgetting lasts until bob comes back: after another stay he may read up to his leave.
	_, err = alice.InviteUser(testCtx(t), room, &mautrix.ReqInviteUser{UserID: bob.UserID})
	mustOK(t, err, "invite again")
	bob.join(t, room.String(), room)
	bob.sendText(t, room, "back again")
	_, err = bob.LeaveRoom(testCtx(t), room)
	mustOK(t, err, "leave again")
	mustOK(t, readHistory(), "history after coming back and leaving")
}

// memberContent reads target's member event in the room as the viewer sees it.
func memberContent(t *testing.T, viewer *user, room id.RoomID, target *user) event.MemberEventContent {
	t.Helper()
	var member event.MemberEventContent
	mustOK(t, viewer.StateEvent(testCtx(t), room, event.StateMember, target.UserID.String(), &member), "member state")
	return member
}

// membershipOf reads target's membership in the room as the viewer sees it.
func membershipOf(t *testing.T, viewer *user, room id.RoomID, target *user) event.Membership {
	t.Helper()
	return memberContent(t, viewer, room, target).Membership
}

func testKickBanUnban(t *testing.T, srv *server) {
	alice, bob := registerUser(t, srv, "alice"), registerUser(t, srv, "bob")
	room := alice.createRoom(t, &mautrix.ReqCreateRoom{Preset: "public_chat"})
	bob.join(t, room.String(), room)
	expectMembership := func(want event.Membership) {
		t.Helper()
		if got := membershipOf(t, alice, room, bob); got != want {
			t.Fatalf("bob's membership = %q, want %q", got, want)
		}
	}

	_, err := bob.KickUser(testCtx(t), room, &mautrix.ReqKickUser{UserID: alice.UserID})
	expectMatrixError(t, err, http.StatusForbidden, "M_FORBIDDEN")
	_, err = alice.KickUser(testCtx(t), room, &mautrix.ReqKickUser{UserID: bob.UserID, Reason: "out"})
	mustOK(t, err, "kick")
	expectMembership(event.MembershipLeave)
	bob.join(t, room.String(), room)
	expectMembership(event.MembershipJoin)

	_, err = alice.BanUser(testCtx(t), room, &mautrix.ReqBanUser{UserID: bob.UserID})
	mustOK(t, err, "ban")
	expectMembership(event.MembershipBan)
	_, err = bob.JoinRoom(testCtx(t), room.String(), nil)
	expectMatrixError(t, err, http.StatusForbidden, "M_FORBIDDEN")
	expectMembership(event.MembershipBan)

	_, err = alice.UnbanUser(testCtx(t), room, &mautrix.ReqUnbanUser{UserID: bob.UserID})
	mustOK(t, err, "unban")
	expectMembership(event.MembershipLeave)
	bob.join(t, room.String(), room)
	expectMembership(event.MembershipJoin)
}

func testAliases(t *testing.T, srv *server) {
	alice, bob := registerUser(t, srv, "alice"), registerUser(t, srv, "bob")
	local := uniqueName("lounge")
	alias := id.NewRoomAlias(local, serverName)
	room := alice.createRoom(t, &mautrix.ReqCreateRoom{Preset: "public_chat", RoomAliasName: local})

	resp := rawRequest(t, "GET", clientURL(srv, "v3/directory/room/"+url.PathEscape(alias.String())), "", nil)
	resp.expectOK(t)
	if resp.Body["room_id"] != room.String() {
		t.Errorf("directory lookup of %s = %s, want room_id %s", alias, resp.Raw, room)
	}
	bob.join(t, alias.String(), room)
	var canonical event.CanonicalAliasEventContent
	mustOK(t, bob.StateEvent(testCtx(t), room, event.StateCanonicalAlias, "", &canonical), "canonical alias")
	if canonical.Alias != alias {
		t.Errorf("m.room.canonical_alias = %q, want %q", canonical.Alias, alias)
	}
	_, err := bob.CreateRoom(testCtx(t), &mautrix.ReqCreateRoom{RoomAliasName: local})
	expectMatrixError(t, err, http.StatusBadRequest, "M_ROOM_IN_USE")
	rawRequest(t, "PUT", clientURL(srv, "v3/directory/room/"+url.PathEscape(alias.String())), alice.AccessToken,
		[]byte(`{"room_id":"`+room.String()+`"}`)).expectError(t, http.StatusConflict, "M_UNKNOWN")

	// The room's aliases are listed to members, and an alias deleted is gone from the list.
	second := id.NewRoomAlias(uniqueName("annex"), serverName)
	rawRequest(t, "PUT", clientURL(srv, "v3/directory/room/"+url.PathEscape(second.String())), alice.AccessToken,
		[]byte(`{"room_id":"`+room.String()+`"}`)).expectOK(t)
	listed := func() []string {
		t.Helper()
		var body struct {
			Aliases []string `json:"aliases"`
		}
		resp := rawRequest(t, "GET", clientURL(srv, "v3/rooms/"+url.PathEscape(room.String())+"/aliases"), bob.AccessToken, nil)
		resp.expectOK(t)
		if err := json.Unmarshal(resp.Raw, &body); err != nil {
			t.Fatal(err)
		}
		slices.Sort(body.Aliases)
		return body.Aliases
	}
	if got, want := listed(), slices.Sorted(slices.Values([]string{second.String(), alias.String()})); !slices.Equal(got, want) {
		t.Errorf("room aliases %v, want %v", got, want)
	}
	rawRequest(t, "DELETE", clientURL(srv, "v3/directory/room/"+url.PathEscape(second.String())), alice.AccessToken, nil).expectOK(t)
	if got := listed(); !slices.Equal(got, []string{alias.String()}) {
		t.Errorf("room aliases after deleting %s: %v, want only %s", second, got, alias)
	}

	// An alias may be deleted by the member who made it without power over the room's
	// canonical alias, and not by another member without that power.
	mine, hers := id.NewRoomAlias(uniqueName("bobs"), serverName), id.NewRoomAlias(uniqueName("alices"), serverName)
	for a, owner := range map[id.RoomAlias]*user{mine: bob, hers: alice} {
		rawRequest(t, "PUT", clientURL(srv, "v3/directory/room/"+url.PathEscape(a.String())), owner.AccessToken,
			[]byte(`{"room_id":"`+room.String()+`"}`)).expectOK(t)
	}
	rawRequest(t, "DELETE", clientURL(srv, "v3/directory/room/"+url.PathEscape(hers.String())), bob.AccessToken, nil).
		expectError(t, http.StatusForbidden, "M_FORBIDDEN")
	rawRequest(t, "DELETE", clientURL(srv, "v3/directory/room/"+url.PathEscape(mine.String())), bob.AccessToken, nil).expectOK(t)
	if got := listed(); !slices.Equal(got, slices.Sorted(slices.Values([]string{alias.String(), hers.String()}))) {
		t.Errorf("room aliases after bob deleted his own: %v, want %s and %s", got, alias, hers)
	}
	outsider := registerUser(t, srv, "outsider")
	rawRequest(t, "GET", clientURL(srv, "v3/rooms/"+url.PathEscape(room.String())+"/aliases"), outsider.AccessToken, nil).
		expectError(t, http.StatusForbidden, "M_FORBIDDEN")

	// A room nickname sent to the room named by its alias is the same as by its id.
	rawRequest(t, "PUT", clientURL(srv, fmt.Sprintf("v3/rooms/%s/state/m.room.member/%s", url.PathEscape(alias.String()),
		url.PathEscape(bob.UserID.String()))), bob.AccessToken, []byte(`{"membership":"join","displayname":"Bob here"}`)).expectOK(t)
	if memberContent(t, alice, room, bob).Displayname != "Bob here" {
		t.Errorf("alice does not see the nickname bob set through the alias")
	}
}

// testRejectedInviteSync: a rejected invite comes back in rooms.leave with lists, not nulls:
// strict clients (ruma's Vec) fail the whole sync on a null where the spec has an array.
func testRejectedInviteSync(t *testing.T, srv *server) {
	alice, bob := registerUser(t, srv, "alice"), registerUser(t, srv, "bob")
	room := alice.createRoom(t, &mautrix.ReqCreateRoom{Invite: []id.UserID{bob.UserID}})
	since := bob.syncToken(t)
	_, err := bob.LeaveRoom(testCtx(t), room)
	mustOK(t, err, "reject the invite")
	resp := rawRequest(t, "GET", clientURL(srv, "v3/sync?timeout=0&since="+url.QueryEscape(since)), bob.AccessToken, nil)
	resp.expectOK(t)
	var body struct {
		Rooms struct {
			Leave map[string]map[string]struct {
				Events *[]json.RawMessage `json:"events"`
			} `json:"leave"`
		} `json:"rooms"`
	}
	if err := json.Unmarshal(resp.Raw, &body); err != nil {
		t.Fatal(err)
	}
	left, ok := body.Rooms.Leave[room.String()]
	if !ok {
		t.Fatalf("the rejected invite is not in rooms.leave: %s", resp.Raw)
	}
	for _, section := range []string{"timeline", "state", "account_data"} {
		if left[section].Events == nil {
			t.Errorf("rooms.leave's %s has no events list: %s", section, resp.Raw)
		}
	}
}

// testCreateRoomInvites: a user named twice in createRoom's invite list is invited once.
func testCreateRoomInvites(t *testing.T, srv *server) {
	alice, bob := registerUser(t, srv, "alice"), registerUser(t, srv, "bob")
	room := alice.createRoom(t, &mautrix.ReqCreateRoom{Invite: []id.UserID{bob.UserID, bob.UserID}})
	events, _ := roomMessages(t, alice, room, alice.syncToken(t), "", mautrix.DirectionBackward, nil, 50)
	invites := 0
	for _, ev := range events {
		if ev.Type == event.StateMember && ev.GetStateKey() == bob.UserID.String() {
			invites++
		}
	}
	if invites != 1 {
		t.Errorf("bob has %d member events in the new room, want 1 invite", invites)
	}
}

func testRedact(t *testing.T, srv *server) {
	alice, bob := registerUser(t, srv, "alice"), registerUser(t, srv, "bob")
	room := sharedRoom(t, alice, bob)
	secret := alice.sendText(t, room, "a secret")
	redaction, err := alice.RedactEvent(testCtx(t), room, secret, mautrix.ReqRedact{Reason: "oops"})
	mustOK(t, err, "redact")

	evt, err := bob.GetEvent(testCtx(t), room, secret)
	mustOK(t, err, "get redacted event")
	if evt.Type.Type != event.EventMessage.Type || len(evt.Content.Raw) != 0 {
		t.Errorf("redacted event = type %s content %s, want m.room.message with empty content", evt.Type.Type, evt.Content.VeryRaw)
	}
	red, err := bob.GetEvent(testCtx(t), room, redaction.EventID)
	mustOK(t, err, "get redaction")
	// Both places: room version 11 reads content.redacts, older clients the top level.
	if red.Type.Type != event.EventRedaction.Type || red.Redacts != secret || red.Content.Raw["redacts"] != secret.String() {
		t.Errorf("redaction event = type %s redacts %q content %s, want it to redact %s", red.Type.Type, red.Redacts, red.Content.VeryRaw, secret)
	}

	// In room version 11 a redaction of the redaction still says what it redacted.
	v11 := alice.createRoom(t, &mautrix.ReqCreateRoom{Preset: "private_chat", RoomVersion: "11"})
	msg := alice.sendText(t, v11, "in a version 11 room")
	first, err := alice.RedactEvent(testCtx(t), v11, msg, mautrix.ReqRedact{})
	mustOK(t, err, "redact in version 11")
	_, err = alice.RedactEvent(testCtx(t), v11, first.EventID, mautrix.ReqRedact{})
	mustOK(t, err, "redact the redaction")
	red, err = alice.GetEvent(testCtx(t), v11, first.EventID)
	mustOK(t, err, "get the redacted redaction")
	if red.Content.Raw["redacts"] != msg.String() {
		t.Errorf("redacted version 11 redaction content %s, want redacts %s kept", red.Content.VeryRaw, msg)
	}
}

func testContext(t *testing.T, srv *server) {
	alice, silent := registerUser(t, srv, "alice"), registerUser(t, srv, "silent")
	room := sharedRoom(t, alice, silent) // silent joins and never sends
	var ids []id.EventID
	for i := range 5 {
		ids = append(ids, alice.sendText(t, room, fmt.Sprintf("context %d", i)))
	}
	resp, err := alice.Context(testCtx(t), room, ids[2], nil, 4)
	mustOK(t, err, "/context")
	switch {
	case resp.Event == nil || resp.Event.ID != ids[2]:
		t.Errorf("context event = %+v, want %s", resp.Event, ids[2])
	case len(resp.EventsBefore) == 0 || resp.EventsBefore[0].ID != ids[1]:
		t.Errorf("events_before = %v, want it to start with %s", eventIDs(resp.EventsBefore), ids[1])
	case len(resp.EventsAfter) == 0 || resp.EventsAfter[0].ID != ids[3]:
		t.Errorf("events_after = %v, want it to start with %s", eventIDs(resp.EventsAfter), ids[3])
	case len(resp.EventsBefore)+len(resp.EventsAfter) > 4:
		t.Errorf("context returned %d+%d events, limit was 4", len(resp.EventsBefore), len(resp.EventsAfter))
	}
	_, err = alice.Context(testCtx(t), room, "$doesnotexist", nil, 4)
	expectMatrixError(t, err, http.StatusNotFound, "M_NOT_FOUND")
	testContextState(t, srv, alice, room, ids, silent)
}

// The state of a /context is the room's at the last event it returns, not the room's now,
// through the filter; lazy loading narrows its members alone.
func testContextState(t *testing.T, srv *server, alice *user, room id.RoomID, ids []id.EventID, silent *user) {
	bob := registerUser(t, srv, "bob")
	_, err := alice.SendStateEvent(testCtx(t), room, event.StateRoomName, "", &event.RoomNameEventContent{Name: "renamed later"})
	mustOK(t, err, "rename")
	_, err = alice.InviteUser(testCtx(t), room, &mautrix.ReqInviteUser{UserID: bob.UserID})
	mustOK(t, err, "invite")
	bob.join(t, room.String(), room)

	stateOf := func(filter *mautrix.FilterPart) map[string]bool {
		resp, err := alice.Context(testCtx(t), room, ids[2], filter, 2)
		mustOK(t, err, "/context")
		keys := map[string]bool{}
		for _, e := range resp.State {
			keys[e.Type.Type+"|"+*e.StateKey] = true
			if e.Type == event.StateRoomName && e.Content.Raw["name"] == "renamed later" {
				t.Errorf("the state names the room as it was renamed after the events returned")
			}
		}
		return keys
	}
	bobMember := event.StateMember.Type + "|" + bob.UserID.String()
	aliceMember := event.StateMember.Type + "|" + alice.UserID.String()
	create := event.StateCreate.Type + "|"
	silentMember := event.StateMember.Type + "|" + silent.UserID.String()
	if keys := stateOf(nil); keys[bobMember] || !keys[aliceMember] || !keys[silentMember] || !keys[create] {
		t.Errorf("state %v: want every member then and the create event, not bob, who joined after", keys)
	}
	if keys := stateOf(&mautrix.FilterPart{LazyLoadMembers: true}); !keys[create] || !keys[aliceMember] || keys[silentMember] {
		t.Errorf("lazy-loaded state %v: want the create event and the sender's membership, not the silent member's", keys)
	}
	if keys := stateOf(&mautrix.FilterPart{Types: []event.Type{event.EventMessage}}); len(keys) != 0 {
		t.Errorf("state %v through a filter of messages only: want none", keys)
	}

	// /messages lazy-loads its senders' member events as they were at the page, too.
	mustOK(t, alice.SetDisplayName(testCtx(t), "Later name"), "rename alice")
	var now event.MemberEventContent
	mustOK(t, alice.StateEvent(testCtx(t), room, event.StateMember, alice.UserID.String(), &now), "alice's member event")
	at, err := alice.Context(testCtx(t), room, ids[2], nil, 1)
	mustOK(t, err, "/context")
	page, err := alice.Messages(testCtx(t), room, at.End, "", mautrix.DirectionBackward, &mautrix.FilterPart{LazyLoadMembers: true}, 1)
	mustOK(t, err, "/messages")
	if now.Displayname != "Later name" || len(page.State) != 1 || page.State[0].Content.Raw["displayname"] == "Later name" {
		t.Errorf("a page's lazy-loaded members are %d, want 1: alice's as she was then, not %q", len(page.State), now.Displayname)
	}
}

// typingUsers returns the user ids of the room's m.typing event in a sync,
// and whether there was one.
func typingUsers(resp *mautrix.RespSync, room id.RoomID) ([]string, bool) {
	jr := joinedRoom(resp, room)
	if jr == nil {
		return nil, false
	}
	for _, evt := range jr.Ephemeral.Events {
		if evt.Type.Type == event.EphemeralEventTyping.Type {
			var users []string
			list, _ := evt.Content.Raw["user_ids"].([]any)
			for _, u := range list {
				users = append(users, fmt.Sprint(u))
			}
			return users, true
		}
	}
	return nil, false
}

func testTyping(t *testing.T, srv *server) {
	alice, bob := registerUser(t, srv, "alice"), registerUser(t, srv, "bob")
	room := sharedRoom(t, alice, bob)
	bob.syncOnce(t, 0)
	_, err := alice.UserTyping(testCtx(t), room, true, 30*time.Second)
	mustOK(t, err, "typing on")
	bob.syncUntil(t, "alice typing", func(r *mautrix.RespSync) bool {
		users, ok := typingUsers(r, room)
		return ok && slices.Contains(users, alice.UserID.String())
	})
	_, err = alice.UserTyping(testCtx(t), room, false, 0)
	mustOK(t, err, "typing off")
	bob.syncUntil(t, "alice no longer typing", func(r *mautrix.RespSync) bool {
		users, ok := typingUsers(r, room)
		return ok && !slices.Contains(users, alice.UserID.String())
	})

	// Leaving the room ends one's typing there at once, not when its timeout runs out.
	alice.syncOnce(t, 0)
	// The longest timeout a client can write, which once wrapped round to an indicator that
	// ended at once; clamped to 2 minutes, it outlasts syncUntil's 30 s.
	rawRequest(t, "PUT", clientURL(srv, fmt.Sprintf("v3/rooms/%s/typing/%s", url.PathEscape(room.String()), url.PathEscape(bob.UserID.String()))),
		bob.AccessToken, []byte(`{"typing":true,"timeout":9223372036854775807}`)).expectOK(t)
	alice.syncUntil(t, "bob typing", func(r *mautrix.RespSync) bool {
		users, ok := typingUsers(r, room)
		return ok && slices.Contains(users, bob.UserID.String())
	})
	_, err = bob.LeaveRoom(testCtx(t), room)
	mustOK(t, err, "bob leaves")
	alice.syncUntil(t, "bob no longer typing after leaving", func(r *mautrix.RespSync) bool {
		users, ok := typingUsers(r, room)
		return ok && !slices.Contains(users, bob.UserID.String())
	})
}

// testDotStateKeys: a state key "." or ".." is a state key like any other, sent as a literal
// path segment or escaped, and never another resource (ServeMux would clean the path and
// redirect "." to the state key "").
func testDotStateKeys(t *testing.T, srv *server) {
	alice := registerUser(t, srv, "alice")
	room := sharedRoom(t, alice)
	state := func(key string) string {
		return clientURL(srv, fmt.Sprintf("v3/rooms/%s/state/org.example.dots/%s", url.PathEscape(room.String()), key))
	}
	for _, tc := range []struct{ sent, read, value string }{
		{".", "%2E", "dot"},
		{"..", "%2E%2E", "dotdot"},
		{"a/../b", "a%2F..%2Fb", "path"},
	} {
		rawRequest(t, "PUT", state(tc.sent), alice.AccessToken, []byte(`{"which":"`+tc.value+`"}`)).expectOK(t)
		if got := rawRequest(t, "GET", state(tc.read), alice.AccessToken, nil); got.Status != http.StatusOK || got.Body["which"] != tc.value {
			t.Errorf("state key sent as %q, read as %q: %d %s, want %s", tc.sent, tc.read, got.Status, got.Raw, tc.value)
		}
	}
	rawRequest(t, "GET", state(""), alice.AccessToken, nil).expectError(t, http.StatusNotFound, "M_NOT_FOUND")
}

// testPresence: presence is not tracked, but setting one's own is accepted (clients do it on
// every start), another's or a bogus state refused, and everyone reads as offline.
func testPresence(t *testing.T, srv *server) {
	alice, bob := registerUser(t, srv, "alice"), registerUser(t, srv, "bob")
	status := func(u *user) string {
		return clientURL(srv, "v3/presence/"+url.PathEscape(u.UserID.String())+"/status")
	}
	rawRequest(t, "PUT", status(alice), alice.AccessToken, []byte(`{"presence":"online"}`)).expectOK(t)
	rawRequest(t, "PUT", status(bob), alice.AccessToken, []byte(`{"presence":"online"}`)).expectError(t, http.StatusForbidden, "M_FORBIDDEN")
	rawRequest(t, "PUT", status(alice), alice.AccessToken, []byte(`{"presence":"dancing"}`)).expectError(t, http.StatusBadRequest, "M_INVALID_PARAM")
	resp := rawRequest(t, "GET", status(alice), bob.AccessToken, nil)
	resp.expectOK(t)
	if resp.Body["presence"] != "offline" {
		t.Errorf("presence = %s, want offline", resp.Raw)
	}
}

// testRestrictedJoin: a restricted room lets members of the rooms its join rules name join
// without an invite (a space's rooms, as Element makes them), and no one else.
func testRestrictedJoin(t *testing.T, srv *server) {
	alice, bob, carol := registerUser(t, srv, "alice"), registerUser(t, srv, "bob"), registerUser(t, srv, "carol")
	space := sharedRoom(t, alice, bob)
	empty := ""
	room := alice.createRoom(t, &mautrix.ReqCreateRoom{Preset: "private_chat", InitialState: []*event.Event{{
		Type: event.StateJoinRules, StateKey: &empty,
		Content: event.Content{Parsed: &event.JoinRulesEventContent{JoinRule: event.JoinRuleRestricted,
			Allow: []event.JoinRuleAllow{{Type: event.JoinRuleAllowRoomMembership, RoomID: space}}}},
	}}})
	bob.join(t, room.String(), room)
	var member event.MemberEventContent
	mustOK(t, bob.StateEvent(testCtx(t), room, event.StateMember, bob.UserID.String(), &member), "bob's member event")
	if member.Membership != event.MembershipJoin || member.JoinAuthorisedViaUsersServer != alice.UserID {
		t.Errorf("bob's member event = %+v, want a join admitted by %s", member, alice.UserID)
	}
	_, err := carol.JoinRoomByID(testCtx(t), room)
	expectMatrixError(t, err, http.StatusForbidden, "M_FORBIDDEN")
}

// testKnocking: in a room whose join rule is knock, a user asks to join and sees the room's
// stripped state in rooms.knock; the members see the knock and may invite them in or reject
// it with a kick; a knock elsewhere, or a join without an invite, is refused.
func testKnocking(t *testing.T, srv *server) {
	alice, bob, carol := registerUser(t, srv, "alice"), registerUser(t, srv, "bob"), registerUser(t, srv, "carol")
	empty := ""
	room := alice.createRoom(t, &mautrix.ReqCreateRoom{Name: "Knock here", InitialState: []*event.Event{{
		Type: event.StateJoinRules, StateKey: &empty,
		Content: event.Content{Parsed: &event.JoinRulesEventContent{JoinRule: event.JoinRuleKnock}},
	}}})
	public := alice.createRoom(t, &mautrix.ReqCreateRoom{Preset: "public_chat"})
	bob.syncOnce(t, 0)
	alice.syncOnce(t, 0)

	_, err := bob.JoinRoomByID(testCtx(t), room)
	expectMatrixError(t, err, http.StatusForbidden, "M_FORBIDDEN")
	_, err = bob.KnockRoom(testCtx(t), public.String(), &mautrix.ReqKnockRoom{})
	expectMatrixError(t, err, http.StatusForbidden, "M_FORBIDDEN")
	knocked, err := bob.KnockRoom(testCtx(t), room.String(), &mautrix.ReqKnockRoom{Reason: "let me in"})
	mustOK(t, err, "knock")
	if knocked.RoomID != room {
		t.Errorf("knock answered room %s, want %s", knocked.RoomID, room)
	}

	bob.syncUntil(t, "the room in rooms.knock", func(r *mautrix.RespSync) bool {
		kr := r.Rooms.Knock[room]
		if kr == nil {
			return false
		}
		var name, own bool
		for _, ev := range kr.State.Events {
			name = name || ev.Type == event.StateRoomName
			own = own || (ev.Type == event.StateMember && ev.GetStateKey() == bob.UserID.String() &&
				ev.Content.Raw["membership"] == "knock" && ev.Content.Raw["reason"] == "let me in")
		}
		if !name || !own {
			t.Errorf("knock_state lacks the room's name or bob's knock: %d events", len(kr.State.Events))
		}
		return true
	})
	alice.syncUntil(t, "bob's knock", func(r *mautrix.RespSync) bool {
		return memberEventIn(r, room, bob.UserID, bob.UserID, "knock")
	})
	_, err = alice.InviteUser(testCtx(t), room, &mautrix.ReqInviteUser{UserID: bob.UserID})
	mustOK(t, err, "invite the knocking user")
	bob.syncUntil(t, "the invite after knocking", func(r *mautrix.RespSync) bool { return r.Rooms.Invite[room] != nil })
	bob.join(t, room.String(), room)

	_, err = carol.KnockRoom(testCtx(t), room.String(), &mautrix.ReqKnockRoom{})
	mustOK(t, err, "carol knocks")
	carol.syncUntil(t, "the room in rooms.knock", func(r *mautrix.RespSync) bool { return r.Rooms.Knock[room] != nil })
	_, err = carol.ForgetRoom(testCtx(t), room)
	expectMatrixError(t, err, http.StatusBadRequest, "M_UNKNOWN")
	_, err = alice.KickUser(testCtx(t), room, &mautrix.ReqKickUser{UserID: carol.UserID, Reason: "not now"})
	mustOK(t, err, "reject carol's knock")
	carol.syncUntil(t, "the rejected knock in rooms.leave", func(r *mautrix.RespSync) bool { return r.Rooms.Leave[room] != nil })

	// A knock is withdrawn by leaving.
	_, err = carol.KnockRoom(testCtx(t), room.String(), &mautrix.ReqKnockRoom{})
	mustOK(t, err, "carol knocks again")
	carol.syncUntil(t, "the room in rooms.knock again", func(r *mautrix.RespSync) bool { return r.Rooms.Knock[room] != nil })
	_, err = carol.LeaveRoom(testCtx(t), room)
	mustOK(t, err, "carol withdraws her knock")
	carol.syncUntil(t, "the withdrawn knock in rooms.leave", func(r *mautrix.RespSync) bool {
		return r.Rooms.Leave[room] != nil && r.Rooms.Knock[room] == nil
	})
	alice.syncUntil(t, "carol's withdrawal", func(r *mautrix.RespSync) bool {
		return memberEventIn(r, room, carol.UserID, carol.UserID, "leave") // hers, not the kick
	})
}

// memberEventIn reports whether a sync's timeline of the room holds a member event for the
// user, sent by sender, with that membership.
func memberEventIn(r *mautrix.RespSync, room id.RoomID, user, sender id.UserID, membership string) bool {
	jr := r.Rooms.Join[room]
	if jr == nil {
		return false
	}
	for _, ev := range jr.Timeline.Events {
		if ev.Type == event.StateMember && ev.GetStateKey() == user.String() && ev.Sender == sender &&
			ev.Content.Raw["membership"] == membership {
			return true
		}
	}
	return false
}

// testThreadNotifications: a sync whose filter asks for unread_thread_notifications gets the
// room's counts split: the main timeline's in unread_notifications, each thread's beside it;
// a receipt in the thread clears the thread's alone.
func testThreadNotifications(t *testing.T, srv *server) {
	alice, bob := registerUser(t, srv, "alice"), registerUser(t, srv, "bob")
	room := sharedRoom(t, alice, bob)
	root := alice.sendText(t, room, "a thread starts here")
	var last id.EventID
	for _, body := range []string{"reply 1", "reply 2"} {
		resp, err := alice.SendMessageEvent(testCtx(t), room, event.EventMessage, map[string]any{"msgtype": "m.text", "body": body,
			"m.relates_to": map[string]any{"rel_type": "m.thread", "event_id": root}})
		mustOK(t, err, "reply in the thread")
		last = resp.EventID
	}
	// Threads do not nest: one started off a reply in a thread is refused as the spec asks.
	_, err := alice.SendMessageEvent(testCtx(t), room, event.EventMessage, map[string]any{"msgtype": "m.text", "body": "nested",
		"m.relates_to": map[string]any{"rel_type": "m.thread", "event_id": last}})
	expectMatrixError(t, err, http.StatusBadRequest, "M_UNKNOWN")
	filter := url.QueryEscape(`{"room":{"timeline":{"unread_thread_notifications":true}}}`)
	counts := func() (main int, threads map[string]int) {
		resp := rawRequest(t, "GET", clientURL(srv, "v3/sync?timeout=0&filter="+filter), bob.AccessToken, nil)
		resp.expectOK(t)
		var body struct {
			Rooms struct {
				Join map[string]struct {
					Unread struct {
						N int `json:"notification_count"`
					} `json:"unread_notifications"`
					Threads map[string]struct {
						N int `json:"notification_count"`
					} `json:"unread_thread_notifications"`
				} `json:"join"`
			} `json:"rooms"`
		}
		if err := json.Unmarshal(resp.Raw, &body); err != nil {
			t.Fatal(err)
		}
		jr := body.Rooms.Join[room.String()]
		threads = map[string]int{}
		for root, c := range jr.Threads {
			threads[root] = c.N
		}
		return jr.Unread.N, threads
	}
	main, threads := counts()
	if want := map[string]int{root.String(): 2}; !maps.Equal(threads, want) || main != 1 {
		t.Errorf("counts: main %d, threads %v; want the root alone in main, and %v", main, threads, want)
	}
	mainBefore := main
	mustOK(t, bob.SendReceipt(testCtx(t), room, last, event.ReceiptTypeRead, map[string]any{"thread_id": root.String()}), "thread receipt")
	main, threads = counts()
	if len(threads) != 0 || main != mainBefore {
		t.Errorf("after the thread's receipt: main %d (was %d), threads %v; want the threads cleared alone", main, mainBefore, threads)
	}
}
