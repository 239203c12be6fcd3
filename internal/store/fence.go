package store

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
)

// Why a cut-off node fences itself: nats-server's Raft has no pre-vote. A replica that cannot
// reach its leader starts an election every 4–9 s, raising its term each time, and when the
// link heals that higher term makes the majority's healthy leaders step down: a second write
// pause, for rooms that never lost their leader. A node that reaches too few of the cluster to
// win an election therefore shuts its JetStream down (its Raft state stays on disk, terms
// unchanged) before its first election timeout, and starts it again once it reaches a majority;
// its replicas then rejoin as followers and catch up without unseating anyone. Writes through
// it fail fast either way (checkWritable), so nothing is refused that could have succeeded.
//
// What a node reaches is the smaller of two counts: its open routes (a link that refuses or
// resets shows at once) and the nodes whose heartbeat it heard lately (a link that silently
// drops everything, a dead switch, leaves routes open until their pings time out).
const (
	heartbeatEvery = 250 * time.Millisecond
	// heardWithin: three heartbeats missed in a row and the node counts as out of reach.
	heardWithin = 750 * time.Millisecond
	// fenceAfter is how long a node must be cut off before it fences. Stopping JetStream takes
	// up to 2 s more on the meta leader (nats-server waits for a leadership transfer that a
	// cut-off node cannot make), and all of it must end before nats-server's shortest election
	// timeout (4 s from the last word of the leader); one route reconnecting takes far less.
	fenceAfter = 500 * time.Millisecond
	// rejoinAfter is how long a fenced node must reach a majority again before it restarts
	// JetStream, so a link that flaps while healing does not restart it over and over.
	rejoinAfter = time.Second
	fenceTick   = 100 * time.Millisecond

	heartbeatSubject = "fb.cluster.alive"
)

// fence counts the nodes this one reaches and fences it while they are too few.
type fence struct {
	s    *Store
	sub  *nats.Subscription
	stop chan struct{}
	done sync.WaitGroup

	mu    sync.Mutex
	heard map[string]time.Time // node name: its last heartbeat
	// trusted: heartbeats showed a majority once, so their count is meaningful; before that
	// (a node still joining) only routes count.
	trusted bool
	// reaching is cancelled the moment the node stops reaching a majority, which ends the
	// write attempts in flight: they could not reach a quorum, and their clients do better
	// trying another data center now than when the attempt times out.
	reaching context.Context
	lose     context.CancelFunc

	fenced   atomic.Bool // read by Health, checkWritable and reads
	lastBeat time.Time
	changed  time.Time // when reaching a majority last flipped
	armed    bool      // reached a majority once since start: a node still forming is not cut off
	reached  bool
}

// startFence starts heartbeats and the watch on a clustered embedded node.
func (s *Store) startFence() error {
	if s.ns == nil || s.opts.Cluster == nil {
		return nil
	}
	f := &fence{s: s, stop: make(chan struct{}), heard: map[string]time.Time{}, changed: time.Now()}
	f.reaching, f.lose = context.WithCancel(context.Background())
	sub, err := s.nc.Subscribe(heartbeatSubject, f.hear)
	if err != nil {
		return err
	}
	f.sub = sub
	s.fence = f
	f.done.Add(1)
	go f.run()
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

// isFenced: this node's JetStream is stopped because it was cut off.
func (s *Store) isFenced() bool { return s.fence != nil && s.fence.fenced.Load() }

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

// routesToSilentNodes: some open route leads to a node whose heartbeats stopped (a link or a
// data center that died silently, until the route's pings time out).
func (s *Store) routesToSilentNodes() bool {
	f := s.fence
	if f == nil {
		return false
	}
	heard, ok := f.heardPeers()
	return ok && heard < s.ns.NumRemotes()
}

// reachablePeers counts the other nodes this one reaches.
func (s *Store) reachablePeers() int {
	peers := s.ns.NumRemotes()
	if f := s.fence; f != nil {
		if heard, ok := f.heardPeers(); ok {
			peers = min(peers, heard)
		}
	}
	return peers
}

func (f *fence) hear(m *nats.Msg) {
	name := string(m.Data)
	if name == f.s.opts.NodeName {
		return
	}
	f.mu.Lock()
	f.heard[name] = time.Now()
	f.mu.Unlock()
}

// heardPeers counts the nodes heard within heardWithin; ok is false until the count has shown
// a majority once.
func (f *fence) heardPeers() (n int, ok bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	now := time.Now()
	for _, at := range f.heard {
		if now.Sub(at) <= heardWithin {
			n++
		}
	}
	f.trusted = f.trusted || reachesMajority(n, clusterSize(f.s.opts.Cluster))
	return n, f.trusted
}

func (f *fence) run() {
	defer f.done.Done()
	tick := time.NewTicker(fenceTick)
	defer tick.Stop()
	for {
		select {
		case <-f.stop:
			return
		case now := <-tick.C:
			f.beat(now)
			f.step(now)
		}
	}
}

// beat announces this node to every node it reaches.
func (f *fence) beat(now time.Time) {
	if now.Sub(f.lastBeat) < heartbeatEvery {
		return
	}
	f.lastBeat = now
	if err := f.s.nc.Publish(heartbeatSubject, []byte(f.s.opts.NodeName)); err != nil {
		f.s.log.Debug("heartbeat not sent", "err", err)
	}
}

// step fences or rejoins once the node has been cut off, or connected, for long enough.
func (f *fence) step(now time.Time) {
	reached := f.s.reachesQuorum()
	if reached != f.reached {
		f.reached, f.changed = reached, now
		f.mu.Lock()
		if reached {
			f.reaching, f.lose = context.WithCancel(context.Background())
		} else {
			f.lose()
		}
		f.mu.Unlock()
	}
	f.armed = f.armed || reached
	steady := now.Sub(f.changed)
	switch {
	case f.armed && !f.fenced.Load() && !reached && steady >= fenceAfter:
		f.s.log.Warn("cut off from the cluster's majority: stopping JetStream until it is reachable again",
			"peers", f.s.reachablePeers(), "cluster_size", clusterSize(f.s.opts.Cluster))
		// Fenced from now: writes and reads fail fast while JetStream stops.
		f.fenced.Store(true)
		if err := f.s.ns.ShutdownJetStream(); err != nil {
			f.s.log.Error("stopping JetStream failed", "err", err)
			return
		}
		f.s.log.Info("JetStream stopped while cut off", "cut_off_ms", time.Since(f.changed).Milliseconds())
	case f.fenced.Load() && reached && steady >= rejoinAfter:
		f.s.log.Info("the cluster's majority is reachable again: restarting JetStream", "peers", f.s.reachablePeers())
		if err := f.s.restartJetStream(); err != nil {
			f.s.log.Error("restarting JetStream failed; trying again", "err", err)
			f.changed = now // wait another rejoinAfter before the next attempt
			return
		}
		f.fenced.Store(false)
	}
}
