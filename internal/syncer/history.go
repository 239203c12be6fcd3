package syncer

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"

	"github.com/firebreak/firebreak/internal/filter"
	"github.com/firebreak/firebreak/internal/rooms"
	"github.com/firebreak/firebreak/internal/store"
)

// MessagesRequest is one /messages call.
type MessagesRequest struct {
	Viewer   rooms.Viewer
	RoomID   string
	From, To string
	Backward bool
	Limit    int
	Filter   filter.RoomEventFilter
}

// MessagesResponse is the /messages response body.
type MessagesResponse struct {
	Start string              `json:"start"`
	End   string              `json:"end,omitempty"`
	Chunk []rooms.ClientEvent `json:"chunk"`
	State []rooms.ClientEvent `json:"state,omitempty"`
}

// Messages pages through a room's history from a token, in either direction. Positions are
// stream sequences, so a token from any node pages the same way on every node.
func (s *Service) Messages(ctx context.Context, req MessagesRequest) (*MessagesResponse, error) {
	after, upTo, err := s.pageBounds(ctx, req.RoomID, req.From, req.To, req.Backward)
	if err != nil {
		return nil, err
	}
	// Events the user may not see are skipped like filtered ones: a page read backwards that
	// comes back short (or empty) means nothing visible is left in the range.
	evs := s.rooms.Model().VisibleRange(req.RoomID, req.Viewer.UserID, after, upTo, !req.Backward, req.Limit, keepFor(req.Filter, req.RoomID, s.ignoredBy(req.Viewer.UserID)))
	// The spec's start is the from token as given (a sync token stays one).
	start := req.From
	if start == "" {
		start = roomToken(after).String()
		if req.Backward {
			start = roomToken(upTo).String()
		}
	}
	resp := &MessagesResponse{Start: start, Chunk: s.rooms.ClientEvents(req.RoomID, evs, req.Viewer, true)}
	// A short page read backwards reached the oldest event the user may see. Read forwards
	// it reached the newest, and later events may follow: the end token is where they will.
	if len(evs) > 0 && (len(evs) == req.Limit || !req.Backward) {
		resp.End = nextPageToken(evs[len(evs)-1].Seq, req.Backward).String()
	}
	if req.Filter.LazyLoadMembers {
		resp.State = s.rooms.ClientEvents(req.RoomID, s.senderMembers(req.RoomID, evs), req.Viewer, true)
	}
	return resp, nil
}

// pageBounds reads a page's from and to tokens as the stream positions (after, upTo] it
// covers: going back from from (when empty, as far as this node has read the room's shard)
// down to to, or forward from from (the room's start) up to to.
func (s *Service) pageBounds(ctx context.Context, roomID, from, to string, backward bool) (after, upTo uint64, err error) {
	info, ok := s.rooms.Model().Info(roomID)
	if !ok {
		return 0, 0, fmt.Errorf("%w: unknown room", rooms.ErrNotFound)
	}
	start, end := uint64(0), uint64(rooms.End)
	if backward {
		start, end = s.rooms.Model().Applied()[info.Shard], 0
	}
	if from != "" {
		// A token from another node may be ahead of this one: RoomPosition waits for it.
		if start, err = s.RoomPosition(ctx, roomID, from); err != nil {
			return 0, 0, err
		}
	}
	if to != "" {
		if end, err = parseRoomPosition(to, info.Shard, s.Shards()); err != nil {
			return 0, 0, fmt.Errorf("%w: to is not a valid token", ErrBadRequest)
		}
	}
	if backward {
		return end, start, nil
	}
	return start, end, nil
}

// nextPageToken is where the page after one ending at seq starts: going back, below it.
func nextPageToken(seq uint64, backward bool) roomToken {
	if backward {
		return roomToken(seq - 1)
	}
	return roomToken(seq)
}

// RoomPosition reads a pagination or sync token as a position in the room's history, once
// this node has caught up with it.
func (s *Service) RoomPosition(ctx context.Context, roomID, token string) (uint64, error) {
	info, ok := s.rooms.Model().Info(roomID)
	if !ok {
		return 0, fmt.Errorf("%w: unknown room", rooms.ErrNotFound)
	}
	pos, err := parseRoomPosition(token, info.Shard, s.Shards())
	if err != nil {
		return 0, fmt.Errorf("%w: not a valid token", ErrBadRequest)
	}
	return pos, s.waitRoomPosition(ctx, info.Shard, pos)
}

func (s *Service) waitRoomPosition(ctx context.Context, shard int, pos uint64) error {
	ctx, cancel := context.WithTimeout(ctx, store.WaitLimit)
	defer cancel()
	return notReady(s.rooms.CatchUpShard(ctx, shard, pos))
}

// senderMembers returns the member events of the events' senders as they stood after the
// first of them (the newest of a page read backwards), as Synapse gives a page's members: an
// old page shows the names its senders had then, not since.
func (s *Service) senderMembers(roomID string, evs []rooms.Event) []rooms.Event {
	seen := map[string]bool{}
	var out []rooms.Event
	for _, e := range evs {
		if seen[e.Sender] {
			continue
		}
		seen[e.Sender] = true
		if m, ok := s.rooms.Model().MemberAt(roomID, e.Sender, evs[0].Seq); ok {
			out = append(out, m)
		}
	}
	return out
}

// ContextResponse is the /context response body.
type ContextResponse struct {
	Start        string              `json:"start"`
	End          string              `json:"end"`
	Event        rooms.ClientEvent   `json:"event"`
	EventsBefore []rooms.ClientEvent `json:"events_before"`
	EventsAfter  []rooms.ClientEvent `json:"events_after"`
	State        []rooms.ClientEvent `json:"state"`
}

// Context returns an event with up to limit events around it the user may see, and the room's
// state as the user may see it.
func (s *Service) Context(ctx context.Context, v rooms.Viewer, roomID, eventID string, limit int, f filter.RoomEventFilter) (*ContextResponse, error) {
	ev, err := s.rooms.VisibleEvent(ctx, roomID, v.UserID, eventID)
	if err != nil {
		return nil, err
	}
	keep := keepFor(f, roomID, s.ignoredBy(v.UserID))
	before := s.rooms.Model().VisibleRange(roomID, v.UserID, 0, ev.Seq-1, false, limit/2, keep)
	after := s.rooms.Model().VisibleRange(roomID, v.UserID, ev.Seq, rooms.End, true, limit-limit/2, keep)
	start, end := ev.Seq-1, ev.Seq
	if len(before) > 0 {
		start = before[len(before)-1].Seq - 1
	}
	if len(after) > 0 {
		end = after[len(after)-1].Seq
	}
	state, err := s.contextState(v, roomID, end, append(append(before, ev), after...), f)
	if err != nil {
		return nil, err
	}
	return &ContextResponse{
		Start:        roomToken(start).String(),
		End:          roomToken(end).String(),
		Event:        s.rooms.ClientEvent(roomID, ev, v, true),
		EventsBefore: s.rooms.ClientEvents(roomID, before, v, true),
		EventsAfter:  s.rooms.ClientEvents(roomID, after, v, true),
		State:        s.rooms.ClientEvents(roomID, state, v, true),
	}, nil
}

// contextState is the room's state at the last event a /context returns, as the spec asks,
// through the filter; lazy loading keeps of its members those who sent the events returned.
func (s *Service) contextState(v rooms.Viewer, roomID string, at uint64, evs []rooms.Event, f filter.RoomEventFilter) ([]rooms.Event, error) {
	state, err := s.rooms.VisibleState(roomID, v.UserID, at)
	if err != nil {
		return nil, err
	}
	senders := map[string]bool{}
	for _, e := range evs {
		senders[e.Sender] = true
	}
	return slices.DeleteFunc(state, func(e rooms.Event) bool {
		lazyDropped := f.LazyLoadMembers && e.PDU.Type() == "m.room.member" && !senders[*e.PDU.StateKey()]
		return lazyDropped || !f.Matches(filterEvent(roomID, &e))
	}), nil
}

// Forget hides a room the user has left from their syncs, until they come back to it.
func (s *Service) Forget(ctx context.Context, userID, roomID string) error {
	raw, _ := json.Marshal(forgetting{Forgotten: true, MembershipSeq: s.membershipSeq(userID, roomID)})
	return s.data.Set(ctx, userID, roomID, forgottenDataKey, raw)
}

// SetFullyRead moves the user's read marker (m.fully_read account data) in the room.
func (s *Service) SetFullyRead(ctx context.Context, userID, roomID, eventID string) error {
	if s.rooms.Model().Membership(roomID, userID) != "join" {
		return fmt.Errorf("%w: you are not in this room", rooms.ErrForbidden)
	}
	if _, err := s.rooms.FindEvent(ctx, roomID, eventID); err != nil {
		return err
	}
	b, _ := json.Marshal(map[string]string{"event_id": eventID})
	return s.data.Set(ctx, userID, roomID, "m.fully_read", b)
}
