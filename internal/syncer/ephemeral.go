package syncer

import (
	"encoding/json"
	"maps"
	"slices"

	"github.com/firebreak/firebreak/internal/filter"
	"github.com/firebreak/firebreak/internal/rooms"
)

type rawJSON = json.RawMessage

// ephemeral returns the room's new receipts and, when it changed, who is typing.
func (s *Service) ephemeral(req Request, w window) EventList {
	out := EventList{Events: []any{}}
	f := req.Filter.Room.Ephemeral
	var receiptsSince uint64
	if !w.full {
		receiptsSince = w.since.Receipts
	}
	if rs := s.rooms.ReceiptsSince(w.roomID, req.UserID, receiptsSince); len(rs) > 0 && f.Matches(filter.Event{Type: "m.receipt", RoomID: w.roomID}) {
		out.Events = append(out.Events, receiptEvents(rs)...)
	}
	// Serials are clock times (rooms.typingModel): comparable with another node's token, and
	// every room's is later than a token from before this process started.
	if users, serial := s.rooms.TypingIn(w.roomID); (w.full || w.since == nil || serial > w.since.Typing) && f.Matches(filter.Event{Type: "m.typing", RoomID: w.roomID}) {
		if users == nil {
			users = []string{}
		}
		if w.full && len(users) == 0 {
			return out // nothing worth saying on a first sync
		}
		out.Events = append(out.Events, map[string]any{"type": "m.typing", "content": map[string]any{"user_ids": users}})
	}
	return out
}

// receiptContent is an m.receipt event's content: event id → receipt type → user → receipt.
type receiptContent map[string]map[string]map[string]any

// receiptEvents batches receipts into one m.receipt event per thread: one content can hold a
// user's receipt of a type for an event only once, and a user's unthreaded and main-timeline
// receipts are often on the same event. Unthreaded receipts come first.
func receiptEvents(rs []rooms.Receipt) []any {
	byThread := map[string]receiptContent{}
	for _, r := range rs {
		content := byThread[r.ThreadID]
		if content == nil {
			content = receiptContent{}
			byThread[r.ThreadID] = content
		}
		if content[r.EventID] == nil {
			content[r.EventID] = map[string]map[string]any{}
		}
		if content[r.EventID][r.Type] == nil {
			content[r.EventID][r.Type] = map[string]any{}
		}
		receipt := map[string]any{"ts": r.TS}
		if r.ThreadID != "" {
			receipt["thread_id"] = r.ThreadID
		}
		content[r.EventID][r.Type][r.UserID] = receipt
	}
	var out []any
	for _, thread := range slices.Sorted(maps.Keys(byThread)) {
		out = append(out, map[string]any{"type": "m.receipt", "content": byThread[thread]})
	}
	return out
}

// roomAccountData returns the user's account data for the room that changed in the window.
func (s *Service) roomAccountData(req Request, w window) EventList {
	out := EventList{Events: []any{}}
	var since uint64
	if !w.full {
		since = w.since.AccountData
	}
	for _, it := range s.data.Since(req.UserID, since) {
		if it.RoomID == w.roomID && it.Type != forgottenDataKey && req.Filter.Room.AccountData.Matches(filter.Event{Type: it.Type, RoomID: w.roomID}) {
			out.Events = append(out.Events, accountDataEvent(it.Type, it.Content))
		}
	}
	return out
}

// Forgotten reports whether the user has forgotten the room and has not been back since
// (joined, invited, left again): it then never appears in their syncs, and they may no longer
// read it.
func (s *Service) Forgotten(userID, roomID string) bool {
	raw, err := s.data.Get(userID, roomID, forgottenDataKey)
	if err != nil {
		return false
	}
	var f forgetting
	if json.Unmarshal(raw, &f) != nil || f.MembershipSeq == 0 {
		return true
	}
	return s.membershipSeq(userID, roomID) <= f.MembershipSeq
}

// forgetting is what Forget records: the membership event the user forgot the room at.
type forgetting struct {
	Forgotten     bool   `json:"forgotten"`
	MembershipSeq uint64 `json:"membership_seq,omitempty"`
}

// membershipSeq is the position of the user's latest membership event in the room, 0 if none.
func (s *Service) membershipSeq(userID, roomID string) uint64 {
	if ev := s.rooms.Model().StateEvent(roomID, "m.room.member", userID); ev != nil {
		return ev.Seq
	}
	return 0
}
