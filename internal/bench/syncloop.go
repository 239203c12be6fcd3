package bench

import (
	"context"
	"sync"
	"time"
)

// syncSlack is how long past its long-poll timeout a sync may take before the bench gives up
// on it: a busy server answers late, a hung one must not hang the run.
const syncSlack = 30 * time.Second

// startSyncLoops runs a long-poll /sync loop for every user until ctx ends, the way every
// real client keeps one open, and records each bench message another member sent as
// delivered. wg is done when every loop has stopped.
func startSyncLoops(ctx context.Context, users []*user, st *stats, run string, timeout time.Duration, wg *sync.WaitGroup) {
	for _, u := range users {
		wg.Add(1)
		go func() {
			defer wg.Done()
			u.syncLoop(ctx, st, run, timeout)
		}()
	}
}

func (u *user) syncLoop(ctx context.Context, st *stats, run string, timeout time.Duration) {
	for ctx.Err() == nil {
		rctx, cancel := context.WithTimeout(ctx, timeout+syncSlack)
		resp, err := u.c.sync(rctx, u.since, u.filterID, timeout)
		cancel()
		if err != nil {
			if ctx.Err() != nil {
				return // the run is over; an aborted poll is not an error
			}
			st.failed("sync", err)
			pause(ctx, 250*time.Millisecond) // a failing server must not be hammered in a loop
			continue
		}
		u.since = resp.NextBatch
		u.deliver(resp, st, run, time.Now())
	}
}

// deliver records the bench messages in a sync response that other members sent in this run.
func (u *user) deliver(resp *syncResponse, st *stats, run string, now time.Time) {
	for _, jr := range resp.Rooms.Join {
		if jr.Timeline.Limited {
			st.limited.Add(1)
		}
		for _, ev := range jr.Timeline.Events {
			if b := ev.Content.Bench; b != nil && b.Run == run && ev.Sender != u.c.userID && ev.Type == "m.room.message" {
				st.seen(b.N, time.UnixMicro(b.TSus), now)
			}
		}
	}
}

// pause sleeps for d or until ctx ends.
func pause(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
}
