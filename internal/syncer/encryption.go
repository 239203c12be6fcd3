package syncer

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
)

// maxToDevice bounds the to-device messages one sync hands out; the rest come with the next.
const maxToDevice = 100

// addEncryption adds what end-to-end encryption needs to a sync: the device's to-device
// messages after the token (at most maxToDevice), its key counts, and, incrementally, whose
// devices changed. It returns the to-device position the next token carries: where the
// messages handed out end.
func (s *Service) addEncryption(ctx context.Context, resp *Response, req Request, since *Token, now Token, busy []busyRoom) uint64 {
	var after uint64
	if since != nil {
		after = since.ToDevice
	}
	events, last, err := s.keys.Inbox(ctx, req.UserID, req.DeviceID, after, now.ToDevice, maxToDevice)
	if err != nil {
		// The messages stay stored: the token stops before them, and the next sync brings them.
		slog.Warn("reading to-device messages", "user", req.UserID, "device", req.DeviceID, "err", err)
		last = after
	}
	for _, ev := range events {
		resp.ToDevice.Events = append(resp.ToDevice.Events, ev)
	}
	counts := s.keys.Counts(req.UserID, req.DeviceID)
	resp.OneTimeKeysCount, resp.UnusedFallbackKeyTypes = counts.OneTime, counts.UnusedFallback
	if since != nil {
		resp.DeviceLists = s.deviceLists(req.UserID, *since, now, busy)
	}
	return last
}

// busyRoom is a room of the user's with events between two tokens: after, up to upTo.
type busyRoom struct {
	roomID, membership string
	after, upTo        uint64
}

// busyRooms lists the user's rooms with events between two tokens.
func (s *Service) busyRooms(userID string, since, now Token) []busyRoom {
	var out []busyRoom
	for roomID, membership := range s.rooms.Model().UserRooms(userID) {
		if info, ok := s.rooms.Model().Info(roomID); ok && info.HeadSeq > since.Rooms[info.Shard] {
			out = append(out, busyRoom{roomID, membership, since.Rooms[info.Shard], now.Rooms[info.Shard]})
		}
	}
	return out
}

// deviceLists is the spec's device_lists between two tokens, nil when empty: changed holds
// the users sharing a room with userID whose keys changed, who joined a room userID is in, or
// whose rooms userID joined; left holds those userID no longer shares any room with after
// they or userID left one. Only rooms with events between the tokens (busy) are read.
func (s *Service) deviceLists(userID string, since, now Token, busy []busyRoom) *DeviceLists {
	model := s.rooms.Model()
	var changed, left []string
	add := func(list *[]string, user string) {
		if user != userID && !slices.Contains(*list, user) {
			*list = append(*list, user)
		}
	}
	for _, c := range s.keys.ChangedBetween(since.Keys, now.Keys) {
		if seen := c.OnlyFor == userID || (c.OnlyFor == "" && (c.UserID == userID || model.SharesRoom(userID, c.UserID))); seen &&
			!slices.Contains(changed, c.UserID) {
			changed = append(changed, c.UserID)
		}
	}
	for _, b := range busy {
		members := model.MemberEvents(b.roomID, b.after, b.upTo)
		if len(members) == 0 {
			continue
		}
		wasJoined := model.MembershipAt(b.roomID, userID, b.after) == "join"
		for _, ev := range members {
			target := ev.PDU.StateKey()
			ms, _ := ev.PDU.Membership()
			switch {
			case target == nil:
			case *target == userID && ms == "join" && !wasJoined:
				for _, u := range model.JoinedMembersAt(b.roomID, ev.Seq) {
					add(&changed, u)
				}
			case *target == userID && (ms == "leave" || ms == "ban") && wasJoined:
				for _, u := range model.JoinedMembersAt(b.roomID, ev.Seq) {
					if !model.SharesRoom(userID, u) {
						add(&left, u)
					}
				}
			case model.MembershipAt(b.roomID, userID, ev.Seq) != "join":
				// Another's change while userID was not in the room (left, banned, or only
				// ever invited or knocking) is none of their business.
			case ms == "join" && b.membership == "join":
				add(&changed, *target)
			case (ms == "leave" || ms == "ban") && !model.SharesRoom(userID, *target):
				add(&left, *target)
			}
			if target != nil && *target == userID {
				wasJoined = ms == "join" // a join and a leave in one window: the leave counts too
			}
		}
	}
	changed = slices.DeleteFunc(changed, func(u string) bool { return slices.Contains(left, u) })
	if len(changed) == 0 && len(left) == 0 {
		return nil
	}
	return &DeviceLists{Changed: changed, Left: left}
}

// DeviceListChanges answers /keys/changes: the device lists between two sync tokens (to
// empty: this node's latest), as a sync between them would have them.
func (s *Service) DeviceListChanges(ctx context.Context, userID, from, to string) (DeviceLists, error) {
	since, err := ParseToken(from, s.Shards())
	if err != nil {
		return DeviceLists{}, fmt.Errorf("%w: from is not a sync token", ErrBadRequest)
	}
	now := s.current()
	if to != "" {
		if now, err = ParseToken(to, s.Shards()); err != nil {
			return DeviceLists{}, fmt.Errorf("%w: to is not a sync token", ErrBadRequest)
		}
	}
	if err := s.catchUp(ctx, now); err != nil {
		return DeviceLists{}, err
	}
	if lists := s.deviceLists(userID, since, now, s.busyRooms(userID, since, now)); lists != nil {
		return *lists, nil
	}
	return DeviceLists{}, nil
}
