package push

import (
	"encoding/json"
	"math"
	"strings"
)

// nextPathName splits the first property name off a dot-separated property path, per the
// spec appendix: "\." is a literal dot and "\\" a literal backslash, while any other
// backslash sequence is kept as-is (reserved for future use). more reports whether another
// name follows.
func nextPathName(path string) (name, rest string, more bool) {
	i := indexDotOrBackslash(path)
	switch {
	case i < 0:
		return path, "", false
	case path[i] == '.':
		return path[:i], path[i+1:], true
	}
	var b strings.Builder
	for i = 0; i < len(path); i++ {
		c := path[i]
		switch {
		case c == '\\' && i+1 < len(path) && (path[i+1] == '.' || path[i+1] == '\\'):
			i++
			b.WriteByte(path[i])
		case c == '.':
			return b.String(), path[i+1:], true
		default:
			b.WriteByte(c)
		}
	}
	return b.String(), "", false
}

// indexDotOrBackslash is strings.IndexAny(path, `.\`) without building a set of the two
// bytes at each call: every condition's path goes through it for every member and event.
func indexDotOrBackslash(path string) int {
	for i := 0; i < len(path); i++ {
		if path[i] == '.' || path[i] == '\\' {
			return i
		}
	}
	return -1
}

// lookup resolves a dotted path in a decoded event. Paths only descend through objects: the
// spec gives no way to index into arrays. Unread counts evaluate every rule's conditions for
// every member and event, so the path is walked in place rather than split into a slice.
func lookup(event map[string]any, key string) (any, bool) {
	var cur any = event
	for rest, more := key, true; more; {
		var name string
		name, rest, more = nextPathName(rest)
		obj, isObject := cur.(map[string]any)
		if !isObject {
			return nil, false
		}
		var found bool
		if cur, found = obj[name]; !found {
			return nil, false
		}
	}
	return cur, true
}

// maxSafeInt is 2**53-1, the canonical JSON integer bound.
const maxSafeInt = 1<<53 - 1

// scalar normalises a JSON scalar for exact comparison: strings, booleans and
// null pass through; numbers become int64 if they are integers in the
// canonical JSON range. ok is false for anything the spec does not let
// event_property_is/contains compare (objects, arrays, fractions...).
//
// Numbers arrive as json.Number from events (decoded with UseNumber so big
// integers stay exact) but as float64 or Go ints from rules built in code or
// decoded without UseNumber, hence the several numeric cases.
func scalar(v any) (any, bool) {
	switch x := v.(type) {
	case nil, string, bool:
		return x, true
	case json.Number:
		n, err := x.Int64()
		return n, err == nil && inSafeRange(n)
	case float64:
		if x != math.Trunc(x) || math.Abs(x) > maxSafeInt {
			return nil, false
		}
		return int64(x), true
	case int:
		return int64(x), inSafeRange(int64(x))
	case int64:
		return x, inSafeRange(x)
	case int32:
		return int64(x), true
	}
	return nil, false
}

func inSafeRange(n int64) bool { return n >= -maxSafeInt && n <= maxSafeInt }

// scalarEqual reports whether two values are the same canonical JSON scalar.
// No type coercion: "true" != true and 1 != "1", as the spec requires.
func scalarEqual(a, b any) bool {
	x, ok := scalar(a)
	if !ok {
		return false
	}
	y, ok := scalar(b)
	return ok && x == y
}
