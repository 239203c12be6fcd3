package rooms

import (
	"encoding/json"
	"fmt"
	"maps"
	"slices"

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
// user is in none of the rooms the rule allows or no member may invite.
func (s *Service) joinAuthoriser(roomID, userID string) (string, error) {
	var rules joinRules
	ev := s.model.StateEvent(roomID, spec.MRoomJoinRules, "")
	if ev == nil || json.Unmarshal(ev.PDU.Content(), &rules) != nil ||
		rules.JoinRule != spec.Restricted && rules.JoinRule != spec.KnockRestricted {
		return "", nil
	}
	if m := s.model.Membership(roomID, userID); m == spec.Join || m == spec.Invite {
		return "", nil
	}
	allowed := slices.ContainsFunc(rules.Allow, func(a joinCondition) bool {
		return a.Type == "m.room_membership" && s.model.Membership(a.RoomID, userID) == spec.Join
	})
	if !allowed {
		return "", fmt.Errorf("%w: this room admits members of the rooms its join rules name, and users it invites", ErrForbidden)
	}
	if via := s.memberWhoMayInvite(roomID); via != "" {
		return via, nil
	}
	return "", fmt.Errorf("%w: no member of the room may invite, so none can admit the join", ErrForbidden)
}

// memberWhoMayInvite is a joined member whose power level reaches the invite level: one the
// power levels name, in the order of their ids, else any member when the default level does.
func (s *Service) memberWhoMayInvite(roomID string) string {
	plEv := s.model.StateEvent(roomID, spec.MRoomPowerLevels, "")
	if plEv == nil { // no power levels: everyone may invite
		return firstOf(s.model.JoinedMembers(roomID))
	}
	pl, err := plEv.PDU.PowerLevels()
	if err != nil {
		return ""
	}
	for _, user := range slices.Sorted(maps.Keys(pl.Users)) {
		if pl.Users[user] >= pl.Invite && s.model.Membership(roomID, user) == spec.Join {
			return user
		}
	}
	if pl.UsersDefault >= pl.Invite {
		return firstOf(s.model.JoinedMembers(roomID))
	}
	return ""
}

func firstOf(users []string) string {
	if len(users) == 0 {
		return ""
	}
	return users[0]
}
