package rooms

import (
	"context"
	"time"
)

// stallCheck is how often a node looks for shard followers standing still behind their stream.
const stallCheck = 3 * time.Second

// watchStalls fills from the replicas, until ctx ends, every shard whose follower has not
// moved for a whole stallCheck while short of the head its stream had at the start of it.
// A follower restarts itself when its consumer's server is lost, but its consumer can also sit
// on a replica that has stopped receiving (cut off, or still catching up), and then nothing
// else tells this node it is behind until a client brings a token from another node.
func (s *Service) watchStalls(ctx context.Context) {
	var w stallWatch
	t := time.NewTicker(stallCheck)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			s.checkStalls(ctx, &w)
		}
	}
}

// stallWatch is what one check leaves for the next: each shard's head, and how far the read
// model had got after reading them.
type stallWatch struct{ heads, applied []uint64 }

func (s *Service) checkStalls(ctx context.Context, w *stallWatch) {
	now := s.model.Applied()
	for shard, head := range w.heads {
		if now[shard] != w.applied[shard] || now[shard] >= head {
			continue
		}
		s.log.Warn("shard follower stalled; reading its events from the replicas",
			"shard", shard, "applied", now[shard], "head", head)
		if err := s.fillShard(ctx, shard, head); err != nil && ctx.Err() == nil {
			s.log.Warn("filling a stalled shard", "shard", shard, "err", err)
		}
	}
	w.heads = s.shardHeads(ctx)
	w.applied = s.model.Applied()
}

// shardHeads reads every shard's head, 0 where it cannot be read now (a stream electing a
// leader): such a shard is not judged at the next check.
func (s *Service) shardHeads(ctx context.Context) []uint64 {
	heads := make([]uint64, s.st.Shards())
	for shard := range heads {
		heads[shard], _ = s.quickShardHead(ctx, shard)
	}
	return heads
}

// quickShardHead is the shard's head if its stream's leader answers within a second.
func (s *Service) quickShardHead(ctx context.Context, shard int) (uint64, error) {
	ctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	return s.st.ShardHead(ctx, shard)
}
