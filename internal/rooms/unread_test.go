package rooms

import (
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
		if got, want := push.EvaluateDecoded(push.DefaultRules(c.UserID), ev, c), push.Evaluate(push.DefaultRules(c.UserID), pdu.JSON(), c); got != want || !got.Notify {
			t.Fatalf("%s: decoded evaluation %+v, from JSON %+v", pdu.EventID(), got, want)
		}
	}
}
