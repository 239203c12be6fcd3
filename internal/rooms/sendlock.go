package rooms

import (
	"context"
	"sync"
)

// roomLocks lets one send per room at a time build and append on this node. Two sends racing
// for the same head would both build and sign an event and one would lose the
// compare-and-append and do it all again; queueing them here costs less. Writers on other
// nodes still race, and compare-and-append still decides.
type roomLocks struct {
	mu    sync.Mutex
	locks map[string]*roomLock
}

type roomLock struct {
	held    chan struct{} // a token: holding the lock means having put one in
	waiters int           // senders holding or waiting; the entry goes when none remain
}

func newRoomLocks() *roomLocks { return &roomLocks{locks: map[string]*roomLock{}} }

// lock waits for the room's lock, or for ctx to end, and returns the function that releases it.
func (l *roomLocks) lock(ctx context.Context, roomID string) (unlock func(), err error) {
	l.mu.Lock()
	rl := l.locks[roomID]
	if rl == nil {
		rl = &roomLock{held: make(chan struct{}, 1)}
		l.locks[roomID] = rl
	}
	rl.waiters++
	l.mu.Unlock()
	select {
	case rl.held <- struct{}{}:
		return func() { <-rl.held; l.release(roomID, rl) }, nil
	case <-ctx.Done():
		l.release(roomID, rl)
		return nil, ctx.Err()
	}
}

func (l *roomLocks) release(roomID string, rl *roomLock) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if rl.waiters--; rl.waiters == 0 {
		delete(l.locks, roomID)
	}
}
