package push

import (
	"encoding/json"
	"math"
	"strings"
)

// splitPath splits a dot-separated property path into property names, per the
// spec appendix: "\." is a literal dot and "\\" a literal backslash, while any
// other backslash sequence is kept as-is (reserved for future use).
func splitPath(key string) []string {
	var parts []string
	var cur strings.Builder
	for i := 0; i < len(key); i++ {
		c := key[i]
		switch {
		case c == '\\' && i+1 < len(key) && (key[i+1] == '.' || key[i+1] == '\\'):
			i++
			cur.WriteByte(key[i])
		case c == '.':
			parts = append(parts, cur.String())
			cur.Reset()
		default:
			cur.WriteByte(c)
		}
	}
	return append(parts, cur.String())
}

// lookup resolves a dotted path in a decoded event. Paths only descend
// through objects: the spec gives no way to index into arrays.
func lookup(event map[string]any, key string) (any, bool) {
	var cur any = event
	for _, name := range splitPath(key) {
		obj, ok := cur.(map[string]any)
		if !ok {
			return nil, false
		}
		if cur, ok = obj[name]; !ok {
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
