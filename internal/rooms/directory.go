package rooms

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"maps"
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

// PublicRooms lists the listed rooms whose name, topic or alias holds term (any when empty)
// and, when roomTypes is not nil, whose type is one of them ("" for rooms of no type): the
// largest first, as Synapse orders them.
func (s *Service) PublicRooms(ctx context.Context, term string, roomTypes []string) ([]PublicRoom, error) {
	keys, err := s.st.Keys(ctx, store.BucketDirectory)
	if err != nil {
		return nil, unavailable(err)
	}
	term = strings.ToLower(term)
	var out []PublicRoom
	for _, k := range keys {
		parts, err := store.KeyParts(k)
		if err != nil || len(parts) != 1 {
			continue
		}
		room, ok := s.publicRoom(parts[0])
		if !ok || (roomTypes != nil && !slices.Contains(roomTypes, room.RoomType)) {
			continue
		}
		if term == "" || strings.Contains(strings.ToLower(room.Name+"\x00"+room.Topic+"\x00"+room.CanonicalAlias), term) {
			out = append(out, room)
		}
	}
	slices.SortFunc(out, func(a, b PublicRoom) int {
		return cmp.Or(cmp.Compare(b.NumJoinedMembers, a.NumJoinedMembers), strings.Compare(a.RoomID, b.RoomID))
	})
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

// SearchUsers finds, for searcher, the users whose id or display name holds term: those joined
// to a room the searcher is joined to, and to a listed public room (Synapse's default scope),
// the searcher included. At most limit, in order of display name, and whether more matched.
func (s *Service) SearchUsers(ctx context.Context, searcher, term string, limit int) ([]DirectoryUser, bool, error) {
	listed, err := s.st.Keys(ctx, store.BucketDirectory)
	if err != nil {
		return nil, false, unavailable(err)
	}
	var roomIDs []string
	for roomID, ms := range s.model.UserRooms(searcher) {
		if ms == "join" {
			roomIDs = append(roomIDs, roomID)
		}
	}
	for _, k := range listed {
		if parts, err := store.KeyParts(k); err == nil && len(parts) == 1 {
			roomIDs = append(roomIDs, parts[0])
		}
	}
	term = strings.ToLower(term)
	found := map[string]DirectoryUser{}
	for _, roomID := range roomIDs {
		for _, userID := range s.model.JoinedMembers(roomID) {
			if _, seen := found[userID]; seen {
				continue
			}
			u := DirectoryUser{UserID: userID}
			if ev := s.model.StateEvent(roomID, "m.room.member", userID); ev != nil {
				content := gjson.ParseBytes(ev.PDU.Content())
				u.DisplayName, u.AvatarURL = content.Get("displayname").Str, content.Get("avatar_url").Str
			}
			if strings.Contains(strings.ToLower(userID), term) || strings.Contains(strings.ToLower(u.DisplayName), term) {
				found[userID] = u
			}
		}
	}
	out := slices.SortedFunc(maps.Values(found), func(a, b DirectoryUser) int {
		return cmp.Or(strings.Compare(strings.ToLower(cmp.Or(a.DisplayName, a.UserID)), strings.ToLower(cmp.Or(b.DisplayName, b.UserID))),
			strings.Compare(a.UserID, b.UserID))
	})
	if len(out) > limit {
		return out[:limit], true, nil
	}
	return out, false, nil
}
