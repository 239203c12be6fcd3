package rooms

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/tidwall/gjson"

	"github.com/firebreak/firebreak/internal/store"
)

// The public room directory: rooms their admins (or creators, with createRoom's
// visibility "public") chose to list, as /publicRooms shows them.

// DirectoryVisibility is whether a room is listed: "public" or "private".
func (s *Service) DirectoryVisibility(ctx context.Context, roomID string) (string, error) {
	if _, ok := s.model.Info(roomID); !ok {
		return "", fmt.Errorf("%w: unknown room %s", ErrNotFound, roomID)
	}
	_, _, err := s.st.Get(ctx, store.BucketDirectory, store.Key(roomID))
	switch {
	case errors.Is(err, store.ErrNotFound):
		return "private", nil
	case err != nil:
		return "", unavailable(err)
	}
	return "public", nil
}

// SetDirectoryVisibility lists a room or takes it off the list. A member with power to change
// the room's canonical alias may (Synapse's rule: the same people who name the room).
func (s *Service) SetDirectoryVisibility(ctx context.Context, userID, roomID, visibility string) error {
	if _, ok := s.model.Info(roomID); !ok {
		return fmt.Errorf("%w: unknown room %s", ErrNotFound, roomID)
	}
	if !s.canSendState(roomID, userID, "m.room.canonical_alias") {
		return fmt.Errorf("%w: only a member who may change the room's canonical alias may list it", ErrForbidden)
	}
	return s.list(ctx, roomID, visibility == "public")
}

func (s *Service) list(ctx context.Context, roomID string, public bool) error {
	var err error
	if public {
		_, err = s.st.Put(ctx, store.BucketDirectory, store.Key(roomID), []byte("1"))
	} else {
		err = s.st.Delete(ctx, store.BucketDirectory, store.Key(roomID))
	}
	if err != nil {
		return unavailable(err)
	}
	return nil
}

// PublicRoom is one room as the directory shows it.
type PublicRoom struct {
	RoomID           string `json:"room_id"`
	Name             string `json:"name,omitempty"`
	Topic            string `json:"topic,omitempty"`
	CanonicalAlias   string `json:"canonical_alias,omitempty"`
	AvatarURL        string `json:"avatar_url,omitempty"`
	JoinRule         string `json:"join_rule,omitempty"`
	RoomType         string `json:"room_type,omitempty"`
	NumJoinedMembers int    `json:"num_joined_members"`
	WorldReadable    bool   `json:"world_readable"`
	GuestCanJoin     bool   `json:"guest_can_join"`
}

// PublicRooms lists the listed rooms anyone may see into, whose name, topic or alias holds
// term (any when empty) and, when roomTypes is not empty, whose type is one of them ("" for
// rooms of no type): the largest first, as Synapse orders them.
func (s *Service) PublicRooms(ctx context.Context, term string, roomTypes []string) ([]PublicRoom, error) {
	listed, err := s.listedRooms(ctx)
	if err != nil {
		return nil, err
	}
	term = strings.ToLower(term)
	out := []PublicRoom{}
	for _, room := range listed {
		if len(roomTypes) > 0 && !slices.Contains(roomTypes, room.RoomType) {
			continue
		}
		if term == "" || strings.Contains(strings.ToLower(room.Name+"\x00"+room.Topic+"\x00"+room.CanonicalAlias), term) {
			out = append(out, room)
		}
	}
	slices.SortFunc(out, ComparePublicRooms)
	return out, nil
}

// ComparePublicRooms orders the directory: the most joined members first, then by room id.
func ComparePublicRooms(a, b PublicRoom) int {
	return cmp.Or(cmp.Compare(b.NumJoinedMembers, a.NumJoinedMembers), strings.Compare(a.RoomID, b.RoomID))
}

// listedRooms describes the listed rooms a stranger may see into, as Synapse shows them: ones
// anyone may join or knock on, or whose history is world-readable, with someone in them. A
// room listed and then made invite-only, or left empty, drops out (and comes back when it
// opens again).
func (s *Service) listedRooms(ctx context.Context) ([]PublicRoom, error) {
	keys, err := s.st.Keys(ctx, store.BucketDirectory)
	if err != nil {
		return nil, unavailable(err)
	}
	var out []PublicRoom
	for _, k := range keys {
		parts, err := store.KeyParts(k)
		if err != nil || len(parts) != 1 {
			continue
		}
		room, ok := s.publicRoom(parts[0])
		open := slices.Contains([]string{"public", "knock", "knock_restricted"}, room.JoinRule) || room.WorldReadable
		if ok && open && room.NumJoinedMembers > 0 {
			out = append(out, room)
		}
	}
	return out, nil
}

// publicRoom describes a room from its current state; false for a room this node lacks.
func (s *Service) publicRoom(roomID string) (PublicRoom, bool) {
	if _, ok := s.model.Info(roomID); !ok {
		return PublicRoom{}, false
	}
	field := func(evType, path string) gjson.Result {
		if ev := s.model.StateEvent(roomID, evType, ""); ev != nil {
			return gjson.GetBytes(ev.PDU.Content(), path)
		}
		return gjson.Result{}
	}
	joined, _, _ := s.model.MemberSummary(roomID, "", 0)
	return PublicRoom{
		RoomID:           roomID,
		Name:             field("m.room.name", "name").Str,
		Topic:            field("m.room.topic", "topic").Str,
		CanonicalAlias:   field("m.room.canonical_alias", "alias").Str,
		AvatarURL:        field("m.room.avatar", "url").Str,
		JoinRule:         field("m.room.join_rules", "join_rule").Str,
		RoomType:         field("m.room.create", "type").Str,
		NumJoinedMembers: joined,
		WorldReadable:    field("m.room.history_visibility", "history_visibility").Str == "world_readable",
		GuestCanJoin:     field("m.room.guest_access", "guest_access").Str == "can_join",
	}, true
}

// DirectoryUser is a user as the user directory shows them.
type DirectoryUser struct {
	UserID      string `json:"user_id"`
	DisplayName string `json:"display_name,omitempty"`
	AvatarURL   string `json:"avatar_url,omitempty"`
}

// SearchUsers finds, for searcher, the users whose id or a display name they go by in a room
// holds term: those joined to a room the searcher is joined to, or to a listed room strangers
// may see into (Synapse's default scope), the searcher included. At most limit, by user id,
// and whether more matched. The caller fills in their profiles.
func (s *Service) SearchUsers(ctx context.Context, searcher, term string, limit int) ([]string, bool, error) {
	listed, err := s.listedRooms(ctx)
	if err != nil {
		return nil, false, err
	}
	var roomIDs []string
	for roomID, ms := range s.model.UserRooms(searcher) {
		if ms == "join" {
			roomIDs = append(roomIDs, roomID)
		}
	}
	for _, room := range listed {
		roomIDs = append(roomIDs, room.RoomID)
	}
	term = strings.ToLower(term)
	found := map[string]bool{}
	for _, roomID := range roomIDs {
		for _, userID := range s.model.JoinedMembers(roomID) {
			if found[userID] {
				continue
			}
			name := ""
			if ev := s.model.StateEvent(roomID, "m.room.member", userID); ev != nil {
				name = gjson.GetBytes(ev.PDU.Content(), "displayname").Str
			}
			found[userID] = strings.Contains(strings.ToLower(userID), term) || strings.Contains(strings.ToLower(name), term)
		}
	}
	var out []string
	for userID, matched := range found {
		if matched {
			out = append(out, userID)
		}
	}
	slices.Sort(out)
	if len(out) > limit {
		return out[:limit], true, nil
	}
	return out, false, nil
}
