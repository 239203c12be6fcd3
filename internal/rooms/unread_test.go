package rooms

import (
	"encoding/json"
	"fmt"
	"testing"

	"github.com/matrix-org/gomatrixserverlib"

	"github.com/firebreak/firebreak/internal/push"
)

// TestPushDecodedStaysBounded: the shared decodings keep the latest events only, evaluate as
// the events' JSON does, and an evicted event is decoded again when asked.
func TestPushDecodedStaysBounded(t *testing.T) {
	v := gomatrixserverlib.MustGetRoomVersion(gomatrixserverlib.RoomVersionV10)
	d := newPushDecoded()
	pdus := make([]gomatrixserverlib.PDU, pushDecodedCap+10)
	for i := range pdus {
		js := fmt.Sprintf(`{"auth_events":[],"content":{"body":"m%d"},"depth":%d,"hashes":{"sha256":"x"},"origin_server_ts":1,"prev_events":[],"room_id":"!r:test","sender":"@a:test","signatures":{},"type":"m.room.message"}`, i, i+1)
		pdu, err := v.NewEventFromTrustedJSONWithEventID(fmt.Sprintf("$%d", i), []byte(js), false)
		if err != nil {
			t.Fatal(err)
		}
		pdus[i] = pdu
		if _, ok := d.get(pdu); !ok {
			t.Fatalf("event %d not decoded", i)
		}
	}
	if n := len(d.byPDU); n != pushDecodedCap {
		t.Fatalf("%d decodings kept, want %d", n, pushDecodedCap)
	}
	if _, kept := d.byPDU[pdus[0]]; kept {
		t.Fatal("the oldest decoding was not evicted")
	}
	c := push.Context{UserID: "@b:test", MemberCount: 2}
	for _, pdu := range []gomatrixserverlib.PDU{pdus[len(pdus)-1], pdus[0]} { // kept, evicted
		ev, ok := d.get(pdu)
		if !ok {
			t.Fatalf("%s not decoded", pdu.EventID())
		}
		fresh, ok := push.Decode(pdu.JSON())
		if !ok {
			t.Fatalf("%s does not decode", pdu.EventID())
		}
		if got, want := push.EvaluateDecoded(push.DefaultRules(c.UserID), ev, c), push.EvaluateDecoded(push.DefaultRules(c.UserID), fresh, c); got != want || !got.Notify {
			t.Fatalf("%s: decoded evaluation %+v, from JSON %+v", pdu.EventID(), got, want)
		}
	}
}

// TestUnreadHighlightsDisplayName: a message naming the reader's display name in the room
// highlights (.m.rule.contains_display_name); a display name that is not a string is none, and
// of a name given twice the last counts.
func TestUnreadHighlightsDisplayName(t *testing.T) {
	s := newService(t)
	roomID := createRoom(t, s, CreateRequest{Preset: "public_chat"})
	bobsName := func(displayName string) Proto {
		return Proto{RoomID: roomID, Sender: bob, Type: "m.room.member", StateKey: &[]string{bob}[0],
			Content: json.RawMessage(`{"membership":"join","displayname":` + displayName + `}`)}
	}
	steps := []struct {
		name                  string
		send                  Proto
		wantNotes, wantLights int
	}{
		{"bob joins as Bobby Tables", bobsName(`"Bobby Tables"`), 0, 0},
		{"a message without his name", message(roomID, alice, "hello"), 1, 0},
		{"a message with it", message(roomID, alice, "hi Bobby Tables!"), 2, 1},
		{"bob's display name becomes a number", bobsName(`42`), 0, 0},
		{"a message with that number", message(roomID, alice, "42"), 1, 0},
		// As encoding/json reads it, like /joined_members: the last of repeated keys.
		{"bob's display name is given twice", bobsName(`"Alice","displayname":"Bobby"`), 0, 0},
		{"a message with the first", message(roomID, alice, "hi Alice"), 1, 0},
		{"a message with the last", message(roomID, alice, "hi Bobby"), 2, 1},
	}
	for _, step := range steps {
		if _, err := s.Send(t.Context(), step.send, SendOptions{}); err != nil {
			t.Fatalf("%s: %v", step.name, err)
		}
		if n, h := s.UnreadCounts(roomID, bob); n != step.wantNotes || h != step.wantLights {
			t.Errorf("%s: bob's unread %d, highlights %d; want %d, %d", step.name, n, h, step.wantNotes, step.wantLights)
		}
	}
}

// TestMemberDisplayName: the display name is read as encoding/json reads it into a string
// field, as /joined_members and the rest of the server do.
func TestMemberDisplayName(t *testing.T) {
	for _, content := range []string{
		`{"membership":"join","displayname":"Bob"}`,
		`{"membership":"join"}`,
		`{}`,
		`{"displayname":"Alice","displayname":"Bob"}`,
		`{"displayname":"Alice","displayname":42}`,
		`{"displayname":42,"displayname":"Bob"}`,
		`{"displayname":null}`,
		`{"displayname":["Bob"]}`,
		`{"DisplayName":"Bob"}`,
		`{"display\u006eame":"Bob"}`,
		`{"displayname":"B\u00f6b \"the\" \ud83d\ude00"}`,
		`{"profile":{"displayname":"Bob"}}`,
		`{"displayname":""}`,
	} {
		var want struct {
			DisplayName string `json:"displayname"`
		}
		_ = json.Unmarshal([]byte(content), &want)
		if got := memberDisplayName([]byte(content)); got != want.DisplayName {
			t.Errorf("memberDisplayName(%s) = %q; encoding/json reads %q", content, got, want.DisplayName)
		}
	}
}
