package push

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"
	"time"
)

const (
	me     = "@alice:example.org"
	other  = "@bob:example.org"
	roomID = "!room:example.org"
)

// Evaluate decodes eventJSON and evaluates it, as the read model does for each member: malformed
// JSON notifies nobody.
func Evaluate(rules Ruleset, eventJSON []byte, c Context) Actions {
	ev, ok := Decode(eventJSON)
	if !ok {
		return Actions{}
	}
	return EvaluateDecoded(rules, ev, c)
}

// msg builds an m.room.message from bob with the given extra content JSON.
func msg(contentJSON string) string {
	return `{"type":"m.room.message","sender":"` + other + `","room_id":"` + roomID +
		`","event_id":"$e","content":` + contentJSON + `}`
}

// canNotify returns a SenderCanNotify that allows exactly the given keys.
func canNotify(keys ...string) func(string) bool {
	return func(k string) bool {
		for _, x := range keys {
			if x == k {
				return true
			}
		}
		return false
	}
}

func ctx(members int) Context {
	return Context{UserID: me, DisplayName: "Alice Liddell", MemberCount: members}
}

var (
	none      = Actions{}
	notify    = Actions{Notify: true}
	highlight = Actions{Notify: true, Highlight: true}
)

func TestEvaluateDefaults(t *testing.T) {
	withPerm := ctx(3)
	withPerm.SenderCanNotify = canNotify("room")
	noName := ctx(3)
	noName.DisplayName = ""
	queen := ctx(3)
	queen.DisplayName = "Queen of Hearts"

	tests := []struct {
		name  string
		event string
		c     Context
		want  Actions
	}{
		{"plain message, 3 members", msg(`{"msgtype":"m.text","body":"hello"}`), ctx(3), notify},
		{"plain message, 2 members (one to one)", msg(`{"msgtype":"m.text","body":"hello"}`), ctx(2), notify},
		{"notice suppressed", msg(`{"msgtype":"m.notice","body":"bot says hi"}`), ctx(2), none},
		{"display name highlights", msg(`{"msgtype":"m.text","body":"hey QUEEN of hearts, lunch?"}`), queen, highlight},
		{"display name must be whole word", msg(`{"msgtype":"m.text","body":"queen of heartsick"}`), queen, notify},
		{"empty display name never matches", msg(`{"msgtype":"m.text","body":"hello there"}`), noName, notify},
		{"m.mentions user_ids highlights", msg(`{"msgtype":"m.text","body":"hi","m.mentions":{"user_ids":["` + me + `"]}}`), ctx(3), highlight},
		{"m.mentions for someone else", msg(`{"msgtype":"m.text","body":"hi","m.mentions":{"user_ids":["` + other + `"]}}`), ctx(3), notify},
		{"unescaped nested m/mentions is not m.mentions", msg(`{"msgtype":"m.text","body":"hi","m":{"mentions":{"user_ids":["` + me + `"]}}}`), ctx(3), notify},
		{"m.mentions disables display name rule", msg(`{"msgtype":"m.text","body":"Queen of Hearts","m.mentions":{}}`), queen, notify},
		{"localpart highlights (content rule)", msg(`{"msgtype":"m.text","body":"ping @alice!"}`), noName, highlight},
		{"localpart inside a word does not", msg(`{"msgtype":"m.text","body":"malice"}`), noName, notify},
		{"m.mentions disables user name rule", msg(`{"msgtype":"m.text","body":"alice","m.mentions":{}}`), noName, notify},
		{"room mention with permission", msg(`{"msgtype":"m.text","body":"all","m.mentions":{"room":true}}`), withPerm, highlight},
		{"room mention without permission", msg(`{"msgtype":"m.text","body":"all","m.mentions":{"room":true}}`), ctx(3), notify},
		{"room mention as string is not true", msg(`{"msgtype":"m.text","body":"all","m.mentions":{"room":"true"}}`), withPerm, notify},
		{"legacy @room with permission", msg(`{"msgtype":"m.text","body":"hey @room look"}`), withPerm, highlight},
		{"legacy @room without permission", msg(`{"msgtype":"m.text","body":"hey @room look"}`), ctx(3), notify},
		{"edit suppressed", msg(`{"msgtype":"m.text","body":"* hi","m.relates_to":{"rel_type":"m.replace","event_id":"$x"}}`), ctx(2), none},
		{"invite for me", `{"type":"m.room.member","sender":"` + other + `","state_key":"` + me + `","room_id":"` + roomID + `","content":{"membership":"invite"}}`, ctx(3), notify},
		{"invite for someone else", `{"type":"m.room.member","sender":"` + other + `","state_key":"@carol:example.org","room_id":"` + roomID + `","content":{"membership":"invite"}}`, ctx(3), none},
		{"join", `{"type":"m.room.member","sender":"` + other + `","state_key":"` + other + `","room_id":"` + roomID + `","content":{"membership":"join"}}`, ctx(2), none},
		{"reaction", `{"type":"m.reaction","sender":"` + other + `","room_id":"` + roomID + `","content":{"m.relates_to":{"rel_type":"m.annotation","event_id":"$x","key":"👍"}}}`, ctx(2), none},
		{"room name state", `{"type":"m.room.name","sender":"` + other + `","state_key":"","room_id":"` + roomID + `","content":{"name":"alice"}}`, ctx(2), none},
		{"tombstone highlights", `{"type":"m.room.tombstone","sender":"` + other + `","state_key":"","room_id":"` + roomID + `","content":{"replacement_room":"!new:x"}}`, ctx(3), highlight},
		{"server acl suppressed", `{"type":"m.room.server_acl","sender":"` + other + `","state_key":"","room_id":"` + roomID + `","content":{}}`, ctx(3), none},
		{"call invite", `{"type":"m.call.invite","sender":"` + other + `","room_id":"` + roomID + `","content":{}}`, ctx(3), notify},
		{"encrypted 1:1", `{"type":"m.room.encrypted","sender":"` + other + `","room_id":"` + roomID + `","content":{}}`, ctx(2), notify},
		{"encrypted group", `{"type":"m.room.encrypted","sender":"` + other + `","room_id":"` + roomID + `","content":{}}`, ctx(9), notify},
		{"own message never notifies", `{"type":"m.room.message","sender":"` + me + `","room_id":"` + roomID + `","content":{"body":"alice"}}`, ctx(2), none},
		{"unknown event type", `{"type":"org.example.custom","sender":"` + other + `","room_id":"` + roomID + `","content":{}}`, ctx(2), none},
		{"malformed JSON", `{"type":"m.room.message",`, ctx(2), none},
		{"JSON array", `[1,2,3]`, ctx(2), none},
		{"JSON null", `null`, ctx(2), none},
		{"trailing garbage", msg(`{"body":"hi"}`) + `x`, ctx(2), none},
		{"empty input", ``, ctx(2), none},
		{"wrong field types", `{"type":5,"content":"body","sender":[]}`, ctx(2), none},
	}
	rules := DefaultRules(me)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Evaluate(rules, []byte(tt.event), tt.c); got != tt.want {
				t.Errorf("Evaluate = %+v, want %+v", got, tt.want)
			}
		})
	}
}

// setEnabled returns a copy of rs with the named rule switched on or off.
func setEnabled(rs Ruleset, id string, on bool) Ruleset {
	for _, kind := range []*[]Rule{&rs.Override, &rs.Content, &rs.Room, &rs.Sender, &rs.Underride} {
		cp := append([]Rule(nil), *kind...)
		for i := range cp {
			if cp[i].RuleID == id {
				cp[i].Enabled = on
			}
		}
		*kind = cp
	}
	return rs
}

func TestEvaluateCustomRules(t *testing.T) {
	plain := msg(`{"msgtype":"m.text","body":"hello alice"}`)
	muteRoom := DefaultRules(me)
	muteRoom.Room = []Rule{{RuleID: roomID, Enabled: true, Actions: []any{"dont_notify"}}}
	loudSender := DefaultRules(me)
	loudSender.Sender = []Rule{{RuleID: other, Enabled: true, Actions: []any{"notify", map[string]any{"set_tweak": "highlight", "value": true}}}}
	unknownKind := DefaultRules(me)
	unknownKind.Override = append([]Rule{{RuleID: "x", Enabled: true, Conditions: []Condition{{Kind: "org.example.nope"}}}}, unknownKind.Override...)
	highlightOnly := Ruleset{Underride: []Rule{{RuleID: "h", Enabled: true, Actions: []any{map[string]any{"set_tweak": "highlight"}}}}}
	falseHighlight := Ruleset{Underride: []Rule{{RuleID: "f", Enabled: true, Actions: []any{"notify", map[string]any{"set_tweak": "highlight", "value": false}}}}}
	keyword := Ruleset{Content: []Rule{{RuleID: "k", Enabled: true, Pattern: "lun?h*", Actions: []any{"notify"}}}}

	tests := []struct {
		name  string
		rules Ruleset
		event string
		want  Actions
	}{
		{"disabled contains_user_name is skipped", setEnabled(DefaultRules(me), ruleContainsUserName, false), plain, notify},
		{"disabled message rule is skipped", setEnabled(DefaultRules(me), ".m.rule.message", false), msg(`{"body":"hi"}`), none},
		{"master enabled mutes everything", setEnabled(DefaultRules(me), ruleMaster, true), plain, none},
		{"room rule with dont_notify decides", muteRoom, msg(`{"body":"hi"}`), none},
		{"room rule loses to content rule", muteRoom, plain, highlight},
		{"sender rule", loudSender, msg(`{"body":"hi"}`), highlight},
		{"unknown condition kind never matches", unknownKind, msg(`{"body":"hi"}`), notify},
		{"highlight without notify is nothing", highlightOnly, msg(`{"body":"hi"}`), none},
		{"highlight value false", falseHighlight, msg(`{"body":"hi"}`), notify},
		{"content glob matches words", keyword, msg(`{"body":"Lunch-time?"}`), notify},
		{"content glob needs a word start", keyword, msg(`{"body":"xlunch"}`), none},
		{"empty ruleset", Ruleset{}, plain, none},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Evaluate(tt.rules, []byte(tt.event), ctx(3)); got != tt.want {
				t.Errorf("Evaluate = %+v, want %+v", got, tt.want)
			}
		})
	}
}

// TestMasterOutranksUserOverrides: a user override placed before the master
// rule must not win while master is on.
func TestMasterOutranksUserOverrides(t *testing.T) {
	rs := setEnabled(DefaultRules(me), ruleMaster, true)
	loud := Rule{RuleID: "loud", Enabled: true, Actions: []any{"notify"}}
	rs.Override = append([]Rule{loud}, rs.Override...)
	if got := Evaluate(rs, []byte(msg(`{"body":"hi"}`)), ctx(3)); got != none {
		t.Errorf("Evaluate = %+v, want none", got)
	}
}

func TestConditions(t *testing.T) {
	ev := `{"type":"m.room.topic","state_key":"","content":{"topic":"Lunch plans","body":"Lunch at noon?","n":42,"big":9007199254740993,` +
		`"f":true,"nil":null,"list":["a",1,true,null,{"x":1}],"a.b":{"c\\d":"dotted"},"m\\x":"bs"}}`
	tests := []struct {
		name string
		cond Condition
		want bool
	}{
		{"glob ? and *", eventMatch("content.topic", "lunc?*"), true},
		{"glob is case-insensitive", eventMatch("content.topic", "LUNCH PLANS"), true},
		{"glob matches whole value", eventMatch("content.topic", "lunch"), false},
		{"the body matches whole words", eventMatch("content.body", "lunch"), true},
		{"a body word needs its boundaries", eventMatch("content.body", "lun"), false},
		{"a body glob spans words", eventMatch("content.body", "lunch*noon"), true},
		{"? needs a character", eventMatch("content.topic", "lunch plans?"), false},
		{"star on missing key", eventMatch("content.missing", "*"), false},
		{"star on non-string", eventMatch("content.n", "*"), false},
		{"regexp metacharacters are literal", eventMatch("content.topic", "lunch.plans"), false},
		{"empty pattern matches empty string", eventMatch("state_key", ""), true},
		{"escaped dot and backslash in key", eventMatch(`content.a\.b.c\\d`, "dotted"), true},
		{"other escapes kept literally", eventMatch(`content.m\x`, "bs"), true},
		{"property_is integer (Go int)", Condition{Kind: "event_property_is", Key: "content.n", Value: 42}, true},
		{"property_is integer (float64 from JSON)", Condition{Kind: "event_property_is", Key: "content.n", Value: 42.0}, true},
		{"property_is does not cast", Condition{Kind: "event_property_is", Key: "content.n", Value: "42"}, false},
		{"property_is outside safe range", Condition{Kind: "event_property_is", Key: "content.big", Value: json.Number("9007199254740993")}, false},
		{"property_is bool", Condition{Kind: "event_property_is", Key: "content.f", Value: true}, true},
		{"property_is null", Condition{Kind: "event_property_is", Key: "content.nil", Value: nil}, true},
		{"property_is missing key is not null", Condition{Kind: "event_property_is", Key: "content.gone", Value: nil}, false},
		{"property_is compound never", Condition{Kind: "event_property_is", Key: "content.list", Value: []any{"a"}}, false},
		{"property_contains string", Condition{Kind: "event_property_contains", Key: "content.list", Value: "a"}, true},
		{"property_contains number", Condition{Kind: "event_property_contains", Key: "content.list", Value: 1}, true},
		{"property_contains null", Condition{Kind: "event_property_contains", Key: "content.list", Value: nil}, true},
		{"property_contains partial", Condition{Kind: "event_property_contains", Key: "content.list", Value: "b"}, false},
		{"property_contains non-array", Condition{Kind: "event_property_contains", Key: "content.topic", Value: "Lunch plans"}, false},
		{"unknown kind", Condition{Kind: "nope"}, false},
		{"permission with nil func", Condition{Kind: "sender_notification_permission", Key: "room"}, false},
	}
	decoded, ok := Decode([]byte(ev))
	if !ok {
		t.Fatal("test event does not decode")
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := matchCondition(tt.cond, decoded, ctx(3)); got != tt.want {
				t.Errorf("matchCondition(%+v) = %v, want %v", tt.cond, got, tt.want)
			}
		})
	}
}

func TestMemberCount(t *testing.T) {
	tests := []struct {
		is    string
		count int
		want  bool
	}{
		{"2", 2, true}, {"2", 3, false}, {"==2", 2, true}, {"==2", 1, false},
		{"<2", 1, true}, {"<2", 2, false}, {">2", 3, true}, {">2", 2, false},
		{"<=2", 2, true}, {"<=2", 3, false}, {">=2", 2, true}, {">=2", 1, false},
		{"", 0, false}, {"abc", 0, false}, {"<", 0, false}, {"=2", 2, false},
		{"-1", -1, false}, {"+2", 2, false}, {"2 ", 2, false},
	}
	for _, tt := range tests {
		if got := matchMemberCount(tt.is, tt.count); got != tt.want {
			t.Errorf("matchMemberCount(%q, %d) = %v, want %v", tt.is, tt.count, got, tt.want)
		}
	}
}

func TestPathNames(t *testing.T) {
	tests := []struct {
		key  string
		want []string
	}{
		{"content.body", []string{"content", "body"}},
		{`content.m\.mentions.user_ids`, []string{"content", "m.mentions", "user_ids"}},
		{`content.m\\foo`, []string{"content", `m\foo`}},
		{`a\x.b\`, []string{`a\x`, `b\`}},
		{"type", []string{"type"}},
		{"", []string{""}},
	}
	for _, tt := range tests {
		var got []string
		for rest, more := tt.key, true; more; {
			var name string
			name, rest, more = nextPathName(rest)
			got = append(got, name)
		}
		if !reflect.DeepEqual(got, tt.want) {
			t.Errorf("names of %q = %q, want %q", tt.key, got, tt.want)
		}
	}
}

func TestLookup(t *testing.T) {
	event := map[string]any{
		"type": "m.room.message",
		"":     "empty name",
		"content": map[string]any{
			"body":       "hello",
			"m.mentions": map[string]any{"room": true},
			`m\foo`:      "backslash",
			"nothing":    nil,
			"list":       []any{"a"},
		},
	}
	tests := []struct {
		key    string
		want   any
		wantOK bool
	}{
		{"type", "m.room.message", true},
		{"content.body", "hello", true},
		{`content.m\.mentions.room`, true, true},
		{`content.m\\foo`, "backslash", true},
		{"content.nothing", nil, true}, // present and null: event_property_is null matches it
		{"content.nothing.below", nil, false},
		{"content.missing", nil, false},
		{"content.body.length", nil, false}, // a string has no properties
		{"content.list.0", nil, false},      // nor does an array
		{"content.m.mentions.room", nil, false},
		{"", "empty name", true},
		{"type.", nil, false},
	}
	for _, tt := range tests {
		got, ok := lookup(event, tt.key)
		if ok != tt.wantOK || !reflect.DeepEqual(got, tt.want) {
			t.Errorf("lookup(%q) = %v, %v; want %v, %v", tt.key, got, ok, tt.want, tt.wantOK)
		}
	}
}

func TestDefaultRulesJSON(t *testing.T) {
	raw, err := json.Marshal(DefaultRules(me))
	if err != nil {
		t.Fatal(err)
	}
	var kinds map[string][]map[string]any
	if err := json.Unmarshal(raw, &kinds); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"override", "content", "room", "sender", "underride"} {
		if v, ok := kinds[k]; !ok || v == nil {
			t.Errorf("kind %q missing or null in %s", k, raw)
		}
	}
	if len(kinds) != 5 {
		t.Errorf("want exactly 5 kinds, got %d", len(kinds))
	}
	if !strings.Contains(string(raw), `"key":"content.m\\.mentions.user_ids"`) {
		t.Errorf("is_user_mention key not escaped as the spec shows: %s", raw)
	}
	for _, r := range kinds["content"] {
		if _, has := r["conditions"]; has {
			t.Errorf("content rule %v has conditions", r["rule_id"])
		}
	}
}

func TestDefaultRulesOrder(t *testing.T) {
	ids := func(rs []Rule) []string {
		var out []string
		for _, r := range rs {
			out = append(out, r.RuleID)
			if !r.Default || r.Actions == nil {
				t.Errorf("%s: default=%v actions=%v", r.RuleID, r.Default, r.Actions)
			}
		}
		return out
	}
	rs := DefaultRules(me)
	wantOverride := []string{".m.rule.master", ".m.rule.suppress_notices", ".m.rule.invite_for_me",
		".m.rule.member_event", ".m.rule.is_user_mention", ".m.rule.contains_display_name",
		".m.rule.is_room_mention", ".m.rule.roomnotif", ".m.rule.tombstone", ".m.rule.reaction",
		".m.rule.room.server_acl", ".m.rule.suppress_edits"}
	wantUnderride := []string{".m.rule.call", ".m.rule.encrypted_room_one_to_one",
		".m.rule.room_one_to_one", ".m.rule.message", ".m.rule.encrypted"}
	if got := ids(rs.Override); !reflect.DeepEqual(got, wantOverride) {
		t.Errorf("override = %v", got)
	}
	if got := ids(rs.Underride); !reflect.DeepEqual(got, wantUnderride) {
		t.Errorf("underride = %v", got)
	}
	if len(rs.Content) != 1 || rs.Content[0].Pattern != "alice" || rs.Content[0].RuleID != ruleContainsUserName {
		t.Errorf("content = %+v", rs.Content)
	}
	if rs.Override[0].Enabled {
		t.Error("master must be disabled by default")
	}
}

// TestRoundTrip: rules stored as JSON (account data) and read back decode
// values as float64/bool and actions as maps; evaluation must not change.
func TestRoundTrip(t *testing.T) {
	raw, _ := json.Marshal(DefaultRules(me))
	var back Ruleset
	if err := json.Unmarshal(raw, &back); err != nil {
		t.Fatal(err)
	}
	c := ctx(3)
	c.SenderCanNotify = canNotify("room")
	for _, ev := range []string{
		msg(`{"body":"hi","m.mentions":{"user_ids":["` + me + `"]}}`),
		msg(`{"body":"hi","m.mentions":{"room":true}}`),
		msg(`{"msgtype":"m.notice","body":"hi"}`),
		msg(`{"body":"hi alice"}`),
		msg(`{"body":"plain"}`),
	} {
		a, b := Evaluate(DefaultRules(me), []byte(ev), c), Evaluate(back, []byte(ev), c)
		if a != b {
			t.Errorf("%s: built-in %+v, round-tripped %+v", ev, a, b)
		}
	}
}

// TestDefaultRulesIndependent: mutating one user's rules must not leak into
// another call's result (actions are freshly allocated per call).
func TestDefaultRulesIndependent(t *testing.T) {
	a := DefaultRules(me)
	a.Underride[3].Actions[0] = "dont_notify"
	a.Override[4].Actions[2].(map[string]any)["value"] = false
	b := DefaultRules(me)
	if b.Underride[3].Actions[0] != "notify" {
		t.Error("string action shared between calls")
	}
	if _, has := b.Override[4].Actions[2].(map[string]any)["value"]; has {
		t.Error("tweak map shared between calls")
	}
}

func FuzzEvaluate(f *testing.F) {
	for _, s := range []string{
		msg(`{"body":"hi alice @room","m.mentions":{"user_ids":["` + me + `"],"room":true}}`),
		`{"type":"m.room.member","state_key":"` + me + `","content":{"membership":"invite"}}`,
		`{"content":{"m.relates_to":{"rel_type":"m.replace"}}}`,
		`{"a":[[[[{}]]]]}`, `[]`, `null`, `"x"`, `{`, ``, `{"content":{"body":1e400}}`,
	} {
		f.Add([]byte(s), "Alice*?", 2)
	}
	rules := DefaultRules(me)
	f.Fuzz(func(t *testing.T, data []byte, name string, members int) {
		c := Context{UserID: me, DisplayName: name, MemberCount: members, SenderCanNotify: canNotify("room")}
		got := Evaluate(rules, data, c)
		if got.Highlight && !got.Notify {
			t.Errorf("highlight without notify: %+v", got)
		}
	})
}

func TestGlob(t *testing.T) {
	tests := []struct {
		pattern, value string
		words, want    bool
	}{
		// Whole-value examples from the spec's event_match section.
		{"lunc?*", "Lunch plans", false, true},
		{"lunc?*", "LUNCH", false, true},
		{"lunc?*", " lunch", false, false},
		{"lunc?*", "lunc", false, false},
		{"*", "", false, true},
		{"", "", false, true},
		{"", "x", false, false},
		{"a*b*c", "aXbYc", false, true},
		{"a*b*c", "abcx", false, false},
		{"a*a", "a", false, false}, // the two a's cannot overlap
		{"??", "é!", false, true},  // ? is one character, not one byte
		// content.body examples from the spec.
		{"ex*ple", "An example event.", true, true},
		{"ex*ple", "exple", true, true},
		{"ex*ple", "An exciting triple-whammy", true, true},
		{"ex*ple", "An examples", true, false},
		{"ple", "example", true, false},
		{"@room", "hey @room!", true, true},
		{"@room", "hey@room", true, false}, // 'y' before '@' is a word character
		{"room", "@room_", true, false},    // '_' is a word character
		{"*", "anything", true, true},
		{"a*", "b a", true, true},
		{"*b", "b a", true, true},
		{"cat", "CAT", true, true},
		{"straße", "STRASSE", true, false}, // simple case folding only
		{"ſ", "S", false, true},            // long s folds to s
		{"?at", "the cat sat", true, true}, // a pattern that starts with ?
		{"?at", "that", true, false},
		{"", "", true, true},
		{"", "x", true, false},
	}
	for _, tt := range tests {
		if got := matchGlobText(tt.pattern, newText(tt.value), tt.words); got != tt.want {
			t.Errorf("glob %q against %q, words=%v: %v, want %v", tt.pattern, tt.value, tt.words, got, tt.want)
		}
		// A whole value is matched by matchGlob too, which takes a shortcut for plain patterns.
		if !tt.words {
			if got := matchGlob(tt.pattern, tt.value); got != tt.want {
				t.Errorf("matchGlob %q against %q: %v, want %v", tt.pattern, tt.value, got, tt.want)
			}
		}
	}
}

// The ASCII shortcut agrees with the rune matcher, case and all.
func TestGlobASCIIShortcut(t *testing.T) {
	values := []string{"", "m.room.message", "M.Room.Message", "m.room.messages", "m.room.messag",
		"m.notice", "m.text", "@room", "a", "A", "s", "k", "[", "{", "`", "@", "\x7f", "ſ", "K", "\u212a"}
	for _, pattern := range values {
		for _, value := range values {
			if got, want := matchGlob(pattern, value), matchGlobText(pattern, newText(value), false); got != want {
				t.Errorf("matchGlob(%q, %q) = %v, the rune matcher says %v", pattern, value, got, want)
			}
		}
	}
}

// TestGlobHostilePattern guards against patterns that make naive or
// regexp-based matching take seconds on a maximum-size body.
func TestGlobHostilePattern(t *testing.T) {
	body := strings.Repeat("a", 65000)
	start := time.Now()
	for _, p := range []string{strings.Repeat("*a", 5000) + "b", strings.Repeat("a?", 2000) + "*b"} {
		matchGlobText(p, newText(body), true)
		matchGlob(p, body)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("hostile patterns took %v", d)
	}
}

// A display name is matched literally and a rule's pattern as a glob, though both come from
// the one cache of compiled patterns.
func TestCompiledGlobKeepsLiteralsApart(t *testing.T) {
	for range 2 { // the second round reads the cache
		if !compiledGlob("a*b", false).matchWhole(newText("axxb")) {
			t.Error(`glob "a*b" does not match "axxb"`)
		}
		if compiledGlob("a*b", true).matchWhole(newText("axxb")) || !compiledGlob("a*b", true).matchWhole(newText("A*B")) {
			t.Error(`display name "a*b" is not matched literally`)
		}
	}
}

// A long pattern (a display name can be any length) is compiled but not kept.
func TestCompiledGlobKeepsNoLongPatterns(t *testing.T) {
	long := strings.Repeat("x", compiledMaxBytes+1)
	compiled.Lock()
	clear(compiled.globs)
	compiled.Unlock()
	if !compiledGlob(long, true).matchWords(newText("hi " + long)) {
		t.Error("a long display name does not match itself")
	}
	compiled.RLock()
	kept := len(compiled.globs)
	compiled.RUnlock()
	if kept != 0 {
		t.Errorf("%d patterns kept, want none", kept)
	}
}
