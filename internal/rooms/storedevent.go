package rooms

import (
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/matrix-org/gomatrixserverlib"
	"github.com/matrix-org/gomatrixserverlib/spec"
	"github.com/tidwall/gjson"

	"github.com/firebreak/firebreak/internal/wire"
)

// eventFields are the top-level keys the signer writes, each with how it fills its field
// (ignoredKey for the ones gomatrixserverlib's parse does not read).
type eventField struct {
	name   string
	decode func(e *builtEvent, eventJSON []byte, v gjson.Result) bool
}

var eventFields = []eventField{
	{"auth_events", func(e *builtEvent, _ []byte, v gjson.Result) bool { return unescapedStrings(v, &e.auth) }},
	{"content", decodeContent},
	{"depth", decodeDepth},
	{"hashes", ignoredKey},
	{"origin", ignoredKey},
	{"origin_server_ts", decodeTimestamp},
	{"prev_events", func(e *builtEvent, _ []byte, v gjson.Result) bool { return unescapedStrings(v, &e.prev) }},
	{"prev_state", ignoredKey},
	{"redacts", func(e *builtEvent, _ []byte, v gjson.Result) bool { return unescapedString(v, &e.redacts) }},
	{"room_id", func(e *builtEvent, _ []byte, v gjson.Result) bool { return unescapedString(v, &e.roomID) }},
	{"sender", func(e *builtEvent, _ []byte, v gjson.Result) bool { return unescapedString(v, &e.sender) }},
	{"signatures", ignoredKey},
	{"state_key", decodeStateKey},
	{"type", func(e *builtEvent, _ []byte, v gjson.Result) bool { return unescapedString(v, &e.eventType) }},
}

// decodeStoredPlain reads a stored event in one pass where its JSON is what the signer writes:
// a room version with string event references, only the signer's top-level keys, each once,
// strings without escapes and valid UTF-8, integers without fraction or exponent, and a room
// id gomatrixserverlib's parse accepts. Then its fields are exactly what that parse would
// give, for a fraction of the CPU (it was half of a follower's). Anything else gets nil, and
// the caller parses it with gomatrixserverlib.
func decodeStoredPlain(version gomatrixserverlib.IRoomVersion, id string, eventJSON []byte) *builtEvent {
	// gjson's validator agrees with encoding/json's but for nesting past 10,000 levels, which
	// encoding/json refuses; no event nests that deep, as the API compacts every content with
	// encoding/json before it is built.
	if version.EventFormat() != gomatrixserverlib.EventFormatV2 || !gjson.ValidBytes(eventJSON) {
		return nil
	}
	// gjson reads a string; viewing the JSON as one, instead of copying the whole event, is
	// safe as a stored event's JSON never changes. The strings kept share its memory too: the
	// model keeps the JSON for as long as the event anyway (a redaction replaces it, and the
	// old JSON then stays for as long as its strings do), and a copy of each would be one more
	// object per string for the collector to trace.
	root := gjson.Parse(wire.View(eventJSON))
	if !root.IsObject() {
		return nil
	}
	e := &builtEvent{id: id, json: eventJSON, version: version}
	var seen uint32
	ok := true
	root.ForEach(func(key, value gjson.Result) bool {
		i := slices.IndexFunc(eventFields, func(k eventField) bool { return k.name == key.Str })
		if i < 0 || seen&(1<<i) != 0 || strings.Contains(key.Raw, `\`) {
			ok = false
			return false
		}
		seen |= 1 << i
		ok = eventFields[i].decode(e, eventJSON, value)
		return ok
	})
	if !ok || !acceptedRoomID(e.roomID) {
		return nil
	}
	return e
}

func ignoredKey(*builtEvent, []byte, gjson.Result) bool { return true }

// unescapedString reads a JSON string without escapes, which is then its bytes between the
// quotes, sharing the JSON's memory.
func unescapedString(v gjson.Result, into *string) bool {
	if v.Type != gjson.String || len(v.Raw) < 2 || strings.Contains(v.Raw, `\`) || !utf8.ValidString(v.Str) {
		return false
	}
	*into = v.Str
	return true
}

func unescapedStrings(v gjson.Result, into *[]string) bool {
	if !v.IsArray() {
		return false
	}
	ss := []string{}
	ok := true
	v.ForEach(func(_, item gjson.Result) bool {
		var s string
		ok = unescapedString(item, &s)
		ss = append(ss, s)
		return ok
	})
	*into = ss
	return ok
}

func decodeStateKey(e *builtEvent, _ []byte, v gjson.Result) bool {
	var s string
	if !unescapedString(v, &s) {
		return false
	}
	e.stateKey = &s
	return true
}

// decodeContent takes the content's bytes within the event, as encoding/json gives a RawJSON.
func decodeContent(e *builtEvent, eventJSON []byte, v gjson.Result) bool {
	end := v.Index + len(v.Raw)
	if v.Index <= 0 || end > len(eventJSON) || string(eventJSON[v.Index:end]) != v.Raw {
		return false
	}
	e.content = eventJSON[v.Index:end:end]
	return true
}

func decodeDepth(e *builtEvent, _ []byte, v gjson.Result) bool {
	if !plainInteger(v) {
		return false
	}
	depth, err := strconv.ParseInt(v.Raw, 10, 64)
	e.depth = depth
	return err == nil
}

func decodeTimestamp(e *builtEvent, _ []byte, v gjson.Result) bool {
	if !plainInteger(v) {
		return false
	}
	ts, err := strconv.ParseUint(v.Raw, 10, 64)
	e.ts = spec.Timestamp(ts)
	return err == nil
}

// plainInteger: digits with an optional minus sign, which encoding/json reads into an integer
// exactly as strconv does (it refuses fractions and exponents there).
func plainInteger(v gjson.Result) bool {
	digits := v.Raw
	if len(digits) > 0 && digits[0] == '-' {
		digits = digits[1:]
	}
	if v.Type != gjson.Number || digits == "" {
		return false
	}
	for i := 0; i < len(digits); i++ {
		if digits[i] < '0' || digits[i] > '9' {
			return false
		}
	}
	return true
}
