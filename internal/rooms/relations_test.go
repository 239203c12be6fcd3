package rooms

import (
	"testing"
)

// TestEditValidity checks the spec's rules on which replacements count: only a valid one is
// bundled with the original as its m.replace.
func TestEditValidity(t *testing.T) {
	s := newService(t)
	roomID := createRoom(t, s, CreateRequest{Preset: "public_chat"})
	join(t, s, roomID, bob)
	stateKey := ""
	send := func(sender, evType string, key *string, content map[string]any) string {
		t.Helper()
		id, err := s.Send(t.Context(), Proto{RoomID: roomID, Sender: sender, Type: evType, StateKey: key, Content: mustJSON(content)}, SendOptions{})
		if err != nil {
			t.Fatalf("send %s: %v", evType, err)
		}
		return id
	}
	text := map[string]any{"msgtype": "m.text", "body": "original"}
	newContent := map[string]any{"m.new_content": map[string]any{"msgtype": "m.text", "body": "edited"}}
	replacing := func(original string, extra map[string]any) map[string]any {
		c := map[string]any{"msgtype": "m.text", "body": "* edited",
			"m.relates_to": map[string]any{"rel_type": "m.replace", "event_id": original}}
		for k, v := range extra {
			c[k] = v
		}
		return c
	}
	for _, tc := range []struct {
		name string
		// original sends the event to edit; edit sends the replacement.
		original func() string
		edit     func(original string) string
		valid    bool
	}{
		{"same sender and type, new content", func() string { return send(alice, "m.room.message", nil, text) },
			func(o string) string { return send(alice, "m.room.message", nil, replacing(o, newContent)) }, true},
		{"another sender", func() string { return send(alice, "m.room.message", nil, text) },
			func(o string) string { return send(bob, "m.room.message", nil, replacing(o, newContent)) }, false},
		{"another type", func() string { return send(alice, "m.room.message", nil, text) },
			func(o string) string { return send(alice, "m.sticker", nil, replacing(o, newContent)) }, false},
		{"no new content", func() string { return send(alice, "m.room.message", nil, text) },
			func(o string) string { return send(alice, "m.room.message", nil, replacing(o, nil)) }, false},
		{"new content not an object", func() string { return send(alice, "m.room.message", nil, text) },
			func(o string) string {
				return send(alice, "m.room.message", nil, replacing(o, map[string]any{"m.new_content": "edited"}))
			}, false},
		{"encrypted, new content inside the ciphertext", func() string {
			return send(alice, "m.room.encrypted", nil, map[string]any{"algorithm": "m.megolm.v1.aes-sha2", "ciphertext": "x"})
		}, func(o string) string {
			return send(alice, "m.room.encrypted", nil, map[string]any{"algorithm": "m.megolm.v1.aes-sha2", "ciphertext": "y",
				"m.relates_to": map[string]any{"rel_type": "m.replace", "event_id": o}})
		}, true},
		{"an edit of an edit", func() string {
			first := send(alice, "m.room.message", nil, text)
			return send(alice, "m.room.message", nil, replacing(first, newContent))
		}, func(o string) string { return send(alice, "m.room.message", nil, replacing(o, newContent)) }, false},
		{"a state event", func() string { return send(alice, "m.room.topic", &stateKey, map[string]any{"topic": "t"}) },
			func(o string) string {
				return send(alice, "m.room.topic", &stateKey, map[string]any{"topic": "u", "m.new_content": map[string]any{"topic": "u"},
					"m.relates_to": map[string]any{"rel_type": "m.replace", "event_id": o}})
			}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			original := tc.original()
			edit := tc.edit(original)
			ev, ok := s.model.Event(roomID, original)
			if !ok {
				t.Fatal("the original is not in the model")
			}
			got := s.model.aggregate(roomID, ev, alice).edit
			switch {
			case tc.valid && (got == nil || got.PDU.EventID() != edit):
				t.Errorf("m.replace %v, want the edit %s", got, edit)
			case !tc.valid && got != nil:
				t.Errorf("an invalid edit was bundled: %s", got.PDU.EventID())
			}
		})
	}
}
