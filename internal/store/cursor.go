package store

import (
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"
)

// Cursor is how far a reader has applied a stream or bucket. Readers wait on it to give
// read-your-writes: after a write at position p, wait until the cursor reaches p.
type Cursor struct {
	pos atomic.Uint64
	mu  sync.Mutex
	ch  chan struct{} // closed and replaced on every advance
}

// NewCursor returns a cursor at position 0.
func NewCursor() *Cursor { return &Cursor{ch: make(chan struct{})} }

// Load is the current position.
func (c *Cursor) Load() uint64 { return c.pos.Load() }

// Advance moves the cursor forward to p and wakes every waiter. It never moves back: a
// restarted follower replays from an earlier position, and positions already handed out (in
// sync tokens) must stay true.
func (c *Cursor) Advance(p uint64) {
	for {
		cur := c.pos.Load()
		if p <= cur || c.pos.CompareAndSwap(cur, p) {
			break
		}
	}
	c.mu.Lock()
	close(c.ch)
	c.ch = make(chan struct{})
	c.mu.Unlock()
}

// Wait blocks until the cursor is at p or beyond, or ctx ends.
func (c *Cursor) Wait(ctx context.Context, p uint64) error {
	if c.pos.Load() >= p {
		return nil // the usual case, without the lock
	}
	for {
		c.mu.Lock()
		ch := c.ch
		c.mu.Unlock()
		if c.pos.Load() >= p {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// WaitLimit bounds how long a request waits for this node to apply a position (its own write,
// or one in a token from another node) before it is told to retry: a send waiting holds its
// room's lock, and a client does better trying again, perhaps on another node.
const WaitLimit = 10 * time.Second

// WaitUpTo is Wait for at most limit. A request that waits for its own write to be applied
// must not hang on a stalled follower: past the limit it is told storage is unavailable.
func (c *Cursor) WaitUpTo(ctx context.Context, p uint64, limit time.Duration) error {
	wctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	err := c.Wait(wctx, p)
	if err != nil && ctx.Err() == nil {
		return fmt.Errorf("%w: position %d not applied within %v", ErrUnavailable, p, limit)
	}
	return err
}

// followRetry is the longest wait before a stopped follower starts again; each wait is drawn
// from its upper three quarters, so the followers of a node whose link heals (all failing
// together while it was cut off) do not ask for consumers in the same instant.
const followRetry = time.Second

// KeepFollowing runs follow, a reader of a stream or bucket, until ctx ends, and starts it
// again after an error (a lost connection, an election): a node's followers must outlive
// every passing failure of the storage under them.
func KeepFollowing(ctx context.Context, log *slog.Logger, what string, follow func() error) {
	for {
		err := follow()
		if ctx.Err() != nil {
			return
		}
		wait := followRetry/4 + rand.N(followRetry*3/4)
		log.Warn("follower stopped; restarting", "what", what, "err", err, "in_ms", wait.Milliseconds())
		select {
		case <-time.After(wait):
		case <-ctx.Done():
			return
		}
	}
}
