package rooms

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/matrix-org/gomatrixserverlib"
	"github.com/matrix-org/gomatrixserverlib/spec"
)

// Proto is an event a user wants to add to a room.
type Proto struct {
	RoomID   string
	Sender   string
	Type     string
	StateKey *string
	Content  json.RawMessage
	Redacts  string
}

// stateSource is the room state an event is built and checked against: the read model's for an
// existing room, a draft's for a room being created.
type stateSource interface {
	StateEvent(roomID, evType, key string) *Event
}

// build turns a proto event into a signed event on top of the room's head and checks it against
// the room version's auth rules with the given state.
func (s *Service) build(p Proto, info RoomInfo, state stateSource) (gomatrixserverlib.PDU, error) {
	content := p.Content
	if len(content) == 0 {
		content = json.RawMessage("{}")
	}
	if err := checkPowerLevels(p, info.Version); err != nil {
		return nil, err
	}
	pe := &gomatrixserverlib.ProtoEvent{
		SenderID: p.Sender, RoomID: p.RoomID, Type: p.Type, StateKey: p.StateKey,
		Content: spec.RawJSON(content), Redacts: p.Redacts, PrevEvents: []string{}, Depth: 1,
	}
	if info.Head != nil {
		pe.PrevEvents = []string{info.Head.PDU.EventID()}
		pe.Depth = info.Head.PDU.Depth() + 1
	}
	authEvents, err := authEventsFor(pe, state)
	if err != nil {
		return nil, err
	}
	if p.Type == "m.room.redaction" {
		if err := s.checkRedaction(p, authEvents); err != nil {
			return nil, err
		}
	}
	eb := info.Version.NewEventBuilderFromProtoEvent(pe)
	if err := eb.AddAuthEvents(authEvents); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadRequest, err)
	}
	pdu, err := s.signer.build(eb, info.Version, time.Now())
	var invalid gomatrixserverlib.EventValidationError
	if errors.As(err, &invalid) && invalid.Code == gomatrixserverlib.EventValidationTooLarge {
		return nil, fmt.Errorf("%w: %s", ErrTooLarge, strings.TrimPrefix(invalid.Message, "gomatrixserverlib: "))
	} else if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadRequest, err)
	}
	if err := s.verdicts.check(pdu, authEvents); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrForbidden, err)
	}
	return pdu, nil
}

// authEventsFor gives the auth rules the events of the room's state that the event needs.
func authEventsFor(pe *gomatrixserverlib.ProtoEvent, state stateSource) (*neededAuth, error) {
	needed, err := gomatrixserverlib.StateNeededForProtoEvent(pe)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadRequest, err)
	}
	get := func(evType, stateKey string) gomatrixserverlib.PDU {
		if ev := state.StateEvent(pe.RoomID, evType, stateKey); ev != nil && ev.PDU != nil {
			return ev.PDU
		}
		return nil // a nil interface, never a typed nil
	}
	a := &neededAuth{}
	if needed.Create {
		a.create = get(spec.MRoomCreate, "")
	}
	if needed.JoinRules {
		a.joinRules = get(spec.MRoomJoinRules, "")
	}
	if needed.PowerLevels {
		a.powerLevels = get(spec.MRoomPowerLevels, "")
	}
	for _, key := range needed.Member {
		a.members = append(a.members, keyedEvent{key, get(spec.MRoomMember, key)})
	}
	for _, key := range needed.ThirdPartyInvite {
		a.thirdPartyInvites = append(a.thirdPartyInvites, keyedEvent{key, get(spec.MRoomThirdPartyInvite, key)})
	}
	return a, nil
}

// neededAuth holds the events of one room's state that an event needs
// (gomatrixserverlib.StateNeeded), and answers the auth rules with them and no others, as
// gomatrixserverlib.AuthEvents does, without its maps: filling those, with a parse of the room
// id per event, was 2% of a send at maximum load.
type neededAuth struct {
	create, joinRules, powerLevels gomatrixserverlib.PDU
	members, thirdPartyInvites     []keyedEvent
}

type keyedEvent struct {
	stateKey string
	event    gomatrixserverlib.PDU // nil: the room has none
}

func (a *neededAuth) Create() (gomatrixserverlib.PDU, error)      { return a.create, nil }
func (a *neededAuth) JoinRules() (gomatrixserverlib.PDU, error)   { return a.joinRules, nil }
func (a *neededAuth) PowerLevels() (gomatrixserverlib.PDU, error) { return a.powerLevels, nil }

func (a *neededAuth) Member(stateKey spec.SenderID) (gomatrixserverlib.PDU, error) {
	return eventWithKey(a.members, string(stateKey)), nil
}

func (a *neededAuth) ThirdPartyInvite(stateKey string) (gomatrixserverlib.PDU, error) {
	return eventWithKey(a.thirdPartyInvites, stateKey), nil
}

// Valid: every event comes from the one room's state.
func (a *neededAuth) Valid() bool { return true }

func eventWithKey(events []keyedEvent, stateKey string) gomatrixserverlib.PDU {
	for _, e := range events {
		if e.stateKey == stateKey {
			return e.event
		}
	}
	return nil
}

// userIDForSender: in the room versions we create, a sender id is the user id.
func userIDForSender(_ spec.RoomID, senderID spec.SenderID) (*spec.UserID, error) {
	return spec.NewUserID(string(senderID), true)
}

// checkRedaction applies the rule the auth rules leave to the sender's server from room
// version 3 on: a user may redact their own events, and others' only with the redact level.
func (s *Service) checkRedaction(p Proto, auth gomatrixserverlib.AuthEventProvider) error {
	if target, ok := s.model.Event(p.RoomID, p.Redacts); ok && target.Sender == p.Sender {
		return nil
	}
	creator := ""
	if create, _ := auth.Create(); create != nil {
		creator = string(create.SenderID())
	}
	pl, err := gomatrixserverlib.NewPowerLevelContentFromAuthEvents(auth, creator)
	if err != nil {
		return fmt.Errorf("%w: %v", ErrForbidden, err)
	}
	if pl.UserLevel(spec.SenderID(p.Sender)) < pl.Redact {
		return fmt.Errorf("%w: only the sender or a user with the redact power level may redact an event", ErrForbidden)
	}
	return nil
}
