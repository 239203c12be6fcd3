package rooms

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"

	"github.com/tidwall/gjson"
)

// This file decides which of a room's events a user may see, following the Client-Server
// API's "Room History Visibility" rules. Each room keeps, in stream order, every change of its
// history_visibility and of each user's membership (appended as events are applied), so the
// state at any event is a binary search away instead of a replay of the room.

// change is one step in a room's history_visibility or in one user's membership.
type change struct {
	seq   uint64
	value string
}

// defaultVisibility applies before any history_visibility event, and to one without a value
// or with one the spec does not define (as Synapse treats them).
const defaultVisibility = "shared"

func historyVisibility(content []byte) string {
	switch v := gjson.GetBytes(content, "history_visibility").String(); v {
	case "world_readable", "shared", "invited", "joined":
		return v
	}
	return defaultVisibility
}

// allowed is the spec's rule for one side (before or after) of an event.
func allowed(visibility, membership string, joinedLater bool) bool {
	switch {
	case visibility == "world_readable", membership == "join":
		return true
	case visibility == "shared":
		return joinedLater
	case visibility == "invited":
		return membership == "invite"
	}
	return false
}

// history is what decides which of a room's events one user may see: the room's
// history_visibility changes and the user's membership changes up to head. The slices are
// prefixes of append-only ones, so they are read without the model's lock.
type history struct {
	head        uint64
	visibility  []change
	memberships []change
	lastJoin    uint64 // the user's latest join, 0 if they never joined
	leftAt      uint64 // the change that ended that stay, 0 if it goes on
}

func newHistory(head uint64, visibility, memberships []change) history {
	h := history{head: head, visibility: visibility, memberships: memberships}
	for i := len(memberships) - 1; i >= 0; i-- {
		if memberships[i].value == "join" {
			h.lastJoin = memberships[i].seq
			if i+1 < len(memberships) {
				h.leftAt = memberships[i+1].seq
			}
			break
		}
	}
	return h
}

// history snapshots the room's visibility index for the user; false when the room is unknown.
func (m *Model) history(roomID, userID string) (history, bool) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	r := m.rooms[roomID]
	if r == nil {
		return history{}, false
	}
	var head uint64
	if n := len(r.events); n > 0 {
		head = r.events[n-1].Seq
	}
	ms := r.memberships[userID]
	// Capped, so that nothing appended later is ever read or overwritten through the copies.
	return newHistory(head, r.visibility[:len(r.visibility):len(r.visibility)], ms[:len(ms):len(ms)]), true
}

// JoinedThroughout reports whether the user was joined for every event in (after, upTo]: joined
// at after, and no membership change but a profile update (join to join) since. Such a window
// needs no visibility check, the usual case of an incremental sync.
func (m *Model) JoinedThroughout(roomID, userID string, after, upTo uint64) bool {
	h, _ := m.history(roomID, userID)
	if _, at := valueAt(h.memberships, after, ""); at != "join" {
		return false
	}
	i := sort.Search(len(h.memberships), func(i int) bool { return h.memberships[i].seq > after })
	for ; i < len(h.memberships) && h.memberships[i].seq <= upTo; i++ {
		if h.memberships[i].value != "join" {
			return false
		}
	}
	return true
}

// MembershipAt is the user's membership in the room as of the event at seq ("" for none).
func (m *Model) MembershipAt(roomID, userID string, seq uint64) string {
	h, _ := m.history(roomID, userID)
	_, after := valueAt(h.memberships, seq, "")
	return after
}

// valueAt is the value just before and just after the event at seq.
func valueAt(changes []change, seq uint64, initial string) (before, after string) {
	i := sort.Search(len(changes), func(i int) bool { return changes[i].seq >= seq })
	before = initial
	if i > 0 {
		before = changes[i-1].value
	}
	after = before
	if i < len(changes) && changes[i].seq == seq {
		after = changes[i].value
	}
	return before, after
}

// canSee decides one event. The state before and after it differ only for a history_visibility
// event and the user's own member event, which the spec lets the user see when either side
// allows it: so a user sees their own join, and their own leave even under "joined".
func (h history) canSee(seq uint64) bool {
	visBefore, visAfter := valueAt(h.visibility, seq, defaultVisibility)
	msBefore, msAfter := valueAt(h.memberships, seq, "")
	joinedLater := h.lastJoin > seq
	return allowed(visBefore, msBefore, joinedLater) || allowed(visAfter, msAfter, joinedLater)
}

// joinedUpTo is the end of the user's last stay in the room: End while joined, the leave,
// kick or ban that ended it after that, 0 if they never joined.
func (h history) joinedUpTo() uint64 {
	switch {
	case h.lastJoin == 0:
		return 0
	case h.leftAt == 0:
		return End
	}
	return h.leftAt
}

func (h history) worldReadable() bool {
	n := len(h.visibility)
	return n > 0 && h.visibility[n-1].value == "world_readable"
}

// span is the events with after < Seq <= upTo, as Range bounds them.
type span struct{ after, upTo uint64 }

// within is the part of the span inside (after, upTo], if any.
func (sp span) within(after, upTo uint64) (lo, hi uint64, ok bool) {
	lo, hi = max(sp.after, after), min(sp.upTo, upTo)
	return lo, hi, lo < hi
}

// spans lists the stretches of the room up to head the user may see, in stream order.
// Visibility can only change at a change point, so it is decided once at each point and once
// for each stretch between two, whatever the length of the room.
func (h history) spans() []span {
	var points []uint64
	for _, c := range slices.Concat(h.visibility, h.memberships) {
		points = append(points, c.seq)
	}
	slices.Sort(points)
	points = slices.Compact(points)
	var out []span
	add := func(after, upTo uint64) {
		if after >= upTo || !h.canSee(upTo) {
			return
		}
		if n := len(out); n > 0 && out[n-1].upTo == after {
			out[n-1].upTo = upTo
			return
		}
		out = append(out, span{after, upTo})
	}
	var prev uint64
	for _, p := range points {
		add(prev, p-1) // the stretch before p
		add(p-1, p)    // p itself
		prev = p
	}
	add(prev, h.head)
	return out
}

// VisibleRange is Range limited to the events the user may see. Only the stretches the user
// may see are read, so a user who may see little of a long room costs little.
func (m *Model) VisibleRange(roomID, userID string, after, upTo uint64, forward bool, limit int, keep func(*Event) bool) []Event {
	h, ok := m.history(roomID, userID)
	if !ok {
		return nil
	}
	spans := h.spans()
	if !forward {
		slices.Reverse(spans)
	}
	var out []Event
	for _, sp := range spans {
		if len(out) >= limit {
			break
		}
		if lo, hi, ok := sp.within(after, upTo); ok {
			out = append(out, m.Range(roomID, lo, hi, forward, limit-len(out), keep)...)
		}
	}
	return out
}

// NewestVisibleRun is the newest events in (after, upTo] the user may see without a hidden
// event between them, newest first, at most limit: sync's timeline, which the client reads as
// one run after the room's state. gap reports room events before the run that it leaves out
// (hidden ones, and any older visible ones behind them): the timeline is then limited, and the
// state sent before it covers the hidden state changes, which the user may know as the room's
// state though not as events (a member joined while history was hidden from them).
func (m *Model) NewestVisibleRun(roomID, userID string, after, upTo uint64, limit int, keep func(*Event) bool) (evs []Event, gap bool) {
	h, ok := m.history(roomID, userID)
	if !ok {
		return nil, false
	}
	spans := h.spans()
	for i := len(spans) - 1; i >= 0; i-- {
		lo, hi, ok := spans[i].within(after, upTo)
		if !ok {
			continue
		}
		evs = m.Range(roomID, lo, hi, false, limit, keep)
		return evs, lo > after && len(m.Range(roomID, after, lo, false, 1, nil)) > 0
	}
	return nil, len(m.Range(roomID, after, upTo, false, 1, nil)) > 0
}

// VisibleEvent finds an event the user may see. An event they may not see is ErrNotFound, as
// one that does not exist is: the spec's 404 for both, so the answer does not confirm an id.
func (s *Service) VisibleEvent(ctx context.Context, roomID, userID, eventID string) (Event, error) {
	notFound := fmt.Errorf("%w: event not found", ErrNotFound)
	ev, err := s.FindEvent(ctx, roomID, eventID)
	if errors.Is(err, ErrNotFound) {
		return Event{}, notFound
	} else if err != nil {
		return Event{}, err
	}
	// Taken after the event was found, so the snapshot covers it.
	if h, _ := s.model.history(roomID, userID); !h.canSee(ev.Seq) {
		return Event{}, notFound
	}
	return ev, nil
}

// ReadableUpTo is how much of the room the user may read through the room APIs: all of it
// (End) while joined or while the room is world-readable, a former member up to the end of
// their last stay. Anyone else, an invitee who never joined included, is refused: invitees
// see the room's stripped state through sync.
func (s *Service) ReadableUpTo(roomID, userID string) (uint64, error) {
	h, ok := s.model.history(roomID, userID)
	switch upTo := h.joinedUpTo(); {
	case !ok:
		return 0, fmt.Errorf("%w: unknown room %s", ErrNotFound, roomID)
	case h.worldReadable():
		return End, nil
	case upTo > 0:
		return upTo, nil
	}
	return 0, fmt.Errorf("%w: you are not in room %s", ErrForbidden, roomID)
}

// VisibleState is the room state the user may read as of position at (End: now): for a
// former member, never later than when they left; at an earlier point, only if the history
// visibility let the user see the room then.
func (s *Service) VisibleState(roomID, userID string, at uint64) ([]Event, error) {
	upTo, err := s.ReadableUpTo(roomID, userID)
	if err != nil {
		return nil, err
	}
	if at < upTo {
		if h, _ := s.model.history(roomID, userID); !h.canSee(at) {
			return nil, fmt.Errorf("%w: you could not see room %s at that point", ErrForbidden, roomID)
		}
	}
	return s.model.StateAt(roomID, min(upTo, at)), nil
}

// VisibleStateEvent is one entry of VisibleState; ErrNotFound when it has none.
func (s *Service) VisibleStateEvent(roomID, userID, evType, key string) (*Event, error) {
	upTo, err := s.ReadableUpTo(roomID, userID)
	if err != nil {
		return nil, err
	}
	if ev := s.model.stateEventAt(roomID, evType, key, upTo); ev != nil {
		return ev, nil
	}
	return nil, fmt.Errorf("%w: no %s state with key %q", ErrNotFound, evType, key)
}

// MemberAt is the user's member event as it stood after the event at seq, if any.
func (m *Model) MemberAt(roomID, userID string, seq uint64) (Event, bool) {
	ev := m.stateEventAt(roomID, "m.room.member", userID, seq)
	if ev == nil {
		return Event{}, false
	}
	return *ev, true
}

// JoinedSince reports whether the user joined the room after position seq.
func (m *Model) JoinedSince(roomID, userID string, seq uint64) bool {
	h, _ := m.history(roomID, userID)
	return h.lastJoin > seq
}

// StateAt is the room's state after the event at seq (End: now), ordered by position.
func (m *Model) StateAt(roomID string, seq uint64) []Event { return m.StateDelta(roomID, 0, seq) }

// stateEventAt is one entry of StateAt, nil when absent.
func (m *Model) stateEventAt(roomID, evType, key string, seq uint64) *Event {
	m.mu.RLock()
	defer m.mu.RUnlock()
	r := m.rooms[roomID]
	if r == nil {
		return nil
	}
	if ev := loggedAt(r.stateLog[stateKey{evType, key}], seq); ev != nil {
		c := *ev
		return &c
	}
	return nil
}
