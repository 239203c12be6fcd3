package rooms

import (
	"context"
	"fmt"
)

// MembershipChange is a join, knock, invite, leave, kick, ban or unban.
type MembershipChange struct {
	RoomID     string
	Sender     string
	Target     string
	Membership string         // join, knock, invite, leave or ban
	Reason     string         // optional, shown to the target
	Extra      map[string]any // displayname, avatar_url, is_direct
}

// ChangeMembership appends the member event; the room's auth rules decide whether the sender
// may make this change (join rules, bans, power levels). Joining a room one is already in
// changes nothing and returns the current member event.
func (s *Service) ChangeMembership(ctx context.Context, c MembershipChange) (string, error) {
	if _, ok := s.model.Info(c.RoomID); !ok {
		return "", fmt.Errorf("%w: unknown room %s", ErrNotFound, c.RoomID)
	}
	// A repeated join or knock is answered with the event already there, as Synapse does.
	if (c.Membership == "join" || c.Membership == "knock") && s.model.Membership(c.RoomID, c.Target) == c.Membership {
		if ev := s.model.StateEvent(c.RoomID, "m.room.member", c.Target); ev != nil {
			return ev.PDU.EventID(), nil
		}
	}
	content, err := s.changeContent(ctx, c)
	if err != nil {
		return "", err
	}
	target := c.Target
	id, err := s.Send(ctx, Proto{RoomID: c.RoomID, Sender: c.Sender, Type: "m.room.member", StateKey: &target,
		Content: mustJSON(content)}, SendOptions{})
	if err == nil && (c.Membership == "leave" || c.Membership == "ban") {
		// Whoever leaves stops typing there; best effort, as typing is ephemeral (readers
		// also skip non-members).
		_ = s.publishTyping(typingUpdate{RoomID: c.RoomID, UserID: target})
	}
	return id, err
}

// changeContent is the content of the change's member event; a join to a restricted room
// names the member who admits it.
func (s *Service) changeContent(ctx context.Context, c MembershipChange) (map[string]any, error) {
	content := map[string]any{"membership": c.Membership}
	for k, v := range c.Extra {
		content[k] = v
	}
	if c.Reason != "" {
		content["reason"] = c.Reason
	}
	if c.Membership == "join" && c.Sender == c.Target {
		via, err := s.joinAuthoriser(ctx, c.RoomID, c.Target)
		if err != nil {
			return nil, err
		}
		if via != "" {
			content["join_authorised_via_users_server"] = via
		}
	}
	return content, nil
}
