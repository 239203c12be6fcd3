package push

import (
	"errors"
	"fmt"
	"slices"
	"strings"
)

// Errors of the editing operations. They wrap a detail the client can be shown; the API maps
// them onto Matrix error codes with errors.Is.
var (
	ErrUnknownKind  = errors.New("unknown push rule kind")
	ErrNotFound     = errors.New("push rule not found")
	ErrInvalidID    = errors.New("invalid rule ID")
	ErrBadPosition  = errors.New("before/after must name a user-defined rule of the same kind")
	ErrMissingField = errors.New("missing field")
	ErrInvalidRule  = errors.New("invalid push rule")
)

// Every operation replaces the kind's slice with an edited copy instead of writing into it:
// a ruleset may be shared with readers (see Cache), which must never see it change.

// list returns the rules of a kind for editing.
func (rs *Ruleset) list(kind string) (*[]Rule, error) {
	switch kind {
	case "override":
		return &rs.Override, nil
	case "content":
		return &rs.Content, nil
	case "room":
		return &rs.Room, nil
	case "sender":
		return &rs.Sender, nil
	case "underride":
		return &rs.Underride, nil
	}
	return nil, fmt.Errorf("%w %q", ErrUnknownKind, kind)
}

func index(rules []Rule, id string) int {
	return slices.IndexFunc(rules, func(r Rule) bool { return r.RuleID == id })
}

// locate finds rule id among the rules of the kind.
func (rs *Ruleset) locate(kind, id string) (*[]Rule, int, error) {
	l, err := rs.list(kind)
	if err != nil {
		return nil, 0, err
	}
	i := index(*l, id)
	if i < 0 {
		return nil, 0, fmt.Errorf("%w: %s", ErrNotFound, id)
	}
	return l, i, nil
}

// Find returns the rule with the ID among the rules of the kind.
func (rs Ruleset) Find(kind, id string) (Rule, error) {
	l, i, err := rs.locate(kind, id)
	if err != nil {
		return Rule{}, err
	}
	return (*l)[i], nil
}

// Put creates or replaces the user-defined rule r among the rules of the kind; only its ID,
// actions, conditions and pattern are read. A new rule is enabled and, without before or after,
// becomes the most important user-defined rule; a replaced rule keeps its enabled state and,
// without before or after, its place. before wins when both are given, as the spec says.
func (rs *Ruleset) Put(kind string, r Rule, before, after string) error {
	l, err := rs.list(kind)
	if err != nil {
		return err
	}
	if err := checkNewID(r.RuleID); err != nil {
		return err
	}
	if r, err = shape(kind, r); err != nil {
		return err
	}
	rules, pos := slices.Clone(*l), topOfUserRules(*l)
	if i := index(rules, r.RuleID); i >= 0 {
		pos, r.Enabled = i, rules[i].Enabled
		rules = slices.Delete(rules, i, i+1)
	}
	if before != "" || after != "" {
		if pos, err = anchor(rules, before, after); err != nil {
			return err
		}
	}
	*l = slices.Insert(rules, pos, r)
	return nil
}

// checkNewID applies the spec's limits on the ID of a rule a client creates: a leading dot is
// reserved for server-default rules, and slashes would not survive the rule's URL.
func checkNewID(id string) error {
	switch {
	case id == "":
		return fmt.Errorf("%w: empty", ErrInvalidID)
	case strings.HasPrefix(id, "."):
		return fmt.Errorf("%w: IDs starting with '.' are reserved for server-default rules", ErrInvalidID)
	case strings.ContainsAny(id, `/\`):
		return fmt.Errorf("%w: IDs may not contain '/' or '\\'", ErrInvalidID)
	}
	return nil
}

// shape builds the stored form of a client's rule, enabled: conditions only for override and
// underride, a pattern only (and always) for content; room and sender rules match on their ID.
func shape(kind string, r Rule) (Rule, error) {
	if err := checkActions(r.Actions); err != nil {
		return Rule{}, err
	}
	out := Rule{RuleID: r.RuleID, Enabled: true, Actions: r.Actions}
	switch kind {
	case "override", "underride":
		out.Conditions = r.Conditions
		if out.Conditions == nil {
			out.Conditions = []Condition{} // no conditions: matches every event
		}
		return out, checkConditions(out.Conditions)
	case "content":
		if r.Pattern == "" {
			return Rule{}, fmt.Errorf("%w: pattern", ErrMissingField)
		}
		out.Pattern = r.Pattern
	}
	return out, nil
}

// topOfUserRules is where the most important user-defined rule goes: server-default rules
// rank below user-defined ones, except .m.rule.master, which stays first.
func topOfUserRules(rules []Rule) int {
	if len(rules) > 0 && rules[0].RuleID == ruleMaster {
		return 1
	}
	return 0
}

// anchor is the index before or after names. Only user-defined rules can be named (the spec
// forbids placing a rule relative to a server-default one), which keeps user-defined rules
// ahead of the defaults.
func anchor(rules []Rule, before, after string) (int, error) {
	id, offset := before, 0
	if id == "" {
		id, offset = after, 1
	}
	i := index(rules, id)
	if i < 0 || rules[i].Default {
		return 0, fmt.Errorf("%w: %s", ErrBadPosition, id)
	}
	return i + offset, nil
}

// checkActions requires an action list whose entries are action names or set_tweak objects.
// Unknown names pass: the spec has evaluators ignore them, and new ones may come.
func checkActions(acts []any) error {
	if acts == nil {
		return fmt.Errorf("%w: actions", ErrMissingField)
	}
	for i, a := range acts {
		switch x := a.(type) {
		case string:
			continue
		case map[string]any:
			if _, ok := x["set_tweak"].(string); ok {
				continue
			}
		}
		return fmt.Errorf("%w: action %d is neither a string nor an object with set_tweak", ErrInvalidRule, i)
	}
	return nil
}

// keyed are the condition kinds that cannot work without a key.
var keyed = map[string]bool{
	"event_match": true, "event_property_is": true, "event_property_contains": true,
	"sender_notification_permission": true,
}

// checkConditions refuses conditions without the fields their kind needs. Unknown kinds pass:
// the spec has them never match, which disables the rule rather than failing.
func checkConditions(conds []Condition) error {
	for i, c := range conds {
		missing := ""
		switch {
		case c.Kind == "":
			missing = "kind"
		case keyed[c.Kind] && c.Key == "":
			missing = "key"
		case c.Kind == "event_match" && !c.hasPattern:
			missing = "pattern"
		case valued[c.Kind] && !c.hasValue:
			missing = "value"
		case c.Kind == "room_member_count" && c.Is == "":
			missing = "is"
		}
		if missing != "" {
			return fmt.Errorf("%w: condition %d has no %s", ErrInvalidRule, i, missing)
		}
	}
	return nil
}

// Delete removes a user-defined rule; server-default rules can only be disabled.
func (rs *Ruleset) Delete(kind, id string) error {
	return rs.edit(kind, id, func(rules []Rule, i int) ([]Rule, error) {
		if rules[i].Default {
			return nil, fmt.Errorf("%w: server-default rules cannot be deleted", ErrInvalidID)
		}
		return slices.Delete(rules, i, i+1), nil
	})
}

// SetEnabled enables or disables any rule, server-default ones included.
func (rs *Ruleset) SetEnabled(kind, id string, enabled bool) error {
	return rs.edit(kind, id, func(rules []Rule, i int) ([]Rule, error) {
		rules[i].Enabled = enabled
		return rules, nil
	})
}

// SetActions replaces the actions of any rule, server-default ones included.
func (rs *Ruleset) SetActions(kind, id string, acts []any) error {
	if err := checkActions(acts); err != nil {
		return err
	}
	return rs.edit(kind, id, func(rules []Rule, i int) ([]Rule, error) {
		rules[i].Actions = acts
		return rules, nil
	})
}

// edit finds rule id of the kind and stores what change makes of a copy of the kind's rules.
func (rs *Ruleset) edit(kind, id string, change func(rules []Rule, i int) ([]Rule, error)) error {
	l, i, err := rs.locate(kind, id)
	if err != nil {
		return err
	}
	rules, err := change(slices.Clone(*l), i)
	if err != nil {
		return err
	}
	*l = rules
	return nil
}
