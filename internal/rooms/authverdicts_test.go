package rooms

import (
	"encoding/json"
	"errors"
	"testing"
)

// TestAuthVerdictsFollowState sends through one room while its state changes under the
// sender, and checks that a remembered approval never outlives the state it was given for:
// each change of power levels or membership must be judged by the auth rules again.
func TestAuthVerdictsFollowState(t *testing.T) {
	s := newService(t)
	roomID := createRoom(t, s, CreateRequest{Preset: "public_chat"})
	emptyKey := ""
	state := func(sender, evType, content string) Proto {
		return Proto{RoomID: roomID, Sender: sender, Type: evType, StateKey: &emptyKey, Content: json.RawMessage(content)}
	}
	membership := func(user, m string) func(t *testing.T) error {
		return func(t *testing.T) error {
			_, err := s.ChangeMembership(t.Context(), MembershipChange{RoomID: roomID, Sender: user, Target: user, Membership: m})
			return err
		}
	}
	var firstMessage, powerLevels string
	sendKeeping := func(id *string, p Proto) func(t *testing.T) error {
		return func(t *testing.T) (err error) { *id, err = s.Send(t.Context(), p, SendOptions{}); return err }
	}
	send := func(p Proto) func(t *testing.T) error { return sendKeeping(new(string), p) }
	redact := func(id *string) func(t *testing.T) error {
		return func(t *testing.T) error {
			return send(Proto{RoomID: roomID, Sender: alice, Type: "m.room.redaction", Redacts: *id,
				Content: json.RawMessage(`{}`)})(t)
		}
	}
	// Not a state event, so the common checks judge it, by the power levels' "invite" level,
	// which a redaction of the power levels drops (room version 10).
	thirdPartyInvite := Proto{RoomID: roomID, Sender: bob, Type: "m.room.third_party_invite", Content: json.RawMessage(`{}`)}
	steps := []struct {
		name           string
		do             func(t *testing.T) error
		want           error
		wantRemembered int
	}{
		{"bob joins", membership(bob, "join"), nil, 0},
		{"bob's first message", send(message(roomID, bob, "one")), nil, 1},
		{"bob's second message is judged by the remembered approval", send(message(roomID, bob, "two")), nil, 1},
		{"a reaction is another type", send(Proto{RoomID: roomID, Sender: bob, Type: "m.reaction",
			Content: json.RawMessage(`{}`)}), nil, 2},
		{"alice raises the level for events", send(state(alice, "m.room.power_levels",
			`{"users":{"@alice:test":100},"events_default":50}`)), nil, 2},
		{"bob's message after the raise", send(message(roomID, bob, "three")), ErrForbidden, 2},
		{"alice lowers it again", send(state(alice, "m.room.power_levels", `{"users":{"@alice:test":100}}`)), nil, 2},
		{"bob's message after the lowering", send(message(roomID, bob, "four")), nil, 3},
		{"bob leaves", membership(bob, "leave"), nil, 3},
		{"bob's message after leaving", send(message(roomID, bob, "five")), ErrForbidden, 3},
		{"bob joins again", membership(bob, "join"), nil, 3},
		{"bob's message after joining again", send(message(roomID, bob, "six")), nil, 4},
		{"a state event is never remembered", send(state(alice, "m.room.topic", `{"topic":"t"}`)), nil, 4},
		{"a redaction is never remembered", redact(&firstMessage), nil, 4},
		{"alice lets bob send only third-party invites", sendKeeping(&powerLevels, state(alice, "m.room.power_levels",
			`{"users":{"@alice:test":100,"@bob:test":-1},"invite":-5}`)), nil, 4},
		{"bob's message below events_default", send(message(roomID, bob, "seven")), ErrForbidden, 4},
		{"bob's third-party invite", send(thirdPartyInvite), nil, 5},
		{"alice redacts those power levels, which drops invite", redact(&powerLevels), nil, 5},
		{"bob's third-party invite after the redaction", send(thirdPartyInvite), ErrForbidden, 5},
	}
	firstMessage = sendText(t, s, roomID, alice, "to be redacted")
	s.verdicts = newAuthVerdicts() // alice's message above is not part of the count
	for _, step := range steps {
		err := step.do(t)
		if (step.want == nil) != (err == nil) || (step.want != nil && !errors.Is(err, step.want)) {
			t.Fatalf("%s: %v, want %v", step.name, err, step.want)
		}
		if got := len(s.verdicts.allowed); got != step.wantRemembered {
			t.Errorf("%s: %d approvals remembered, want %d", step.name, got, step.wantRemembered)
		}
	}
}
