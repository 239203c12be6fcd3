package rooms

import (
	"log/slog"
	"math"
	"testing"

	"github.com/firebreak/firebreak/internal/store"
)

// Stored events as the model sees them. Trusted JSON is not checked against hashes or
// signatures, so hand-written events serve as seeds.
const (
	fuzzRoom   = "!r:test"
	fuzzCreate = `{"auth_events":[],"content":{"creator":"@a:test","room_version":"10"},"depth":1,"hashes":{"sha256":"x"},"origin_server_ts":1,"prev_events":[],"room_id":"!r:test","sender":"@a:test","signatures":{},"state_key":"","type":"m.room.create"}`
	fuzzJoin   = `{"auth_events":[],"content":{"membership":"join","displayname":"A"},"depth":2,"hashes":{"sha256":"x"},"origin_server_ts":2,"prev_events":[],"room_id":"!r:test","sender":"@a:test","signatures":{},"state_key":"@a:test","type":"m.room.member"}`
	fuzzPL     = `{"auth_events":[],"content":{"users":{"@a:test":100},"redact":50},"depth":3,"hashes":{"sha256":"x"},"origin_server_ts":3,"prev_events":[],"room_id":"!r:test","sender":"@a:test","signatures":{},"state_key":"","type":"m.room.power_levels"}`
	fuzzMsg    = `{"auth_events":[],"content":{"msgtype":"m.text","body":"hi"},"depth":4,"hashes":{"sha256":"x"},"origin_server_ts":4,"prev_events":[],"room_id":"!r:test","sender":"@a:test","signatures":{},"type":"m.room.message"}`
)

// apply applies one stored event and turns a panic into a test failure.
func apply(t *testing.T, m *Model, se store.RoomEvent) {
	t.Helper()
	defer func() {
		if r := recover(); r != nil {
			t.Fatalf("applying stored event %q panicked: %v", se.JSON, r)
		}
	}()
	m.apply([]store.RoomEvent{se})
}

// seededModel returns a model holding a small room, and the id of its message.
func seededModel() (*Model, string) {
	m := newModel(1, slog.New(slog.DiscardHandler))
	for i, b := range []string{fuzzCreate, fuzzJoin, fuzzPL, fuzzMsg} {
		m.apply([]store.RoomEvent{{Shard: 0, Seq: uint64(i + 1), JSON: []byte(b)}})
	}
	evs := m.Range(fuzzRoom, 0, End, true, 10, nil)
	if len(evs) != 4 {
		panic("the fuzz seed room did not load")
	}
	return m, evs[3].PDU.EventID()
}

// exercise runs every read-model query over whatever rooms the model holds.
func exercise(t *testing.T, m *Model, wantApplied uint64) {
	t.Helper()
	if got := m.Applied()[0]; got != wantApplied {
		t.Fatalf("applied = %d, want %d", got, wantApplied)
	}
	m.mu.RLock()
	var ids []string
	for id := range m.rooms {
		ids = append(ids, id)
	}
	m.mu.RUnlock()
	for _, id := range ids {
		info, _ := m.Info(id)
		if info.Head != nil {
			_ = info.Head.PDU.EventID()
		}
		evs := m.Range(id, 0, End, true, math.MaxInt, nil)
		if uint64(len(evs)) > wantApplied {
			t.Fatalf("room %q holds %d events after %d were stored", id, len(evs), wantApplied)
		}
		for _, ev := range evs {
			if got, ok := m.Event(id, ev.PDU.EventID()); !ok || got.Seq == 0 {
				t.Fatalf("event %s from Range is not found by id", ev.PDU.EventID())
			}
			_, _ = m.eventAtSeq(id, ev.Seq)
			_ = ev.IsState()
			_, _ = ev.PDU.Membership()
		}
		_ = m.Range(id, 0, End, false, 3, func(e *Event) bool { return e.Sender != "" })
		for _, ev := range m.State(id) {
			if sk := ev.PDU.StateKey(); sk != nil {
				_ = m.StateEvent(id, ev.PDU.Type(), *sk)
				_ = m.Membership(id, *sk)
				_ = m.UserRooms(*sk)
			}
		}
		_ = m.interested(id)
	}
}

// FuzzParseStoredEvent: whatever bytes a shard stream holds, applying them to the read model
// must not panic, and the shard's position must move past them.
func FuzzParseStoredEvent(f *testing.F) {
	_, msgID := seededModel()
	for _, seed := range []string{
		fuzzCreate, fuzzJoin, fuzzPL, fuzzMsg,
		`{"auth_events":[],"content":{"reason":"x"},"depth":5,"hashes":{"sha256":"x"},"origin_server_ts":5,"prev_events":[],"redacts":"` + msgID + `","room_id":"!r:test","sender":"@a:test","signatures":{},"type":"m.room.redaction"}`,
		`{"content":{},"redacts":"` + msgID + `","room_id":"!r:test","sender":"@b:test","type":"m.room.redaction"}`,
		`{"content":{"membership":"leave"},"room_id":"!r:test","sender":"@a:test","state_key":"@a:test","type":"m.room.member"}`,
		`{"content":{"membership":5},"room_id":"!r:test","sender":"@b:test","state_key":"@b:test","type":"m.room.member"}`,
		`{"content":{"room_version":"1"},"room_id":"!v1:test","sender":"@a:test","state_key":"","type":"m.room.create","event_id":"$e:test"}`,
		`{"content":{"room_version":"11"},"room_id":"!v11:test","sender":"@a:test","state_key":"","type":"m.room.create"}`,
		`{"content":{},"room_id":"!other:test","sender":"@a:test","type":"m.room.message"}`,
		`{"type":"m.room.create","room_id":"!r:test","content":[]}`,
		`{"type":"m.room.create","room_id":"","content":{"room_version":"10"}}`,
		`{"type":"m.room.create","room_id":"!x:test","content":{"room_version":"10"},"depth":"deep"}`,
		`{"type":"m.room.message","room_id":"!r:test","content":"not an object"}`,
		`{"type":"m.room.message","room_id":"!r:test","content":{"n":1e400}}`,
		`{"room_id":1}`, `null`, `[]`, `{}`, ``, "\xff",
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		// As the first event of an empty shard.
		m := newModel(1, slog.New(slog.DiscardHandler))
		apply(t, m, store.RoomEvent{Shard: 0, Seq: 1, JSON: b})
		exercise(t, m, 1)

		// Into a room that exists, twice, as a replayed or duplicated event would be.
		m, msgID := seededModel()
		apply(t, m, store.RoomEvent{Shard: 0, Seq: 5, JSON: b, Device: "D", TxnID: "T"})
		apply(t, m, store.RoomEvent{Shard: 0, Seq: 6, JSON: b})
		exercise(t, m, 6)
		if _, ok := m.Event(fuzzRoom, msgID); !ok {
			t.Fatalf("the room's message is gone")
		}
		_ = m.TxnEvent(fuzzRoom, "@a:test", "D", "m.room.message", "T")
	})
}
