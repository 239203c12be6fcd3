package bench

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"sync"
	"time"
)

const (
	idleSettle      = 3 * time.Second  // for the server's memory to settle before each reading
	idleOpenTimeout = 60 * time.Second // to get one step's syncs in flight
	idleSteps       = 4                // syncs are opened in this many equal steps
)

// runIdle holds cfg.Connections long-polling syncs open, spread over the users, and reads the
// server's resident memory with none open and after each of idleSteps equal steps.
//
// The cost per sync is the slope between the first and the last step, not the difference
// from zero: the Go runtime keeps freed heap resident (setup leaves some), and the first
// syncs reuse it without RSS moving. The last step is held for the duration.
func runIdle(ctx context.Context, cfg Config, hc *http.Client, run string, server procs) (*Result, error) {
	pop, err := setup(ctx, cfg, hc, run)
	if err != nil {
		return nil, err
	}
	st := newStats()
	res := baseResult(cfg)
	idle := &IdleResult{Connections: cfg.Connections}
	res.Idle = idle
	pause(ctx, idleSettle)
	idle.RSSBeforeKB = server.rssKB()
	prog := startProgress(cfg.Progress, st, func() string { return "[idle holding syncs]" })
	defer prog.Stop()

	holdCtx, release := context.WithCancel(ctx)
	var conns sync.WaitGroup
	defer func() { release(); conns.Wait() }()
	loadBefore, cpuStart := loadAvg1(), sampleCPU(server)
	if err := holdInSteps(ctx, holdCtx, cfg, pop, st, server, &conns, idle); err != nil {
		return nil, err
	}
	cpuEnd := sampleCPU(server)
	idle.finish()
	if len(server) > 0 {
		res.Server = serverUsage(server, cpuStart, cpuEnd, 0)
	}
	res.BenchCPUPercent = cpuPercent(cpuEnd.self-cpuStart.self, cpuEnd.at.Sub(cpuStart.at))
	res.OtherLoad = machineLoad(cpuStart, cpuEnd, loadBefore)
	release()
	conns.Wait()
	prog.Stop()
	res.ErrorsByCode, res.Errors = st.errorCounts()
	return res, ctx.Err()
}

// holdInSteps opens the syncs in idleSteps equal steps, each held open on holdCtx, and reads
// the server's memory after each step; the last step is held for the duration.
func holdInSteps(ctx, holdCtx context.Context, cfg Config, pop *population, st *stats, server procs,
	conns *sync.WaitGroup, idle *IdleResult) error {
	opened := 0
	for step := 1; step <= idleSteps; step++ {
		target := cfg.Connections * step / idleSteps
		for ; opened < target; opened++ {
			u := pop.users[opened%len(pop.users)]
			conns.Add(1)
			go func() {
				defer conns.Done()
				holdSync(holdCtx, u, st, cfg.SyncTimeout)
			}()
		}
		if err := waitOpen(ctx, st, target); err != nil {
			return err
		}
		pause(ctx, idleSettle)
		hold := idleSettle
		if step == idleSteps {
			hold = cfg.Duration
		}
		idle.Steps = append(idle.Steps, IdleStep{Open: st.inFlight.Load(), RSSKB: medianRSS(ctx, server, hold)})
	}
	return ctx.Err()
}

// finish derives the summary figures from the steps.
func (i *IdleResult) finish() {
	first, last := i.Steps[0], i.Steps[len(i.Steps)-1]
	i.Opened, i.RSSWithKB = last.Open, last.RSSKB
	if last.RSSKB == 0 {
		return // no process to weigh
	}
	if n := last.Open - first.Open; n > 0 {
		i.RSSPerSyncKB = float64(last.RSSKB-first.RSSKB) / float64(n)
	}
	if i.Opened > 0 {
		i.RSSPerSyncFromZeroKB = float64(last.RSSKB-i.RSSBeforeKB) / float64(i.Opened)
	}
}

// holdSync keeps one long poll open until ctx ends, reopening it when the server answers
// (at its timeout) with the position it returned.
func holdSync(ctx context.Context, u *user, st *stats, timeout time.Duration) {
	since := u.since
	for ctx.Err() == nil {
		st.inFlight.Add(1)
		rctx, cancel := context.WithTimeout(ctx, timeout+syncSlack)
		resp, err := u.c.sync(rctx, since, u.filterID, timeout)
		cancel()
		st.inFlight.Add(-1)
		switch {
		case ctx.Err() != nil:
			return
		case err != nil:
			st.failed("sync", err)
			pause(ctx, 250*time.Millisecond)
		default:
			since = resp.NextBatch
		}
	}
}

// waitOpen waits until n syncs are in flight.
func waitOpen(ctx context.Context, st *stats, n int) error {
	deadline := time.Now().Add(idleOpenTimeout)
	for st.inFlight.Load() < int64(n) {
		if time.Now().After(deadline) {
			return fmt.Errorf("only %d of %d syncs open after %s", st.inFlight.Load(), n, idleOpenTimeout)
		}
		pause(ctx, 100*time.Millisecond)
		if ctx.Err() != nil {
			return ctx.Err()
		}
	}
	return nil
}

// medianRSS reads the server's RSS every second for d and returns the median reading, so
// one garbage collection does not decide the figure. Without a process it just waits.
func medianRSS(ctx context.Context, server procs, d time.Duration) int64 {
	var samples []int64
	for end := time.Now().Add(d); time.Now().Before(end) && ctx.Err() == nil; pause(ctx, time.Second) {
		if kb := server.rssKB(); kb > 0 {
			samples = append(samples, kb)
		}
	}
	if len(samples) == 0 {
		return 0
	}
	slices.Sort(samples)
	return samples[len(samples)/2]
}
