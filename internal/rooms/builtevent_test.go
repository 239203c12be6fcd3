package rooms

import (
	"bytes"
	"fmt"
	"reflect"
	"testing"
	"time"

	"github.com/matrix-org/gomatrixserverlib"
	"github.com/matrix-org/gomatrixserverlib/spec"
)

// checkAnswersAsParsed holds an event the signer built to gomatrixserverlib's parse of the same
// bytes: every method that reads the event gives the same answer (or both panic).
func checkAnswersAsParsed(t *testing.T, version gomatrixserverlib.IRoomVersion, got gomatrixserverlib.PDU) {
	t.Helper()
	want, err := version.NewEventFromTrustedJSONWithEventID(got.EventID(), got.JSON(), false)
	if err != nil {
		t.Fatalf("gomatrixserverlib cannot parse the built event: %v", err)
	}
	for name, answer := range pduAnswers {
		if g, w := answer(got), answer(want); !reflect.DeepEqual(g, w) {
			t.Errorf("%s: built event says %#v, parsed %#v", name, g, w)
		}
	}
}

// pduAnswers are the PDU methods that read an event, each as one comparable value.
var pduAnswers = map[string]func(gomatrixserverlib.PDU) any{
	"EventID":  func(p gomatrixserverlib.PDU) any { return p.EventID() },
	"StateKey": func(p gomatrixserverlib.PDU) any { return p.StateKey() },
	"StateKeyEquals": func(p gomatrixserverlib.PDU) any {
		return [2]bool{p.StateKeyEquals(""), p.StateKeyEquals("@bob:example.org")}
	},
	"Type":              func(p gomatrixserverlib.PDU) any { return p.Type() },
	"Content":           func(p gomatrixserverlib.PDU) any { return string(p.Content()) },
	"JoinRule":          func(p gomatrixserverlib.PDU) any { return answerOrError(p.JoinRule()) },
	"HistoryVisibility": func(p gomatrixserverlib.PDU) any { return answerOrError(p.HistoryVisibility()) },
	"Membership":        func(p gomatrixserverlib.PDU) any { return answerOrError(p.Membership()) },
	"PowerLevels":       func(p gomatrixserverlib.PDU) any { return answerOrError(p.PowerLevels()) },
	"Version":           func(p gomatrixserverlib.PDU) any { return p.Version() },
	"RoomID":            func(p gomatrixserverlib.PDU) any { return answerOrPanic(func() any { return p.RoomID() }) },
	"Redacts":           func(p gomatrixserverlib.PDU) any { return p.Redacts() },
	"Redacted":          func(p gomatrixserverlib.PDU) any { return p.Redacted() },
	"PrevEventIDs":      func(p gomatrixserverlib.PDU) any { return p.PrevEventIDs() },
	"AuthEventIDs":      func(p gomatrixserverlib.PDU) any { return p.AuthEventIDs() },
	"OriginServerTS":    func(p gomatrixserverlib.PDU) any { return p.OriginServerTS() },
	"SenderID":          func(p gomatrixserverlib.PDU) any { return p.SenderID() },
	"Unsigned":          func(p gomatrixserverlib.PDU) any { return string(p.Unsigned()) },
	"Depth":             func(p gomatrixserverlib.PDU) any { return p.Depth() },
	"JSON":              func(p gomatrixserverlib.PDU) any { return string(p.JSON()) },
	"ToHeaderedJSON":    func(p gomatrixserverlib.PDU) any { return answerOrError(p.ToHeaderedJSON()) },
}

func answerOrError[T any](v T, err error) any {
	if err != nil {
		return "error"
	}
	if b, ok := any(v).([]byte); ok {
		return string(b)
	}
	return v
}

func answerOrPanic(f func() any) (v any) {
	defer func() {
		if r := recover(); r != nil {
			v = "panic"
		}
	}()
	return f()
}

// TestBuiltEventDeclines: where the builder's fields could differ from the parse (invalid
// UTF-8, which encoding/json replaces) or the parse refuses the event (a room id it does not
// accept), the signer parses instead, so the event and the error stay gomatrixserverlib's.
func TestBuiltEventDeclines(t *testing.T) {
	signer := testSigner(t)
	version := gomatrixserverlib.MustGetRoomVersion(gomatrixserverlib.RoomVersionV10)
	bad := "bad\xff"
	cases := []struct {
		name  string
		edit  func(*gomatrixserverlib.ProtoEvent)
		built bool // answered from the builder's fields
	}{
		{"plain message", func(*gomatrixserverlib.ProtoEvent) {}, true},
		{"state event", func(pe *gomatrixserverlib.ProtoEvent) { pe.StateKey = new(string) }, true},
		{"type with invalid UTF-8", func(pe *gomatrixserverlib.ProtoEvent) { pe.Type = bad }, false},
		{"state key with invalid UTF-8", func(pe *gomatrixserverlib.ProtoEvent) { pe.StateKey = &bad }, false},
		{"redacts with invalid UTF-8", func(pe *gomatrixserverlib.ProtoEvent) { pe.Redacts = bad }, false},
		{"prev event with invalid UTF-8", func(pe *gomatrixserverlib.ProtoEvent) { pe.PrevEvents = []string{bad} }, false},
		{"auth event with invalid UTF-8", func(pe *gomatrixserverlib.ProtoEvent) { pe.AuthEvents = []string{bad} }, false},
		{"sender with invalid UTF-8", func(pe *gomatrixserverlib.ProtoEvent) { pe.SenderID = "@" + bad + ":example.org" }, false},
		{"room id with invalid UTF-8", func(pe *gomatrixserverlib.ProtoEvent) { pe.RoomID = "!" + bad + ":example.org" }, false},
		{"room id without a colon", func(pe *gomatrixserverlib.ProtoEvent) { pe.RoomID = "!room" }, false},
		{"room id without its sigil", func(pe *gomatrixserverlib.ProtoEvent) { pe.RoomID = "room:example.org" }, false},
		{"room id of 256 bytes", func(pe *gomatrixserverlib.ProtoEvent) {
			pe.RoomID = "!" + string(bytes.Repeat([]byte("r"), 243)) + ":example.org"
		}, false},
		{"room id of 255 bytes", func(pe *gomatrixserverlib.ProtoEvent) {
			pe.RoomID = "!" + string(bytes.Repeat([]byte("r"), 242)) + ":example.org"
		}, true},
		{"room id the RoomID accessor refuses", func(pe *gomatrixserverlib.ProtoEvent) { pe.RoomID = "!:example.org" }, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			pe := gomatrixserverlib.ProtoEvent{RoomID: "!room:example.org", SenderID: "@alice:example.org",
				Type: "m.room.message", Content: spec.RawJSON(`{"body":"hi"}`), Depth: 3,
				PrevEvents: []string{"$prev"}, AuthEvents: []string{"$create"}}
			tc.edit(&pe)
			checkSignerMatchesBuild(t, signer, version, pe)
			got, err := signer.build(version.NewEventBuilderFromProtoEvent(&pe), version, time.Now())
			if _, built := got.(*builtEvent); err == nil && built != tc.built {
				t.Errorf("answered from the builder's fields: %v, want %v", built, tc.built)
			}
		})
	}
}

// TestBuiltEventBefore1970: gomatrixserverlib cannot read back an event stamped before 1970
// (its origin_server_ts is unsigned), so the signer refuses one, as it did when it parsed every
// event it built, instead of storing an event no node could read.
func TestBuiltEventBefore1970(t *testing.T) {
	signer := testSigner(t)
	version := gomatrixserverlib.MustGetRoomVersion(gomatrixserverlib.RoomVersionV10)
	pe := gomatrixserverlib.ProtoEvent{RoomID: "!room:example.org", SenderID: "@alice:example.org",
		Type: "m.room.message", Content: spec.RawJSON(`{"body":"hi"}`), Depth: 3,
		PrevEvents: []string{"$prev"}, AuthEvents: []string{"$create"}}
	if pdu, err := signer.build(version.NewEventBuilderFromProtoEvent(&pe), version, time.UnixMilli(-5)); err == nil {
		t.Fatalf("built an event stamped before 1970: %s", pdu.JSON())
	}
}

// TestBuiltEventChanges: the methods that change an event leave a built event answering as
// gomatrixserverlib's event does after the same change.
func TestBuiltEventChanges(t *testing.T) {
	signer := testSigner(t)
	version := gomatrixserverlib.MustGetRoomVersion(gomatrixserverlib.RoomVersionV10)
	member := "@bob:example.org"
	pe := gomatrixserverlib.ProtoEvent{RoomID: "!room:example.org", SenderID: "@alice:example.org",
		Type: "m.room.member", StateKey: &member, Content: spec.RawJSON(`{"membership":"join","displayname":"Bob"}`),
		Depth: 3, PrevEvents: []string{"$prev"}, AuthEvents: []string{"$create"}}
	changes := map[string]func(gomatrixserverlib.PDU) (gomatrixserverlib.PDU, error){
		"Redact": func(p gomatrixserverlib.PDU) (gomatrixserverlib.PDU, error) { p.Redact(); return p, nil },
		"SetUnsignedField": func(p gomatrixserverlib.PDU) (gomatrixserverlib.PDU, error) {
			return p, p.SetUnsignedField("age", 5)
		},
		"SetUnsigned": func(p gomatrixserverlib.PDU) (gomatrixserverlib.PDU, error) {
			return p.SetUnsigned(map[string]int{"age": 7})
		},
		"Redact, then SetUnsignedField": func(p gomatrixserverlib.PDU) (gomatrixserverlib.PDU, error) {
			p.Redact()
			return p, p.SetUnsignedField("age", 5)
		},
		"Redact, then SetUnsigned": func(p gomatrixserverlib.PDU) (gomatrixserverlib.PDU, error) {
			p.Redact()
			return p.SetUnsigned(map[string]int{"age": 7})
		},
		"Sign": func(p gomatrixserverlib.PDU) (gomatrixserverlib.PDU, error) {
			return p.Sign("other.example", "ed25519:x", signer.key.Priv), nil
		},
	}
	for name, change := range changes {
		t.Run(name, func(t *testing.T) {
			built, err := signer.build(version.NewEventBuilderFromProtoEvent(&pe), version, time.Now())
			if err != nil {
				t.Fatal(err)
			}
			if _, ok := built.(*builtEvent); !ok {
				t.Fatalf("the signer parsed a plain member event (%T)", built)
			}
			parsed, err := version.NewEventFromTrustedJSONWithEventID(built.EventID(), built.JSON(), false)
			if err != nil {
				t.Fatal(err)
			}
			got, gotErr := change(built)
			want, wantErr := change(parsed)
			// gomatrixserverlib's Redact drops the event id it was given, and until EventID()
			// computes it again ToHeaderedJSON writes an empty one; the built event keeps it.
			want.EventID()
			if fmt.Sprint(gotErr) != fmt.Sprint(wantErr) {
				t.Fatalf("error %v, want %v", gotErr, wantErr)
			}
			for answer, read := range pduAnswers {
				if g, w := read(got), read(want); !reflect.DeepEqual(g, w) {
					t.Errorf("%s: %#v, want %#v", answer, g, w)
				}
			}
		})
	}
}

// TestDecodeStoredPlain: a stored event is read in one pass only when its JSON is what the
// signer writes; every other shape is left to gomatrixserverlib's parse (nil), so the fields
// and errors stay its own.
func TestDecodeStoredPlain(t *testing.T) {
	v10 := gomatrixserverlib.MustGetRoomVersion(gomatrixserverlib.RoomVersionV10)
	const base = `"auth_events":["$a","$b"],"content":{"body":"h\"i\u2028","n":[1,{"x":null}]},"depth":7,` +
		`"hashes":{"sha256":"x"},"origin":"example.org","origin_server_ts":1700000000123,"prev_events":["$p"],` +
		`"room_id":"!room:example.org","sender":"@alice:example.org","signatures":{"example.org":{"ed25519:k":"s"}},`
	cases := []struct {
		name    string
		json    string
		version gomatrixserverlib.RoomVersion
		plain   bool
	}{
		{"message", `{` + base + `"type":"m.room.message"}`, "", true},
		{"state event", `{` + base + `"prev_state":[],"state_key":"","type":"m.room.topic"}`, "", true},
		{"redaction", `{` + base + `"redacts":"$t","type":"m.room.redaction"}`, "", true},
		{"null content, no prev events", `{"auth_events":[],"content":null,"depth":1,"origin_server_ts":1,"prev_events":[],"room_id":"!r:x","sender":"@a:x","type":"t"}`, "", true},
		{"keys missing", `{"room_id":"!r:x"}`, "", true},
		{"whitespace", " {\n\"content\" : { \"a\" : [ 1 , 2 ] } ,\t\"depth\":-0, \"room_id\":\"!r:x\" , \"prev_events\":[ ]} ", "", true},
		{"scalar content", `{"content":5e400,"room_id":"!r:x"}`, "", true},
		{"string content with escapes", `{"content":"a\"\\b","room_id":"!r:x"}`, "", true},
		{"raw U+2028 and U+FFFD in strings", "{\"room_id\":\"!r\u2028:x\",\"type\":\"\u2029\ufffd\"}", "", true},
		{"integers at their limits", `{"depth":-9223372036854775808,"origin_server_ts":18446744073709551615,"room_id":"!r:x"}`, "", true},
		{"timestamp past uint64", `{"origin_server_ts":18446744073709551616,"room_id":"!r:x"}`, "", false},
		{"escaped type", `{` + base + `"type":"m.room.mess\u0061ge"}`, "", false},
		{"escaped key", `{` + base + `"typ\u0065":"m.room.message"}`, "", false},
		{"type repeated", `{` + base + `"type":"a","type":"b"}`, "", false},
		{"key of another case", `{` + base + `"Type":"m.room.message"}`, "", false},
		{"unknown key", `{` + base + `"event_id":"$x","type":"m.room.message"}`, "", false},
		{"unsigned", `{` + base + `"type":"m.room.message","unsigned":{"age":1}}`, "", false},
		{"null state key", `{` + base + `"state_key":null,"type":"m.room.message"}`, "", false},
		{"state key not a string", `{` + base + `"state_key":1,"type":"m.room.message"}`, "", false},
		{"depth with a fraction", `{"depth":1.0,"room_id":"!r:x"}`, "", false},
		{"depth with an exponent", `{"depth":1e2,"room_id":"!r:x"}`, "", false},
		{"depth past int64", `{"depth":9223372036854775808,"room_id":"!r:x"}`, "", false},
		{"negative timestamp", `{"origin_server_ts":-1,"room_id":"!r:x"}`, "", false},
		{"prev event not a string", `{"prev_events":[["$p",{}]],"room_id":"!r:x"}`, "", false},
		{"invalid UTF-8 in the sender", "{\"room_id\":\"!r:x\",\"sender\":\"@\xff:x\"}", "", false},
		{"room id without a colon", `{"room_id":"!r"}`, "", false},
		{"not JSON", `{"room_id":"!r:x"`, "", false},
		{"text after the object", `{"room_id":"!r:x"} x`, "", false},
		{"a control character in a string", "{\"content\":{\"a\":\"\x01\"},\"room_id\":\"!r:x\"}", "", false},
		{"a number with a leading zero", `{"content":{"a":01},"room_id":"!r:x"}`, "", false},
		{"not an object", `["room_id"]`, "", false},
		{"room version 1", `{` + base + `"type":"m.room.message"}`, gomatrixserverlib.RoomVersionV1, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			version := v10
			if tc.version != "" {
				version = gomatrixserverlib.MustGetRoomVersion(tc.version)
			}
			input := []byte(tc.json)
			got := decodeStoredPlain(version, "$id", input)
			if (got != nil) != tc.plain {
				t.Fatalf("read in one pass: %v, want %v", got != nil, tc.plain)
			}
			if got == nil {
				return
			}
			checkAnswersAsParsed(t, version, got)
			if got.EventID() != "$id" || &got.JSON()[0] != &input[0] {
				t.Errorf("event id %q, want $id; the event must keep the stored JSON itself", got.EventID())
			}
		})
	}
}
