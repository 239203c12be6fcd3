package rooms

import (
	"bytes"
	"cmp"
	"crypto/ed25519"
	"encoding/json"
	"slices"
	"strings"
	"testing"
	"time"
	"unsafe"

	"github.com/matrix-org/gomatrixserverlib"
	"github.com/matrix-org/gomatrixserverlib/spec"
)

// TestBuildEventMatchesGomatrixserverlib holds the event signer to EventBuilder.Build: for every
// stable room version and a spread of events (messages with awkward content, state events,
// redactions, the first event of a room), the same event id and the same bytes, or an error
// from both.
func TestBuildEventMatchesGomatrixserverlib(t *testing.T) {
	signer := testSigner(t)
	empty, member, bob := "", "@bob:example.org", "@b<o>b&\u2028:example.org"
	prev := []string{"$prevevent0123456789abcdefghijklmnopqrstuvwx"}
	auth := []string{"$create", "$power", "$member"}
	cases := []struct {
		name string
		pe   gomatrixserverlib.ProtoEvent // depth 7 if unset
	}{
		{"message", gomatrixserverlib.ProtoEvent{Type: "m.room.message",
			Content: spec.RawJSON(`{"msgtype":"m.text","body":"hello"}`)}},
		{"content needing canonical form", gomatrixserverlib.ProtoEvent{Type: "m.room.message",
			Content: spec.RawJSON(`{ "z": [3, {"b": "\u00e9\/\"", "a": null}], "body": "<b>&amp;</b> \u2028 😀 \n\t\u0001", "a": -12e2, "msgtype": "m.text" }`)}},
		{"empty content", gomatrixserverlib.ProtoEvent{Type: "m.room.message", Content: spec.RawJSON(`{}`)}},
		// Plain strings take canonicalPlainObject's path; the rest of these fall back from it.
		{"plain strings out of order", gomatrixserverlib.ProtoEvent{Type: "m.room.encrypted",
			Content: spec.RawJSON(`{"session_id":"s","algorithm":"m.megolm.v1.aes-sha2","ciphertext":"AwgA+/=","device_id":"D","sender_key":"k"}`)}},
		{"plain strings HTML and JavaScript would escape", gomatrixserverlib.ProtoEvent{Type: "m.room.message",
			Content: spec.RawJSON("{\"body\":\"<b>&amp;</b> \u2028\u2029 \x7f \u00e9 😀 '/\",\"msgtype\":\"m.text\"}")}},
		{"plain keys sorted by code point", gomatrixserverlib.ProtoEvent{Type: "m.room.message",
			Content: spec.RawJSON("{\"\u00e9\":\"1\",\"z\":\"2\",\"Z\":\"3\",\"\U0001F600\":\"4\",\"a\":\"5\",\"\":\"6\",\"\uff5e\":\"7\"}")}},
		{"plain nested objects and safe integers (the bench's messages)", gomatrixserverlib.ProtoEvent{Type: "m.room.message",
			Content: spec.RawJSON(`{"msgtype":"m.text","body":"x","fb_bench":{"run":"r","n":12,"ts_us":1764201234567890},"m.mentions":{}}`)}},
		{"plain literals and integers at the bounds", gomatrixserverlib.ProtoEvent{Type: "m.room.message",
			Content: spec.RawJSON(`{"n":9007199254740991,"m":-9007199254740991,"b":true,"c":null,"f":false,"z":0}`)}},
		{"plain but for an integer past the bound", gomatrixserverlib.ProtoEvent{Type: "m.room.message",
			Content: spec.RawJSON(`{"n":9007199254740992}`)}},
		{"plain but for -0", gomatrixserverlib.ProtoEvent{Type: "m.room.message", Content: spec.RawJSON(`{"n":-0}`)}},
		{"plain but for a trailing comma", gomatrixserverlib.ProtoEvent{Type: "m.room.message", Content: spec.RawJSON(`{"a":"b",}`)}},
		{"plain but for spaces", gomatrixserverlib.ProtoEvent{Type: "m.room.message", Content: spec.RawJSON(`{"b": "1", "a":"2"}`)}},
		{"plain but for invalid UTF-8", gomatrixserverlib.ProtoEvent{Type: "m.room.message", Content: spec.RawJSON("{\"b\":\"\xff\"}")}},
		{"plain but for a number", gomatrixserverlib.ProtoEvent{Type: "m.room.message", Content: spec.RawJSON(`{"b":"x","a":1}`)}},
		{"content not an object", gomatrixserverlib.ProtoEvent{Type: "m.room.message", Content: spec.RawJSON(`[1]`)}},
		{"null content", gomatrixserverlib.ProtoEvent{Type: "m.room.topic", StateKey: &empty, Content: spec.RawJSON(`null`)}},
		{"member content not an object", gomatrixserverlib.ProtoEvent{Type: "m.room.member", StateKey: &member,
			Content: spec.RawJSON(`"join"`)}},
		{"float content", gomatrixserverlib.ProtoEvent{Type: "m.room.message", Content: spec.RawJSON(`{"n":1.5}`)}},
		{"number beyond a float64", gomatrixserverlib.ProtoEvent{Type: "m.room.message", Content: spec.RawJSON(`{"n":[-1e400]}`)}},
		{"lone surrogate before <", gomatrixserverlib.ProtoEvent{Type: "m.room.message", Content: spec.RawJSON(`{"b":"\ud800<"}`)}},
		{"lone surrogate before &", gomatrixserverlib.ProtoEvent{Type: "m.room.message", Content: spec.RawJSON(`{"b":"\ud800&x"}`)}},
		{"lone surrogate before U+2028", gomatrixserverlib.ProtoEvent{Type: "m.room.message", Content: spec.RawJSON("{\"b\":\"\\ud800\u2028\"}")}},
		{"depth beyond canonical JSON's integers", gomatrixserverlib.ProtoEvent{Type: "m.room.message",
			Content: spec.RawJSON(`{}`), Depth: 1 << 53}},
		{"number out of range", gomatrixserverlib.ProtoEvent{Type: "m.room.message", Content: spec.RawJSON(`{"n":9007199254740993}`)}},
		{"room name", gomatrixserverlib.ProtoEvent{Type: "m.room.name", StateKey: &empty,
			Content: spec.RawJSON(`{"name":"Tëst <room>"}`)}},
		{"member", gomatrixserverlib.ProtoEvent{Type: "m.room.member", StateKey: &member,
			Content: spec.RawJSON(`{"membership":"join","displayname":"Bob","avatar_url":"mxc://x/y"}`)}},
		{"member with odd state key", gomatrixserverlib.ProtoEvent{Type: "m.room.member", StateKey: &bob,
			Content: spec.RawJSON(`{"membership":"invite"}`)}},
		{"power levels", gomatrixserverlib.ProtoEvent{Type: "m.room.power_levels", StateKey: &empty,
			Content: spec.RawJSON(`{"users":{"@alice:example.org":100},"events":{"m.room.name":50},"ban":50,"redact":50,"invite":0}`)}},
		{"redaction", gomatrixserverlib.ProtoEvent{Type: "m.room.redaction", Redacts: "$target",
			Content: spec.RawJSON(`{"reason":"spam","redacts":"$target"}`)}},
		{"custom type", gomatrixserverlib.ProtoEvent{Type: "org.example.\u00fcnicode<type>",
			Content: spec.RawJSON(`{"k":"v"}`)}},
		{"create (no prev, no auth)", gomatrixserverlib.ProtoEvent{Type: "m.room.create", StateKey: &empty,
			Content: spec.RawJSON(`{"creator":"@alice:example.org","room_version":"10"}`)}},
	}
	for _, version := range gomatrixserverlib.StableRoomVersions() {
		for _, tc := range cases {
			t.Run(string(version.Version())+"/"+tc.name, func(t *testing.T) {
				pe := tc.pe
				pe.RoomID, pe.SenderID, pe.Depth = "!room:example.org", "@alice:example.org", cmp.Or(pe.Depth, 7)
				pe.PrevEvents, pe.AuthEvents = prev, auth
				if pe.Type == "m.room.create" {
					pe.PrevEvents, pe.AuthEvents, pe.Depth = []string{}, []string{}, 1
				}
				checkSignerMatchesBuild(t, signer, version, pe)
			})
		}
	}
}

// FuzzSignerMatchesBuild feeds arbitrary content, types, state keys and redaction targets to
// both builders, in every stable room version.
func FuzzSignerMatchesBuild(f *testing.F) {
	var versions []gomatrixserverlib.IRoomVersion
	for _, v := range gomatrixserverlib.StableRoomVersions() {
		versions = append(versions, v)
	}
	slices.SortFunc(versions, func(a, b gomatrixserverlib.IRoomVersion) int {
		return strings.Compare(string(a.Version()), string(b.Version()))
	})
	index := func(v gomatrixserverlib.RoomVersion) uint8 {
		return uint8(slices.IndexFunc(versions, func(iv gomatrixserverlib.IRoomVersion) bool { return iv.Version() == v }))
	}
	f.Add(`{"msgtype":"m.text","body":"hi"}`, "m.room.message", "", false, "", index("10"))
	f.Add(`{"a":{"c":[1,"\u00e9",null,true],"b":-0},"\u2028":"<>&"}`, "m.room.topic", "", true, "", index("10"))
	f.Add(`{"membership":"join\ud800"}`, "m.room.member", "@bob:example.org", true, "", index("10"))
	f.Add(`{"history_visibility":-0.0000001}`, "m.room.history_visibility", "", true, "", index("5"))
	f.Add(`{"room_version":"11","x":"\udc00"}`, "m.room.create", "", true, "", index("11"))
	f.Add(`{"users":{"@a:x":1,"@a:x":2}}`, "m.room.power_levels", "", true, "", index("10"))
	f.Add(`{"reason":"spam"}`, "m.room.redaction", "", false, "$target", index("11"))
	f.Add(`{"n":1e400}`, "m.room.message", "", false, "", index("5"))
	f.Add(`{"b":"\ud800<","c":"\ud800&x"}`, "m.room.message", "", false, "", index("10"))
	f.Add("{\"z\":\"<&>\u2028\x7f\",\"\u00e9\":\"\",\"Z\":\"1\"}", "m.room.encrypted", "", false, "", index("10"))
	f.Add(`{"b":"1","b":"2","a":"3"}`, "m.room.message", "", false, "", index("10"))
	f.Add(`{"abc":"`, "m.room.message", "", false, "", index("10"))
	f.Add(`{"b":{"d":"1","c":-2},"a":null,"n":9007199254740991,"m":{}}`, "m.room.message", "", false, "", index("5"))
	signer := testSigner(f)
	f.Fuzz(func(t *testing.T, content, evType, stateKey string, isState bool, redacts string, version uint8) {
		pe := gomatrixserverlib.ProtoEvent{RoomID: "!room:example.org", SenderID: "@alice:example.org",
			Type: evType, Content: spec.RawJSON(content), Redacts: redacts, Depth: 3,
			PrevEvents: []string{"$prev"}, AuthEvents: []string{"$create"}}
		if isState {
			pe.StateKey = &stateKey
		}
		checkSignerMatchesBuild(t, signer, versions[int(version)%len(versions)], pe)
	})
}

// TestCanonicalPlainObject: what the shortcut for objects of plain strings takes, and what it
// leaves to the general path (TestBuildEventMatchesGomatrixserverlib checks the bytes of both).
func TestCanonicalPlainObject(t *testing.T) {
	cases := []struct {
		in, want string // want "" when the shortcut must not take it
	}{
		{`{"b":"1","a":"2"}`, `{"a":"2","b":"1"}`},
		{`{}`, `{}`},
		{"{\"\u00e9\":\"x\",\"z\":\"<&>\"}", "{\"z\":\"<&>\",\"\u00e9\":\"x\"}"},
		{`{"a":"1","a":"2"}`, ""},
		{`{"a":"b",}`, ""},
		{`{"a":"b",,"c":"d"}`, ""},
		{`{"a":"b""c":"d"}`, ""},
		{`{"a":1}`, `{"a":1}`},
		{`{"b":{"d":"1","c":-2},"a":null,"c":{},"d":true,"e":false}`, `{"a":null,"b":{"c":-2,"d":"1"},"c":{},"d":true,"e":false}`},
		{`{"ts":9007199254740991,"n":-9007199254740991,"z":0}`, `{"n":-9007199254740991,"ts":9007199254740991,"z":0}`},
		{`{"a":9007199254740992}`, ""},
		{`{"a":-0}`, ""},
		{`{"a":01}`, ""},
		{`{"a":1.5}`, ""},
		{`{"a":1e3}`, ""},
		{`{"a":-}`, ""},
		{`{"a":1-2}`, ""},
		{`{"a":[1]}`, ""},
		{`{"a":tru}`, ""},
		{`{"a":truex}`, ""},
		{`{"a":{"b":"1","b":"2"}}`, ""},
		{`{"a":"b"}x`, ""},
		{`{"abc":"`, ""}, // cut short: must not read past the end
		{`{"a":{"b":"`, ""},
		{`{"a":{"a":{"a":{"a":{"a":{"a":{"a":{"a":{"a":{"a":{}}}}}}}}}}}`, ""},
		{`{"a":"\n"}`, ""},
		{"{\"a\":\"\t\"}", ""},
		{`{"a" :"b"}`, ""},
		{`{"a":"b"`, ""},
		{`{"a"}`, ""},
		{`[]`, ""},
		{"{\"a\":\"\xff\"}", ""},
	}
	for _, c := range cases {
		got, ok := canonicalPlainObject(slices.Clip([]byte(c.in))) // no spare capacity to read into
		if ok != (c.want != "") || string(got) != c.want {
			t.Errorf("canonicalPlainObject(%q) = %q, %v; want %q", c.in, got, ok, c.want)
		}
	}
}

func testSigner(tb testing.TB) *eventSigner {
	_, priv, err := ed25519.GenerateKey(nil)
	if err != nil {
		tb.Fatal(err)
	}
	signer, err := newEventSigner("example.org", SigningKey{ID: "ed25519:k1", Priv: priv})
	if err != nil {
		tb.Fatal(err)
	}
	return signer
}

// checkSignerMatchesBuild builds pe with the signer and with EventBuilder.Build at the same
// time and key: both fail, or both give the same event id and bytes, except the signature
// where Build's does not verify (see eventSigner.build); the signer's always does. The
// signer's event, and the same bytes read back from a stream, answer every question as
// gomatrixserverlib's parse of them does.
func checkSignerMatchesBuild(t *testing.T, signer *eventSigner, version gomatrixserverlib.IRoomVersion, pe gomatrixserverlib.ProtoEvent) {
	t.Helper()
	now := time.UnixMilli(1_700_000_000_123)
	if version.EventFormat() == gomatrixserverlib.EventFormatV1 {
		pe.PrevEvents, pe.AuthEvents = nil, nil // Build fills these in itself
	}
	want, wantErr := version.NewEventBuilderFromProtoEvent(&pe).Build(now, signer.origin, signer.key.ID, signer.key.Priv)
	got, gotErr := signer.build(version.NewEventBuilderFromProtoEvent(&pe), version, now)
	if (wantErr != nil) != (gotErr != nil) {
		t.Fatalf("Build error %v, signer error %v", wantErr, gotErr)
	}
	if wantErr != nil || version.EventFormat() == gomatrixserverlib.EventFormatV1 {
		return // v1 event ids are random; the signer hands these to Build
	}
	if got.EventID() != want.EventID() {
		t.Errorf("event id %s, want %s", got.EventID(), want.EventID())
	}
	if err := verifySignature(signer, version, got); err != nil {
		t.Fatalf("the signer's signature does not verify: %v\n%s", err, got.JSON())
	}
	gotJSON, wantJSON := got.JSON(), want.JSON()
	if verifySignature(signer, version, want) != nil {
		gotJSON, wantJSON = withoutSignatures(t, gotJSON), withoutSignatures(t, wantJSON)
	}
	if !bytes.Equal(gotJSON, wantJSON) {
		t.Errorf("event JSON\n got %s\nwant %s", gotJSON, wantJSON)
	}
	checkAnswersAsParsed(t, version, got)
	if e, ok := got.(*builtEvent); ok {
		checkStringsShareJSON(t, e)
	}
	stored := decodeStoredPlain(version, got.EventID(), got.JSON())
	if _, built := got.(*builtEvent); built && stored == nil && !writtenWithEscapes(got) {
		t.Errorf("the signer's event is not read back in one pass: %s", got.JSON())
	}
	if stored != nil {
		checkAnswersAsParsed(t, version, stored)
	}
}

// checkStringsShareJSON: each of a built event's strings that its JSON holds as it is, between
// quotes, is a view of the JSON, not a string of its own beside it.
func checkStringsShareJSON(t *testing.T, e *builtEvent) {
	t.Helper()
	fields := map[string]string{"type": e.eventType, "sender": e.sender, "room_id": e.roomID, "redacts": e.redacts}
	if e.stateKey != nil {
		fields["state_key"] = *e.stateKey
	}
	start := uintptr(unsafe.Pointer(unsafe.SliceData(e.json)))
	for name, s := range fields {
		at := uintptr(unsafe.Pointer(unsafe.StringData(s)))
		asIs := bytes.Contains(e.json, []byte(`"`+name+`":"`+s+`"`))
		if s != "" && asIs && (at < start || at >= start+uintptr(len(e.json))) {
			t.Errorf("%s %q is a string of its own beside the event's JSON", name, s)
		}
	}
}

func verifySignature(signer *eventSigner, version gomatrixserverlib.IRoomVersion, pdu gomatrixserverlib.PDU) error {
	redacted, err := version.RedactEventJSON(pdu.JSON())
	if err != nil {
		return err
	}
	pub := signer.key.Priv.Public().(ed25519.PublicKey)
	return gomatrixserverlib.VerifyJSON(string(signer.origin), signer.key.ID, pub, redacted)
}

func withoutSignatures(t *testing.T, eventJSON []byte) []byte {
	t.Helper()
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(eventJSON, &fields); err != nil {
		t.Fatal(err)
	}
	delete(fields, "signatures")
	b, err := json.Marshal(fields)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// writtenWithEscapes reports whether one of the event's top-level strings needs an escape in
// JSON (a quote, a backslash or a control character): decodeStoredPlain leaves such events to
// gomatrixserverlib's parse.
func writtenWithEscapes(ev gomatrixserverlib.PDU) bool {
	strs := append([]string{ev.Type(), string(ev.SenderID()), ev.Redacts(), ev.RoomID().String()},
		append(ev.PrevEventIDs(), ev.AuthEventIDs()...)...)
	if ev.StateKey() != nil {
		strs = append(strs, *ev.StateKey())
	}
	for _, s := range strs {
		if strings.ContainsFunc(s, func(r rune) bool { return r < 0x20 || r == '"' || r == '\\' }) {
			return true
		}
	}
	return false
}
