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
// lands there:
//   - on this node's own server, when that holds a current replica of the stream;
//   - in this node's data center, when this server holds no replica (more nodes than
//     replicas) and a replica there is current;
//   - anywhere, when the near replica is still catching up (a data center just restored),
//     since it would hold the follower back, and on a single node or an external NATS.

// nearPlacementTries is how many consumers a follower creates, at most, to get a near one:
// with three replicas, about 1 follower in 130 ends up elsewhere.
const nearPlacementTries = 12

// nearInfoTimeout bounds the question of which replicas are current, out of the follower's
// followStartTimeout.
const nearInfoTimeout = 500 * time.Millisecond

// nodeDCKey is BucketServer's record of the data center of a node's server: JetStream keeps
// other servers' tags to itself.
func nodeDCKey(serverName string) string { return Key("node_dc", serverName) }

// recordDC records this node's data center for the other nodes' placements.
func (s *Store) recordDC(ctx context.Context) error {
	if s.ns == nil || s.opts.Cluster == nil {
		return nil
	}
	_, err := s.Put(ctx, BucketServer, nodeDCKey(s.ns.Name()), []byte(s.opts.Cluster.DC))
	return err
}

// dcOf is the data center of the named server, "" while it has recorded none.
func (s *Store) dcOf(ctx context.Context, serverName string) string {
	if dc, ok := s.serverDCs.Load(serverName); ok {
		return dc.(string)
	}
	val, _, err := s.Get(ctx, BucketServer, nodeDCKey(serverName))
	if err != nil {
		return ""
	}
	s.serverDCs.Store(serverName, string(val))
	return string(val)
}

// createNearConsumer creates a follower's consumer of stream, near this node if it can.
func (s *Store) createNearConsumer(ctx context.Context, stream string, cfg jetstream.ConsumerConfig) (jetstream.Consumer, error) {
	cctx, cancel := context.WithTimeout(ctx, followStartTimeout)
	defer cancel()
	near := s.nearServers(cctx, stream)
	for try := 1; ; try++ {
		cons, err := s.js.CreateConsumer(cctx, stream, cfg)
		if err != nil || near == nil || try >= s.placementTries {
			return cons, err
		}
		if c := cons.CachedInfo().Cluster; c == nil || c.Leader == "" || near[c.Leader] {
			return cons, nil
		}
		_ = s.js.DeleteConsumer(cctx, stream, cons.CachedInfo().Name) // else it idles out
	}
}

// nearServers names the servers a follower of stream should be held by, nil for any.
func (s *Store) nearServers(ctx context.Context, stream string) map[string]bool {
	if s.ns == nil || s.opts.Cluster == nil {
		return nil
	}
	switch acc := server.DEFAULT_GLOBAL_ACCOUNT; {
	case s.ns.JetStreamIsStreamCurrent(acc, stream):
		return map[string]bool{s.ns.Name(): true}
	case s.ns.JetStreamIsStreamAssigned(acc, stream):
		return nil // this server's replica is catching up
	}
	// The stream's leader says which replicas are current; while it elects a new one, the
	// follower is placed anywhere rather than wait.
	ictx, cancel := context.WithTimeout(ctx, nearInfoTimeout)
	defer cancel()
	info, err := s.js.Stream(ictx, stream)
	if err != nil || info.CachedInfo().Cluster == nil {
		return nil
	}
	c := info.CachedInfo().Cluster
	near := map[string]bool{}
	if c.Leader != "" && s.dcOf(ctx, c.Leader) == s.opts.Cluster.DC {
		near[c.Leader] = true
	}
	for _, p := range c.Replicas {
		if p.Current && !p.Offline && s.dcOf(ctx, p.Name) == s.opts.Cluster.DC {
			near[p.Name] = true
		}
	}
	if len(near) == 0 {
		return nil
	}
	return near
}
