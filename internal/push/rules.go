// Package push implements Matrix push rules: the server-default ruleset
// defined by the client-server spec (v1.11) and an evaluator that decides
// whether an event notifies (and highlights) for a given user.
package push

import (
	"encoding/json"
	"slices"
	"strings"
)

// Ruleset is the JSON shape of GET /_matrix/client/v3/pushrules/ "global".
type Ruleset struct {
	Override  []Rule `json:"override"`
	Content   []Rule `json:"content"`
	Room      []Rule `json:"room"`
	Sender    []Rule `json:"sender"`
	Underride []Rule `json:"underride"`
}

// Rule is one push rule of any kind. Which fields are meaningful depends on
// the kind the rule is stored under in a Ruleset.
type Rule struct {
	RuleID     string      `json:"rule_id"`
	Default    bool        `json:"default"`
	Enabled    bool        `json:"enabled"`
	Conditions []Condition `json:"conditions,omitzero"` // omitted for content rules; [] for the master rule
	Pattern    string      `json:"pattern,omitempty"`   // content rules only
	Actions    []any       `json:"actions"`             // "notify", {"set_tweak":"sound","value":"default"}, {"set_tweak":"highlight"} ...
}

// Condition is one condition of an override or underride rule.
type Condition struct {
	Kind    string `json:"kind"`
	Key     string `json:"key,omitempty"`
	Pattern string `json:"pattern,omitempty"` // always written for event_match, even ""
	Is      string `json:"is,omitempty"`
	Value   any    `json:"value,omitempty"` // for event_property_is / event_property_contains

	hasPattern bool // read from JSON that had a pattern; event_match requires one
	hasValue   bool // read from JSON that had a value, null included; the property kinds require one
}

// valued are the condition kinds whose value is part of them, null included.
var valued = map[string]bool{"event_property_is": true, "event_property_contains": true}

// conditionJSON is Condition without its methods, to encode and decode the common fields.
type conditionJSON Condition

// MarshalJSON writes event_match's pattern even when empty: the spec's defaults match
// state_key against "", and clients (matrix-js-sdk) skip a condition without a pattern. A
// property condition's value is written even when null, which it may match.
func (c Condition) MarshalJSON() ([]byte, error) {
	switch {
	case c.Kind == "event_match":
		return json.Marshal(struct {
			conditionJSON
			Pattern string `json:"pattern"`
		}{conditionJSON(c), c.Pattern})
	case valued[c.Kind]:
		return json.Marshal(struct {
			conditionJSON
			Value any `json:"value"`
		}{conditionJSON(c), c.Value})
	}
	return json.Marshal(conditionJSON(c))
}

// UnmarshalJSON notes whether a pattern and a value were given, which an empty pattern and a
// null value cannot tell.
func (c *Condition) UnmarshalJSON(b []byte) error {
	var in struct {
		conditionJSON
		Pattern *string         `json:"pattern"`
		Value   json.RawMessage `json:"value"` // "null" when null, nil when absent
	}
	if err := json.Unmarshal(b, &in); err != nil {
		return err
	}
	*c = Condition(in.conditionJSON)
	if in.Pattern != nil {
		c.Pattern, c.hasPattern = *in.Pattern, true
	}
	if in.Value != nil {
		c.hasValue = true
		if err := json.Unmarshal(in.Value, &c.Value); err != nil {
			return err
		}
	}
	return nil
}

// Rule IDs the evaluator or defaultsToEvaluate treat specially; the rest only appear in
// DefaultRules.
const (
	ruleMaster              = ".m.rule.master"
	ruleContainsDisplayName = ".m.rule.contains_display_name"
	ruleRoomNotif           = ".m.rule.roomnotif"
	ruleContainsUserName    = ".m.rule.contains_user_name"
	ruleInviteForMe         = ".m.rule.invite_for_me"
	ruleIsUserMention       = ".m.rule.is_user_mention"
)

// Action building blocks. Each rule gets fresh values from these helpers so a
// caller mutating one ruleset can never affect another.
func actNotify() any { return "notify" }

func tweakSound(v string) any { return map[string]any{"set_tweak": "sound", "value": v} }

// tweakHighlight has no value: the spec defines a valueless highlight as true.
func tweakHighlight() any { return map[string]any{"set_tweak": "highlight"} }

func actions(a ...any) []any { return append([]any{}, a...) }

// eventMatch is the common event_match condition.
func eventMatch(key, pattern string) Condition {
	return Condition{Kind: "event_match", Key: key, Pattern: pattern}
}

// defaultRule builds an enabled server-default rule.
func defaultRule(id string, conds []Condition, acts []any) Rule {
	return Rule{RuleID: id, Default: true, Enabled: true, Conditions: conds, Actions: acts}
}

// DefaultRules returns the spec's (v1.11) server-default push rules for the
// user, in the spec's order. The content rule .m.rule.contains_user_name uses
// the user's localpart as its pattern.
func DefaultRules(userID string) Ruleset {
	return Ruleset{
		Override:  defaultOverride(userID),
		Content:   defaultContent(localpart(userID)),
		Room:      []Rule{}, // empty, not null, so clients see all five kinds
		Sender:    []Rule{},
		Underride: defaultUnderride(),
	}
}

// defaultOverride lists the override defaults in spec order.
func defaultOverride(userID string) []Rule {
	master := defaultRule(ruleMaster, []Condition{}, actions())
	master.Enabled = false // the master switch is off until the user turns it on
	return []Rule{
		master,
		defaultRule(".m.rule.suppress_notices",
			[]Condition{eventMatch("content.msgtype", "m.notice")}, actions()),
		inviteForMe(userID),
		defaultRule(".m.rule.member_event",
			[]Condition{eventMatch("type", "m.room.member")}, actions()),
		isUserMention(userID),
		defaultRule(ruleContainsDisplayName,
			[]Condition{{Kind: "contains_display_name"}},
			actions(actNotify(), tweakSound("default"), tweakHighlight())),
		defaultRule(".m.rule.is_room_mention", []Condition{
			{Kind: "event_property_is", Key: `content.m\.mentions.room`, Value: true},
			{Kind: "sender_notification_permission", Key: "room"},
		}, actions(actNotify(), tweakHighlight())),
		defaultRule(ruleRoomNotif, []Condition{
			eventMatch("content.body", "@room"),
			{Kind: "sender_notification_permission", Key: "room"},
		}, actions(actNotify(), tweakHighlight())),
		defaultRule(".m.rule.tombstone", []Condition{
			eventMatch("type", "m.room.tombstone"),
			eventMatch("state_key", ""),
		}, actions(actNotify(), tweakHighlight())),
		defaultRule(".m.rule.reaction",
			[]Condition{eventMatch("type", "m.reaction")}, actions()),
		// The spec's ID for this rule is ".m.rule.room.server_acl" (with "room.").
		defaultRule(".m.rule.room.server_acl", []Condition{
			eventMatch("type", "m.room.server_acl"),
			eventMatch("state_key", ""),
		}, actions()),
		defaultRule(".m.rule.suppress_edits", []Condition{{
			Kind: "event_property_is", Key: `content.m\.relates_to.rel_type`, Value: "m.replace",
		}}, actions()),
	}
}

// inviteForMe and isUserMention are the override defaults that name the user.
func inviteForMe(userID string) Rule {
	return defaultRule(ruleInviteForMe, []Condition{
		eventMatch("type", "m.room.member"),
		eventMatch("content.membership", "invite"),
		eventMatch("state_key", userID),
	}, actions(actNotify(), tweakSound("default")))
}

func isUserMention(userID string) Rule {
	return defaultRule(ruleIsUserMention, []Condition{{
		Kind: "event_property_contains", Key: `content.m\.mentions.user_ids`, Value: userID,
	}}, actions(actNotify(), tweakSound("default"), tweakHighlight()))
}

// sharedDefaults are the default rules with the ones that name the user left for
// defaultsToEvaluate to fill in; nothing may modify them.
var sharedDefaults = DefaultRules("")

// defaultsToEvaluate is DefaultRules(userID) built from sharedDefaults: only the rules that
// name the user are new. Evaluating a user's rules for every event that reaches them would
// otherwise build every default rule again each time. The result shares the other rules, so it
// is for evaluation only and must not be modified.
func defaultsToEvaluate(userID string) Ruleset {
	rs := sharedDefaults
	rs.Override = slices.Clone(rs.Override)
	for i, r := range rs.Override {
		switch r.RuleID {
		case ruleInviteForMe:
			rs.Override[i] = inviteForMe(userID)
		case ruleIsUserMention:
			rs.Override[i] = isUserMention(userID)
		}
	}
	rs.Content = defaultContent(localpart(userID))
	return rs
}

// defaultContent holds the single content default: the user's localpart.
// Content rules carry a pattern instead of conditions.
func defaultContent(local string) []Rule {
	return []Rule{{
		RuleID:  ruleContainsUserName,
		Default: true,
		Enabled: true,
		Pattern: local,
		Actions: actions(actNotify(), tweakSound("default"), tweakHighlight()),
	}}
}

// defaultUnderride lists the underride defaults in spec order.
func defaultUnderride() []Rule {
	return []Rule{
		defaultRule(".m.rule.call",
			[]Condition{eventMatch("type", "m.call.invite")},
			actions(actNotify(), tweakSound("ring"))),
		defaultRule(".m.rule.encrypted_room_one_to_one", []Condition{
			{Kind: "room_member_count", Is: "2"},
			eventMatch("type", "m.room.encrypted"),
		}, actions(actNotify(), tweakSound("default"))),
		defaultRule(".m.rule.room_one_to_one", []Condition{
			{Kind: "room_member_count", Is: "2"},
			eventMatch("type", "m.room.message"),
		}, actions(actNotify(), tweakSound("default"))),
		defaultRule(".m.rule.message",
			[]Condition{eventMatch("type", "m.room.message")}, actions(actNotify())),
		defaultRule(".m.rule.encrypted",
			[]Condition{eventMatch("type", "m.room.encrypted")}, actions(actNotify())),
	}
}

// localpart extracts "alice" from "@alice:example.org". Input that is not a
// well-formed user ID is returned as best we can rather than rejected, since
// DefaultRules has no error return.
func localpart(userID string) string {
	s := strings.TrimPrefix(userID, "@")
	local, _, _ := strings.Cut(s, ":")
	return local
}
