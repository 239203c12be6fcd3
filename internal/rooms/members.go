package rooms

import (
	"encoding/json"
	"slices"
)

// MemberSummary counts the room's joined and invited members and names up to maxHeroes other
// members, for clients to name rooms without loading the member list.
func (s *Service) MemberSummary(roomID, userID string, maxHeroes int) (joined, invited int, heroes []string) {
	return s.model.MemberSummary(roomID, userID, maxHeroes)
}

// strippedTypes are the state events an invitee or a knocking user sees before joining.
var strippedTypes = []string{"m.room.create", "m.room.join_rules", "m.room.name", "m.room.avatar",
	"m.room.canonical_alias", "m.room.encryption", "m.room.topic"}

// StrippedState is what an invited or knocking user may see of the room: a few state events, reduced to
// type, state key, sender and content, their own member event and their inviter's (whose name
// and avatar clients show with the invite, as Synapse sends it). The events are those of the
// moment of that member event, as Synapse keeps them with an invite: a name or topic set
// since is the room's business until the user joins.
func (s *Service) StrippedState(roomID, userID string) []any {
	own := s.model.StateEvent(roomID, "m.room.member", userID)
	if own == nil {
		return nil
	}
	var out []any
	add := func(ev *Event) {
		if ev != nil {
			out = append(out, map[string]any{"type": ev.PDU.Type(), "state_key": *ev.PDU.StateKey(),
				"sender": ev.Sender, "content": json.RawMessage(ev.PDU.Content())})
		}
	}
	for _, t := range strippedTypes {
		add(s.model.stateEventAt(roomID, t, "", own.Seq))
	}
	if own.Sender != userID {
		add(s.model.stateEventAt(roomID, "m.room.member", own.Sender, own.Seq))
	}
	add(own)
	return out
}

// memberTally is what a room's memberships add up to. Every event of a room names the members
// to wake and every member's sync reports the counts and heroes; walking and sorting all
// members each time made a message's cost grow with the square of its room's size (a
// 1,000-member room's sync took 0.28 ms, most of it sorting). A tally is never changed once
// made: readers keep its list after the model's lock is released.
type memberTally struct {
	joined, invited int
	// present is the joined and invited users, the earliest current membership first: who
	// hears about the room's events, and the order heroes are picked in.
	present []string
}

// with is the tally after userID's membership changed from prev to next ("" for none). The
// change is the room's newest event, so a user who stays or becomes present moves to the end
// of the arrival order: one copy of the list, no sort.
func (t *memberTally) with(userID, prev, next string) *memberTally {
	n := &memberTally{joined: t.joined, invited: t.invited, present: t.present}
	n.count(prev, -1)
	n.count(next, 1)
	if !isPresent(prev) && !isPresent(next) {
		return n
	}
	present := make([]string, 0, len(t.present)+1)
	for _, user := range t.present {
		if user != userID {
			present = append(present, user)
		}
	}
	if isPresent(next) {
		present = append(present, userID)
	}
	n.present = slices.Clip(present) // an append by a reader must copy, not write into it
	return n
}

func (t *memberTally) count(membership string, by int) {
	switch membership {
	case "join":
		t.joined += by
	case "invite":
		t.invited += by
	}
}

func isPresent(membership string) bool { return membership == "join" || membership == "invite" }

// JoinedMembers lists the users joined to the room.
func (m *Model) JoinedMembers(roomID string) []string {
	m.mu.RLock()
	defer m.mu.RUnlock()
	r := m.rooms[roomID]
	if r == nil {
		return nil
	}
	var out []string
	for _, user := range r.tally.present {
		if m.userRooms[user][roomID] == "join" {
			out = append(out, user)
		}
	}
	return out
}

// JoinedMembersAt lists the room's joined members as of the event at seq: those a user shared
// the room with when they joined or left it, never anyone who came after.
func (m *Model) JoinedMembersAt(roomID string, seq uint64) []string {
	var out []string
	for _, ev := range m.StateAt(roomID, seq) {
		if ms, _ := ev.PDU.Membership(); ev.PDU.Type() == "m.room.member" && ms == "join" {
			out = append(out, *ev.PDU.StateKey())
		}
	}
	return out
}

// SharesRoom reports whether two users are both joined to some room.
func (m *Model) SharesRoom(a, b string) bool {
	m.mu.RLock()
	defer m.mu.RUnlock()
	ra, rb := m.userRooms[a], m.userRooms[b]
	if len(rb) < len(ra) {
		ra, rb = rb, ra
	}
	for roomID, ms := range ra {
		if ms == "join" && rb[roomID] == "join" {
			return true
		}
	}
	return false
}

// RoomMates lists the users joined to a room the user is joined to: whose clients track the
// user's devices (SharesRoom's rule).
func (m *Model) RoomMates(userID string) []string {
	m.mu.RLock()
	defer m.mu.RUnlock()
	seen := map[string]bool{}
	var out []string
	for roomID, ms := range m.userRooms[userID] {
		r := m.rooms[roomID]
		if ms != "join" || r == nil {
			continue
		}
		for _, user := range r.tally.present {
			if !seen[user] && m.userRooms[user][roomID] == "join" {
				seen[user] = true
				out = append(out, user)
			}
		}
	}
	return out
}

// MemberEvents lists the room's member events after position after, up to upTo, oldest
// first. A room whose state has not changed since after, the usual case, answers at once.
func (m *Model) MemberEvents(roomID string, after, upTo uint64) []Event {
	m.mu.RLock()
	defer m.mu.RUnlock()
	r := m.rooms[roomID]
	if r == nil || r.stateChanged <= after {
		return nil
	}
	var out []Event
	for _, ev := range r.events[r.firstAfter(after):r.firstAfter(upTo)] {
		if ev.PDU.Type() == "m.room.member" {
			out = append(out, *ev)
		}
	}
	return out
}
