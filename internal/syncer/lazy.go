package syncer

import (
	"maps"
	"sync"
)

// Lazy-loaded members without redundant ones. A sync with lazy_load_members sends, besides
// the timeline, the member events of the timeline's senders; with include_redundant_members
// false (the default) it should leave out those the client already has. Which ones those are
// is remembered per device, by the next_batch of the response that sent them: a sync from that
// token proves its client got that response. A sync from any other token (one answered by
// another node, or an older one) is sent every sender's member event again, which the spec
// allows.

// maxLazyDevices bounds how many devices' sent members a node remembers; past it one is
// forgotten, and its next sync sends members again.
const maxLazyDevices = 100_000

type deviceKey struct{ user, device string }

// sentMembers is what lazy-loading responses sent to a device, up to the token they ended at.
type sentMembers struct {
	token string
	rooms map[string]map[string]string // room: member: the member event id the client has
}

type lazyMembers struct {
	mu      sync.Mutex
	devices map[deviceKey]sentMembers
}

func newLazyMembers() *lazyMembers { return &lazyMembers{devices: map[deviceKey]sentMembers{}} }

// memberMemo is one sync's view: what the client has, and what it will have once it gets this
// response. A room is copied before it first changes, so the record it came from, which
// another sync may be reading, stays as it was.
type memberMemo struct {
	has, will map[string]map[string]string
	copied    map[string]bool // rooms of will that are this sync's own
}

// begin returns the sync's memo, or nil when the request wants redundant members or does not
// lazy-load them.
func (l *lazyMembers) begin(req Request) *memberMemo {
	f := req.Filter.Room.State
	if !f.LazyLoadMembers || f.IncludeRedundantMembers {
		return nil
	}
	m := &memberMemo{has: map[string]map[string]string{}, copied: map[string]bool{}}
	if req.Since != "" && !req.FullState {
		l.mu.Lock()
		if rec, ok := l.devices[deviceKey{req.UserID, req.DeviceID}]; ok && rec.token == req.Since {
			m.has = rec.rooms
		}
		l.mu.Unlock()
	}
	m.will = maps.Clone(m.has)
	return m
}

// finish remembers what the client will have once it syncs from next.
func (l *lazyMembers) finish(req Request, m *memberMemo, next string) {
	if m == nil {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	key := deviceKey{req.UserID, req.DeviceID}
	if _, ok := l.devices[key]; !ok && len(l.devices) >= maxLazyDevices {
		for k := range l.devices { // any one: a forgotten device only gets members again
			delete(l.devices, k)
			break
		}
	}
	l.devices[key] = sentMembers{token: next, rooms: m.will}
}

// fresh starts a room afresh: the client is getting all of its state (newly joined, or a full
// window), so nothing it had of it counts any more.
func (m *memberMemo) fresh(roomID string) {
	if m != nil {
		m.will[roomID], m.copied[roomID] = map[string]string{}, true
	}
}

// hasEvent reports whether the client already has this member event.
func (m *memberMemo) hasEvent(roomID, member, eventID string) bool {
	return m != nil && m.has[roomID][member] == eventID
}

// sent notes a member event the response carries.
func (m *memberMemo) sent(roomID, member, eventID string) {
	if m == nil {
		return
	}
	if !m.copied[roomID] {
		m.will[roomID], m.copied[roomID] = maps.Clone(m.has[roomID]), true
		if m.will[roomID] == nil {
			m.will[roomID] = map[string]string{}
		}
	}
	m.will[roomID][member] = eventID
}
