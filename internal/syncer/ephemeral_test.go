package syncer

import (
	"encoding/json"
	"testing"

	"github.com/firebreak/firebreak/internal/rooms"
)

// TestReceiptEvents: receipts go out as one m.receipt event per thread, unthreaded first, so
// a user's unthreaded and main-timeline receipts on the same event both reach the client.
func TestReceiptEvents(t *testing.T) {
	rs := []rooms.Receipt{
		{UserID: "@a:x", Type: "m.read", EventID: "$e", TS: 1, ThreadID: "main"},
		{UserID: "@a:x", Type: "m.read", EventID: "$e", TS: 2},
		{UserID: "@a:x", Type: "m.read", EventID: "$r", TS: 3, ThreadID: "$root"},
		{UserID: "@b:x", Type: "m.read", EventID: "$e", TS: 4},
	}
	got, err := json.Marshal(receiptEvents(rs))
	if err != nil {
		t.Fatal(err)
	}
	want := `[{"content":{"$e":{"m.read":{"@a:x":{"ts":2},"@b:x":{"ts":4}}}},"type":"m.receipt"},` +
		`{"content":{"$r":{"m.read":{"@a:x":{"thread_id":"$root","ts":3}}}},"type":"m.receipt"},` +
		`{"content":{"$e":{"m.read":{"@a:x":{"thread_id":"main","ts":1}}}},"type":"m.receipt"}]`
	if string(got) != want {
		t.Errorf("receipt events\n got %s\nwant %s", got, want)
	}
}
