package store

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/firebreak/firebreak/internal/wire"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
)

// Group commit in a cluster. Any node may store a shard's group message, since each is
// conditional on the shard's last sequence; but two nodes writing one shard at once would
// refuse each other's messages over and over. So the node that holds a shard stream's
// leader writes the shard, and the other nodes forward their appends to it. Its writer then
// publishes to the leader on its own server: the forward takes the place of the route hop
// a publish to a leader on another node takes. Who writes follows JetStream's own leader
// election, with no lease of Firebreak's own to take over after a fire. While no node owns a
// shard (an election, or the moment before the new leader's node notices), a forward finds
// nobody and is tried again, as a publish is while a stream has no leader. If the stream has
// a leader and still nobody answers for noOwnerGrace, the node writes the append itself. Two
// nodes that both write a shard for a moment stay safe, since every group message is
// conditional; they only refuse each other's messages, which is why a node waits before it
// writes a shard it does not lead.
// (docs/ARCHITECTURE.md, "Group commit".)

const (
	// appendService names the forwarded appends. Service names carry their encoding's
	// version: a node of a later build with another encoding finds no owner of this one,
	// rather than one that misreads it.
	appendService = "append.v1"
	// forwardQueue: should two nodes both believe they own a shard for a moment, NATS gives
	// each forwarded request to one of them, never to both.
	forwardQueue = "owner"
	// ownerCheck is how often a node asks its server which shard streams it leads.
	ownerCheck = 100 * time.Millisecond
	// hdrForwardWait carries how long the forwarding node still waits: the owner's time for
	// the request. An append still queued at the owner when that ends is left unstored
	// (groupWriter.check).
	hdrForwardWait = "Fb-Wait-Ms"
	// noOwnerGrace is how long a node forwards to nobody before it writes a shard's appends
	// itself: longer than a new leader's node takes to notice (ownerCheck) and to be heard
	// over the routes, shorter than JetStream's elections.
	noOwnerGrace = time.Second
)

// shardOwners serves the requests forwarded to the shards whose stream leader is on this
// node: the appends (groupWriters.forward), and whatever the layers above register with
// ServeAtShardOwner.
type shardOwners struct {
	st   *Store
	stop context.CancelFunc
	ctx  context.Context
	wg   sync.WaitGroup // the watch and every forwarded request still being served
	mu   sync.Mutex     // guards services and done, and orders adding to wg with close
	done bool
	// services are what an owner serves; each subscribes per shard while this node owns it.
	services []*ownerService
	owned    []bool // the shards this node owned at the last check; the watch's own
}

// ownerService is one kind of request an owner serves, on its subject per shard.
type ownerService struct {
	name   string // the subject's middle part, with its encoding's version
	handle OwnerHandler
	subs   []*nats.Subscription // non-nil for the shards this node owns
}

// OwnerHandler serves a request forwarded to this node because it owns the shard, and gives
// answer its answer. It may answer before it is done (answers after the first are dropped);
// one that returns without answering sends an empty answer. ctx ends when the asking node
// stops waiting.
type OwnerHandler func(ctx context.Context, shard int, req []byte, answer func([]byte))

func (s *Store) startShardOwners() {
	ctx, cancel := context.WithCancel(context.Background())
	o := &shardOwners{st: s, stop: cancel, ctx: ctx, owned: make([]bool, s.shards)}
	s.groups.owners = o
	o.add(appendService, func(ctx context.Context, shard int, req []byte, answer func([]byte)) {
		seq, err := o.store(ctx, shard, req)
		answer(encodeForwardReply(seq, err))
	})
	o.wg.Add(1)
	go func() {
		defer o.wg.Done()
		o.watch()
	}()
}

// add serves a service from the next ownership check on, until the returned function removes
// it.
func (o *shardOwners) add(name string, handle OwnerHandler) (remove func()) {
	svc := &ownerService{name: name, handle: handle, subs: make([]*nats.Subscription, o.st.shards)}
	o.mu.Lock()
	defer o.mu.Unlock()
	o.services = append(o.services, svc)
	return func() {
		o.mu.Lock()
		defer o.mu.Unlock()
		o.services = slices.DeleteFunc(o.services, func(s *ownerService) bool { return s == svc })
		svc.unsubscribe()
	}
}

func (svc *ownerService) unsubscribe() {
	for shard, sub := range svc.subs {
		if sub != nil {
			_ = sub.Unsubscribe()
			svc.subs[shard] = nil
		}
	}
}

func (o *shardOwners) close() {
	o.stop()
	o.mu.Lock()
	o.done = true
	o.mu.Unlock()
	o.wg.Wait()
}

// owns reports whether this node's server leads the shard's stream. It asks the server
// itself, which knows at once, rather than the watch, which may trail it.
func (o *shardOwners) owns(shard int) bool {
	return o.st.ns.JetStreamIsStreamLeader(server.DEFAULT_GLOBAL_ACCOUNT, shardStreamName(shard))
}

// watch takes the forwarded requests of the shards this node comes to own, and stops taking
// them when it no longer does.
func (o *shardOwners) watch() {
	tick := time.NewTicker(ownerCheck)
	defer tick.Stop()
	for {
		for shard := range o.owned {
			o.follow(shard)
		}
		select {
		case <-o.ctx.Done():
			o.mu.Lock()
			for _, svc := range o.services {
				svc.unsubscribe()
			}
			o.mu.Unlock()
			return
		case <-tick.C:
		}
	}
}

// follow subscribes to the shard's forwarded requests if this node owns the shard, and
// drains the subscriptions if it no longer does: requests already delivered are still served.
func (o *shardOwners) follow(shard int) {
	owns := o.owns(shard)
	if owns && !o.owned[shard] {
		// What this node's writer knew of the shard may be from before another node wrote it.
		o.st.groups.writers[shard].resync.Store(true)
	}
	if owns != o.owned[shard] {
		o.st.log.Info("shard owner", "shard", shard, "this_node", owns)
	}
	o.owned[shard] = owns
	o.mu.Lock()
	defer o.mu.Unlock()
	for _, svc := range o.services {
		sub := svc.subs[shard]
		switch {
		case owns && sub == nil:
			var err error
			sub, err = o.st.nc.QueueSubscribe(ownerSubject(svc.name, shard), forwardQueue, func(m *nats.Msg) { o.serve(svc, shard, m) })
			if err != nil {
				o.st.log.Warn("cannot take a shard's forwarded requests", "shard", shard, "service", svc.name, "err", err)
				continue
			}
			svc.subs[shard] = sub
		case !owns && sub != nil:
			_ = sub.Drain()
			svc.subs[shard] = nil
		}
	}
}

// serve answers one forwarded request. It runs on its own goroutine: NATS hands a
// subscription's messages over one at a time, and the writer gathers the appends that wait
// together.
func (o *shardOwners) serve(svc *ownerService, shard int, m *nats.Msg) {
	o.mu.Lock()
	if o.done {
		o.mu.Unlock()
		_ = m.Respond(nil) // closing: the asking node does the work itself at once
		return
	}
	o.wg.Add(1)
	o.mu.Unlock()
	go func() {
		defer o.wg.Done()
		wait := writeAttempt
		if ms, err := strconv.Atoi(m.Header.Get(hdrForwardWait)); err == nil {
			wait = min(time.Duration(ms)*time.Millisecond, forwardWaitLimit)
		}
		ctx, cancel := context.WithTimeout(o.ctx, wait)
		defer cancel()
		var once sync.Once
		answer := func(b []byte) { once.Do(func() { _ = m.Respond(b) }) }
		svc.handle(ctx, shard, m.Data, answer)
		answer(nil)
	}()
}

// forwardWaitLimit bounds how long an owner serves one forwarded request, whatever it is told.
const forwardWaitLimit = 30 * time.Second

func (o *shardOwners) store(ctx context.Context, shard int, data []byte) (uint64, error) {
	roomID, afterSeq, evs, err := decodeForward(data)
	if err != nil {
		return 0, err
	}
	if o.st.RoomShard(roomID) != shard {
		return 0, fmt.Errorf("store: room %s forwarded to shard %d", roomID, shard)
	}
	return o.st.groups.submit(ctx, shard, roomID, afterSeq, evs)
}

// unserved reports whether a shard's stream has a leader, heard from lately, whose node has
// taken no forwarded append since nobodySince, for longer than noOwnerGrace. During an
// election nobody can write, and a node writing the shard itself would only hold its
// writer up and then race the new owner; so it waits for a leader, as a publish would.
func (o *shardOwners) unserved(shard int, nobodySince time.Time) bool {
	return !nobodySince.IsZero() && time.Since(nobodySince) > noOwnerGrace &&
		o.st.ns.JetStreamIsStreamCurrent(server.DEFAULT_GLOBAL_ACCOUNT, shardStreamName(shard))
}

func ownerSubject(service string, shard int) string { return fmt.Sprintf("fb.%s.%d", service, shard) }

// forward hands the append to the shard's owner and returns what its writer answered. Each
// try has the write policy's deadline: an owner that burned never answers, and the next try
// finds the shard's new one. A try whose answer was lost but that was stored is refused the
// second time as a conflict, which the caller recognises as its own event (as after any lost
// publish).
func (g *groupWriters) forward(ctx context.Context, shard int, roomID string, afterSeq uint64, evs []NewRoomEvent) (uint64, error) {
	if int64(forwardSize(roomID, evs)) > g.st.nc.MaxPayload()-1024 {
		// A new room's very large batch, over what NATS carries: written here, which costs
		// the owner's writer one refused message.
		return g.submit(ctx, shard, roomID, afterSeq, evs)
	}
	var msg *nats.Msg         // made when an attempt first asks another node: the owner's own appends need none
	var nobodySince time.Time // since when forwards have found nobody, one after another
	return retry(ctx, g.st.writePolicy(), func(actx context.Context) (uint64, error) {
		if g.owners.owns(shard) || g.owners.unserved(shard, nobodySince) {
			return g.submit(actx, shard, roomID, afterSeq, evs)
		}
		if msg == nil {
			msg = nats.NewMsg(ownerSubject(appendService, shard))
			msg.Data = encodeForward(roomID, afterSeq, evs)
		}
		if deadline, ok := actx.Deadline(); ok {
			msg.Header.Set(hdrForwardWait, strconv.FormatInt(time.Until(deadline).Milliseconds(), 10))
		}
		resp, err := g.st.nc.RequestMsgWithContext(actx, msg)
		switch {
		case !errors.Is(err, nats.ErrNoResponders):
			nobodySince = time.Time{}
		case nobodySince.IsZero():
			nobodySince = time.Now()
		}
		if err != nil {
			return 0, err // no responders, like a timeout, is unavailable: tried again
		}
		return decodeForwardReply(resp.Data)
	})
}

// A forwarded append is the room's head it was built on, the room id and its events, each
// with the shard position it was built on and then as in a group message.
func encodeForward(roomID string, afterSeq uint64, evs []NewRoomEvent) []byte {
	buf := wire.AppendUvarint(make([]byte, 0, forwardSize(roomID, evs)), afterSeq)
	buf = wire.AppendField(buf, roomID)
	for _, ev := range evs {
		buf = wire.AppendUvarint(buf, ev.Seen)
		buf = appendGroupEvent(buf, ev)
	}
	return buf
}

// forwardSize is the most bytes a forwarded append takes.
func forwardSize(roomID string, evs []NewRoomEvent) int {
	size := wire.MaxUvarintSize + wire.FieldSize(len(roomID))
	for _, ev := range evs {
		size += wire.MaxUvarintSize + groupEventSize(ev)
	}
	return size
}

var errBadForward = errors.New("store: unreadable forwarded append")

func decodeForward(data []byte) (roomID string, afterSeq uint64, evs []NewRoomEvent, err error) {
	r := wire.NewReader(data)
	afterSeq = r.Uvarint()
	roomID = r.String()
	for r.More() {
		ev := NewRoomEvent{Seen: r.Uvarint()}
		ev.EventID, ev.Device, ev.TxnID = r.String(), r.String(), r.String()
		ev.JSON = r.Field()
		evs = append(evs, ev)
	}
	if !r.OK() || roomID == "" || len(evs) == 0 {
		return "", 0, nil, errBadForward
	}
	return roomID, afterSeq, evs, nil
}

// An owner's answer: a kind, then the stored sequence, the head a conflict names, or the
// error's text.
const (
	replyStored      = 'S'
	replyConflict    = 'C'
	replyUnavailable = 'U'
	replyTooLarge    = 'L'
	replyFailed      = 'F'
)

func encodeForwardReply(seq uint64, err error) []byte {
	var c *ConflictError
	switch {
	case err == nil:
		return binary.AppendUvarint([]byte{replyStored}, seq)
	case errors.As(err, &c):
		return binary.AppendUvarint([]byte{replyConflict}, c.Head)
	case errors.Is(err, ErrUnavailable):
		return append([]byte{replyUnavailable}, err.Error()...)
	case errors.Is(err, ErrValueTooLarge):
		return append([]byte{replyTooLarge}, err.Error()...)
	}
	return append([]byte{replyFailed}, err.Error()...)
}

func decodeForwardReply(data []byte) (uint64, error) {
	if len(data) == 0 {
		return 0, errBadForward
	}
	kind, rest := data[0], data[1:]
	switch kind {
	case replyStored, replyConflict:
		n, used := binary.Uvarint(rest)
		if used <= 0 {
			return 0, errBadForward
		}
		if kind == replyConflict {
			return 0, &ConflictError{Head: n}
		}
		return n, nil
	case replyUnavailable:
		return 0, fmt.Errorf("%w: the shard's writer: %s", ErrUnavailable, rest)
	case replyTooLarge:
		return 0, fmt.Errorf("%w: the shard's writer: %s", ErrValueTooLarge, rest)
	}
	return 0, fmt.Errorf("store: the shard's writer: %s", rest)
}

// ErrAskHere says no other node serves the shard now: this node owns it, the deployment has
// no owners (a single node, an external NATS, one message per event), or nobody answers (an
// election). The caller does the work itself.
var ErrAskHere = errors.New("store: no other node serves the shard")

// ServeAtShardOwner makes this node answer the requests named service for every shard it
// owns, from its next ownership check on, until stop is called. It does nothing where nodes
// own no shards.
func (s *Store) ServeAtShardOwner(service string, handle OwnerHandler) (stop func()) {
	if s.groups == nil || s.groups.owners == nil {
		return func() {}
	}
	return s.groups.owners.add(service, handle)
}

// AskShardOwner has the node that owns the shard answer the request, and returns the answer.
// The request is made only if it goes to another node. The owner is given wait to answer in;
// past that, and a little for the way back, the request fails as unavailable: its owner is
// gone, or cut off.
func (s *Store) AskShardOwner(ctx context.Context, service string, shard int, request func() ([]byte, error), wait time.Duration) ([]byte, error) {
	if s.groups == nil || s.groups.owners == nil || s.groups.owners.owns(shard) {
		return nil, ErrAskHere
	}
	req, err := request()
	if err != nil {
		return nil, err
	}
	msg := nats.NewMsg(ownerSubject(service, shard))
	msg.Data = req
	if deadline, ok := ctx.Deadline(); ok {
		wait = min(wait, time.Until(deadline))
	}
	msg.Header.Set(hdrForwardWait, strconv.FormatInt(wait.Milliseconds(), 10))
	rctx, cancel := context.WithTimeout(ctx, wait+ownerReplyMargin)
	defer cancel()
	resp, err := s.nc.RequestMsgWithContext(rctx, msg)
	switch {
	case errors.Is(err, nats.ErrNoResponders):
		return nil, ErrAskHere
	case err != nil:
		return nil, fmt.Errorf("%w: the shard's owner: %v", ErrUnavailable, err)
	}
	return resp.Data, nil
}

// ownerReplyMargin is how much longer than its owner's time a request waits, for the answer
// to travel back.
const ownerReplyMargin = 250 * time.Millisecond
