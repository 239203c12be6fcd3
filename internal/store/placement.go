package store

import (
	"context"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go/jetstream"
)

// JetStream places a follower's consumer (R1) on a random replica of its stream. One held in
// another data center sends every message there and back over the routes before this node
// can apply it, and fails with that data center, stalling this node's reads until the
// follower is made again. So a follower asks for a consumer near it, making it again until it
// lands there. Only replicas the stream's leader has heard from lately, and that are not far
// behind it, count: one cut off from the leader, or still catching up (a data center just
// restored), would hold the follower back. Among those it wants this node's own server, else
// one in this node's data center (a node whose server holds no replica), else any of them.
// When the leader cannot say (an election, a link down), JetStream's placement stands.

// nearPlacementTries is how many consumers a follower creates, at most, to get a near one:
// with three replicas, about 1 follower in 130 ends up elsewhere.
const nearPlacementTries = 12

const (
	// nearInfoTimeout bounds the question of which replicas are current, and nearDCTimeout
	// the lookups of their data centers, out of the follower's followStartTimeout.
	nearInfoTimeout = 500 * time.Millisecond
	nearDCTimeout   = 250 * time.Millisecond
	// nearDeleteTimeout bounds dropping a consumer that landed far, so the next try keeps
	// its time; one not deleted idles out.
	nearDeleteTimeout = 250 * time.Millisecond
	// nearSearch is how long a follower looks for a near consumer before it keeps the one it
	// has: every try is two proposals to the meta leader, and a follower that spent its whole
	// start on them would fail with a usable consumer thrown away.
	nearSearch = followStartTimeout / 2
	// A replica counts as current when its stream's leader heard from it within
	// replicaSeenWithin and it lacks at most replicaLagAllowed of the leader's committed
	// entries (a replica outside the last quorum is often a few behind under load).
	replicaSeenWithin = 2 * time.Second
	replicaLagAllowed = 100
	// serverDCFresh is how long a server's recorded data center is taken as it was read: a
	// node rebuilt under the same name in another data center (after a fire) records its new
	// one when it opens, and the others learn it within this time.
	serverDCFresh = time.Minute
)

// serverDC is a server's recorded data center as this node last read it.
type serverDC struct {
	dc   string
	read time.Time
}

// nodeDCKey is BucketServer's record of the data center of a node's server: JetStream keeps
// other servers' tags to itself.
func nodeDCKey(serverName string) string { return Key("node_dc", serverName) }

// recordDC records this node's data center for the other nodes' placements.
func (s *Store) recordDC(ctx context.Context) error {
	if s.ns == nil || s.opts.Cluster == nil || s.opts.Cluster.DC == "" {
		return nil
	}
	_, err := s.Put(ctx, BucketServer, nodeDCKey(s.ns.Name()), []byte(s.opts.Cluster.DC))
	return err
}

// dcOf is the data center of the named server, "" while it has recorded none. A stale copy
// that cannot be read again (an outage, when placing near matters most) is still used.
func (s *Store) dcOf(ctx context.Context, serverName string) string {
	known, ok := s.serverDCs.Load(serverName)
	if ok && time.Since(known.(serverDC).read) < serverDCFresh {
		return known.(serverDC).dc
	}
	val, _, err := s.Get(ctx, BucketServer, nodeDCKey(serverName))
	if err != nil {
		if ok {
			return known.(serverDC).dc
		}
		return ""
	}
	s.serverDCs.Store(serverName, serverDC{dc: string(val), read: time.Now()})
	return string(val)
}

// createNearConsumer creates a follower's consumer of stream, near this node if it can.
func (s *Store) createNearConsumer(ctx context.Context, stream string, cfg jetstream.ConsumerConfig) (jetstream.Consumer, error) {
	cctx, cancel := context.WithTimeout(ctx, followStartTimeout)
	defer cancel()
	searchEnd := time.Now().Add(nearSearch)
	near := s.nearServers(cctx, stream)
	for try := 1; ; try++ {
		cons, err := s.js.CreateConsumer(cctx, stream, cfg)
		if err != nil || near == nil || try >= s.placementTries || time.Now().After(searchEnd) {
			return cons, err
		}
		if c := cons.CachedInfo().Cluster; c == nil || c.Leader == "" || near[c.Leader] {
			return cons, nil
		}
		dctx, dcancel := context.WithTimeout(cctx, nearDeleteTimeout)
		_ = s.js.DeleteConsumer(dctx, stream, cons.CachedInfo().Name)
		dcancel()
	}
}

// nearServers names the servers a follower of stream should be held by, nil for any.
func (s *Store) nearServers(ctx context.Context, stream string) map[string]bool {
	if s.ns == nil || s.opts.Cluster == nil {
		return nil
	}
	// Without the leader's answer this server's replica is not preferred even when it calls
	// itself current: one that cannot reach its leader (a link cut one way) keeps saying so
	// while it campaigns, and a follower restarted for standing still must get away from it.
	ictx, cancel := context.WithTimeout(ctx, nearInfoTimeout)
	current := s.currentReplicas(ictx, stream)
	cancel()
	own := s.ns.Name()
	if current[own] && !s.ns.JetStreamIsStreamCurrent(server.DEFAULT_GLOBAL_ACCOUNT, stream) {
		delete(current, own) // this server knows it is catching up
	}
	dctx, cancel := context.WithTimeout(ctx, nearDCTimeout)
	defer cancel()
	return pickNear(current, own, s.opts.Cluster.DC, func(name string) string { return s.dcOf(dctx, name) })
}

// pickNear narrows the servers holding a current replica to this node's own server, else to
// those in its data center, else leaves them all; nil (any server) when none is current.
func pickNear(current map[string]bool, own, ownDC string, dcOf func(string) string) map[string]bool {
	if current[own] {
		return map[string]bool{own: true}
	}
	if len(current) == 0 {
		return nil
	}
	inDC := map[string]bool{}
	for name := range current {
		if ownDC != "" && dcOf(name) == ownDC {
			inDC[name] = true
		}
	}
	if len(inDC) > 0 {
		return inDC
	}
	return current
}

// currentReplicas are the servers holding a current replica of stream, by its leader's
// account (the leader included); none when the leader does not answer.
func (s *Store) currentReplicas(ctx context.Context, stream string) map[string]bool {
	info, err := s.js.Stream(ctx, stream)
	if err != nil {
		return nil
	}
	c := info.CachedInfo().Cluster
	if c == nil || c.Leader == "" {
		return nil
	}
	current := map[string]bool{c.Leader: true}
	for _, p := range c.Replicas {
		if replicaCurrent(p) {
			current[p.Name] = true
		}
	}
	return current
}

// replicaCurrent says whether the stream's leader counts a replica as current. An Active of
// 0 means never seen (a leader just elected has seen nobody yet), and a pending peer is not
// in the Raft group yet.
func replicaCurrent(p *jetstream.PeerInfo) bool {
	return !p.Offline && !p.Pending && p.Active > 0 && p.Active < replicaSeenWithin && p.Lag <= replicaLagAllowed
}
