// Package drill is Firebreak's fire drill: it starts a whole deployment (data centers of
// firebreak processes joined into one JetStream cluster, with fault-injecting proxies between
// the data centers), drives simulated users through the Client-Server API, loses or cuts off
// one data center in the middle of the traffic, and then proves from the API alone that no
// acknowledged message was lost, duplicated or ordered differently on two nodes. It reports
// how long clients could not write or read and how long a data center takes to restore.
package drill

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/firebreak/firebreak/internal/store"
)

// drainTimeout bounds how long the sync loops get, after the sends stop, to deliver every
// acknowledged event; settleTimeout how long nodes get to agree before a difference counts.
const (
	drainTimeout  = 30 * time.Second
	settleTimeout = 30 * time.Second
)

// Run runs one drill and returns its report. The error is for a drill that could not be
// carried out (a node would not start); what the drill found is in the report, whose Passed
// is false when anything was lost, duplicated or forked. Everything Run starts is stopped
// before it returns, also when ctx is cancelled.
func Run(ctx context.Context, o Options, log *slog.Logger) (*Report, error) {
	if err := o.validate(); err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp(o.WorkDir, "firebreak-drill-")
	if err != nil {
		return nil, err
	}
	d := &drill{o: o, log: log, dir: dir, started: time.Now(),
		rep: &Report{Scenario: o.Scenario, Users: o.Users, Rooms: o.Rooms, Rate: o.Rate,
			LatencyMS: o.InterDCLatency.Milliseconds(), RestoreSeconds: map[string]float64{}, ReadySeconds: map[string]float64{}},
		prog: &progress{w: o.Progress, started: time.Now()}}
	err = d.run(ctx)
	d.cleanup(err)
	return d.rep, err
}

// drill is one run: the deployment, the load, and what was found.
type drill struct {
	o       Options
	log     *slog.Logger
	dir     string
	started time.Time
	rep     *Report
	prog    *progress

	c    *cluster
	bal  *balancer
	load *load
	dc   string // the data center that fails

	failedAt, healedAt time.Time
	leaderDCs          map[string]string // stream -> data center of its leader when dc failed

	bgCancel context.CancelFunc
	bg       sync.WaitGroup
}

func (d *drill) run(ctx context.Context) error {
	bgCtx, cancel := context.WithCancel(ctx)
	d.bgCancel = cancel
	d.goBackground(func() { d.prog.run(bgCtx) })
	if err := d.startCluster(ctx); err != nil {
		return err
	}
	d.bal = newBalancer(d.c)
	d.goBackground(func() { d.bal.run(bgCtx) })
	d.load = newLoad(d.o, d.bal, d.log)
	d.prog.watch(d.c, d.bal, d.load)
	d.phase("setup users and rooms")
	if err := d.load.setup(ctx); err != nil {
		return err
	}
	d.phase("warm-up")
	d.load.start(ctx)
	if !sleep(ctx, d.o.Warmup) {
		return ctx.Err()
	}
	var err error
	switch d.o.Scenario {
	case ScenarioBurn:
		err = d.burn(ctx)
	case ScenarioPartition:
		err = d.partition(ctx)
	}
	return err
}

// startCluster launches every node and waits for the deployment to be whole.
func (d *drill) startCluster(ctx context.Context) error {
	d.phase("start cluster")
	c, err := launch(d.dir, d.o, d.log)
	if err != nil {
		return err
	}
	d.c = c
	d.rep.Nodes = len(c.nodes)
	d.prog.watch(c, nil, nil)
	if err := d.waitStarted(ctx); err != nil {
		return fmt.Errorf("cluster start: %w; not ready: %s (node logs in %s)", err, d.notReady(), d.dir)
	}
	if err := c.waitReplicated(ctx, c.nodes[0], d.o.Timeout); err != nil {
		return fmt.Errorf("cluster start: %w", err)
	}
	d.dc = d.o.FailDC
	if d.dc == "" {
		d.dc = c.busiestDC(ctx)
	}
	d.rep.FailedDC = d.dc
	if d.o.Scenario == ScenarioPartition {
		d.rep.Cut = d.o.Cut
	}
	d.checkBypass("after start")
	d.log.Info("cluster up", "nodes", len(c.nodes), "dir", d.dir, "failing", d.dc)
	return nil
}

// waitStarted waits until every node is healthy. A node that exits while the deployment
// forms is started once more, and the report notes it with the last line of its log: that is
// a server bug worth knowing, but not what the drill is about.
func (d *drill) waitStarted(ctx context.Context) error {
	retried := map[*node]bool{}
	return waitUntil(ctx, d.o.Timeout, 250*time.Millisecond, "nodes healthy", func(ctx context.Context) bool {
		for _, n := range d.c.nodes {
			if n.running() || retried[n] {
				continue
			}
			retried[n] = true
			note := fmt.Sprintf("%s exited while the cluster formed (started again): %s", n.Name, lastLogLine(n.LogPath))
			d.rep.Notes = append(d.rep.Notes, note)
			d.log.Warn(note)
			if err := n.start(d.c.bin); err != nil {
				d.log.Error("restart failed", "node", n.Name, "err", err)
			}
		}
		return d.c.allHealthy(ctx, d.c.nodes)
	})
}

// notReady names the nodes that are not healthy, each with the last line of its log.
func (d *drill) notReady() string {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var out []string
	for _, n := range d.c.nodes {
		if !n.running() || !d.c.healthOf(ctx, n) {
			out = append(out, fmt.Sprintf("%s (%s)", n.Name, lastLogLine(n.LogPath)))
		}
	}
	return strings.Join(out, "; ")
}

// checkBypass looks for routes that do not go through the proxies.
func (d *drill) checkBypass(when string) {
	for _, b := range d.c.bypasses() {
		d.rep.Bypasses = append(d.rep.Bypasses, when+": "+b)
	}
}

// noteFailure records when the data center fails and where every stream's leader was then.
func (d *drill) noteFailure(ctx context.Context) {
	d.leaderDCs = d.c.streamLeaders(ctx, d.c.outside(d.dc)[0])
	d.failedAt = time.Now()
}

// measureOutageSends splits the sends acknowledged while the data center was down or cut off
// by whether their room's stream leader was outside it; after a heal, the sends until the
// load stopped are measured apart, since the returning replicas force elections of their own.
func (d *drill) measureOutageSends() {
	end := d.load.sendsStopped
	if !d.healedAt.IsZero() {
		end = d.healedAt
	}
	var survived, lost, afterHeal []time.Duration
	for _, a := range d.load.acks() {
		took := a.At.Sub(a.Started)
		switch {
		case a.Probe || a.At.Before(d.failedAt) || a.At.After(d.load.sendsStopped):
		case a.At.After(end):
			afterHeal = append(afterHeal, took)
		case d.leaderDCs[store.RoomStream(a.Room, d.o.RoomShards)] == d.dc:
			lost = append(lost, took)
		default:
			survived = append(survived, took)
		}
	}
	o := &OutageSends{LeaderSurvived: percentiles(survived), LeaderLost: percentiles(lost)}
	if !d.healedAt.IsZero() {
		p := percentiles(afterHeal)
		o.AfterHeal = &p
	}
	d.rep.OutageSendMS = o
}

// stopLoad stops the sends, lets the syncs deliver what was acknowledged, then stops them.
func (d *drill) stopLoad(ctx context.Context) []delivery {
	d.phase("stop load, drain syncs")
	d.load.stopSends()
	missing := d.load.drain(ctx, drainTimeout)
	d.load.stopSyncs()
	return missing
}

// check verifies every room on the given nodes and keeps the result.
func (d *drill) check(ctx context.Context, stage string, nodes []*node) {
	d.phase("verify " + stage)
	res := verifier{l: d.load, settle: settleTimeout}.verify(ctx, stage, nodes, d.load.acks())
	d.rep.Stages = append(d.rep.Stages, res)
	d.log.Info("verified", "stage", stage, "events", res.Events, "lost", res.LostSends,
		"duplicates", res.DuplicateEvents, "forked", len(res.ForkedRooms))
}

// restore starts the failed data center again and measures how long until its nodes are
// healthy and every stream has all its replicas current again.
func (d *drill) restore(ctx context.Context, key string, wipe bool) error {
	d.phase("restore (" + key + ")")
	if wipe {
		d.c.killDC(d.dc)
		if err := d.c.wipeDC(d.dc); err != nil {
			return err
		}
	}
	// Right after a kill the survivors still count the dead replicas as current for a few
	// seconds; a restore timed from then would look instant.
	d.waitDegraded(ctx)
	started := time.Now()
	if err := d.c.startDC(d.dc); err != nil {
		return err
	}
	ready, complete, err := d.waitRestored(ctx, d.c.in(d.dc), d.c.outside(d.dc)[0], nil)
	if err != nil {
		return fmt.Errorf("restore %s: %w", key, err)
	}
	d.rep.ReadySeconds[key] = ready.Sub(started).Seconds()
	d.rep.RestoreSeconds[key] = complete.Sub(started).Seconds()
	d.log.Info("restored", "how", key, "ready_s", d.rep.ReadySeconds[key], "replicated_s", d.rep.RestoreSeconds[key])
	return nil
}

// waitDegraded waits until the survivors report replication incomplete.
func (d *drill) waitDegraded(ctx context.Context) {
	via := d.c.outside(d.dc)[0]
	err := waitUntil(ctx, settleTimeout, 250*time.Millisecond, "replication degraded", func(ctx context.Context) bool {
		r, err := d.c.replicationOf(ctx, via)
		return err == nil && !r.Complete
	})
	if err != nil {
		d.rep.Notes = append(d.rep.Notes, fmt.Sprintf("replication still reported complete %s after %s went down", settleTimeout, d.dc))
	}
}

// waitRestored polls the nodes' health and the replication state together, so each moment
// is taken when it happens; it returns when both hold. observe, when set, sees every
// replication state polled until then.
func (d *drill) waitRestored(ctx context.Context, nodes []*node, via *node, observe func(replication)) (ready, complete time.Time, err error) {
	err = waitUntil(ctx, d.o.Timeout, 250*time.Millisecond, "restore", func(ctx context.Context) bool {
		now := time.Now()
		if ready.IsZero() && d.c.allHealthy(ctx, nodes) {
			ready = now
		}
		if complete.IsZero() {
			r, err := d.c.replicationOf(ctx, via)
			if err == nil && observe != nil {
				observe(r)
			}
			if err == nil && r.Complete {
				complete = now
			}
		}
		return !ready.IsZero() && !complete.IsZero()
	})
	return ready, complete, err
}

func (d *drill) phase(p string) {
	d.prog.set(p)
	d.log.Debug("phase", "phase", p)
}

func (d *drill) goBackground(fn func()) {
	d.bg.Add(1)
	go func() { defer d.bg.Done(); fn() }()
}

// cleanup stops the load, the nodes, the proxies and the background loops, and removes the
// drill's directory unless it is to be kept: on request, or because the drill failed (an
// interrupted drill has not failed).
func (d *drill) cleanup(runErr error) {
	if d.load != nil {
		d.load.stopSends()
		d.load.stopSyncs()
	}
	if d.c != nil {
		d.phase("stop cluster")
		d.rep.Links = d.c.linkStats()
		d.c.shutdown()
	}
	d.bgCancel()
	d.bg.Wait()
	d.rep.TotalSecs = time.Since(d.started).Seconds()
	interrupted := errors.Is(runErr, context.Canceled)
	if d.o.Keep || (!interrupted && (runErr != nil || !d.rep.Passed)) {
		d.rep.WorkDir = d.dir
		return
	}
	if err := os.RemoveAll(d.dir); err != nil {
		d.log.Warn("could not remove the drill's directory", "dir", d.dir, "err", err)
	}
}
