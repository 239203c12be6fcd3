package push

import (
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"testing"
)

// ruleIDs lists the IDs of a kind's rules, in order.
func ruleIDs(t *testing.T, rs Ruleset, kind string) []string {
	t.Helper()
	l, err := rs.list(kind)
	if err != nil {
		t.Fatal(err)
	}
	ids := []string{}
	for _, r := range *l {
		ids = append(ids, r.RuleID)
	}
	return ids
}

// withUserRules is the defaults plus user override rules a and b (a first) and content rule k.
func withUserRules(t *testing.T) Ruleset {
	t.Helper()
	rs := DefaultRules(me)
	for _, p := range []struct{ kind, id, pattern string }{{"override", "b", ""}, {"override", "a", ""}, {"content", "k", "kw"}} {
		if err := rs.Put(p.kind, Rule{RuleID: p.id, Pattern: p.pattern, Actions: []any{}}, "", ""); err != nil {
			t.Fatal(err)
		}
	}
	return rs
}

var (
	dontNotify = []any{"dont_notify"}
	roomCond   = []Condition{eventMatch("room_id", roomID)}
)

func TestPut(t *testing.T) {
	master, notices := ruleMaster, ".m.rule.suppress_notices"
	tests := []struct {
		name          string
		kind          string
		rule          Rule
		before, after string
		wantErr       error
		wantIDs       []string // the first IDs of the kind afterwards
	}{
		{"new override goes first, after master", "override", Rule{RuleID: "n", Actions: dontNotify}, "", "",
			nil, []string{master, "n", "a", "b", notices}},
		{"new content rule goes before the default", "content", Rule{RuleID: "n", Pattern: "x", Actions: dontNotify}, "", "",
			nil, []string{"n", "k", ruleContainsUserName}},
		{"first room rule", "room", Rule{RuleID: roomID, Actions: dontNotify}, "", "", nil, []string{roomID}},
		{"before", "override", Rule{RuleID: "n", Actions: dontNotify}, "b", "", nil, []string{master, "a", "n", "b", notices}},
		{"after the last user rule", "override", Rule{RuleID: "n", Actions: dontNotify}, "", "b",
			nil, []string{master, "a", "b", "n", notices}},
		{"before wins over after", "override", Rule{RuleID: "n", Actions: dontNotify}, "a", "b",
			nil, []string{master, "n", "a", "b", notices}},
		{"update keeps the place", "override", Rule{RuleID: "b", Actions: dontNotify}, "", "",
			nil, []string{master, "a", "b", notices}},
		{"update moves with before", "override", Rule{RuleID: "b", Actions: dontNotify}, "a", "",
			nil, []string{master, "b", "a", notices}},
		{"relative to itself", "override", Rule{RuleID: "b", Actions: dontNotify}, "b", "", ErrBadPosition, nil},
		{"relative to a default rule", "override", Rule{RuleID: "n", Actions: dontNotify}, "", notices, ErrBadPosition, nil},
		{"relative to a missing rule", "override", Rule{RuleID: "n", Actions: dontNotify}, "zz", "", ErrBadPosition, nil},
		{"relative to a rule of another kind", "content", Rule{RuleID: "n", Pattern: "x", Actions: dontNotify}, "a", "", ErrBadPosition, nil},
		{"server-default ID", "override", Rule{RuleID: notices, Actions: dontNotify}, "", "", ErrInvalidID, nil},
		{"new dotted ID", "underride", Rule{RuleID: ".mine", Actions: dontNotify}, "", "", ErrInvalidID, nil},
		{"slash", "override", Rule{RuleID: "a/b", Actions: dontNotify}, "", "", ErrInvalidID, nil},
		{"backslash", "override", Rule{RuleID: `a\b`, Actions: dontNotify}, "", "", ErrInvalidID, nil},
		{"unknown kind", "global", Rule{RuleID: "n", Actions: dontNotify}, "", "", ErrUnknownKind, nil},
		{"no actions", "override", Rule{RuleID: "n"}, "", "", ErrMissingField, nil},
		{"content without pattern", "content", Rule{RuleID: "n", Actions: dontNotify}, "", "", ErrMissingField, nil},
		{"bad action", "override", Rule{RuleID: "n", Actions: []any{3.0}}, "", "", ErrInvalidRule, nil},
		{"tweak without set_tweak", "override", Rule{RuleID: "n", Actions: []any{map[string]any{"value": 1.0}}}, "", "", ErrInvalidRule, nil},
		{"condition without kind", "override", Rule{RuleID: "n", Actions: dontNotify, Conditions: []Condition{{Key: "type"}}},
			"", "", ErrInvalidRule, nil},
		{"event_match without key", "override", Rule{RuleID: "n", Actions: dontNotify, Conditions: []Condition{{Kind: "event_match"}}},
			"", "", ErrInvalidRule, nil},
		{"room_member_count without is", "underride", Rule{RuleID: "n", Actions: dontNotify, Conditions: []Condition{{Kind: "room_member_count"}}},
			"", "", ErrInvalidRule, nil},
		{"unknown condition kind is kept", "override", Rule{RuleID: "n", Actions: dontNotify, Conditions: []Condition{{Kind: "org.example"}}},
			"", "", nil, []string{master, "n"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			shared, kept := withUserRules(t), withUserRules(t)
			rs := shared // a copy that shares the lists, as readers of a cached ruleset do
			err := rs.Put(tt.kind, tt.rule, tt.before, tt.after)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("Put = %v, want %v", err, tt.wantErr)
			}
			if !reflect.DeepEqual(shared, kept) {
				t.Errorf("Put wrote into lists shared with readers")
			}
			if err != nil {
				if !reflect.DeepEqual(rs, kept) {
					t.Errorf("a failed Put changed the ruleset")
				}
				return
			}
			if got := ruleIDs(t, rs, tt.kind); !reflect.DeepEqual(got[:len(tt.wantIDs)], tt.wantIDs) {
				t.Errorf("%s = %v, want it to start %v", tt.kind, got, tt.wantIDs)
			}
		})
	}
}

func TestPutShapesRule(t *testing.T) {
	rs := withUserRules(t)
	mustDo(t, rs.SetEnabled("override", "a", false))
	// Fields a kind does not use are dropped, whatever the client sent.
	mustDo(t, rs.Put("override", Rule{RuleID: "a", Default: true, Pattern: "p", Actions: dontNotify}, "", ""))
	mustDo(t, rs.Put("room", Rule{RuleID: roomID, Conditions: roomCond, Pattern: "p", Actions: dontNotify}, "", ""))
	mustDo(t, rs.Put("content", Rule{RuleID: "c", Conditions: roomCond, Pattern: "p", Actions: dontNotify}, "", ""))
	tests := []struct {
		kind, id string
		want     Rule
	}{
		// An update keeps the enabled state; conditions default to none.
		{"override", "a", Rule{RuleID: "a", Enabled: false, Conditions: []Condition{}, Actions: dontNotify}},
		{"override", "b", Rule{RuleID: "b", Enabled: true, Conditions: []Condition{}, Actions: []any{}}},
		{"room", roomID, Rule{RuleID: roomID, Enabled: true, Actions: dontNotify}},
		{"content", "c", Rule{RuleID: "c", Enabled: true, Pattern: "p", Actions: dontNotify}},
	}
	for _, tt := range tests {
		if got, err := rs.Find(tt.kind, tt.id); err != nil || !reflect.DeepEqual(got, tt.want) {
			t.Errorf("Find(%s, %s) = %+v, %v; want %+v", tt.kind, tt.id, got, err, tt.want)
		}
	}
}

func TestEditExisting(t *testing.T) {
	notify := []any{"notify"}
	tests := []struct {
		name    string
		edit    func(*Ruleset) error
		kind    string
		id      string
		wantErr error
		check   func(Rule) bool // on the rule afterwards, when it still exists
	}{
		{"enable master", func(rs *Ruleset) error { return rs.SetEnabled("override", ruleMaster, true) },
			"override", ruleMaster, nil, func(r Rule) bool { return r.Enabled }},
		{"disable a user rule", func(rs *Ruleset) error { return rs.SetEnabled("override", "a", false) },
			"override", "a", nil, func(r Rule) bool { return !r.Enabled }},
		{"actions of a default", func(rs *Ruleset) error { return rs.SetActions("underride", ".m.rule.message", dontNotify) },
			"underride", ".m.rule.message", nil, func(r Rule) bool { return reflect.DeepEqual(r.Actions, dontNotify) }},
		{"actions missing", func(rs *Ruleset) error { return rs.SetActions("override", "a", nil) },
			"override", "a", ErrMissingField, nil},
		{"actions invalid", func(rs *Ruleset) error { return rs.SetActions("override", "a", []any{true}) },
			"override", "a", ErrInvalidRule, nil},
		{"enable a missing rule", func(rs *Ruleset) error { return rs.SetEnabled("content", "a", true) },
			"content", "a", ErrNotFound, nil},
		{"actions of a missing rule", func(rs *Ruleset) error { return rs.SetActions("room", "!x:y", notify) },
			"room", "!x:y", ErrNotFound, nil},
		{"unknown kind", func(rs *Ruleset) error { return rs.SetEnabled("nope", "a", true) }, "", "", ErrUnknownKind, nil},
		{"delete a user rule", func(rs *Ruleset) error { return rs.Delete("content", "k") },
			"content", "k", nil, nil},
		{"delete a default", func(rs *Ruleset) error { return rs.Delete("override", ruleMaster) },
			"override", ruleMaster, ErrInvalidID, nil},
		{"delete a missing rule", func(rs *Ruleset) error { return rs.Delete("override", "zz") },
			"override", "zz", ErrNotFound, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			shared, kept := withUserRules(t), withUserRules(t)
			rs := shared // a copy that shares the lists, as readers of a cached ruleset do
			err := tt.edit(&rs)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("edit = %v, want %v", err, tt.wantErr)
			}
			if !reflect.DeepEqual(shared, kept) {
				t.Errorf("the edit wrote into lists shared with readers")
			}
			if err != nil || tt.kind == "" {
				return
			}
			rule, err := rs.Find(tt.kind, tt.id)
			if tt.check == nil {
				if !errors.Is(err, ErrNotFound) {
					t.Errorf("Find after delete = %+v, %v", rule, err)
				}
			} else if err != nil || !tt.check(rule) {
				t.Errorf("rule afterwards = %+v, %v", rule, err)
			}
		})
	}
}

func TestLoad(t *testing.T) {
	edited := withUserRules(t)
	content, err := json.Marshal(Document{Global: edited})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		content string
		want    Ruleset
		wantErr bool
	}{
		{"nothing stored", "", DefaultRules(me), false},
		{"stored", string(content), edited, false},
		{"absent kinds and actions: the defaults fill in, own rules after the master switch",
			`{"global":{"override":[{"rule_id":"x","enabled":true}]}}`, withOwnOverride(Rule{RuleID: "x", Enabled: true, Actions: []any{}}), false},
		{"not JSON", `{`, Ruleset{}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var raw []byte
			if tt.content != "" {
				raw = []byte(tt.content)
			}
			got, err := Load(me, raw)
			if (err != nil) != tt.wantErr {
				t.Fatalf("Load = %v", err)
			}
			// Compare as JSON: decoding turns numbers into float64 and tweaks into maps.
			if g, w := jsonOf(t, got), jsonOf(t, tt.want); !tt.wantErr && g != w {
				t.Errorf("Load =\n%s\nwant\n%s", g, w)
			}
		})
	}
}

// fakeSource is account data held in a map.
type fakeSource map[string]json.RawMessage

func (f fakeSource) Get(userID, _, evType string) (json.RawMessage, error) {
	if c, ok := f[userID+" "+evType]; ok {
		return c, nil
	}
	return nil, errors.New("not found")
}

func TestCache(t *testing.T) {
	src := fakeSource{}
	c := NewCache(src)
	event := []byte(msg(`{"body":"hello"}`))
	if a := Evaluate(c.Rules(me), event, ctx(3)); a != notify {
		t.Fatalf("defaults: %+v, want notify", a)
	}
	if first, again := c.Rules(me), c.Rules(me); &first.Override[0] != &again.Override[0] {
		t.Errorf("the defaults were built again")
	}
	if got := c.Rules(me); !reflect.DeepEqual(got, DefaultRules(me)) {
		t.Errorf("the cached defaults are not the defaults")
	}
	muted := DefaultRules(me)
	mustDo(t, muted.Put("room", Rule{RuleID: roomID, Actions: dontNotify}, "", ""))
	src[me+" "+AccountDataType] = []byte(jsonOf(t, Document{Global: muted}))
	if a := Evaluate(c.Rules(me), event, ctx(3)); a != none {
		t.Fatalf("after muting the room: %+v, want none", a)
	}
	if first, again := c.Rules(me), c.Rules(me); &first.Room[0] != &again.Room[0] {
		t.Errorf("unchanged content was parsed again")
	}
	src[me+" "+AccountDataType] = []byte(jsonOf(t, Document{Global: DefaultRules(me)}))
	if a := Evaluate(c.Rules(me), event, ctx(3)); a != notify {
		t.Errorf("after unmuting: %+v, want notify", a)
	}
	src[me+" "+AccountDataType] = []byte(`{`)
	if got := c.Rules(me); !reflect.DeepEqual(got, DefaultRules(me)) {
		t.Errorf("unreadable rules did not fall back to the defaults")
	}
	src[me+" "+AccountDataType] = []byte(jsonOf(t, Document{Global: muted}))
	_ = c.Rules(me)
	delete(src, me+" "+AccountDataType)
	if a := Evaluate(c.Rules(me), event, ctx(3)); a != notify {
		t.Errorf("after the stored rules went: %+v, want notify", a)
	}
}

// TestCacheBound: the cache forgets every ruleset when it would pass its limit, and a
// forgotten user gets their own rules again.
func TestCacheBound(t *testing.T) {
	src := fakeSource{}
	c := NewCache(src)
	c.limit = 3
	muted := DefaultRules(me)
	mustDo(t, muted.Put("room", Rule{RuleID: roomID, Actions: dontNotify}, "", ""))
	src[me+" "+AccountDataType] = []byte(jsonOf(t, Document{Global: muted}))
	event := []byte(msg(`{"body":"hello"}`))
	for i := range 10 {
		c.Rules(fmt.Sprintf("@user%d:example.org", i))
		if len(c.parsed) > c.limit {
			t.Fatalf("%d rulesets kept, limit %d", len(c.parsed), c.limit)
		}
		if a := Evaluate(c.Rules(me), event, ctx(3)); a != none {
			t.Fatalf("after %d other users: %+v, want none (the user's own rules)", i+1, a)
		}
	}
}

func jsonOf(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func mustDo(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// withOwnOverride is the default ruleset with one user override rule, where the spec ranks it:
// after .m.rule.master, before the other server-default overrides.
func withOwnOverride(r Rule) Ruleset {
	rs := DefaultRules(me)
	rs.Override = slices.Insert(slices.Clone(rs.Override), 1, r)
	return rs
}

// A ruleset stored by an older version gains the default rules added since, and keeps what
// the user set on the defaults it had.
func TestLoadOlderRuleset(t *testing.T) {
	old := DefaultRules(me)
	old.Override = slices.DeleteFunc(slices.Clone(old.Override), func(r Rule) bool { return r.RuleID == ".m.rule.reaction" })
	old.Underride = slices.Clone(old.Underride)
	i := index(old.Underride, ".m.rule.message")
	old.Underride[i].Enabled = false
	content, _ := json.Marshal(Document{Global: old})
	got, err := Load(me, content)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := got.Find("override", ".m.rule.reaction"); err != nil {
		t.Errorf("a default rule missing from the stored ruleset was not added: %v", err)
	}
	if r, _ := got.Find("underride", ".m.rule.message"); r.Enabled {
		t.Errorf("the user's disabling of .m.rule.message was lost")
	}
}

// event_match always carries its pattern, "" included, and a rule given without one is refused.
func TestEventMatchPattern(t *testing.T) {
	tombstone, err := DefaultRules(me).Find("override", ".m.rule.tombstone")
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := json.Marshal(tombstone)
	if !strings.Contains(string(raw), `"key":"state_key","pattern":""`) {
		t.Errorf(".m.rule.tombstone = %s, want its state_key condition with pattern \"\"", raw)
	}
	for body, wantErr := range map[string]bool{
		`[{"kind":"event_match","key":"state_key","pattern":""}]`: false,
		`[{"kind":"event_match","key":"state_key"}]`:              true,
	} {
		var conds []Condition
		if err := json.Unmarshal([]byte(body), &conds); err != nil {
			t.Fatal(err)
		}
		rs := DefaultRules(me)
		err := rs.Put("override", Rule{RuleID: "x", Actions: []any{}, Conditions: conds}, "", "")
		if (err != nil) != wantErr {
			t.Errorf("Put with conditions %s: %v, want error %v", body, err, wantErr)
		}
	}
}

// A property condition keeps its value, null included, when written back, and one given
// without a value is refused.
func TestPropertyConditionValue(t *testing.T) {
	for body, want := range map[string]string{
		`[{"kind":"event_property_is","key":"content.x","value":null}]`:        `"value":null`,
		`[{"kind":"event_property_contains","key":"content.x","value":false}]`: `"value":false`,
		`[{"kind":"event_property_is","key":"content.x"}]`:                     "",
	} {
		var conds []Condition
		if err := json.Unmarshal([]byte(body), &conds); err != nil {
			t.Fatal(err)
		}
		rs := DefaultRules(me)
		err := rs.Put("override", Rule{RuleID: "x", Actions: []any{}, Conditions: conds}, "", "")
		if want == "" {
			if err == nil {
				t.Errorf("Put with conditions %s: accepted, want refused", body)
			}
			continue
		}
		rule, _ := rs.Find("override", "x")
		if raw, _ := json.Marshal(rule); err != nil || !strings.Contains(string(raw), want) {
			t.Errorf("Put with conditions %s: %v; stored %s, want %s in it", body, err, raw, want)
		}
	}
}
