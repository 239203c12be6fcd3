package push

import (
	"bytes"
	"encoding/json"
	"io"

	"github.com/tidwall/gjson"
)

// Context is what the evaluator needs besides the event.
type Context struct {
	UserID      string // the user the rules belong to
	DisplayName string // their display name in the room ("" if none)
	MemberCount int    // joined members of the room
	// SenderCanNotify reports whether the sender has the power level for a notification
	// key such as "room" (for @room). May be nil: then false.
	SenderCanNotify func(key string) bool
}

// Actions is the outcome for one event.
type Actions struct {
	Notify    bool
	Highlight bool
}

// ruleKind says how a rule's implicit conditions are derived.
type ruleKind int

const (
	kindConditional ruleKind = iota // override and underride: explicit conditions
	kindContent                     // pattern against content.body
	kindRoom                        // rule_id is the room ID
	kindSender                      // rule_id is the sender's user ID
)

// Event is an event decoded for evaluation. It is only read, so one decoding can serve every
// member of a room.
type Event struct {
	fields map[string]any
	// body is content.body prepared for matching words, or nil when it is not a string. The
	// content rules and the display name are matched against it for every member.
	body *text
}

// Decode decodes an event for EvaluateDecoded; false for malformed JSON.
func Decode(eventJSON []byte) (Event, bool) {
	fields, ok := decodeEvent(eventJSON)
	if !ok {
		return Event{}, false
	}
	e := Event{fields: fields}
	if body, ok := stringAt(fields, "content", "body"); ok {
		t := newText(body)
		e.body = &t
	}
	return e, true
}

// EvaluateDecoded applies the ruleset to one event, decoded from its client-format JSON (an
// object with type, content, sender, state_key, room_id...) by Decode. The first enabled rule
// that matches, in the order override, content, room, sender, underride, decides; no match
// means no notification.
//
// Beyond that ordering it follows three spec rules: .m.rule.master is checked
// before every other rule wherever it sits; events the user sent themselves
// never notify; and the legacy mention rules (.m.rule.contains_display_name,
// .m.rule.roomnotif, .m.rule.contains_user_name) are skipped when the event
// carries an m.mentions property, since that property is the authoritative
// mention signal.
func EvaluateDecoded(rules Ruleset, e Event, c Context) Actions {
	if sender, _ := stringAt(e.fields, "sender"); sender != "" && sender == c.UserID {
		return Actions{}
	}
	if r, ok := firstMatch(rules, e, c); ok {
		return outcome(r.Actions)
	}
	return Actions{}
}

// decodeEvent parses the event as a single JSON object into what encoding/json gives with
// UseNumber (objects as map[string]any, arrays as []any, numbers as json.Number, so large
// integers compare exactly), in one gjson pass: a room's new event is decoded once for all
// its members' unread counts, and again for every member whose count reaches back past the
// shared decodings (a join, a restart), where encoding/json's allocations were most of the
// cost. Trailing data after the object is rejected like any other malformed input.
// It agrees with encoding/json on valid UTF-8 (FuzzDecodeEvent), which is all a room holds:
// sends with anything else are refused. Escaped UTF-16 surrogates, which gjson reads
// differently when one is unpaired, go to encoding/json; canonical JSON, what events are
// stored as, never has them. Beyond encoding/json's nesting limit (10,000) gjson still
// decodes; a send that deep is refused before it is stored.
func decodeEvent(data []byte) (map[string]any, bool) {
	if bytes.Contains(data, []byte(`\ud`)) || bytes.Contains(data, []byte(`\uD`)) {
		return decodeWithEncodingJSON(data)
	}
	if !gjson.ValidBytes(data) {
		return nil, false
	}
	root := gjson.ParseBytes(data)
	if !root.IsObject() {
		return nil, false
	}
	return decodeObject(root), true
}

func decodeWithEncodingJSON(data []byte) (map[string]any, bool) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	var ev map[string]any
	if err := dec.Decode(&ev); err != nil || ev == nil {
		return nil, false
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, false
	}
	return ev, true
}

func decodeObject(obj gjson.Result) map[string]any {
	m := map[string]any{}
	obj.ForEach(func(key, value gjson.Result) bool {
		m[key.Str] = decodeValue(value) // a repeated key: the last wins, as in encoding/json
		return true
	})
	return m
}

func decodeValue(v gjson.Result) any {
	switch v.Type {
	case gjson.String:
		return v.Str
	case gjson.Number:
		return json.Number(v.Raw)
	case gjson.True:
		return true
	case gjson.False:
		return false
	case gjson.Null:
		return nil
	}
	if v.IsArray() {
		out := []any{}
		v.ForEach(func(_, item gjson.Result) bool {
			out = append(out, decodeValue(item))
			return true
		})
		return out
	}
	return decodeObject(v)
}

// firstMatch walks the kinds in priority order and returns the deciding rule.
func firstMatch(rs Ruleset, e Event, c Context) (Rule, bool) {
	// The master rule outranks even user-defined overrides placed before it.
	for _, r := range rs.Override {
		if r.RuleID == ruleMaster {
			if r.Enabled && matchRule(r, kindConditional, e, c) {
				return r, true
			}
			break
		}
	}
	groups := []struct {
		rules []Rule
		kind  ruleKind
	}{
		{rs.Override, kindConditional},
		{rs.Content, kindContent},
		{rs.Room, kindRoom},
		{rs.Sender, kindSender},
		{rs.Underride, kindConditional},
	}
	legacyOff := hasMentions(e.fields)
	for _, g := range groups {
		for _, r := range g.rules {
			if !r.Enabled || (legacyOff && isLegacyMention(r.RuleID)) {
				continue
			}
			if matchRule(r, g.kind, e, c) {
				return r, true
			}
		}
	}
	return Rule{}, false
}

// matchRule applies a rule's explicit or implicit conditions.
func matchRule(r Rule, kind ruleKind, e Event, c Context) bool {
	switch kind {
	case kindContent:
		// An empty pattern would match at almost any boundary; treat it as inert.
		return e.body != nil && r.Pattern != "" && matchGlobText(r.Pattern, *e.body, true)
	case kindRoom:
		roomID, ok := stringAt(e.fields, "room_id")
		return ok && roomID == r.RuleID
	case kindSender:
		sender, ok := stringAt(e.fields, "sender")
		return ok && sender == r.RuleID
	}
	for _, cond := range r.Conditions {
		if !matchCondition(cond, e, c) {
			return false
		}
	}
	return true // no conditions: the rule matches every event
}

// hasMentions reports whether content has an m.mentions property at all; its
// mere presence means the sender's client uses intentional mentions.
func hasMentions(ev map[string]any) bool {
	content, ok := ev["content"].(map[string]any)
	if !ok {
		return false
	}
	_, ok = content["m.mentions"]
	return ok
}

// isLegacyMention names the rules the spec (v1.7+) says to apply only to
// events without m.mentions.
func isLegacyMention(id string) bool {
	return id == ruleContainsDisplayName || id == ruleRoomNotif || id == ruleContainsUserName
}

// outcome reduces an action list to notify/highlight. Historical actions
// such as "dont_notify" and "coalesce" are ignored, as the spec requires.
// A highlight only counts alongside "notify": tweaks describe a notification,
// so without one there is nothing to highlight.
func outcome(acts []any) Actions {
	var out Actions
	for _, a := range acts {
		switch x := a.(type) {
		case string:
			out.Notify = out.Notify || x == "notify"
		case map[string]any:
			out.Highlight = out.Highlight || isHighlight(x)
		}
	}
	out.Highlight = out.Highlight && out.Notify
	return out
}

// isHighlight: a highlight tweak with no value (or a null one, as some clients write it) means
// true; otherwise only a boolean true counts (a string "true" is not a boolean).
func isHighlight(tweak map[string]any) bool {
	if tweak["set_tweak"] != "highlight" {
		return false
	}
	v, present := tweak["value"]
	if !present || v == nil {
		return true
	}
	b, ok := v.(bool)
	return ok && b
}
