package push

import (
	"strconv"
	"strings"
)

// matchCondition evaluates one condition of an override/underride rule.
// Unknown kinds return false: the spec says unrecognised conditions must
// never match, which effectively disables the rule.
func matchCondition(cond Condition, e Event, c Context) bool {
	switch cond.Kind {
	case "event_match":
		return matchEventMatch(cond, e)
	case "event_property_is":
		return matchPropertyIs(cond, e.fields)
	case "event_property_contains":
		return matchPropertyContains(cond, e.fields)
	case "contains_display_name":
		return matchDisplayName(e, c.DisplayName)
	case "room_member_count":
		return matchMemberCount(cond.Is, c.MemberCount)
	case "sender_notification_permission":
		return cond.Key != "" && c.SenderCanNotify != nil && c.SenderCanNotify(cond.Key)
	}
	return false
}

// matchEventMatch globs a string property. A missing or non-string property
// never matches, even for "*". content.body is special-cased to word
// matching so "@room" or a username is found inside a sentence.
func matchEventMatch(cond Condition, e Event) bool {
	if cond.Key == "content.body" {
		return e.body != nil && matchGlobText(cond.Pattern, *e.body, true)
	}
	v, ok := lookup(e.fields, cond.Key)
	s, isStr := v.(string)
	if !ok || !isStr {
		return false
	}
	return matchGlob(cond.Pattern, s)
}

// matchPropertyIs is an exact, type-strict scalar comparison.
func matchPropertyIs(cond Condition, ev map[string]any) bool {
	v, ok := lookup(ev, cond.Key)
	return ok && scalarEqual(v, cond.Value)
}

// matchPropertyContains looks for the value among an array property's
// elements; non-scalar elements simply never compare equal.
func matchPropertyContains(cond Condition, ev map[string]any) bool {
	v, ok := lookup(ev, cond.Key)
	arr, isArr := v.([]any)
	if !ok || !isArr {
		return false
	}
	for _, el := range arr {
		if scalarEqual(el, cond.Value) {
			return true
		}
	}
	return false
}

// matchDisplayName finds the user's room display name as a whole word in the
// body. An empty name would match everything, so it never matches.
func matchDisplayName(e Event, name string) bool {
	if strings.TrimSpace(name) == "" {
		return false
	}
	return e.body != nil && compiledGlob(name, true).matchWords(*e.body)
}

// matchMemberCount parses an "is" expression such as "2", "==2" or ">=10"
// and compares it with the room's joined member count. Malformed input
// never matches rather than guessing.
func matchMemberCount(is string, count int) bool {
	op, num := splitOperator(is)
	n, err := strconv.Atoi(num)
	if err != nil || num == "" || num[0] == '+' || num[0] == '-' {
		return false
	}
	switch op {
	case "==":
		return count == n
	case "<":
		return count < n
	case ">":
		return count > n
	case "<=":
		return count <= n
	case ">=":
		return count >= n
	}
	return false
}

// splitOperator separates the comparison prefix; no prefix means "==".
// Two-character operators are tried first so "<=" is not read as "<".
func splitOperator(is string) (op, rest string) {
	for _, p := range []string{"==", "<=", ">=", "<", ">"} {
		if after, ok := strings.CutPrefix(is, p); ok {
			return p, after
		}
	}
	return "==", is
}

// stringAt fetches a nested string property without path parsing, for the
// fixed locations (content.body, sender, room_id) the evaluator reads itself.
func stringAt(ev map[string]any, keys ...string) (string, bool) {
	var cur any = ev
	for _, k := range keys {
		obj, ok := cur.(map[string]any)
		if !ok {
			return "", false
		}
		cur = obj[k]
	}
	s, ok := cur.(string)
	return s, ok
}
