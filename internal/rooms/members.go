package rooms

import (
	"encoding/json"
)

// MemberSummary counts the room's joined and invited members and names up to maxHeroes other
// members, for clients to name rooms without loading the member list.
func (s *Service) MemberSummary(roomID, userID string, maxHeroes int) (joined, invited int, heroes []string) {
	return s.model.MemberSummary(roomID, userID, maxHeroes)
}

// strippedTypes are the state events an invitee sees before joining.
var strippedTypes = []string{"m.room.create", "m.room.join_rules", "m.room.name", "m.room.avatar",
	"m.room.canonical_alias", "m.room.encryption", "m.room.topic"}

// StrippedState is what an invited user may see of the room: a few state events, reduced to
// type, state key, sender and content, and their own member event.
func (s *Service) StrippedState(roomID, userID string) []any {
	var out []any
	add := func(ev *Event) {
		if ev != nil {
			out = append(out, map[string]any{"type": ev.PDU.Type(), "state_key": *ev.PDU.StateKey(),
				"sender": ev.Sender, "content": json.RawMessage(ev.PDU.Content())})
		}
	}
	for _, t := range strippedTypes {
		add(s.model.StateEvent(roomID, t, ""))
	}
	add(s.model.StateEvent(roomID, "m.room.member", userID))
	return out
}
