package bench

import (
	"context"
	"fmt"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
)

// runLoad runs the mix or max workload: set up users and rooms, start every member's sync
// loop, send for warm-up plus duration, wait for late deliveries, and measure.
func runLoad(ctx context.Context, cfg Config, hc *http.Client, run string, server procs) (*Result, error) {
	pop, err := setup(ctx, cfg, hc, run)
	if err != nil {
		return nil, err
	}
	st := newStats()
	loadBefore := loadAvg1()
	var phase atomic.Value
	phase.Store("warm-up")
	prog := startProgress(cfg.Progress, st, func() string { return fmt.Sprintf("[%s %s]", cfg.Workload, phase.Load()) })
	defer prog.Stop()

	syncCtx, stopSyncs := context.WithCancel(ctx)
	var syncs sync.WaitGroup
	defer func() { stopSyncs(); syncs.Wait() }()
	if cfg.Sync {
		startSyncLoops(syncCtx, pop.users, st, run, cfg.SyncTimeout, &syncs)
	}
	sendHTTP := newSendClient(cfg.Concurrency + min(cfg.MaxInFlight, 4096))
	defer sendHTTP.CloseIdleConnections()
	cpuStart, cpuEnd, err := sendFor(ctx, cfg, newSender(pop, st, sendHTTP, run, cfg.BodyBytes), server, &phase)
	if err != nil {
		return nil, err
	}
	phase.Store("draining")
	if cfg.Sync {
		waitDelivered(ctx, st, cfg.Drain)
	}
	stopSyncs()
	syncs.Wait()
	prog.Stop()

	res := loadResult(cfg, st, pop)
	res.BenchCPUPercent = cpuPercent(cpuEnd.self-cpuStart.self, cpuEnd.at.Sub(cpuStart.at))
	res.OtherLoad = machineLoad(cpuStart, cpuEnd, loadBefore)
	if len(server) > 0 {
		res.Server = serverUsage(server, cpuStart, cpuEnd, res.Sends)
	}
	return res, nil
}

// sendFor sends for the warm-up and the measured window, and samples CPU use when the window
// opens and when the last send has returned.
func sendFor(ctx context.Context, cfg Config, s *sender, server procs, phase *atomic.Value) (start, end cpuSample, err error) {
	measureStart := time.Now().Add(cfg.WarmUp)
	stopAt := measureStart.Add(cfg.Duration)
	s.st.win.open(measureStart, cfg.Duration)
	// The timer samples when the window opens; the channel hands the sample over.
	started := make(chan cpuSample, 1)
	timer := time.AfterFunc(cfg.WarmUp, func() { started <- sampleCPU(server); phase.Store("measuring") })
	defer timer.Stop()
	if cfg.Rate > 0 {
		s.openLoop(ctx, cfg.Rate, cfg.MaxInFlight, stopAt)
	} else {
		s.closedLoop(ctx, cfg.Concurrency, stopAt)
	}
	end = sampleCPU(server)
	select {
	case start = <-started:
		return start, end, nil
	case <-ctx.Done():
		return start, end, ctx.Err()
	}
}

// waitDelivered waits until every measured send has reached every other member, or for at
// most d: what is still missing then counts as undelivered.
func waitDelivered(ctx context.Context, st *stats, d time.Duration) {
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) && !st.allDelivered() {
		pause(ctx, 100*time.Millisecond)
		if ctx.Err() != nil {
			return
		}
	}
}

func loadResult(cfg Config, st *stats, pop *population) *Result {
	res := baseResult(cfg)
	res.Rooms = len(pop.rooms)
	res.Sends = st.sends.Load()
	res.SendsPerSec = float64(res.Sends) / cfg.Duration.Seconds()
	res.AckP50Ms, res.AckP99Ms, res.AckP999Ms = Ms(st.ack.Quantile(0.5)), Ms(st.ack.Quantile(0.99)), Ms(st.ack.Quantile(0.999))
	if cfg.Sync { // otherwise nobody was listening
		res.DeliveriesExpected, res.Deliveries, res.DeliveriesUnacked, res.DuplicateDeliveries = st.msgs.counts()
	}
	res.DeliveryP50Ms, res.DeliveryP99Ms = Ms(st.delivery.Quantile(0.5)), Ms(st.delivery.Quantile(0.99))
	res.DeliveryP999Ms, res.DeliveryMaxMs = Ms(st.delivery.Quantile(0.999)), Ms(st.delivery.Max())
	res.LimitedTimelines = st.limited.Load()
	res.Skipped = st.overloaded.Load()
	res.ErrorsByCode, res.Errors = st.errorCounts()
	return res
}

// baseResult fills in what describes the run rather than what it measured.
func baseResult(cfg Config) *Result {
	res := &Result{
		Workload: cfg.Workload, Homeservers: cfg.Homeservers, Local: cfg.Local, Users: cfg.Users,
		DurationS: cfg.Duration.Seconds(), WarmUpS: cfg.WarmUp.Seconds(), Machine: thisMachine(),
		ErrorsByCode: map[string]uint64{},
	}
	if cfg.Local != "" {
		res.LocalNodes, res.RoomShards = 1, cfg.localRoomShards()
		if cfg.Local == Local3DC {
			res.LocalNodes, res.LocalRoutes = 3*cfg.NodesPerDC, cfg.localRoutes()
		}
	}
	if cfg.Workload != WorkloadIdle {
		res.RoomSizes = formatRoomSizes(cfg.RoomSizes)
		if cfg.Rate > 0 {
			res.OfferedRate = cfg.Rate
		} else {
			res.Concurrency = cfg.Concurrency
		}
	}
	return res
}

func serverUsage(server procs, start, end cpuSample, sends uint64) *ServerUsage {
	u := &ServerUsage{PIDs: server, RSSKB: server.rssKB()}
	if start.serverOK && end.serverOK {
		used := end.server - start.server
		u.CPUPercent = cpuPercent(used, end.at.Sub(start.at))
		if sends > 0 {
			u.CPUMsPer = Ms(used) / float64(sends)
		}
	}
	return u
}
