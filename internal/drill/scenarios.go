package drill

import (
	"context"
	"sync"
	"time"
)

// isolationTimeout bounds how long cut-off nodes may keep reporting themselves writable. The
// nodes ping their routes every second and give up after three missed pings.
const isolationTimeout = 30 * time.Second

// burn SIGKILLs every process of one data center at the same instant, in the middle of the
// traffic, keeps the load going, checks the survivors, then restores the data center twice:
// from its old disks and from empty ones.
func (d *drill) burn(ctx context.Context) error {
	d.phase("burn " + d.dc)
	d.log.Info("killing data center", "dc", d.dc)
	d.noteFailure(ctx)
	d.c.killDC(d.dc)
	d.phase("outage (" + d.dc + " down)")
	if !sleep(ctx, d.o.Outage) {
		return ctx.Err()
	}
	d.checkBypass("during outage")
	undelivered := d.stopLoad(ctx)
	d.check(ctx, "after burn", d.c.outside(d.dc))
	if err := d.restore(ctx, "old_disks", false); err != nil {
		return err
	}
	d.check(ctx, "after restore (old disks)", d.c.nodes)
	if err := d.restore(ctx, "wiped_disks", true); err != nil {
		return err
	}
	d.check(ctx, "after restore (wiped disks)", d.c.nodes)
	d.measureOutageSends()
	d.rep.summarize(d.load, undelivered)
	return nil
}

// partition cuts one data center off while its nodes keep running. The load moves away from
// it; probes keep writing through the cut-off nodes to prove that none of their writes is
// acknowledged and then lost. After healing, every node must hold the same history.
func (d *drill) partition(ctx context.Context) error {
	cutNodes := d.c.in(d.dc)
	probes, err := d.load.prepareProbes(ctx, cutNodes)
	if err != nil {
		return err
	}
	d.phase("cut " + d.dc)
	d.log.Info("cutting data center off", "dc", d.dc)
	d.noteFailure(ctx)
	cutAt := time.Now()
	d.c.cutDC(d.dc, d.o.Cut)
	probeCtx, stopProbes := context.WithCancel(ctx)
	var probing sync.WaitGroup
	probing.Add(1)
	go func() { defer probing.Done(); d.load.runProbes(probeCtx, probes) }()

	res := &PartitionResult{}
	d.rep.Partition = res
	// Every cut-off node failing its health check proves the links through the proxies were
	// the only ones between the data centers.
	isolated := d.waitCutNodes(ctx, cutNodes, "isolation", func(h healthReport, err error) bool { return err != nil || !h.Writable })
	res.IsolationSeconds = time.Since(cutAt).Seconds()
	fenced := d.waitCutNodes(ctx, cutNodes, "fenced", func(h healthReport, err error) bool { return err == nil && h.Fenced })
	if fenced {
		res.FencedSeconds = time.Since(cutAt).Seconds()
	}
	d.checkBypass("during cut")
	d.phase("outage (" + d.dc + " cut off)")
	sleep(ctx, d.o.Outage-time.Since(cutAt))
	stopProbes()
	probing.Wait()

	d.phase("heal " + d.dc)
	observer := d.c.outside(d.dc)[0]
	leaders, err := newLeaderWatch(ctx, d.c, observer)
	if err != nil {
		return err
	}
	healAt := time.Now()
	d.healedAt = healAt
	d.c.healDC(d.dc)
	ready, complete, err := d.waitRestored(ctx, d.c.nodes, observer, leaders.observe)
	if err != nil {
		return err
	}
	res.LeadersLostOnHeal = len(leaders.lost)
	d.rep.ReadySeconds["heal"] = ready.Sub(healAt).Seconds()
	d.rep.RestoreSeconds["heal"] = complete.Sub(healAt).Seconds()
	d.phase("settle")
	if !sleep(ctx, d.o.Settle) {
		return ctx.Err()
	}
	undelivered := d.stopLoad(ctx)
	d.check(ctx, "after heal", d.c.nodes)
	res.AcksFromCutNodes = countAcksFrom(d.load.acks(), cutNodes, cutAt, healAt)
	d.load.probeMu.Lock()
	res.Probes = d.load.probe
	d.load.probeMu.Unlock()
	d.measureOutageSends()
	d.rep.summarize(d.load, undelivered)
	if !isolated {
		d.rep.Problems = append(d.rep.Problems, "the cut-off data center kept reporting itself writable: "+
			"traffic between data centers does not go only through the drill's proxies")
		d.rep.Passed = false
	}
	if !fenced {
		d.rep.Problems = append(d.rep.Problems, "the cut-off nodes kept their JetStream running: "+
			"their elections raise Raft terms that unseat the majority's leaders when the link heals")
		d.rep.Passed = false
	}
	return nil
}

// waitCutNodes waits until every cut-off node's health report satisfies cond.
func (d *drill) waitCutNodes(ctx context.Context, cut []*node, what string, cond func(healthReport, error) bool) bool {
	err := waitUntil(ctx, isolationTimeout, 100*time.Millisecond, what, func(ctx context.Context) bool {
		for _, n := range cut {
			if !cond(d.c.healthReportOf(ctx, n)) {
				return false
			}
		}
		return true
	})
	if err != nil {
		d.log.Warn("cut-off nodes never reached "+what, "within", isolationTimeout)
	}
	return err == nil
}

// leaderWatch finds the streams that had a leader before the link healed and, in two listings
// in a row after it, none: the majority's leaders that the returning data center made step
// down, each a pause of one election (4–9 s, many listings 250 ms apart). A leaderless stream
// is left out of a listing, so missing counts as leaderless; one listing alone does not count,
// since one taken while routes reconnect can leave streams out. A handover to a chosen
// successor (JetStream moves leaders at times) is no pause and does not count either.
type leaderWatch struct {
	ledBefore map[string]bool
	missing   map[string]bool // leaderless in the previous listing
	lost      map[string]bool
}

// newLeaderWatch lists the leaders before the heal; without that list it could see nothing.
func newLeaderWatch(ctx context.Context, c *cluster, via *node) (*leaderWatch, error) {
	w := &leaderWatch{ledBefore: map[string]bool{}, missing: map[string]bool{}, lost: map[string]bool{}}
	err := waitUntil(ctx, settleTimeout, 250*time.Millisecond, "stream leaders listed", func(ctx context.Context) bool {
		r, err := c.replicationOf(ctx, via)
		w.ledBefore = ledStreams(r)
		return err == nil && len(r.Streams) > 0
	})
	return w, err
}

func (w *leaderWatch) observe(r replication) {
	led := ledStreams(r)
	for name, hadLeader := range w.ledBefore {
		leaderless := hadLeader && !led[name]
		if leaderless && w.missing[name] {
			w.lost[name] = true
		}
		w.missing[name] = leaderless
	}
}

// ledStreams says for each listed stream whether it has a leader.
func ledStreams(r replication) map[string]bool {
	led := map[string]bool{}
	for _, st := range r.Streams {
		led[st.Name] = st.Leader != ""
	}
	return led
}

func countAcksFrom(acks []ack, nodes []*node, from, to time.Time) int {
	in := map[string]bool{}
	for _, n := range nodes {
		in[n.Name] = true
	}
	count := 0
	for _, a := range acks {
		if in[a.Node] && !a.At.Before(from) && !a.At.After(to) {
			count++
		}
	}
	return count
}
