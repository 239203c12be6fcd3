package rooms

import (
	"fmt"
	"sync"

	"github.com/matrix-org/gomatrixserverlib"
	"github.com/matrix-org/gomatrixserverlib/spec"
)

// maxAuthVerdicts bounds the verdicts remembered; past it they are forgotten all at once, as
// each costs only one more run of the auth rules to learn again.
const maxAuthVerdicts = 50_000

// authVerdicts remembers the auth rules' approvals of message-like events. Running the rules
// means parsing the room's create event, its power levels and the sender's membership again
// for every send, about 7% of a node's CPU under maximum load, while a user sending many
// messages gets the same answer each time.
//
// It holds only approvals: a refusal always runs the rules, so its error says why.
type authVerdicts struct {
	mu      sync.Mutex
	allowed map[verdictKey]struct{}
}

// verdictKey is everything the auth rules read to judge a non-state event of a type without
// rules of its own: the rules check that the sender is joined, that their server may take part
// (the create event's m.federate) and that their power level reaches the type's. State events
// and the types with rules of their own (create, member, power levels, aliases, redaction) are
// never remembered, as their verdicts depend on more: the state key, the content, the target.
//
// The auth events are held as the parsed events themselves, not by id: a redaction replaces an
// event in the room's state by its redacted form under the same id (Model.redactLocked), and a
// redacted power levels event can rule differently (before room version 11 it loses "invite",
// which a non-state m.room.third_party_invite is judged by). Parsed events never change, and
// the key keeps the ones it names alive, so the same pointer is always the same content.
type verdictKey struct {
	room, evType, sender        string
	create, powerLevels, member gomatrixserverlib.PDU
}

func newAuthVerdicts() *authVerdicts {
	return &authVerdicts{allowed: map[verdictKey]struct{}{}}
}

// check runs the auth rules on event unless an approval of the same sender sending the same
// type against the same auth events is remembered.
func (v *authVerdicts) check(event gomatrixserverlib.PDU, auth gomatrixserverlib.AuthEventProvider) error {
	key, ok := verdictKeyFor(event, auth)
	if ok && v.remembered(key) {
		return nil
	}
	if err := gomatrixserverlib.Allowed(event, auth, userIDForSender); err != nil {
		return err
	}
	if err := checkUsersDefault(event, auth); err != nil {
		return err
	}
	if ok {
		v.remember(key)
	}
	return nil
}

func (v *authVerdicts) remembered(key verdictKey) bool {
	v.mu.Lock()
	defer v.mu.Unlock()
	_, ok := v.allowed[key]
	return ok
}

func (v *authVerdicts) remember(key verdictKey) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if len(v.allowed) >= maxAuthVerdicts {
		clear(v.allowed)
	}
	v.allowed[key] = struct{}{}
}

// verdictKeyFor reports the key of an event whose verdict may be remembered.
func verdictKeyFor(event gomatrixserverlib.PDU, auth gomatrixserverlib.AuthEventProvider) (verdictKey, bool) {
	if event.StateKey() != nil || hasOwnAuthRules(event.Type()) || !auth.Valid() {
		return verdictKey{}, false
	}
	create, _ := auth.Create()
	powerLevels, _ := auth.PowerLevels()
	member, _ := auth.Member(event.SenderID())
	return verdictKey{room: event.RoomID().String(), evType: event.Type(), sender: string(event.SenderID()),
		create: create, powerLevels: powerLevels, member: member}, true
}

// hasOwnAuthRules reports the event types gomatrixserverlib's auth rules treat apart from the
// common checks.
func hasOwnAuthRules(evType string) bool {
	switch evType {
	case spec.MRoomCreate, spec.MRoomMember, spec.MRoomPowerLevels, spec.MRoomAliases, spec.MRoomRedaction:
		return true
	}
	return false
}

// checkUsersDefault applies the rule the auth rules give every named level of a power levels
// change, which the pinned gomatrixserverlib leaves out for users_default (its
// checkEventLevels): a change whose old or new value is above the sender's own level is
// refused. Without it a moderator could raise users_default to their level or beyond and give
// every member the room.
func checkUsersDefault(event gomatrixserverlib.PDU, auth gomatrixserverlib.AuthEventProvider) error {
	if event.Type() != spec.MRoomPowerLevels || event.StateKey() == nil || *event.StateKey() != "" {
		return nil
	}
	current, err := auth.PowerLevels()
	if err != nil || current == nil {
		return nil // the room's first power levels: nothing to change
	}
	before, err := gomatrixserverlib.NewPowerLevelContentFromEvent(current)
	if err != nil {
		return err
	}
	after, err := gomatrixserverlib.NewPowerLevelContentFromEvent(event)
	if err != nil {
		return err
	}
	senderLevel := before.UserLevel(event.SenderID())
	if before.UsersDefault != after.UsersDefault && max(before.UsersDefault, after.UsersDefault) > senderLevel {
		return fmt.Errorf("%w: users_default may change only between levels at or below the sender's (%d)",
			ErrForbidden, senderLevel)
	}
	return nil
}
