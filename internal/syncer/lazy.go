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

const (
	// maxLazyDevices bounds how many devices' sent members a node remembers; past it one is
	// forgotten, and its next sync sends members again.
	maxLazyDevices = 100_000
	// maxLazyMembers bounds the members remembered of one room for one device: past it the
	// room starts afresh, and its members are sent again as they speak.
	maxLazyMembers = 1_000
)

type deviceKey struct{ user, device string }

// sentMembers is what lazy-loading responses sent to a device, up to the token they ended at.
type sentMembers struct {
	token string
	rooms map[string]map[string]string // room: member: the member event id the client has
	gen   uint64                       // counts the device's records, to tell a sync whether another wrote one meanwhile
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
	gen       uint64          // the device's record when the sync began
}

// begin returns the sync's memo, or nil when the request wants redundant members or does not
// lazy-load them.
func (l *lazyMembers) begin(req Request) *memberMemo {
	f := req.Filter.Room.State
	if !f.LazyLoadMembers || f.IncludeRedundantMembers {
		return nil
	}
	m := &memberMemo{has: map[string]map[string]string{}, copied: map[string]bool{}}
	l.mu.Lock()
	rec := l.devices[deviceKey{req.UserID, req.DeviceID}]
	l.mu.Unlock()
	m.gen = rec.gen
	if req.Since != "" && !req.FullState && rec.token == req.Since {
		m.has = rec.rooms
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
	rec, ok := l.devices[key]
	if ok && rec.gen != m.gen {
		// Another sync of the device answered meanwhile, perhaps with the same next_batch but
		// other members: which response the client goes on from is unknown, so the record
		// matches no token until a sync begins and ends alone.
		l.devices[key] = sentMembers{gen: rec.gen + 1}
		return
	}
	if !ok && len(l.devices) >= maxLazyDevices {
		for k := range l.devices { // any one: a forgotten device only gets members again
			delete(l.devices, k)
			break
		}
	}
	l.devices[key] = sentMembers{token: next, rooms: m.will, gen: rec.gen + 1}
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
	if !m.copied[roomID] || len(m.will[roomID]) >= maxLazyMembers {
		room := maps.Clone(m.has[roomID])
		if room == nil || len(room) >= maxLazyMembers {
			room = map[string]string{}
		}
		m.will[roomID], m.copied[roomID] = room, true
	}
	m.will[roomID][member] = eventID
}
