package rooms

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/matrix-org/gomatrixserverlib"
	"github.com/matrix-org/gomatrixserverlib/spec"

	"github.com/firebreak/firebreak/internal/wire"
)

// eventSigner builds the events this server signs.
type eventSigner struct {
	origin spec.ServerName
	key    SigningKey
	// signaturesPrefix and signaturesSuffix enclose the signature in the canonical
	// {origin:{key id:signature}}.
	signaturesPrefix []byte
	versions         map[gomatrixserverlib.RoomVersion]versionRules
}

// versionRules is what the signer learns about a room version from gomatrixserverlib, once.
type versionRules struct {
	keeps map[string]bool // the top-level keys its redaction keeps
	// boundsNumbers: its canonical JSON refuses numbers beyond ±(2^53-1), so any content it
	// accepts also decodes into Go values, as its redaction code decodes it.
	boundsNumbers bool
}

const (
	signaturesSuffix = `"}}`
	hashesPrefix     = `{"sha256":"`
	hashesSuffix     = `"}`
)

// encloseBase64 is prefix, sum in unpadded base64 and suffix, in one allocation.
func encloseBase64[P []byte | string](prefix P, sum []byte, suffix string) []byte {
	b := make([]byte, 0, len(prefix)+base64.RawStdEncoding.EncodedLen(len(sum))+len(suffix))
	return append(base64.RawStdEncoding.AppendEncode(append(b, prefix...), sum), suffix...)
}

func newEventSigner(origin string, key SigningKey) (*eventSigner, error) {
	prefix := appendCanonicalString([]byte("{"), origin)
	prefix = appendCanonicalString(append(prefix, ":{"...), string(key.ID))
	versions, err := learnVersionRules()
	if err != nil {
		return nil, err
	}
	return &eventSigner{origin: spec.ServerName(origin), key: key, signaturesPrefix: append(prefix, `:"`...),
		versions: versions}, nil
}

// build does what EventBuilder.Build does, with the same event id and bytes, in a fraction of
// the CPU. Build marshals and parses the whole event a dozen times over (adding the content
// hash, redacting, signing, re-canonicalising, then hashing the redacted form again for the
// event id). Here each top-level key's value is written in canonical JSON once, and the
// canonical event, its redacted form (the bytes signed and hashed for the event id) and the
// final event are each one pass over those keys in sorted order. Which top-level keys a room
// version's redaction keeps is learned from gomatrixserverlib's redaction code once
// (learnVersionRules); the content goes through that code only where it could make a
// difference (redactedContent). Only the event format of room versions 3 and later, the ones
// Firebreak creates, takes this path.
//
// The signature differs from Build's in one case, where Build's is wrong: Build signs the
// redacted event before canonicalising it, so content that canonical JSON rewrites (a lone
// UTF-16 surrogate, a duplicated key, -0.1 in rooms without integer-only JSON) in a key the
// redaction keeps gets a signature that does not verify. Here the canonical event is signed,
// as the spec says. The tests hold the rest to Build byte for byte and check the signature.
func (s *eventSigner) build(eb *gomatrixserverlib.EventBuilder, version gomatrixserverlib.IRoomVersion,
	now time.Time) (gomatrixserverlib.PDU, error) {
	prev, prevOK := eb.PrevEvents.([]string)
	auth, authOK := eb.AuthEvents.([]string)
	rules, known := s.versions[version.Version()]
	if version.EventFormat() != gomatrixserverlib.EventFormatV2 || !known || !prevOK || !authOK ||
		prev == nil || auth == nil || len(eb.Signature) > 0 || len(eb.Unsigned) > 0 {
		return eb.Build(now, s.origin, s.key.ID, s.key.Priv)
	}
	keys, err := canonicalKeys(eb, version, rules, prev, auth, now, s.origin)
	if err != nil {
		return nil, err
	}
	scratch := scratchBuffers.Get().(*[]byte)
	defer scratchBuffers.Put(scratch)
	*scratch = keys.appendObject((*scratch)[:0])
	contentHash := sha256.Sum256(*scratch)
	keys = keys.insert("hashes", encloseBase64(hashesPrefix, contentHash[:], hashesSuffix))
	redacted, err := keys.appendRedacted((*scratch)[:0], version, rules, eb.Type)
	if err != nil {
		return nil, err
	}
	*scratch = redacted
	keys = keys.insert("signatures", encloseBase64(s.signaturesPrefix, s.key.sign(redacted), signaturesSuffix))
	pdu, err := s.newPDU(eb, version, eventIDOf(redacted, version), keys, prev, auth, now)
	if err != nil {
		return nil, err
	}
	return pdu, gomatrixserverlib.CheckFields(pdu)
}

// newPDU makes the built event a PDU from the fields it was built from, where they are
// exactly what parsing its JSON would give, and parses it otherwise.
func (s *eventSigner) newPDU(eb *gomatrixserverlib.EventBuilder, version gomatrixserverlib.IRoomVersion, id string,
	keys eventKeys, prev, auth []string, now time.Time) (gomatrixserverlib.PDU, error) {
	eventJSON := keys.object()
	if e := newBuiltEvent(eb, version, id, eventJSON, keys.valueIn(eventJSON, "content"), prev, auth, now); e != nil {
		e.shareJSON(keys)
		return e, nil
	}
	return version.NewEventFromTrustedJSONWithEventID(id, eventJSON, false)
}

// shareJSON points the event's strings into its JSON wherever they are written there as they
// are (without escapes): the read model keeps the event, and the builder's strings then need
// not stay alive beside it, each one more object for the collector to trace.
func (e *builtEvent) shareJSON(keys eventKeys) {
	for _, f := range []struct {
		name string
		s    *string
	}{{"type", &e.eventType}, {"sender", &e.sender}, {"room_id", &e.roomID}, {"redacts", &e.redacts}, {"state_key", e.stateKey}} {
		if f.s != nil {
			*f.s = keys.stringIn(e.json, f.name, *f.s)
		}
	}
}

// stringIn is s as written for key name in object, sharing object's memory, or s itself
// where the value there is not s between quotes.
func (keys eventKeys) stringIn(object []byte, name, s string) string {
	v := keys.valueIn(object, name)
	if s == "" || len(v) != len(s)+2 || string(v[1:len(v)-1]) != s {
		return s
	}
	return wire.View(v[1 : len(v)-1])
}

// eventKey is one top-level key of an event and its value in canonical JSON.
type eventKey struct {
	name  string
	value []byte
}

// eventKeys are an event's top-level keys in canonical (sorted) order.
type eventKeys []eventKey

// maxSafeInteger is the largest integer canonical JSON allows from room version 6 on.
const maxSafeInteger = 1<<53 - 1

func canonicalKeys(eb *gomatrixserverlib.EventBuilder, version gomatrixserverlib.IRoomVersion, rules versionRules,
	prev, auth []string, now time.Time, origin spec.ServerName) (eventKeys, error) {
	if rules.boundsNumbers && (eb.Depth > maxSafeInteger || eb.Depth < -maxSafeInteger) {
		return nil, fmt.Errorf("depth %d is outside the range canonical JSON allows", eb.Depth)
	}
	content, err := canonicalContent(eb.Content, version)
	if err != nil {
		return nil, err
	}
	if c := content[0]; c != '{' && c != 'n' { // as Build, whose redaction decodes it into a map
		return nil, errors.New("content is not a JSON object")
	}
	v := newValueBuffer(eb, prev, auth, string(origin))
	keys := make(eventKeys, 0, maxEventKeys)
	keys = append(keys,
		eventKey{"auth_events", v.strings(auth)},
		eventKey{"content", content},
		eventKey{"depth", v.integer(eb.Depth)},
		eventKey{"origin", v.string(string(origin))},
		eventKey{"origin_server_ts", v.integer(int64(spec.AsTimestamp(now)))},
		eventKey{"prev_events", v.strings(prev)})
	if eb.StateKey != nil {
		keys = append(keys, eventKey{"prev_state", []byte("[]")}) // Build keeps this historical key on state events
	}
	if eb.Redacts != "" {
		keys = append(keys, eventKey{"redacts", v.string(eb.Redacts)})
	}
	keys = append(keys, eventKey{"room_id", v.string(eb.RoomID)}, eventKey{"sender", v.string(eb.SenderID)})
	if eb.StateKey != nil {
		keys = append(keys, eventKey{"state_key", v.string(*eb.StateKey)})
	}
	return append(keys, eventKey{"type", v.string(eb.Type)}), nil
}

// maxEventKeys is how many top-level keys a signed event has at most: the twelve
// canonicalKeys may write, hashes and signatures.
const maxEventKeys = 14

// valueBuffer holds the canonical values of an event's keys one after another in one
// allocation. Each value is a slice of it capped at its end, so no later append can write over
// it; should the buffer ever grow, earlier values keep the old array.
type valueBuffer struct{ b []byte }

// newValueBuffer sizes the buffer for the event's strings, so it does not grow unless some
// need escapes.
func newValueBuffer(eb *gomatrixserverlib.EventBuilder, prev, auth []string, origin string) *valueBuffer {
	size := len(origin) + len(eb.Redacts) + len(eb.RoomID) + len(eb.SenderID) + len(eb.Type) + 64
	if eb.StateKey != nil {
		size += len(*eb.StateKey)
	}
	for _, ids := range [][]string{prev, auth} {
		for _, id := range ids {
			size += len(id) + 3
		}
	}
	return &valueBuffer{b: make([]byte, 0, size)}
}

func (v *valueBuffer) string(s string) []byte {
	start := len(v.b)
	v.b = appendCanonicalString(v.b, s)
	return v.since(start)
}

func (v *valueBuffer) strings(ss []string) []byte {
	start := len(v.b)
	v.b = append(v.b, '[')
	for i, s := range ss {
		if i > 0 {
			v.b = append(v.b, ',')
		}
		v.b = appendCanonicalString(v.b, s)
	}
	v.b = append(v.b, ']')
	return v.since(start)
}

func (v *valueBuffer) integer(n int64) []byte {
	start := len(v.b)
	v.b = strconv.AppendInt(v.b, n, 10)
	return v.since(start)
}

func (v *valueBuffer) since(start int) []byte { return v.b[start:len(v.b):len(v.b)] }

// canonicalContent checks the client's content is JSON the room version accepts and puts it in
// canonical form.
func canonicalContent(content []byte, version gomatrixserverlib.IRoomVersion) ([]byte, error) {
	if plain, ok := canonicalPlainObject(content); ok {
		return plain, nil
	}
	// Compacted with encoding/json's escaping first, as Build does when it marshals the event:
	// canonical JSON of a lone UTF-16 surrogate depends on the escape that follows it. The API
	// refuses such content; this keeps the signature right for content from any other caller.
	escaped, err := json.Marshal(json.RawMessage(content))
	if err != nil {
		return nil, err
	}
	return gomatrixserverlib.EnforcedCanonicalJSON(escaped, version.Version())
}

// canonicalPlainObject is the canonical form of compact content made only of objects, plain
// strings (no escapes, no control characters), safe integers, true, false and null, in valid
// UTF-8. Text messages, encrypted ones and the bench's are such content, most of what clients
// send, and its canonical form is its own bytes with each object's keys in order. Finding that
// through gomatrixserverlib's general path (escape, validate, check numbers, unescape, sort)
// was about 5% of a send at maximum load. Anything else, repeated keys included, reports !ok
// and takes that path.
func canonicalPlainObject(content []byte) (canonical []byte, ok bool) {
	if !utf8.Valid(content) {
		return nil, false
	}
	canonical, rest, ok := plainObject(content, make([]byte, 0, len(content)), 0)
	if !ok || len(rest) > 0 {
		return nil, false
	}
	return canonical, true
}

// maxPlainDepth bounds the nesting canonicalPlainObject follows; deeper content takes the
// general path.
const maxPlainDepth = 8

// plainObject appends the canonical form of the plain object at the start of b to dst, and
// returns what follows the object.
func plainObject(b, dst []byte, depth int) (canonical, rest []byte, ok bool) {
	if len(b) == 0 || b[0] != '{' || depth > maxPlainDepth {
		return nil, nil, false
	}
	type member struct{ key, value []byte }
	var members []member
	rest = b[1:]
	for len(rest) > 0 && rest[0] != '}' {
		if len(members) > 0 {
			if rest[0] != ',' {
				return nil, nil, false
			}
			rest = rest[1:]
		}
		key, afterKey, ok := plainString(rest)
		if !ok || len(afterKey) == 0 || afterKey[0] != ':' {
			return nil, nil, false
		}
		var value []byte
		if value, rest, ok = plainValue(afterKey[1:], depth); !ok {
			return nil, nil, false
		}
		members = append(members, member{key, value})
	}
	if len(rest) == 0 {
		return nil, nil, false
	}
	// UTF-8's byte order is its code points' order, which canonical JSON sorts keys by.
	slices.SortFunc(members, func(a, b member) int { return bytes.Compare(a.key, b.key) })
	dst = append(dst, '{')
	for i, m := range members {
		if i > 0 {
			if bytes.Equal(m.key, members[i-1].key) {
				return nil, nil, false
			}
			dst = append(dst, ',')
		}
		dst = append(append(append(append(dst, '"'), m.key...), `":`...), m.value...)
	}
	return append(dst, '}'), rest[1:], true
}

// plainValue reads one value of a plain object at the start of b, in canonical form.
func plainValue(b []byte, depth int) (canonical, rest []byte, ok bool) {
	if len(b) == 0 {
		return nil, nil, false
	}
	switch c := b[0]; {
	case c == '"':
		inside, rest, ok := plainString(b)
		if !ok {
			return nil, nil, false
		}
		return b[:len(inside)+2], rest, true
	case c == '{':
		return plainObject(b, nil, depth+1)
	case c == '-' || c >= '0' && c <= '9':
		return smallInteger(b)
	}
	for _, literal := range []string{"true", "false", "null"} {
		if rest, found := bytes.CutPrefix(b, []byte(literal)); found {
			return b[:len(literal)], rest, true
		}
	}
	return nil, nil, false
}

// smallInteger reads an integer within ±(2^53-1), without a leading zero and not -0, which
// every room version's canonical JSON writes as it is.
func smallInteger(b []byte) (canonical, rest []byte, ok bool) {
	digits := b
	if digits[0] == '-' {
		digits = digits[1:]
	}
	n := 0
	for n < len(digits) && digits[n] >= '0' && digits[n] <= '9' {
		n++
	}
	end := len(b) - len(digits) + n
	if n == 0 || n > 16 || (digits[0] == '0' && (n > 1 || b[0] == '-')) {
		return nil, nil, false
	}
	if v, err := strconv.ParseUint(string(digits[:n]), 10, 64); err != nil || v > maxSafeInteger {
		return nil, nil, false
	}
	if end < len(b) && (b[end] == '.' || b[end] == 'e' || b[end] == 'E') {
		return nil, nil, false
	}
	return b[:end], b[end:], true
}

// plainString reads a JSON string without escapes or control characters at the start of b,
// and returns what is between its quotes and what follows it.
func plainString(b []byte) (inside, rest []byte, ok bool) {
	if len(b) == 0 || b[0] != '"' {
		return nil, nil, false
	}
	for i := 1; i < len(b); i++ {
		switch c := b[i]; {
		case c == '"':
			return b[1:i], b[i+1:], true
		case c == '\\' || c < 0x20:
			return nil, nil, false
		}
	}
	return nil, nil, false
}

// insert returns the keys with one more, in its sorted place. It moves the keys after it within
// the same array when there is room (canonicalKeys leaves room for hashes and signatures), so
// only the keys it returns may be used after it.
func (keys eventKeys) insert(name string, value []byte) eventKeys {
	i, _ := slices.BinarySearchFunc(keys, name, func(k eventKey, name string) int { return strings.Compare(k.name, name) })
	return slices.Insert(keys, i, eventKey{name, value})
}

// scratchBuffers hold the bytes the signer hashes or signs and then drops (the event before its
// hashes, its redacted form), reused from send to send: they were about a tenth of the bytes a
// send allocated.
var scratchBuffers = sync.Pool{New: func() any { return new([]byte) }}

// object is the keys as one canonical JSON object.
func (keys eventKeys) object() []byte {
	size := 2
	for _, k := range keys {
		size += len(k.name) + len(k.value) + 4
	}
	return keys.appendObject(make([]byte, 0, size))
}

// appendObject appends the keys as one canonical JSON object to b.
func (keys eventKeys) appendObject(b []byte) []byte {
	b = append(b, '{')
	for i, k := range keys {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(append(append(append(b, '"'), k.name...), `":`...), k.value...)
	}
	return append(b, '}')
}

// valueIn is the named key's value inside object, the keys' object(), sharing its bytes.
func (keys eventKeys) valueIn(object []byte, name string) []byte {
	at := 1 // past '{'
	for i, k := range keys {
		if i > 0 {
			at++ // ','
		}
		at += len(k.name) + 3 // "name":
		if k.name == name {
			return object[at : at+len(k.value) : at+len(k.value)]
		}
		at += len(k.value)
	}
	return nil
}

// appendRedacted appends the canonical redacted event to dst: the top-level keys the room
// version keeps, with the content its redaction rules leave for the event's type.
func (keys eventKeys) appendRedacted(dst []byte, version gomatrixserverlib.IRoomVersion, rules versionRules,
	evType string) ([]byte, error) {
	var keptKeys [maxEventKeys]eventKey
	kept := eventKeys(keptKeys[:0])
	for _, k := range keys {
		if rules.keeps[k.name] {
			kept = append(kept, k)
		}
	}
	i := slices.IndexFunc(kept, func(k eventKey) bool { return k.name == "content" })
	typ := keys[len(keys)-1].value // "type" sorts after every other key
	content, err := redactedContent(version, rules, evType, kept[i].value, typ)
	if err != nil {
		return nil, err
	}
	kept[i].value = content
	return kept.appendObject(dst), nil
}

// redactedContent is the content the room version's redaction leaves, given the event's
// canonical content and type. Every type but the seven in redactionKeepsContent redacts to {}
// in every version, and that answer is given without the version's redaction code, which
// decodes and re-encodes the content, where it cannot differ from the code's: the version
// bounds numbers (so the content decodes) and the content is too short to nest past
// encoding/json's depth limit (10,000).
func redactedContent(version gomatrixserverlib.IRoomVersion, rules versionRules, evType string, content, typ []byte) ([]byte, error) {
	const shortContent = 10_000
	if !redactionKeepsContent[evType] && rules.boundsNumbers && len(content) < shortContent {
		return []byte("{}"), nil
	}
	stub := eventKeys{{"content", content}, {"type", typ}}
	redactedStub, err := version.RedactEventJSON(stub.object())
	if err != nil {
		return nil, err
	}
	var stubContent struct {
		Content json.RawMessage `json:"content"`
	}
	if err := json.Unmarshal(redactedStub, &stubContent); err != nil {
		return nil, err
	}
	return gomatrixserverlib.CanonicalJSONAssumeValid(stubContent.Content), nil
}

// redactionKeepsContent are the event types whose content some room version's redaction keeps
// a part of (the spec's redaction algorithm, versions 1 to 11).
var redactionKeepsContent = map[string]bool{
	"m.room.create": true, "m.room.member": true, "m.room.join_rules": true, "m.room.power_levels": true,
	"m.room.history_visibility": true, "m.room.aliases": true, "m.room.redaction": true,
}

// learnVersionRules learns, for every room version gomatrixserverlib knows, which of the
// top-level keys Firebreak writes its redaction keeps (by redacting an event that has them
// all) and whether its canonical JSON bounds numbers.
func learnVersionRules() (map[gomatrixserverlib.RoomVersion]versionRules, error) {
	probe := []byte(`{"auth_events":[],"content":{},"depth":1,"hashes":{"sha256":"x"},"origin":"o",` +
		`"origin_server_ts":1,"prev_events":[],"prev_state":[],"redacts":"$r","room_id":"!r:o",` +
		`"sender":"@s:o","signatures":{},"state_key":"","type":"m.room.message"}`)
	byVersion := map[gomatrixserverlib.RoomVersion]versionRules{}
	for id, version := range gomatrixserverlib.RoomVersions() {
		redacted, err := version.RedactEventJSON(probe)
		if err != nil {
			return nil, fmt.Errorf("room version %s: %w", id, err)
		}
		var kept map[string]json.RawMessage
		if err := json.Unmarshal(redacted, &kept); err != nil {
			return nil, fmt.Errorf("room version %s: %w", id, err)
		}
		keeps := map[string]bool{"content": true}
		for name := range kept {
			keeps[name] = true
		}
		bounds := version.CheckCanonicalJSON([]byte(`{"n":1e400}`)) != nil
		byVersion[id] = versionRules{keeps: keeps, boundsNumbers: bounds}
	}
	return byVersion, nil
}

// appendCanonicalString appends s as a canonical JSON string.
func appendCanonicalString(dst []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c >= 0x7f || c == '"' || c == '\\' {
			// Escapes and non-ASCII: encoding/json's escaping (which also replaces invalid
			// UTF-8), then canonical JSON's shortest form of it.
			b, _ := json.Marshal(s) // cannot fail for a string
			return append(dst, gomatrixserverlib.CanonicalJSONAssumeValid(b)...)
		}
	}
	return append(append(append(dst, '"'), s...), '"')
}

// eventIDOf is the reference hash of an event, given its canonical redacted JSON.
func eventIDOf(redacted []byte, version gomatrixserverlib.IRoomVersion) string {
	sum := sha256.Sum256(redacted)
	enc := base64.RawURLEncoding
	if version.EventIDFormat() == gomatrixserverlib.EventIDFormatV2 {
		enc = base64.RawStdEncoding
	}
	return "$" + enc.EncodeToString(sum[:])
}
