package rooms

import (
	"context"
	"sync"
	"time"

	"github.com/firebreak/firebreak/internal/store"
)

// stallCheck is how often a node looks for shard followers standing still behind their stream.
const stallCheck = store.StallCheck

// watchStalls, until ctx ends, fills from the replicas every shard whose follower has not moved
// for a whole stallCheck while short of the head its stream had at the start of it
// (store.Stalled), and starts that follower again on a new consumer: nothing else tells this
// node it is behind until a client brings a token from another node.
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
		if !store.Stalled(w.applied[shard], head, now[shard]) {
			continue
		}
		s.log.Warn("shard follower stalled; reading its events from the replicas and starting it again",
			"shard", shard, "applied", now[shard], "head", head)
		s.fillStalled(ctx, shard, head)
		s.followers[shard].restart()
	}
	w.heads = s.shardHeads(ctx)
	w.applied = s.model.Applied()
}

// fillStalled fills a stalled shard for at most one stallCheck, so one shard's slow replicas
// do not hold up the others or keep the shard's fill token from clients for long.
func (s *Service) fillStalled(ctx context.Context, shard int, upTo uint64) {
	ctx, cancel := context.WithTimeout(ctx, stallCheck)
	defer cancel()
	if err := s.fillShard(ctx, shard, upTo); err != nil && ctx.Err() == nil {
		s.log.Warn("filling a stalled shard", "shard", shard, "err", err)
	}
}

// restartable is a follower whose current run can be cut short, so that its caller starts it
// again.
type restartable struct {
	mu     sync.Mutex
	cancel context.CancelFunc
}

// run runs follow until it returns or restart is called.
func (r *restartable) run(ctx context.Context, follow func(context.Context) error) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	r.mu.Lock()
	r.cancel = cancel
	r.mu.Unlock()
	return follow(ctx)
}

func (r *restartable) restart() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.cancel != nil {
		r.cancel()
	}
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
