package rooms

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"math"
	"slices"
	"sort"
	"strings"
	"sync"

	"github.com/matrix-org/gomatrixserverlib"
	"github.com/tidwall/gjson"

	"github.com/firebreak/firebreak/internal/store"
)

// Event is one stored room event with what the read model derived from it.
type Event struct {
	PDU         gomatrixserverlib.PDU
	Seq         uint64 // position in the room's shard stream
	Sender      string
	Device      string // sending device and transaction id, for the echo to that device
	TxnID       string
	PrevContent json.RawMessage // content of the state event this one replaced
	PrevSender  string
	RedactedBy  string
	// Thread is the root of the thread the event is in, "" for the main timeline (a thread's
	// root included). Kept from the event's relation when it is applied, as its content may
	// be redacted later.
	Thread string
	// RelType is how the event relates to its parent (m.relates_to's rel_type), "" for none.
	RelType string
	// children are the events that relate to this one, in stream order (relations.go). Only
	// read under the model's lock: a copy of the event shares them with the model.
	children []*Event
	// threadRoot: some child is a reply in a thread this event is the root of.
	threadRoot bool
}

// thread names the event's thread as receipts do: its root, or "main".
func (e *Event) thread() string {
	if e.Thread == "" {
		return "main"
	}
	return e.Thread
}

// IsState reports whether the event has a state key.
func (e *Event) IsState() bool { return e.PDU.StateKey() != nil }

type stateKey struct{ Type, Key string }

// room is the read model of one room. It is only touched with the model's lock held, except
// the append-only visibility lists, which visibility.go reads from capped snapshots.
type room struct {
	id      string
	shard   int
	version gomatrixserverlib.IRoomVersion
	events  []*Event // in stream order, which is the room's one linear history
	byID    map[string]*Event
	// stateLog is every value each state key has had, in stream order, the last being the
	// current state: the state at any position is one binary search per key, however long ago
	// it changed.
	stateLog map[stateKey][]*Event
	// stateChanged is the sequence of the newest event in state: every incremental sync asks
	// for the state changed since its token, and mostly nothing has.
	stateChanged uint64
	txns         map[txnKey]string // the id of the event each transaction was stored as
	threadRoots  []*Event          // events that have a thread, in the order their threads began
	// visibility and memberships are every history_visibility change and each user's every
	// membership change in stream order: what history visibility is decided from. The last
	// of a user's changes is their current membership, read once from their member event:
	// syncs and wake-ups ask for it on every event, and decoding member events each time was
	// the largest cost of a sync.
	visibility  []change
	memberships map[string][]change
	tally       *memberTally // what memberships add up to; replaced, never changed, on a change
}

// threadOf is the thread of an event related to parent: a thread's reply is in its root's; an
// event related to another of the room (an edit, a reaction) is in that one's, however long
// the chain, since each event keeps its own; anything else, or a relation to an event the
// room does not have, is in the main timeline (""). A thread's root is the one named, unless
// that is itself in a thread, whose root it then is.
func threadOf(parent *Event, relType string) string {
	switch {
	case parent == nil:
		return ""
	case parent.Thread != "":
		return parent.Thread
	case relType == relThread:
		return parent.PDU.EventID()
	}
	return ""
}

// firstAfter is the index in r.events of the first event after position seq (len when none).
func (r *room) firstAfter(seq uint64) int {
	return sort.Search(len(r.events), func(i int) bool { return r.events[i].Seq > seq })
}

// currentMembership is a user's latest membership change in the room.
func currentMembership(changes []change) change { return changes[len(changes)-1] }

// StayStart is the position of the change that began the user's current membership of the
// room: their join, not a later profile update (a join after a join). 0 if they have none.
func (m *Model) StayStart(roomID, userID string) uint64 {
	m.mu.RLock()
	defer m.mu.RUnlock()
	r := m.rooms[roomID]
	if r == nil {
		return 0
	}
	changes := r.memberships[userID]
	i := len(changes) - 1
	for i > 0 && changes[i-1].value == changes[i].value {
		i--
	}
	if i < 0 {
		return 0
	}
	return changes[i].seq
}

// Model is this node's in-memory view of every room, built by following the shard streams.
// It can be thrown away at any time: it is rebuilt from JetStream on start.
type Model struct {
	log *slog.Logger

	mu        sync.RWMutex
	rooms     map[string]*room
	userRooms map[string]map[string]string // user -> room -> membership

	applied []*store.Cursor // per shard: the last sequence applied
	shardMu []sync.Mutex    // per shard: held while one message is applied

	onChange func(users []string)

	built builtEvents
}

func newModel(shards int, log *slog.Logger) *Model {
	m := &Model{
		log:       log,
		rooms:     map[string]*room{},
		userRooms: map[string]map[string]string{},
		applied:   make([]*store.Cursor, shards),
		shardMu:   make([]sync.Mutex, shards),
		onChange:  func([]string) {},
		built:     builtEvents{byID: map[string]gomatrixserverlib.PDU{}},
	}
	for i := range m.applied {
		m.applied[i] = store.NewCursor()
	}
	return m
}

// apply adds the events of one stored message to the model (one event, or with group commit
// those stored together) and only then moves the shard's position past it. Messages arrive
// in stream order. Two paths apply a shard's messages (its follower, and a gap fill while the
// follower waits out an election), so each shard applies one message at a time and skips
// what it already has.
func (m *Model) apply(stored []store.RoomEvent) {
	if len(stored) == 0 {
		return
	}
	shard, seq := stored[0].Shard, stored[0].Seq
	m.shardMu[shard].Lock()
	if seq <= m.applied[shard].Load() {
		m.shardMu[shard].Unlock()
		return
	}
	var users []string
	for _, se := range stored {
		users = append(users, m.applyDecoded(se)...)
	}
	m.applied[shard].Advance(seq)
	m.shardMu[shard].Unlock()
	if len(users) > 0 {
		m.onChange(users)
	}
}

// applyDecoded decodes the event before taking the model's lock, so readers do not wait on
// the decoding, and then adds it.
func (m *Model) applyDecoded(se store.RoomEvent) []string {
	pdu, r, err := m.parse(&se)
	if err != nil {
		m.log.Error("skipping unreadable stored event", "shard", se.Shard, "seq", se.Seq, "err", err)
		return nil
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	// Only a create event that could be read starts a room. A room's events all come from one
	// shard, whose lock is held, so no other apply adds it between parse and here; a room
	// already recorded is kept all the same rather than replaced.
	if known := m.rooms[r.id]; known != nil {
		r = known
	} else {
		m.rooms[r.id] = r
	}
	return m.applyLocked(se, pdu, r)
}

func (m *Model) applyLocked(se store.RoomEvent, pdu gomatrixserverlib.PDU, r *room) []string {
	ev := &Event{PDU: pdu, Seq: se.Seq, Sender: string(pdu.SenderID()), Device: se.Device, TxnID: se.TxnID}
	r.relate(ev)
	r.events = append(r.events, ev)
	r.byID[pdu.EventID()] = ev
	if se.Device != "" && se.TxnID != "" {
		r.txns[txnKey{ev.Sender, se.Device, pdu.Type(), se.TxnID}] = pdu.EventID()
	}
	if pdu.Type() == "m.room.redaction" {
		m.redactLocked(r, ev)
	}
	if sk := pdu.StateKey(); sk != nil {
		key := stateKey{pdu.Type(), *sk}
		log := r.stateLog[key]
		if n := len(log); n > 0 {
			ev.PrevContent, ev.PrevSender = log[n-1].PDU.Content(), log[n-1].Sender
		}
		r.stateLog[key], r.stateChanged = append(log, ev), ev.Seq
		if key == (stateKey{"m.room.history_visibility", ""}) {
			r.visibility = append(r.visibility, change{ev.Seq, historyVisibility(pdu.Content())})
		}
		if pdu.Type() == "m.room.member" {
			m.setMembershipLocked(r, *sk, ev)
			// The tally's list has no room to spare (memberTally.with), so this copies it.
			return append(m.interestedLocked(r), *sk)
		}
	}
	return m.interestedLocked(r)
}

// parse decodes a stored event with its room's version; a create event starts a new room,
// which the caller records. An event this node built is taken as it was built, and its room
// read from it rather than looked for in its JSON. Its JSON is then the built one, not the
// stored message's, so se's device and transaction id become copies: they share the message's
// memory, and would keep all of it alive for themselves.
func (m *Model) parse(se *store.RoomEvent) (gomatrixserverlib.PDU, *room, error) {
	if pdu := m.built.take(*se); pdu != nil {
		se.Device, se.TxnID = strings.Clone(se.Device), strings.Clone(se.TxnID)
		r, err := m.roomOf(se.Shard, roomIDOf(pdu), func() (string, gomatrixserverlib.RoomVersion) {
			return pdu.Type(), pdu.Version()
		})
		return pdu, r, err
	}
	r, err := m.roomOf(se.Shard, gjson.GetBytes(se.JSON, "room_id").String(), func() (string, gomatrixserverlib.RoomVersion) {
		head := gjson.GetManyBytes(se.JSON, "type", "content.room_version")
		return head[0].String(), gomatrixserverlib.RoomVersion(cmp.Or(head[1].String(), "1"))
	})
	if err != nil {
		return nil, nil, err
	}
	pdu, err := decodeStored(r.version, *se)
	if err != nil {
		return nil, nil, err
	}
	return pdu, r, nil
}

// roomIDOf is the event's room id, read from the signer's event without parsing it again.
func roomIDOf(pdu gomatrixserverlib.PDU) string {
	if e, ok := pdu.(*builtEvent); ok {
		return e.roomID
	}
	return pdu.RoomID().String()
}

// roomOf is the model's room roomID, or a new one when the event is the create event that
// starts it. created reads the event's type and the room version it names; it is asked only
// for an event of a room the model does not have, as reading them costs a pass over the JSON.
func (m *Model) roomOf(shard int, roomID string, created func() (eventType string, version gomatrixserverlib.RoomVersion)) (*room, error) {
	m.mu.RLock()
	r := m.rooms[roomID]
	m.mu.RUnlock()
	if r != nil {
		return r, nil
	}
	eventType, version := created()
	if eventType != "m.room.create" {
		return nil, errUnknownRoom
	}
	impl, err := gomatrixserverlib.GetRoomVersion(version)
	if err != nil {
		return nil, err
	}
	return &room{id: roomID, shard: shard, version: impl, byID: map[string]*Event{},
		stateLog: map[stateKey][]*Event{}, txns: map[txnKey]string{}, memberships: map[string][]change{},
		tally: &memberTally{}}, nil
}

// builtEvents are the events this node has built and is appending: applying one from the
// stream takes the decoded event instead of decoding the same bytes again, which cost a send
// as much as hashing it.
type builtEvents struct {
	mu   sync.Mutex
	byID map[string]gomatrixserverlib.PDU
}

// add offers a built event until the returned func is called.
func (b *builtEvents) add(pdu gomatrixserverlib.PDU) (done func()) {
	id := pdu.EventID()
	b.mu.Lock()
	b.byID[id] = pdu
	b.mu.Unlock()
	return func() {
		b.mu.Lock()
		delete(b.byID, id)
		b.mu.Unlock()
	}
}

// take returns the built event a stored event is, if it is one: same id, same bytes.
func (b *builtEvents) take(se store.RoomEvent) gomatrixserverlib.PDU {
	if se.EventID == "" {
		return nil
	}
	b.mu.Lock()
	pdu := b.byID[se.EventID]
	b.mu.Unlock()
	if pdu == nil || !bytes.Equal(pdu.JSON(), se.JSON) {
		return nil
	}
	return pdu
}

// decodeStored decodes a stored event, taking its id from the record when the writer put it
// there: hashing the event again costs more than the rest of reading it.
func decodeStored(v gomatrixserverlib.IRoomVersion, se store.RoomEvent) (gomatrixserverlib.PDU, error) {
	if se.EventID != "" {
		if e := decodeStoredPlain(v, se.EventID, se.JSON); e != nil {
			return e, nil
		}
		return v.NewEventFromTrustedJSONWithEventID(se.EventID, se.JSON, false)
	}
	pdu, err := v.NewEventFromTrustedJSON(se.JSON, false)
	if err != nil {
		return nil, err
	}
	return pdu, checkEventID(pdu)
}

// checkEventID computes the event id, which gomatrixserverlib does by panicking on content it
// cannot hash; one unreadable stored event must not stop a node from starting.
func checkEventID(pdu gomatrixserverlib.PDU) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("event id: %v", r)
		}
	}()
	_ = pdu.EventID()
	return nil
}

func (m *Model) redactLocked(r *room, redaction *Event) {
	target := r.byID[redaction.PDU.Redacts()]
	if target == nil || target.RedactedBy != "" {
		return
	}
	redactedJSON, err := r.version.RedactEventJSON(target.PDU.JSON())
	if err != nil {
		return
	}
	// Given its id, the redacted event never hashes itself lazily, which would write to it
	// while readers hold the model's read lock.
	pdu, err := r.version.NewEventFromTrustedJSONWithEventID(target.PDU.EventID(), redactedJSON, true)
	if err != nil {
		return
	}
	// Readers only ever hold copies taken under the lock, so changing it in place is safe.
	target.PDU, target.RedactedBy = pdu, redaction.PDU.EventID()
}

func (m *Model) setMembershipLocked(r *room, userID string, ev *Event) {
	membership, err := ev.PDU.Membership()
	if err != nil {
		return
	}
	prev := ""
	if changes := r.memberships[userID]; len(changes) > 0 {
		prev = currentMembership(changes).value
	}
	r.memberships[userID] = append(r.memberships[userID], change{ev.Seq, membership})
	r.tally = r.tally.with(userID, prev, membership)
	rooms := m.userRooms[userID]
	if rooms == nil {
		rooms = map[string]string{}
		m.userRooms[userID] = rooms
	}
	rooms[r.id] = membership
}

// interestedLocked lists who should hear about a change in the room: joined and invited users.
// The list is the room's tally's: callers must not change it.
func (m *Model) interestedLocked(r *room) []string { return r.tally.present }

// MemberSummary counts the room's joined and invited members and names up to maxHeroes of
// them other than userID, the earliest to arrive first, as the sync summary's heroes; when
// there are none, former members are the heroes.
func (m *Model) MemberSummary(roomID, userID string, maxHeroes int) (joined, invited int, heroes []string) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	r := m.rooms[roomID]
	if r == nil {
		return 0, 0, nil
	}
	t := r.tally
	for _, user := range t.present {
		if len(heroes) >= maxHeroes {
			break
		}
		if user != userID {
			heroes = append(heroes, user)
		}
	}
	if len(heroes) == 0 {
		heroes = r.formerMembers(userID, maxHeroes)
	}
	sort.Strings(heroes)
	return t.joined, t.invited, heroes
}

// formerMembers are up to n users, other than userID, who left or were banned, earliest
// first: the heroes of a room nobody else is in any more, so a client can name it after
// those who were ("Empty room (was Bob)"), as the spec asks. Only such rooms pay for the walk.
func (r *room) formerMembers(userID string, n int) []string {
	type former struct {
		user string
		seq  uint64
	}
	var all []former
	for user, changes := range r.memberships {
		last := changes[len(changes)-1]
		if user != userID && (last.value == "leave" || last.value == "ban") {
			all = append(all, former{user, last.seq})
		}
	}
	slices.SortFunc(all, func(a, b former) int { return cmp.Compare(a.seq, b.seq) })
	out := make([]string, 0, min(n, len(all)))
	for _, f := range all[:min(n, len(all))] {
		out = append(out, f.user)
	}
	return out
}

// Applied returns, per shard, the last sequence this node has applied.
func (m *Model) Applied() []uint64 {
	out := make([]uint64, len(m.applied))
	for i := range m.applied {
		out[i] = m.applied[i].Load()
	}
	return out
}

// WaitApplied blocks until the shard has been applied up to seq, or ctx ends.
func (m *Model) WaitApplied(ctx context.Context, shard int, seq uint64) error {
	return m.applied[shard].Wait(ctx, seq)
}

// AppliedAll reports whether every shard has reached the given positions (shards this
// deployment does not have are ignored, as WaitAppliedAll ignores them).
func (m *Model) AppliedAll(positions []uint64) bool {
	for shard, seq := range positions {
		if shard < len(m.applied) && m.applied[shard].Load() < seq {
			return false
		}
	}
	return true
}

// WaitAppliedAll waits until every shard has reached the given positions.
func (m *Model) WaitAppliedAll(ctx context.Context, positions []uint64) error {
	for shard, seq := range positions {
		if shard < len(m.applied) {
			if err := m.WaitApplied(ctx, shard, seq); err != nil {
				return err
			}
		}
	}
	return nil
}

// --- queries; each returns copies so callers never hold the lock ---

// RoomInfo is a room's head and identity.
type RoomInfo struct {
	ID      string
	Shard   int
	Version gomatrixserverlib.IRoomVersion
	HeadSeq uint64
	Head    *Event
	// Seen is the room's shard position this view reflects at least: an event built on it is
	// refused if another writer stored anything after it (store.NewRoomEvent.Seen).
	Seen uint64
}

// Info returns the room's identity and head, false when the room is unknown here.
func (m *Model) Info(roomID string) (RoomInfo, bool) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	r := m.rooms[roomID]
	if r == nil {
		return RoomInfo{}, false
	}
	// Read under the lock: an apply advances the position only after its events are in.
	info := RoomInfo{ID: r.id, Shard: r.shard, Version: r.version, Seen: m.applied[r.shard].Load()}
	if n := len(r.events); n > 0 {
		head := *r.events[n-1]
		info.HeadSeq, info.Head = head.Seq, &head
	}
	return info, true
}

// Membership is the user's membership of the room ("" when none).
func (m *Model) Membership(roomID, userID string) string {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return m.userRooms[userID][roomID]
}

// UserRooms maps each room the user has a membership in to that membership.
func (m *Model) UserRooms(userID string) map[string]string {
	m.mu.RLock()
	defer m.mu.RUnlock()
	out := make(map[string]string, len(m.userRooms[userID]))
	for k, v := range m.userRooms[userID] {
		out[k] = v
	}
	return out
}

// StateEvent returns one current state event, nil when absent.
func (m *Model) StateEvent(roomID, evType, key string) *Event {
	return m.stateEventAt(roomID, evType, key, End)
}

// State returns the room's current state, ordered by position.
func (m *Model) State(roomID string) []Event { return m.StateDelta(roomID, 0, End) }

// StateDelta is the room's state as it stood after the event at position at (End: now),
// limited to the entries set after position after (0: all of it), ordered by position: a
// room's current state, the state where a sync's timeline starts, or what changed in between.
// It walks whichever is shorter: the events between the two positions, newest first so that
// each key's last value wins (a member's sync after another user joins a large room looks at
// one event, not every member), or the state's keys, each looked up in its log.
func (m *Model) StateDelta(roomID string, after, at uint64) []Event {
	m.mu.RLock()
	defer m.mu.RUnlock()
	r := m.rooms[roomID]
	if r == nil || r.stateChanged <= after || at <= after {
		return nil // mostly: nothing in the room's state changed since a sync's token
	}
	between := r.events[r.firstAfter(after):r.firstAfter(at)]
	if len(between) < len(r.stateLog) {
		return lastValues(between)
	}
	return r.valuesAt(after, at)
}

// lastValues is each state key's last value among events, in stream order.
func lastValues(events []*Event) []Event {
	seen := map[stateKey]bool{}
	var out []Event
	for i := len(events) - 1; i >= 0; i-- {
		ev := events[i]
		if sk := ev.PDU.StateKey(); sk != nil && !seen[stateKey{ev.PDU.Type(), *sk}] {
			seen[stateKey{ev.PDU.Type(), *sk}] = true
			out = append(out, *ev)
		}
	}
	slices.Reverse(out)
	return out
}

// valuesAt is every state key's value at position at that was set after position after, in
// stream order.
func (r *room) valuesAt(after, at uint64) []Event {
	var out []Event
	for _, log := range r.stateLog {
		if ev := loggedAt(log, at); ev != nil && ev.Seq > after {
			out = append(out, *ev)
		}
	}
	slices.SortFunc(out, func(a, b Event) int { return cmp.Compare(a.Seq, b.Seq) })
	return out
}

// loggedAt is a state key's value after position seq: the last of its log up to seq.
func loggedAt(log []*Event, seq uint64) *Event {
	i := sort.Search(len(log), func(i int) bool { return log[i].Seq > seq })
	if i == 0 {
		return nil
	}
	return log[i-1]
}

// Event finds an event by id.
func (m *Model) Event(roomID, eventID string) (Event, bool) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	if r := m.rooms[roomID]; r != nil {
		if ev := r.byID[eventID]; ev != nil {
			return *ev, true
		}
	}
	return Event{}, false
}

// eventAtSeq finds the event stored at seq.
func (m *Model) eventAtSeq(roomID string, seq uint64) (Event, bool) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	r := m.rooms[roomID]
	if r == nil {
		return Event{}, false
	}
	return r.eventAt(seq)
}

func (r *room) eventAt(seq uint64) (Event, bool) {
	i := sort.Search(len(r.events), func(i int) bool { return r.events[i].Seq >= seq })
	if i < len(r.events) && r.events[i].Seq == seq {
		return *r.events[i], true
	}
	return Event{}, false
}

// txnKey names a transaction: the spec scopes an id to the device and the endpoint, whose path
// names the event type (the room is the index's own). Its parts are the strings the event
// holds anyway, where one string joined of them would be an object per event for the
// collector to trace.
type txnKey struct{ sender, device, evType, txn string }

// TxnEvent returns the event id a (sender, device, event type, txn id) was stored as, if any.
func (m *Model) TxnEvent(roomID, sender, device, evType, txn string) string {
	m.mu.RLock()
	defer m.mu.RUnlock()
	if r := m.rooms[roomID]; r != nil {
		return r.txns[txnKey{sender, device, evType, txn}]
	}
	return ""
}

// End is the position after every event: an upper bound that bounds nothing.
const End = math.MaxUint64

// Range returns up to limit events with after < Seq <= upTo that keep returns true for,
// oldest first when forward, newest first otherwise.
func (m *Model) Range(roomID string, after, upTo uint64, forward bool, limit int, keep func(*Event) bool) []Event {
	m.mu.RLock()
	defer m.mu.RUnlock()
	r := m.rooms[roomID]
	if r == nil || limit <= 0 {
		return nil
	}
	lo, hi := r.firstAfter(after), r.firstAfter(upTo)
	var out []Event
	for n := 0; n < hi-lo && len(out) < limit; n++ {
		i := lo + n
		if !forward {
			i = hi - 1 - n
		}
		if keep == nil || keep(r.events[i]) {
			out = append(out, *r.events[i])
		}
	}
	return out
}

// interested lists the joined and invited users of a room.
func (m *Model) interested(roomID string) []string {
	m.mu.RLock()
	defer m.mu.RUnlock()
	if r := m.rooms[roomID]; r != nil {
		return m.interestedLocked(r)
	}
	return nil
}
