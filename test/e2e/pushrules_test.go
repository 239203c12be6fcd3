package e2e

import (
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"testing"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/id"
	"maunium.net/go/mautrix/pushrules"
)

// TestPushRuleEditing drives the push rules API the way Element does: reading single rules,
// muting rooms, adding keywords, switching rules off, and checks that /sync's unread counts
// follow the user's rules.
func TestPushRuleEditing(t *testing.T) {
	t.Parallel()
	srv := startServer(t, serverOpts{})
	for _, sc := range []struct {
		name string
		run  func(*testing.T, *server)
	}{
		{"Read", testPushRuleRead},
		{"Errors", testPushRuleErrors},
		{"Order", testPushRuleOrder},
		{"MuteRoom", testPushRuleMuteRoom},
		{"Keyword", testPushRuleKeyword},
		{"MasterSwitch", testPushRuleMaster},
	} {
		t.Run(sc.name, func(t *testing.T) { sc.run(t, srv) })
	}
}

// pushRuleURL is the client URL of a push rules path such as "global/override/x/enabled".
func pushRuleURL(srv *server, path string) string {
	return clientURL(srv, "v3/pushrules/"+path)
}

func testPushRuleRead(t *testing.T, srv *server) {
	alice := registerUser(t, srv, "alice")
	// Clients read their rules from the first sync, before any has been changed.
	if !hasPushRulesData(alice.syncOnce(t, 0), ".m.rule.master") {
		t.Errorf("a fresh user's initial sync lacks the default m.push_rules")
	}
	var doc map[string]any
	mustOK(t, alice.GetAccountData(testCtx(t), "m.push_rules", &doc), "m.push_rules account data before any change")
	if global, _ := doc["global"].(map[string]any); !slices.Contains(ruleIDsOf(global["override"]), ".m.rule.master") {
		t.Errorf("GET account_data/m.push_rules = %v, want the default rules", doc)
	}
	get := func(path string) rawResponse {
		return rawRequest(t, "GET", pushRuleURL(srv, path), alice.AccessToken, nil)
	}
	enabled := get("global/override/.m.rule.master/enabled")
	enabled.expectOK(t)
	if v, ok := enabled.Body["enabled"].(bool); !ok || v || len(enabled.Body) != 1 {
		t.Errorf(".m.rule.master/enabled = %s, want {\"enabled\":false}", enabled.Raw)
	}
	actions := get("global/underride/.m.rule.message/actions")
	actions.expectOK(t)
	if acts, _ := actions.Body["actions"].([]any); len(acts) != 1 || acts[0] != "notify" || len(actions.Body) != 1 {
		t.Errorf(".m.rule.message/actions = %s, want {\"actions\":[\"notify\"]}", actions.Raw)
	}
	rule, err := alice.GetPushRule(testCtx(t), "global", pushrules.ContentRule, ".m.rule.contains_user_name")
	mustOK(t, err, "get content rule")
	if rule.Pattern != alice.Localpart || !rule.Default || !rule.Enabled {
		t.Errorf(".m.rule.contains_user_name = %+v, want the enabled default with pattern %s", rule, alice.Localpart)
	}
	global := get("global/")
	global.expectOK(t)
	if _, ok := global.Body["override"].([]any); !ok {
		t.Errorf("GET /pushrules/global/ = %s, want the ruleset", global.Raw)
	}

	get("global/content/doesnotexist").expectError(t, http.StatusNotFound, "M_NOT_FOUND")
	get("global/content/doesnotexist/enabled").expectError(t, http.StatusNotFound, "M_NOT_FOUND")
	get("global/room/.m.rule.master").expectError(t, http.StatusNotFound, "M_NOT_FOUND")
	get("bogus/x/y").expectError(t, http.StatusBadRequest, "M_INVALID_PARAM")
	get("bogus/").expectError(t, http.StatusBadRequest, "M_INVALID_PARAM")
	get("global/nokind/x").expectError(t, http.StatusBadRequest, "M_INVALID_PARAM")
	rawRequest(t, "GET", pushRuleURL(srv, "global/override/.m.rule.master"), "", nil).
		expectError(t, http.StatusUnauthorized, "M_MISSING_TOKEN")
}

func testPushRuleErrors(t *testing.T, srv *server) {
	alice := registerUser(t, srv, "alice")
	put := func(path, body string) rawResponse {
		return rawRequest(t, "PUT", pushRuleURL(srv, path), alice.AccessToken, []byte(body))
	}
	put("global/override/.m.rule.mine", `{"actions":[]}`).expectError(t, http.StatusBadRequest, "M_INVALID_PARAM")
	put("global/override/.m.rule.master", `{"actions":[]}`).expectError(t, http.StatusBadRequest, "M_INVALID_PARAM")
	put("global/override/a%2Fb", `{"actions":[]}`).expectError(t, http.StatusBadRequest, "M_INVALID_PARAM")
	put("global/nokind/x", `{"actions":[]}`).expectError(t, http.StatusBadRequest, "M_INVALID_PARAM")
	put("device/override/x", `{"actions":[]}`).expectError(t, http.StatusBadRequest, "M_INVALID_PARAM")
	put("global/override/x?before=nope", `{"actions":[]}`).expectError(t, http.StatusBadRequest, "M_INVALID_PARAM")
	put("global/override/x?after=.m.rule.master", `{"actions":[]}`).expectError(t, http.StatusBadRequest, "M_INVALID_PARAM")
	put("global/override/x", `{}`).expectError(t, http.StatusBadRequest, "M_MISSING_PARAM")
	put("global/content/x", `{"actions":["notify"]}`).expectError(t, http.StatusBadRequest, "M_MISSING_PARAM")
	put("global/override/x", `{"actions":"notify"}`).expectError(t, http.StatusBadRequest, "M_BAD_JSON")
	put("global/override/x", `{"actions":[1]}`).expectError(t, http.StatusBadRequest, "M_BAD_JSON")
	put("global/override/x", `{"actions":[],"conditions":[{"key":"type"}]}`).expectError(t, http.StatusBadRequest, "M_BAD_JSON")
	put("global/override/x", `{"actions":[`).expectError(t, http.StatusBadRequest, "M_NOT_JSON")
	put("global/override/.m.rule.master/enabled", `{}`).expectError(t, http.StatusBadRequest, "M_MISSING_PARAM")
	put("global/override/.m.rule.master/enabled", `{"enabled":"yes"}`).expectError(t, http.StatusBadRequest, "M_BAD_JSON")
	put("global/override/nope/enabled", `{"enabled":true}`).expectError(t, http.StatusNotFound, "M_NOT_FOUND")
	put("global/override/nope/actions", `{"actions":[]}`).expectError(t, http.StatusNotFound, "M_NOT_FOUND")
	put("global/override/.m.rule.master/actions", `{}`).expectError(t, http.StatusBadRequest, "M_MISSING_PARAM")

	rawRequest(t, "DELETE", pushRuleURL(srv, "global/override/nope"), alice.AccessToken, nil).
		expectError(t, http.StatusNotFound, "M_NOT_FOUND")
	rawRequest(t, "DELETE", pushRuleURL(srv, "global/override/.m.rule.master"), alice.AccessToken, nil).
		expectError(t, http.StatusBadRequest, "M_INVALID_PARAM")
	// The rules are the server's to store: clients go through this API, not account data.
	rawRequest(t, "PUT", clientURL(srv, "v3/user/"+url.PathEscape(alice.UserID.String())+"/account_data/m.push_rules"),
		alice.AccessToken, []byte(`{"global":{}}`)).expectError(t, http.StatusMethodNotAllowed, "M_BAD_JSON")
	if ids := pushRuleIDs(t, srv, alice, "override"); len(ids) == 0 || ids[0] != ".m.rule.master" || slices.Contains(ids, "x") {
		t.Errorf("override rules after refused edits = %v", ids)
	}
}

// pushRuleIDs lists the user's rules of a kind, in order, from GET /pushrules/global/.
func pushRuleIDs(t *testing.T, srv *server, u *user, kind string) []string {
	t.Helper()
	resp := rawRequest(t, "GET", pushRuleURL(srv, "global/"), u.AccessToken, nil)
	resp.expectOK(t)
	return ruleIDsOf(resp.Body[kind])
}

// ruleIDsOf lists the rule_id of each rule in a decoded JSON array of rules.
func ruleIDsOf(rules any) []string {
	list, _ := rules.([]any)
	var ids []string
	for _, r := range list {
		rule, _ := r.(map[string]any)
		if s, ok := rule["rule_id"].(string); ok {
			ids = append(ids, s)
		}
	}
	return ids
}

func testPushRuleOrder(t *testing.T, srv *server) {
	alice := registerUser(t, srv, "alice")
	put := func(ruleID, before, after string) {
		t.Helper()
		req := &mautrix.ReqPutPushRule{Before: before, After: after, Pattern: ruleID, Actions: []*pushrules.PushAction{}}
		mustOK(t, alice.PutPushRule(testCtx(t), "global", pushrules.ContentRule, ruleID, req), "put "+ruleID)
	}
	put("a", "", "")
	put("b", "", "")  // new rules go first
	put("c", "", "b") // after b
	put("d", "a", "") // before a
	put("b", "", "")  // an update keeps its place
	want := []string{"b", "c", "d", "a", ".m.rule.contains_user_name"}
	if got := pushRuleIDs(t, srv, alice, "content"); !slices.Equal(got, want) {
		t.Errorf("content rules = %v, want %v", got, want)
	}
	mustOK(t, alice.DeletePushRule(testCtx(t), "global", pushrules.ContentRule, "c"), "delete c")
	_, err := alice.GetPushRule(testCtx(t), "global", pushrules.ContentRule, "c")
	expectMatrixError(t, err, http.StatusNotFound, "M_NOT_FOUND")
	if got := pushRuleIDs(t, srv, alice, "content"); !slices.Equal(got, slices.Delete(want, 1, 2)) {
		t.Errorf("content rules after deleting c = %v", got)
	}
}

// testPushRuleMuteRoom mutes rooms both ways Element has: an override rule named after the
// room that matches its room_id, and a room rule with dont_notify.
func testPushRuleMuteRoom(t *testing.T, srv *server) {
	alice, bob := registerUser(t, srv, "alice"), registerUser(t, srv, "bob")
	muted, mutedOld, loud := sharedRoom(t, alice, bob), sharedRoom(t, alice, bob), sharedRoom(t, alice, bob)
	mustOK(t, bob.PutPushRule(testCtx(t), "global", pushrules.OverrideRule, muted.String(), &mautrix.ReqPutPushRule{
		Actions:    []*pushrules.PushAction{},
		Conditions: []*pushrules.PushCondition{{Kind: pushrules.KindEventMatch, Key: "room_id", Pattern: muted.String()}},
	}), "mute with an override rule")
	mustOK(t, bob.PutPushRule(testCtx(t), "global", pushrules.RoomRule, mutedOld.String(), &mautrix.ReqPutPushRule{
		//lint:ignore SA1019 older clients still send "dont_notify", which the server must accept
		Actions: []*pushrules.PushAction{{Action: pushrules.ActionDontNotify}},
	}), "mute with a room rule")
	rule, err := bob.GetPushRule(testCtx(t), "global", pushrules.OverrideRule, muted.String())
	mustOK(t, err, "get the mute rule")
	if !rule.Enabled || rule.Default || len(rule.Conditions) != 1 || len(rule.Actions) != 0 {
		t.Errorf("mute rule = %+v", rule)
	}
	// Sync hands the changed rules to the user's other clients.
	bob.syncUntil(t, "m.push_rules with the mute rule", func(r *mautrix.RespSync) bool {
		return hasPushRulesData(r, muted.String())
	})

	sent := map[id.RoomID][]string{}
	for _, room := range []id.RoomID{muted, mutedOld, loud} {
		sent[room] = []string{"hello in " + room.String()}
		alice.sendText(t, room, sent[room][0])
	}
	bob.waitForMessages(t, sent)
	expectUnread(t, bob, loud, 1)
	for _, room := range []id.RoomID{muted, mutedOld} {
		if n, ok := unreadCount(t, bob, room); !ok || n != 0 {
			t.Errorf("muted room %s: notification_count %d (present %v), want 0", room, n, ok)
		}
	}

	mustOK(t, bob.DeletePushRule(testCtx(t), "global", pushrules.OverrideRule, muted.String()), "unmute")
	alice.sendText(t, muted, "after unmuting")
	expectUnread(t, bob, muted, 1)
}

// hasPushRulesData reports whether the sync carries m.push_rules with the override rule.
func hasPushRulesData(resp *mautrix.RespSync, ruleID string) bool {
	for _, evt := range resp.AccountData.Events {
		global, _ := evt.Content.Raw["global"].(map[string]any)
		if evt.Type.Type == "m.push_rules" && slices.Contains(ruleIDsOf(global["override"]), ruleID) {
			return true
		}
	}
	return false
}

func testPushRuleKeyword(t *testing.T, srv *server) {
	alice, bob := registerUser(t, srv, "alice"), registerUser(t, srv, "bob")
	room := sharedRoom(t, alice, bob)
	alice.sendText(t, room, "cheese before the keyword")
	expectCounts(t, bob, room, 1, 0)

	highlight := &pushrules.PushAction{Action: pushrules.ActionSetTweak, Tweak: pushrules.TweakHighlight, Value: true}
	mustOK(t, bob.PutPushRule(testCtx(t), "global", pushrules.ContentRule, "cheese", &mautrix.ReqPutPushRule{
		Pattern: "cheese", Actions: []*pushrules.PushAction{{Action: pushrules.ActionNotify}, highlight},
	}), "add keyword")
	alice.sendText(t, room, "who ate the CHEESE?")
	alice.sendText(t, room, "cheesecake is not a keyword")
	expectCounts(t, bob, room, 3, 1)

	// Switching the keyword off through its enabled flag stops the highlights.
	mustOK(t, bob.SetPushRuleEnabled(testCtx(t), "global", pushrules.ContentRule, "cheese", false), "disable keyword")
	alice.sendText(t, room, "cheese again")
	expectCounts(t, bob, room, 4, 1)
}

// expectCounts waits until the room's notification and highlight counts are as given.
func expectCounts(t *testing.T, u *user, room id.RoomID, notifications, highlights int) {
	t.Helper()
	waitFor(t, fmt.Sprintf("%d notifications, %d highlights", notifications, highlights), func() (bool, string) {
		resp, err := u.FullSyncRequest(testCtx(t), mautrix.ReqSync{})
		mustOK(t, err, "full sync")
		jr := joinedRoom(resp, room)
		if jr == nil || jr.UnreadNotifications == nil {
			return false, "no unread_notifications"
		}
		c := jr.UnreadNotifications
		return c.NotificationCount == notifications && c.HighlightCount == highlights, fmt.Sprintf("%+v", *c)
	})
}

func testPushRuleMaster(t *testing.T, srv *server) {
	alice, bob := registerUser(t, srv, "alice"), registerUser(t, srv, "bob")
	room := sharedRoom(t, alice, bob)
	alice.sendText(t, room, "before the master switch")
	expectUnread(t, bob, room, 1)

	mustOK(t, bob.SetPushRuleEnabled(testCtx(t), "global", pushrules.OverrideRule, ".m.rule.master", true), "enable master")
	resp := rawRequest(t, "GET", pushRuleURL(srv, "global/override/.m.rule.master/enabled"), bob.AccessToken, nil)
	resp.expectOK(t)
	if resp.Body["enabled"] != true {
		t.Errorf(".m.rule.master/enabled after enabling = %s", resp.Raw)
	}
	alice.sendText(t, room, "with the master switch on")
	alice.sendText(t, room, "mentioning "+bob.Localpart)
	bob.waitForMessages(t, map[id.RoomID][]string{room: {"mentioning " + bob.Localpart}})
	expectCounts(t, bob, room, 1, 0)

	// Default rules keep their place and can be changed, not deleted.
	mustOK(t, bob.SetPushRuleEnabled(testCtx(t), "global", pushrules.OverrideRule, ".m.rule.master", false), "disable master")
	// The room has two members, so its messages fall under the one-to-one rule.
	mustOK(t, bob.PutPushRuleActions(testCtx(t), "global", pushrules.UnderrideRule, ".m.rule.room_one_to_one",
		//lint:ignore SA1019 older clients still send "dont_notify", which the server must accept
		[]*pushrules.PushAction{{Action: pushrules.ActionDontNotify}}), "quiet messages")
	acts := rawRequest(t, "GET", pushRuleURL(srv, "global/underride/.m.rule.room_one_to_one/actions"), bob.AccessToken, nil)
	acts.expectOK(t)
	if got, _ := acts.Body["actions"].([]any); len(got) != 1 || got[0] != "dont_notify" {
		t.Errorf(".m.rule.room_one_to_one/actions = %s", acts.Raw)
	}
	alice.sendText(t, room, "a quiet message")
	alice.sendText(t, room, "still highlights "+bob.Localpart)
	expectCounts(t, bob, room, 2, 1)
}
