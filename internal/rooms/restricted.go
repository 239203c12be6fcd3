package rooms

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"

	"github.com/matrix-org/gomatrixserverlib"
	"github.com/matrix-org/gomatrixserverlib/spec"
)

// joinRules is the content of m.room.join_rules that a restricted join reads.
type joinRules struct {
	JoinRule string          `json:"join_rule"`
	Allow    []joinCondition `json:"allow"`
}

// joinCondition is one way into a restricted room; m.room_membership, membership of a room,
// is the one the spec defines.
type joinCondition struct {
	Type   string `json:"type"`
	RoomID string `json:"room_id"`
}

// joinAuthoriser names the member who admits a user's join to a room whose join rule is
// restricted or knock_restricted, for the join's join_authorised_via_users_server: the auth
// rules accept such a join only through a member who may invite, and leave choosing one to
// the resident server, which every node of this deployment is. It gives "" when the join
// needs no one (another rule, or a user already invited or joined), and ErrForbidden when the
// user is in none of the rooms the rule allows or no member may invite. Only this server
// checks those memberships, so it decides on the latest state of the rooms involved: on a
// view that trails, a user banned from the space a moment ago through another node would get
// in, and one who joined it would be refused.
func (s *Service) joinAuthoriser(ctx context.Context, roomID, userID string) (string, error) {
	rules, ok := s.restrictedRules(roomID)
	if !ok {
		return "", nil
	}
	for _, room := range append([]string{roomID}, rules.allowedRooms()...) {
		if err := s.CatchUpRoom(ctx, room); err != nil {
			return "", err
		}
	}
	if rules, ok = s.restrictedRules(roomID); !ok { // the rule changed meanwhile
		return "", nil
	}
	if m := s.model.Membership(roomID, userID); m == spec.Join || m == spec.Invite {
		return "", nil
	}
	allowed := slices.ContainsFunc(rules.allowedRooms(), func(room string) bool {
		return s.model.Membership(room, userID) == spec.Join
	})
	if !allowed {
		return "", fmt.Errorf("%w: this room admits members of the rooms its join rules name, and users it invites", ErrForbidden)
	}
	if via := s.memberWhoMayInvite(roomID); via != "" {
		return via, nil
	}
	return "", fmt.Errorf("%w: no member of the room may invite, so none can admit the join", ErrForbidden)
}

// restrictedRules are the room's join rules when they restrict joins to the members of other
// rooms.
func (s *Service) restrictedRules(roomID string) (joinRules, bool) {
	var rules joinRules
	ev := s.model.StateEvent(roomID, spec.MRoomJoinRules, "")
	if ev == nil || json.Unmarshal(ev.PDU.Content(), &rules) != nil {
		return rules, false
	}
	return rules, rules.JoinRule == spec.Restricted || rules.JoinRule == spec.KnockRestricted
}

// allowedRooms are the rooms whose members the rules admit.
func (r joinRules) allowedRooms() []string {
	var rooms []string
	for _, a := range r.Allow {
		if a.Type == "m.room_membership" && a.RoomID != "" {
			rooms = append(rooms, a.RoomID)
		}
	}
	return rooms
}

// memberWhoMayInvite is a joined member whose power level reaches the invite level, the
// earliest to have joined first (usually the room's creator).
func (s *Service) memberWhoMayInvite(roomID string) string {
	pl, err := s.powerLevels(roomID)
	if err != nil {
		return ""
	}
	for _, user := range s.model.JoinedMembers(roomID) {
		if pl == nil || pl.UserLevel(spec.SenderID(user)) >= pl.Invite {
			return user
		}
	}
	return ""
}

// powerLevels is the room's current power levels; nil when it has none, and everyone is at
// the defaults.
func (s *Service) powerLevels(roomID string) (*gomatrixserverlib.PowerLevelContent, error) {
	ev := s.model.StateEvent(roomID, spec.MRoomPowerLevels, "")
	if ev == nil {
		return nil, nil
	}
	return ev.PDU.PowerLevels()
}
