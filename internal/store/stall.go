package store

import (
	"context"
	"errors"
	"sync/atomic"
	"time"
)

// StallCheck is how often a node looks for followers standing still behind their stream.
const StallCheck = 3 * time.Second

// errWatchStalled: a bucket watch stood still behind its bucket for a whole StallCheck.
var errWatchStalled = errors.New("follower: stood still behind its stream")

// Stalled says whether a follower that had applied appliedBefore when its stream's head was
// headBefore, and has applied appliedNow a StallCheck later, stood still behind the stream. A
// follower restarts itself when its consumer's server is lost, but its consumer can also sit on
// a replica that has stopped receiving (cut off, or still catching up) while that server keeps
// confirming its pull.
func Stalled(appliedBefore, headBefore, appliedNow uint64) bool {
	return appliedNow == appliedBefore && appliedNow < headBefore
}

// watchForStall checks every StallCheck, until ctx ends, whether a follower stood still behind
// its stream (head reads the stream's head; 0 where it cannot be read now, which is not judged),
// and returns errWatchStalled when it did.
func watchForStall(ctx context.Context, every time.Duration, head func(context.Context) uint64, applied *atomic.Uint64) error {
	t := time.NewTicker(every)
	defer t.Stop()
	var headBefore, appliedBefore uint64
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
		if Stalled(appliedBefore, headBefore, applied.Load()) {
			return errWatchStalled
		}
		headBefore = head(ctx)
		appliedBefore = applied.Load()
	}
}
