package rooms

import (
	"bytes"
	"crypto/ed25519"
	"testing"
	"time"

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
		pe   gomatrixserverlib.ProtoEvent
	}{
		{"message", gomatrixserverlib.ProtoEvent{Type: "m.room.message",
			Content: spec.RawJSON(`{"msgtype":"m.text","body":"hello"}`)}},
		{"content needing canonical form", gomatrixserverlib.ProtoEvent{Type: "m.room.message",
			Content: spec.RawJSON(`{ "z": [3, {"b": "\u00e9\/\"", "a": null}], "body": "<b>&amp;</b> \u2028 😀 \n\t\u0001", "a": -12e2, "msgtype": "m.text" }`)}},
		{"empty content", gomatrixserverlib.ProtoEvent{Type: "m.room.message", Content: spec.RawJSON(`{}`)}},
		{"float content", gomatrixserverlib.ProtoEvent{Type: "m.room.message", Content: spec.RawJSON(`{"n":1.5}`)}},
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
				pe.RoomID, pe.SenderID, pe.Depth = "!room:example.org", "@alice:example.org", 7
				pe.PrevEvents, pe.AuthEvents = prev, auth
				if pe.Type == "m.room.create" {
					pe.PrevEvents, pe.AuthEvents, pe.Depth = []string{}, []string{}, 1
				}
				checkSignerMatchesBuild(t, signer, version, pe)
			})
		}
	}
}

// FuzzSignerMatchesBuild feeds arbitrary content, types and state keys to both builders.
func FuzzSignerMatchesBuild(f *testing.F) {
	f.Add(`{"msgtype":"m.text","body":"hi"}`, "m.room.message", "", false)
	f.Add(`{"a":{"c":[1,"\u00e9",null,true],"b":-0},"\u2028":"<>&"}`, "m.room.topic", "", true)
	f.Add(`{"membership":"join"}`, "m.room.member", "@bob:example.org", true)
	signer := testSigner(f)
	version := gomatrixserverlib.MustGetRoomVersion(gomatrixserverlib.RoomVersionV10)
	f.Fuzz(func(t *testing.T, content, evType, stateKey string, isState bool) {
		pe := gomatrixserverlib.ProtoEvent{RoomID: "!room:example.org", SenderID: "@alice:example.org",
			Type: evType, Content: spec.RawJSON(content), Depth: 3,
			PrevEvents: []string{"$prev"}, AuthEvents: []string{"$create"}}
		if isState {
			pe.StateKey = &stateKey
		}
		checkSignerMatchesBuild(t, signer, version, pe)
	})
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
// time and key: both fail, or both give the same event id and bytes.
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
	if !bytes.Equal(got.JSON(), want.JSON()) {
		t.Errorf("event JSON\n got %s\nwant %s", got.JSON(), want.JSON())
	}
}
