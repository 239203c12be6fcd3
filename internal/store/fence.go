package store

import (
	"context"
	"encoding/json"
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
)

// Why a cut-off node fences itself: nats-server's Raft has no pre-vote. A replica that cannot
// reach its leader starts an election every 4–9 s, raising its term each time, and when the
// link heals that higher term makes the majority's healthy leaders step down: a second write
// pause, for rooms that never lost their leader. A node that cannot reach a majority of the
// data centers therefore shuts its JetStream down (its Raft state stays on disk, terms
// unchanged) before its first election timeout, and starts it again once it reaches a
// majority; its replicas then rejoin as followers and catch up without unseating anyone.
//
// It counts data centers, not nodes, because every stream keeps one replica per data center:
// with one DC down, a survivor that still hears any node of another DC can write, and one
// node restarting there must not fence everyone else. A DC counts as reached when some node
// of it has both an open route to this one (a refused or reset link shows at once) and a
// heartbeat heard lately (a link that silently drops everything, a dead switch, leaves routes
// open until their pings time out). The DCs known are this one's and every one heard since
// the process started.
const (
	heartbeatEvery = 250 * time.Millisecond
	// heardWithin: four heartbeats missed in a row and the node counts as out of reach.
	heardWithin = time.Second
	// fenceAfter is how long a node must be cut off before it fences. All of it, and stopping
	// JetStream, must end before nats-server's shortest election timeout (4 s from the last
	// word of the leader, which may have come up to 1 s before the cut); one route
	// reconnecting takes far less. A meta leader steps down first (stepDownMetaLeader), which
	// takes milliseconds; should that fail, nats-server's own 2 s wait for a transfer follows.
	fenceAfter = 500 * time.Millisecond
	// rejoinAfter is how long a fenced node must reach a majority again before it restarts
	// JetStream, so a link that flaps while healing does not restart it over and over.
	rejoinAfter = time.Second
	fenceTick   = 100 * time.Millisecond
	// metaStepDownWait bounds each step of a cut-off meta leader's stepdown; on this node's
	// own server each takes milliseconds.
	metaStepDownWait = 250 * time.Millisecond

	heartbeatSubject = "fb.cluster.alive"
)

// heartbeat is what every clustered node announces.
type heartbeat struct {
	Node string `json:"node"`
	DC   string `json:"dc"`
}

// heard is a peer's last heartbeat.
type heard struct {
	dc string
	at time.Time
}

// reach is what a node reaches, worked out every fenceTick.
type reach struct {
	majority   bool // nodes in more than half of the known DCs, this one's included
	peers      int  // other nodes reached
	dcs, known int  // DCs reached (this one's included) and known
	silent     bool // an open route leads to a node whose heartbeats stopped
}

// fence counts what this node reaches and fences it while that is too little.
type fence struct {
	s    *Store
	sub  *nats.Subscription
	stop chan struct{}
	done sync.WaitGroup

	mu    sync.Mutex
	heard map[string]heard // node name: its DC and last heartbeat
	known map[string]bool  // every DC heard of, and this one's
	now   reach
	// reaching is cancelled the moment the node stops reaching a majority, which ends the
	// write attempts in flight: they could not reach a quorum, and their clients do better
	// trying another data center now than when the attempt times out.
	reaching context.Context
	lose     context.CancelFunc

	fenced atomic.Bool // read by Health and the prechecks of writes and reads
	// handedOverMeta: the last fence began on the meta leader, which stepped down before stopping.
	handedOverMeta atomic.Bool
	// fencing is closed when the node fences, and replaced when it starts JetStream again.
	fencing chan struct{}

	// Only the step goroutine touches these.
	changed time.Time // when reaching a majority last flipped
	armed   bool      // reached a majority once since start: a node still forming is not cut off
}

// startFence starts heartbeats and the watch on a clustered embedded node.
func (s *Store) startFence() error {
	if s.ns == nil || s.opts.Cluster == nil {
		return nil
	}
	f := &fence{s: s, stop: make(chan struct{}), heard: map[string]heard{},
		known: map[string]bool{s.opts.Cluster.DC: true}, changed: time.Now(), fencing: make(chan struct{})}
	// Until it has looked, a node counts its own DC as the majority of the only one it knows.
	f.now = reach{majority: true, dcs: 1, known: 1}
	f.reaching, f.lose = context.WithCancel(context.Background())
	sub, err := s.nc.Subscribe(heartbeatSubject, f.hear)
	if err != nil {
		return err
	}
	f.sub = sub
	s.fence = f
	f.done.Add(2)
	go f.beat()
	go f.watch()
	return nil
}

// stopFence stops the watch; a fenced node stays fenced until it closes.
func (s *Store) stopFence() {
	if f := s.fence; f != nil {
		close(f.stop)
		f.done.Wait()
		_ = f.sub.Unsubscribe()
	}
}

// current is what this node reaches: off a cluster, itself, which is all there is.
func (s *Store) current() reach {
	f := s.fence
	if f == nil {
		return reach{majority: true, dcs: 1, known: 1}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.now
}

// isFenced: this node's JetStream is stopped because it was cut off.
func (s *Store) isFenced() bool { return s.fence != nil && s.fence.fenced.Load() }

// Fencing is closed when this node fences itself, cut off from the cluster's majority: from
// then on its read model learns nothing new until the link heals, so a request waiting on it
// (a long-polling sync) should end and let its client try another data center. Nil off a
// cluster; a node that rejoins hands out a new one.
func (s *Store) Fencing() <-chan struct{} {
	f := s.fence
	if f == nil {
		return nil
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.fencing
}

// reachingMajority is cancelled when this node stops reaching a majority; nil off a cluster.
func (s *Store) reachingMajority() context.Context {
	f := s.fence
	if f == nil {
		return nil
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.reaching
}

func (f *fence) hear(m *nats.Msg) {
	var hb heartbeat
	if json.Unmarshal(m.Data, &hb) != nil || hb.Node == "" || hb.Node == f.s.opts.NodeName {
		return
	}
	f.mu.Lock()
	f.heard[hb.Node] = heard{dc: hb.DC, at: time.Now()}
	f.known[hb.DC] = true
	f.mu.Unlock()
}

// beat announces this node every heartbeatEvery, on its own so that a node busy stopping or
// starting its JetStream still counts for the others.
func (f *fence) beat() {
	defer f.done.Done()
	msg, _ := json.Marshal(heartbeat{Node: f.s.opts.NodeName, DC: f.s.opts.Cluster.DC})
	tick := time.NewTicker(heartbeatEvery)
	defer tick.Stop()
	for {
		if err := f.s.nc.Publish(heartbeatSubject, msg); err != nil {
			f.s.log.Debug("heartbeat not sent", "err", err)
		}
		select {
		case <-f.stop:
			return
		case <-tick.C:
		}
	}
}

func (f *fence) watch() {
	defer f.done.Done()
	tick := time.NewTicker(fenceTick)
	defer tick.Stop()
	for {
		select {
		case <-f.stop:
			return
		case now := <-tick.C:
			f.step(now)
		}
	}
}

// look works out what the node reaches now. Called with mu held.
func (f *fence) look(now time.Time, routed map[string]bool) reach {
	r := reach{}
	dcs := map[string]bool{f.s.opts.Cluster.DC: true}
	for node, h := range f.heard {
		fresh := now.Sub(h.at) <= heardWithin
		if routed[node] && fresh {
			r.peers++
			dcs[h.dc] = true
		}
		r.silent = r.silent || routed[node] && !fresh
	}
	r.dcs, r.known = len(dcs), len(f.known)
	r.majority = 2*r.dcs > r.known
	return r
}

// routedNodes names the nodes this one has an open route to.
func (f *fence) routedNodes() map[string]bool {
	routed := map[string]bool{}
	rz, err := f.s.ns.Routez(&server.RoutezOptions{})
	if err != nil {
		return routed
	}
	for _, r := range rz.Routes {
		routed[r.RemoteName] = true
	}
	return routed
}

// step updates what the node reaches, then fences or rejoins once it has been cut off, or
// connected, for long enough.
func (f *fence) step(now time.Time) {
	routed := f.routedNodes()
	f.mu.Lock()
	was := f.now.majority
	f.now = f.look(now, routed)
	reached := f.now.majority
	if reached != was {
		f.changed = now
		if reached {
			f.reaching, f.lose = context.WithCancel(context.Background())
		} else {
			f.lose()
		}
	}
	f.mu.Unlock()
	f.armed = f.armed || reached
	steady := now.Sub(f.changed)
	switch {
	case f.armed && !f.fenced.Load() && !reached && steady >= fenceAfter:
		f.shutDown()
	case f.fenced.Load() && reached && steady >= rejoinAfter:
		if err := f.s.restartJetStream(); err != nil {
			f.s.log.Error("restarting JetStream failed; trying again", "err", err)
			f.changed = now // wait another rejoinAfter before the next attempt
			return
		}
		f.mu.Lock()
		f.fencing = make(chan struct{})
		f.mu.Unlock()
		f.fenced.Store(false)
		f.s.log.Info("the cluster's majority is reachable again: JetStream restarted")
	}
}

func (f *fence) shutDown() {
	r := f.s.current()
	f.s.log.Warn("cut off from the cluster's majority: stopping JetStream until it is reachable again",
		"reached_dcs", r.dcs, "known_dcs", r.known, "peers", r.peers)
	// Fenced from now: writes and reads fail fast while JetStream stops, and waiting requests end.
	f.fenced.Store(true)
	f.mu.Lock()
	close(f.fencing)
	f.mu.Unlock()
	f.handedOverMeta.Store(f.s.ns.JetStreamIsLeader() && f.s.stepDownMetaLeader())
	if err := f.s.ns.ShutdownJetStream(); err != nil {
		f.s.log.Error("stopping JetStream failed", "err", err)
		return
	}
	f.s.log.Info("JetStream stopped while cut off", "cut_off_ms", time.Since(f.changed).Milliseconds(),
		"handed_over_meta_leadership", f.handedOverMeta.Load())
}

// stepDownMetaLeader gives up this node's meta leadership, and reports whether it has.
//
// nats-server's JetStream shutdown on a meta leader first waits 2 s for its leadership to pass
// to another node, which a cut-off node cannot do, and this node's stream replicas keep their
// Raft election timers running meanwhile. A drill caught one that started an election in that
// wait, 3.3 s after the cut: the term it raised stayed on disk, and when the link healed it made
// the majority's healthy leader of that stream step down, a pause of one election. Stepping
// down through the JetStream API (system account only) returns at once, so the shutdown that
// follows does not wait.
func (s *Store) stepDownMetaLeader() bool {
	nc, err := nats.Connect("", nats.InProcessServer(s.ns), s.opts.systemUser(), nats.Name(s.opts.NodeName+"-fence"))
	if err != nil {
		s.log.Warn("meta leader stepdown: no system connection", "err", err)
		return false
	}
	defer nc.Close()
	// The request goes to whichever server leads the meta group. Should this node lose the
	// leadership between the caller's check and here, and still reach the new leader (a link
	// cut one way only), that leader steps down instead: one more meta election, which pauses
	// no stream.
	reply, err := nc.Request(metaStepDownSubject, nil, metaStepDownWait)
	var resp struct {
		Success bool            `json:"success"`
		Error   json.RawMessage `json:"error"`
	}
	if err == nil {
		err = json.Unmarshal(reply.Data, &resp)
	}
	if err != nil || !resp.Success {
		s.log.Warn("meta leader stepdown failed", "err", err, "reply_error", string(resp.Error))
		return false
	}
	// The server marks itself a follower when its meta group reports the change, just after.
	for deadline := time.Now().Add(metaStepDownWait); s.ns.JetStreamIsLeader(); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			return false
		}
	}
	return true
}

// restartJetStream starts a stopped JetStream again from its files, through the NATS server's
// own configuration reload (which restarts a JetStream that was stopped at run time).
func (s *Store) restartJetStream() error {
	sopts, err := embeddedOptions(s.opts)
	if err != nil {
		return err
	}
	if err := s.ns.ReloadOptions(sopts); err != nil {
		return err
	}
	if !s.ns.JetStreamEnabled() {
		return errors.New("JetStream did not start")
	}
	return nil
}
