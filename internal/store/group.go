package store

import (
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/firebreak/firebreak/internal/wire"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Group commit. One replica fsyncs every message it stores, and that fsync, with the publish
// around it, caps how many events a node can append one message each. So the compare a room's
// append needs (nobody wrote the room since its event was built) moves from the room's
// subject to the shard: each shard has a writer that stores whatever appends queued while its
// last message was in flight as one message, conditional on the shard's last sequence being
// the one the writer last stored. Each append is checked first against the room's head as
// this writer stored it, and against the shard position its event was built on, which must
// include everything anyone else stored. The events of one message share its stream
// sequence, so a message holds at most one event per room: positions stay one event per
// room, as sync and history tokens need. On a single node this process is the only writer;
// in a cluster the node leading the shard's stream is, and the others forward to it
// (forward.go). (docs/ARCHITECTURE.md, "Group commit".)

// groupSubjectToken is the last token of a shard's group subject. A room's token starts with
// "_" (Key), so no room's subject can be it.
const groupSubjectToken = "g"

// A group message stays under the shard stream's MaxMsgSize with room for its headers, and
// takes a bounded number of appends so that one message's fsync is never long.
const (
	maxGroupBytes  = 200 << 10
	maxGroupEvents = 128
)

// groupAppend is one caller's append waiting for its shard's writer.
type groupAppend struct {
	ctx      context.Context
	roomID   string
	afterSeq uint64 // the room's head the events were built on
	// seen is the shard position the caller's events were built on: the writer refuses them
	// if anything it did not write itself was stored after it.
	seen uint64
	evs  []NewRoomEvent // several only for a new room's first events, stored atomically
	size int
	done chan groupResult
}

type groupResult struct {
	seq uint64
	err error
}

// groupWriter orders one shard's appends. Its fields past queue belong to run's goroutine.
type groupWriter struct {
	st      *Store
	shard   int
	subject string
	queue   chan *groupAppend
	// resync asks the writer to read the shard's head again before its next message: its
	// node has just come to own the shard, which another node wrote meanwhile.
	resync atomic.Bool
	// known says last and base are current. last is the shard's last sequence as this writer
	// stored it; base is where its knowledge of the rooms' heads begins: the last sequence it
	// did not store itself (read from the stream, or named by a lost compare), or its own last
	// message when it started afresh (maxKnownHeads).
	known      bool
	last, base uint64
	// heads are the rooms' heads as this writer stored them since base.
	heads map[string]uint64
	// held is an append that could not join the last message (its room was in it, it did
	// not fit, or it is a new room's batch, which goes alone): the next one starts with it.
	held *groupAppend
	// batchRooms is collect's scratch: the rooms in the message being gathered.
	batchRooms map[string]bool
}

// groupWriters runs a writer per shard until the store closes.
type groupWriters struct {
	st      *Store
	writers []*groupWriter
	stop    context.CancelFunc
	stopped context.Context // done once the writers may no longer be waited for
	wg      sync.WaitGroup
	owners  *shardOwners // in a cluster only (forward.go)
}

func (s *Store) startGroupWriters() {
	ctx, cancel := context.WithCancel(context.Background())
	g := &groupWriters{st: s, stop: cancel, stopped: ctx}
	for shard := range s.shards {
		w := &groupWriter{st: s, shard: shard, subject: fmt.Sprintf("%s.%d.%s", roomSubjectPrefix, shard, groupSubjectToken),
			queue: make(chan *groupAppend, maxGroupEvents), heads: map[string]uint64{}, batchRooms: map[string]bool{}}
		g.writers = append(g.writers, w)
		g.wg.Add(1)
		go func() {
			defer g.wg.Done()
			w.run(ctx)
		}()
	}
	s.groups = g
}

func (g *groupWriters) close() {
	if g.owners != nil {
		g.owners.close()
	}
	g.stop()
	g.wg.Wait()
}

// append stores evs through the shard's writer: this node's own, or in a cluster the writer
// of the node that owns the shard.
func (g *groupWriters) append(ctx context.Context, shard int, roomID string, afterSeq uint64, evs []NewRoomEvent) (uint64, error) {
	if g.owners == nil {
		return g.submit(ctx, shard, roomID, afterSeq, evs)
	}
	return g.forward(ctx, shard, roomID, afterSeq, evs)
}

// submit hands evs to the room's shard writer on this node and waits for the stored message's sequence.
func (g *groupWriters) submit(ctx context.Context, shard int, roomID string, afterSeq uint64, evs []NewRoomEvent) (uint64, error) {
	req := &groupAppend{ctx: ctx, roomID: roomID, afterSeq: afterSeq, seen: math.MaxUint64, evs: evs, done: make(chan groupResult, 1)}
	for _, ev := range evs {
		size := groupEventSize(ev)
		if size > maxGroupBytes { // a new room's events are one message each
			return 0, fmt.Errorf("%w: an event of %d bytes", ErrValueTooLarge, size)
		}
		req.size += size
		req.seen = min(req.seen, ev.Seen)
	}
	select {
	case g.writers[shard].queue <- req:
	case <-ctx.Done():
		return 0, fmt.Errorf("%w: %v", ErrUnavailable, ctx.Err())
	case <-g.stopped.Done():
		return 0, fmt.Errorf("%w: the store is closing", ErrUnavailable)
	}
	select {
	case r := <-req.done:
		return r.seq, r.err
	case <-ctx.Done(): // it may still be stored: a retry finds it by its transaction id
		return 0, fmt.Errorf("%w: %v", ErrUnavailable, ctx.Err())
	case <-g.stopped.Done():
		return 0, fmt.Errorf("%w: the store is closing", ErrUnavailable)
	}
}

func (w *groupWriter) run(ctx context.Context) {
	for {
		batch, ok := w.collect(ctx)
		if !ok {
			return
		}
		w.write(ctx, batch)
	}
}

// collect waits for the next append and takes with it every one already queued that fits in
// the same message. A new room's batch goes alone (it is stored atomically as it is), and an
// append for a room already taken waits for the next message.
func (w *groupWriter) collect(ctx context.Context) ([]*groupAppend, bool) {
	first := w.held
	w.held = nil
	if first == nil {
		select {
		case first = <-w.queue:
		case <-ctx.Done():
			return nil, false
		}
	}
	batch := []*groupAppend{first}
	if len(first.evs) > 1 {
		return batch, true
	}
	clear(w.batchRooms)
	w.batchRooms[first.roomID] = true
	size := first.size
	for len(batch) < maxGroupEvents {
		var next *groupAppend
		select {
		case next = <-w.queue:
		default:
			return batch, true
		}
		if len(next.evs) > 1 || w.batchRooms[next.roomID] || size+next.size > maxGroupBytes {
			w.held = next
			return batch, true
		}
		w.batchRooms[next.roomID] = true
		size += next.size
		batch = append(batch, next)
	}
	return batch, true
}

// write stores the batch's appends as one message (or a new room's events as one atomic
// batch) and answers each of them.
func (w *groupWriter) write(ctx context.Context, batch []*groupAppend) {
	if w.resync.Swap(false) || w.behind(batch) {
		w.forget()
	}
	if err := w.learnHead(ctx); err != nil {
		answer(batch, groupResult{err: err})
		return
	}
	live := batch[:0]
	for _, req := range batch {
		if err := w.check(req); err != nil {
			req.done <- groupResult{err: err}
		} else {
			live = append(live, req)
		}
	}
	if len(live) == 0 {
		return
	}
	seq, err := w.store(ctx, live)
	w.settle(live, seq, err)
	answer(live, groupResult{seq: seq, err: err})
}

// learnHead reads the shard's last sequence when the writer does not know it.
func (w *groupWriter) learnHead(ctx context.Context) error {
	if w.known {
		return nil
	}
	head, err := w.st.ShardHead(ctx, w.shard)
	if err != nil {
		return err
	}
	w.known, w.last, w.base = true, head, head
	return nil
}

// settle updates what the writer knows after storing live's message at seq, or failing to.
func (w *groupWriter) settle(live []*groupAppend, seq uint64, err error) {
	var c *ConflictError
	switch {
	case errors.As(err, &c):
		// Another writer stored something: whatever was built before it is built again.
		w.forget()
		w.known, w.last, w.base = c.Head > 0, c.Head, c.Head
	case err != nil:
		// The message may have been stored all the same (its answer lost past every retry):
		// the shard's head is read again before the next one.
		w.forget()
	default:
		w.last = seq
		if len(w.heads) >= maxKnownHeads {
			w.forget()
			w.known, w.base = true, seq
		}
		for _, req := range live {
			w.setHead(req.roomID, seq)
		}
	}
}

// maxKnownHeads bounds the rooms whose heads a writer remembers. Past it the writer starts
// afresh from its last message, as if another writer had stored it: appends built before it
// are refused once and built again.
const maxKnownHeads = 1 << 16

// forget drops what the writer knows of the shard, to be read again before its next message.
func (w *groupWriter) forget() {
	w.known = false
	clear(w.heads)
}

// behind reports whether an append was built on a room head later than the one this writer
// stored: a message it was not told of landed, so what it knows is out of date.
func (w *groupWriter) behind(batch []*groupAppend) bool {
	for _, req := range batch {
		if head, ok := w.heads[req.roomID]; ok && head < req.afterSeq {
			return true
		}
	}
	return false
}

// setHead records a room's head. A room new to the map gets its own copy of the id, which may
// share memory with the request it came from.
func (w *groupWriter) setHead(roomID string, seq uint64) {
	if _, ok := w.heads[roomID]; !ok {
		roomID = strings.Clone(roomID)
	}
	w.heads[roomID] = seq
}

// check is the compare of an append: on the room's head, where this writer stored the room's
// last event, and on the shard position the event was built on, which must include
// everything stored by anyone else.
func (w *groupWriter) check(req *groupAppend) error {
	if req.ctx.Err() != nil { // nobody waits for it: leave it unstored
		return fmt.Errorf("%w: %v", ErrUnavailable, req.ctx.Err())
	}
	if head, ok := w.heads[req.roomID]; ok && head != req.afterSeq {
		return &ConflictError{Head: head}
	}
	if req.seen < w.base {
		return &ConflictError{Head: w.base}
	}
	return nil
}

func answer(batch []*groupAppend, r groupResult) {
	for _, req := range batch {
		req.done <- r
	}
}

// store sends the messages for live after the writer's last sequence and returns the last
// one's sequence. A retry whose first attempt landed unanswered finds its last message where
// only that attempt could have put it, right after the writer's last sequence.
func (w *groupWriter) store(ctx context.Context, live []*groupAppend) (uint64, error) {
	msgs := w.messages(live)
	msgs[0].Header.Set(jetstream.ExpectedLastSeqHeader, strconv.FormatUint(w.last, 10))
	at := w.last + uint64(len(msgs))
	lastIDs := lastMessageIDs(live)
	return w.st.appendRecognising(ctx, func(actx context.Context) (uint64, error) {
		return w.st.publishAtomic(actx, msgs)
	}, func(conflict error) (uint64, bool) {
		return at, errors.Is(conflict, ErrConflict) && w.holds(ctx, at, lastIDs)
	})
}

// lastMessageIDs are the event ids of the last message store sends for live, in order.
func lastMessageIDs(live []*groupAppend) []string {
	if len(live) == 1 && len(live[0].evs) > 1 { // a new room's batch: its last event alone
		evs := live[0].evs
		return []string{evs[len(evs)-1].EventID}
	}
	ids := make([]string, len(live))
	for i, req := range live {
		ids[i] = req.evs[0].EventID
	}
	return ids
}

// messages encodes live as one message, or a new room's events as one message each.
func (w *groupWriter) messages(live []*groupAppend) []*nats.Msg {
	var out []*nats.Msg
	if len(live) == 1 && len(live[0].evs) > 1 {
		for _, ev := range live[0].evs {
			out = append(out, w.message([]NewRoomEvent{ev}))
		}
		return out
	}
	evs := make([]NewRoomEvent, len(live))
	for i, req := range live {
		evs[i] = req.evs[0]
	}
	return append(out, w.message(evs))
}

func (w *groupWriter) message(evs []NewRoomEvent) *nats.Msg {
	size := 0
	for _, ev := range evs {
		size += groupEventSize(ev)
	}
	data := make([]byte, 0, size)
	for _, ev := range evs {
		data = appendGroupEvent(data, ev)
	}
	msg := nats.NewMsg(w.subject)
	msg.Data = data
	return msg
}

// holds reports whether the message at seq holds exactly the events ids names, in order. Its
// last event alone would not do in a cluster: an append whose forward was tried again can
// sit with another writer too, and be stored by it in a message of its own. (store asks only
// of the one place its own message could be: a message elsewhere with the same events is not
// its, and a writer that counted it so would not know what came before it.)
func (w *groupWriter) holds(ctx context.Context, seq uint64, ids []string) bool {
	if seq == 0 || slices.Contains(ids, "") {
		return false
	}
	evs, err := w.st.RoomEventsAt(ctx, w.shard, seq)
	if err != nil || len(evs) != len(ids) {
		return false
	}
	for i, ev := range evs {
		if ev.EventID != ids[i] {
			return false
		}
	}
	return true
}

// A group message is its events one after another, each as four length-prefixed fields:
// event id, device, transaction id, event JSON.

func groupEventSize(ev NewRoomEvent) int {
	return wire.FieldsSize(ev.EventID, ev.Device, ev.TxnID) + wire.FieldSize(len(ev.JSON))
}

func appendGroupEvent(buf []byte, ev NewRoomEvent) []byte {
	return wire.AppendField(wire.AppendFields(buf, ev.EventID, ev.Device, ev.TxnID), ev.JSON)
}

// errBadGroup: a group message that does not decode.
var errBadGroup = errors.New("store: unreadable group message")

// decodeGroup reads a group message's events. Their strings and JSON share data's memory: a
// reader that keeps an event's JSON (the read model, for every event another node built)
// keeps the message anyway, and a copy of each id would be one more object per event for the
// collector to trace. One that keeps only some of it copies that (RoomEvent).
func decodeGroup(shard int, seq uint64, data []byte) ([]RoomEvent, error) {
	var evs []RoomEvent
	r := wire.NewReader(data)
	for r.More() {
		id, device, txn, js := r.SharedString(), r.SharedString(), r.SharedString(), r.Field()
		evs = append(evs, RoomEvent{Shard: shard, Seq: seq, EventID: id, Device: device, TxnID: txn, JSON: js})
	}
	if !r.OK() || len(evs) == 0 {
		return nil, errBadGroup
	}
	return evs, nil
}
