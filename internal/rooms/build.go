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
		if err := s.checkRedaction(p, &authEvents); err != nil {
			return nil, err
		}
	}
	eb := info.Version.NewEventBuilderFromProtoEvent(pe)
	if err := eb.AddAuthEvents(&authEvents); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadRequest, err)
	}
	pdu, err := s.signer.build(eb, info.Version, time.Now())
	var invalid gomatrixserverlib.EventValidationError
	if errors.As(err, &invalid) && invalid.Code == gomatrixserverlib.EventValidationTooLarge {
		return nil, fmt.Errorf("%w: %s", ErrTooLarge, strings.TrimPrefix(invalid.Message, "gomatrixserverlib: "))
	} else if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadRequest, err)
	}
	if err := s.verdicts.check(pdu, &authEvents); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrForbidden, err)
	}
	return pdu, nil
}

// authEventsFor collects from the room's state the events the auth rules need.
func authEventsFor(pe *gomatrixserverlib.ProtoEvent, state stateSource) (gomatrixserverlib.AuthEvents, error) {
	auth := gomatrixserverlib.NewAuthEvents(nil)
	needed, err := gomatrixserverlib.StateNeededForProtoEvent(pe)
	if err != nil {
		return auth, fmt.Errorf("%w: %v", ErrBadRequest, err)
	}
	for _, t := range needed.Tuples() {
		if ev := state.StateEvent(pe.RoomID, t.EventType, t.StateKey); ev != nil {
			if err := auth.AddEvent(ev.PDU); err != nil {
				return auth, err
			}
		}
	}
	return auth, nil
}

// userIDForSender: in the room versions we create, a sender id is the user id.
func userIDForSender(_ spec.RoomID, senderID spec.SenderID) (*spec.UserID, error) {
	return spec.NewUserID(string(senderID), true)
}

// checkRedaction applies the rule the auth rules leave to the sender's server from room
// version 3 on: a user may redact their own events, and others' only with the redact level.
func (s *Service) checkRedaction(p Proto, auth *gomatrixserverlib.AuthEvents) error {
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
