package store

import (
	"context"
	"sync"
	"sync/atomic"
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

// Advance moves the cursor to p and wakes every waiter.
func (c *Cursor) Advance(p uint64) {
	c.pos.Store(p)
	c.mu.Lock()
	close(c.ch)
	c.ch = make(chan struct{})
	c.mu.Unlock()
}

// Wait blocks until the cursor is at p or beyond, or ctx ends.
func (c *Cursor) Wait(ctx context.Context, p uint64) error {
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
