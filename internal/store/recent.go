package store

import (
	"maps"
	"sync"
	"time"
)

// recentWrites remembers the keys this node wrote lately. A write is acknowledged once a
// quorum has it, and this node's own replica, where its reads go, may not have it yet: for
// writeMemory after a write the key is read from its bucket's leader instead, so a client
// reads, through the node that answered it, what it was told is stored (read-your-writes).
type recentWrites struct {
	mu     sync.Mutex
	at     map[bucketKey]time.Time
	pruned time.Time
}

type bucketKey struct {
	b   Bucket
	key string
}

// writeMemory is far longer than a replica that answers reads trails its leader while the
// cluster is whole: milliseconds, under load too.
const writeMemory = 10 * time.Second

func newRecentWrites() *recentWrites { return &recentWrites{at: map[bucketKey]time.Time{}} }

func (r *recentWrites) note(b Bucket, key string) {
	if r == nil {
		return
	}
	now := time.Now()
	r.mu.Lock()
	defer r.mu.Unlock()
	if now.Sub(r.pruned) > writeMemory {
		maps.DeleteFunc(r.at, func(_ bucketKey, t time.Time) bool { return now.Sub(t) > writeMemory })
		r.pruned = now
	}
	r.at[bucketKey{b, key}] = now
}

func (r *recentWrites) has(b Bucket, key string) bool {
	if r == nil {
		return false
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	t, ok := r.at[bucketKey{b, key}]
	return ok && time.Since(t) <= writeMemory
}
