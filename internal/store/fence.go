package store

import (
	"sync"
	"sync/atomic"
	"time"
)

// Why a cut-off node fences itself: nats-server's Raft has no pre-vote. A replica that cannot
// reach its leader starts an election every 4–9 s, raising its term each time, and when the
// link heals that higher term makes the majority's healthy leaders step down: a second write
// pause, for rooms that never lost their leader. A node that reaches too few of the cluster to
// win an election therefore shuts its JetStream down (its Raft state stays on disk, terms
// unchanged) before its first election timeout, and starts it again once it reaches a majority;
// its replicas then rejoin as followers and catch up without unseating anyone. Writes through
// it fail fast either way (checkWritable), so nothing is refused that could have succeeded.
const (
	// fenceAfter is how long a node must be cut off before it fences. Stopping JetStream takes
	// up to 2 s more on the meta leader (nats-server waits for a leadership transfer that a
	// cut-off node cannot make), and all of it must end before nats-server's shortest election
	// timeout (4 s from the last word of the leader); one route reconnecting takes far less.
	fenceAfter = 500 * time.Millisecond
	// rejoinAfter is how long a fenced node must reach a majority again before it restarts
	// JetStream, so a link that flaps while healing does not restart it over and over.
	rejoinAfter = time.Second
	fenceTick   = 100 * time.Millisecond
)

// fence watches a clustered embedded node's routes until stop closes.
type fence struct {
	s       *Store
	stop    chan struct{}
	done    sync.WaitGroup
	fenced  atomic.Bool // read by Health and checkWritable
	changed time.Time   // when reachesMajority last flipped
	armed   bool        // reached a majority once since start: a node still forming is not cut off
	reached bool
}

func (s *Store) startFence() {
	if s.ns == nil || s.opts.Cluster == nil {
		return
	}
	f := &fence{s: s, stop: make(chan struct{}), changed: time.Now()}
	s.fence = f
	f.done.Add(1)
	go f.run()
}

// isFenced: this node's JetStream is stopped because it was cut off.
func (s *Store) isFenced() bool { return s.fence != nil && s.fence.fenced.Load() }

// stopFence stops the watcher; a fenced node stays fenced until it closes.
func (s *Store) stopFence() {
	if s.fence != nil {
		close(s.fence.stop)
		s.fence.done.Wait()
	}
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
			f.step(now)
		}
	}
}

// step fences or rejoins once the node has been cut off, or connected, for long enough.
func (f *fence) step(now time.Time) {
	reached := f.s.reachesQuorum()
	if reached != f.reached {
		f.reached, f.changed = reached, now
	}
	f.armed = f.armed || reached
	steady := now.Sub(f.changed)
	switch {
	case f.armed && !f.fenced.Load() && !reached && steady >= fenceAfter:
		f.s.log.Warn("cut off from the cluster's majority: stopping JetStream until it is reachable again",
			"peers", f.s.ns.NumRemotes(), "cluster_size", clusterSize(f.s.opts.Cluster))
		// Fenced from now: writes and reads fail fast while JetStream stops.
		f.fenced.Store(true)
		if err := f.s.ns.ShutdownJetStream(); err != nil {
			f.s.log.Error("stopping JetStream failed", "err", err)
			return
		}
		f.s.log.Info("JetStream stopped while cut off", "cut_off_ms", time.Since(f.changed).Milliseconds())
	case f.fenced.Load() && reached && steady >= rejoinAfter:
		f.s.log.Info("the cluster's majority is reachable again: restarting JetStream", "peers", f.s.ns.NumRemotes())
		if err := f.s.restartJetStream(); err != nil {
			f.s.log.Error("restarting JetStream failed; trying again", "err", err)
			f.changed = now // wait another rejoinAfter before the next attempt
			return
		}
		f.fenced.Store(false)
	}
}
