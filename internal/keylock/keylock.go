// Package keylock lets one holder at a time work on a key (a room, a stored value) on this
// node, and the rest wait in turn. Two writers of one key racing would both do their work and
// one would lose the compare-and-set at the end and do it all again; queueing them here costs
// less. Writers on other nodes still race, and the compare-and-set still decides.
package keylock

import (
	"context"
	"sync"
)

// Locks holds one lock per key in use; a key nobody holds or waits for takes no memory.
type Locks[K comparable] struct {
	mu    sync.Mutex
	locks map[K]*lock
}

type lock struct {
	held    chan struct{} // a token: holding the lock means having put one in
	waiters int           // holding or waiting; the entry goes when none remain
}

// New returns a set of locks, all free.
func New[K comparable]() *Locks[K] { return &Locks[K]{locks: map[K]*lock{}} }

// Lock waits for the key's lock, or for ctx to end, and returns the function that releases it.
func (l *Locks[K]) Lock(ctx context.Context, key K) (unlock func(), err error) {
	l.mu.Lock()
	kl := l.locks[key]
	if kl == nil {
		kl = &lock{held: make(chan struct{}, 1)}
		l.locks[key] = kl
	}
	kl.waiters++
	l.mu.Unlock()
	select {
	case kl.held <- struct{}{}:
		return func() { <-kl.held; l.release(key, kl) }, nil
	case <-ctx.Done():
		l.release(key, kl)
		return nil, ctx.Err()
	}
}

func (l *Locks[K]) release(key K, kl *lock) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if kl.waiters--; kl.waiters == 0 {
		delete(l.locks, key)
	}
}
