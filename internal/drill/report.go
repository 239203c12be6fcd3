package drill

import (
	"fmt"
	"io"
	"maps"
	"math"
	"slices"
	"sort"
	"strings"
	"time"
)

// Report is what the drill measured and found. Its JSON form is printed by `--json`.
type Report struct {
	Scenario  string   `json:"scenario"`
	FailedDC  string   `json:"failed_dc"`
	Cut       string   `json:"cut,omitempty"` // partition: reject or blackhole
	Nodes     int      `json:"nodes"`
	Users     int      `json:"users"`
	Rooms     int      `json:"rooms"`
	Rate      float64  `json:"rate_per_user"`
	LatencyMS int64    `json:"inter_dc_latency_ms"`
	Passed    bool     `json:"passed"`
	Problems  []string `json:"problems,omitempty"`
	TotalSecs float64  `json:"total_seconds"`
	// Notes are things worth knowing that do not fail the drill.
	Notes []string `json:"notes,omitempty"`
	// Bypasses are connections into a node's cluster port that no proxy made.
	Bypasses []string `json:"route_bypasses,omitempty"`
	WorkDir  string   `json:"work_dir,omitempty"` // only when kept

	AcknowledgedSends int            `json:"acknowledged_sends"`
	FailedSends       int64          `json:"failed_send_attempts"`
	SendErrors        map[string]int `json:"send_errors,omitempty"`
	AbandonedSends    int            `json:"abandoned_sends"` // unanswered when the load stopped
	LostSends         int            `json:"lost_sends"`
	DuplicateEvents   int            `json:"duplicate_events"`
	ForkedRooms       int            `json:"forked_rooms"`
	MismatchedAcks    int            `json:"mismatched_acks"`
	// UndeliveredEvents are (acknowledged event, room member) pairs that sync never delivered.
	UndeliveredEvents int `json:"undelivered_events"`
	// DuplicateDeliveries are events a sync delivered to a client that had already got them.
	DuplicateDeliveries int   `json:"duplicate_deliveries"`
	GapFillFailures     int64 `json:"gap_fill_failures"`

	// WriteUnavailableMS is, per client, the longest time between two acknowledged sends while
	// the load ran. A healthy client sends every 1/rate seconds, so that is the floor.
	WriteUnavailableMS Percentiles `json:"write_unavailable_ms"`
	// ReadUnavailableMS is, per client, the longest time without reads: from the moment a sync
	// failed (or, for one that hung until the client gave up, from when it was sent) to the next
	// successful sync; 0 for a client whose syncs never failed. After a failure the client
	// syncs with timeout 0 (as matrix-js-sdk does until it is syncing again), so the wait for
	// news of a long poll is never counted.
	ReadUnavailableMS Percentiles `json:"read_unavailable_ms"`
	// DeliveryMS is, over every (acknowledged event, member), the time from the sender's
	// acknowledgement to the member's sync delivering it (0 when the sync was first).
	DeliveryMS Percentiles `json:"delivery_ms"`

	// RestoreSeconds is an object: for burn "old_disks" and "wiped_disks", seconds from
	// restarting the data center's processes until /_firebreak/replication reports complete;
	// for partition "heal", seconds from healing the links until the same.
	RestoreSeconds map[string]float64 `json:"restore_seconds"`
	// ReadySeconds: the same starts until every node of the data center answers health 200.
	ReadySeconds map[string]float64 `json:"ready_seconds"`

	// OutageSendMS is, for sends acknowledged while the data center was down or cut off, the
	// time from the first attempt to the acknowledgement, split by where the room's stream
	// leader was when the data center failed: rooms led elsewhere should see no gap, rooms led
	// from the failed data center wait for JetStream to elect a new leader.
	OutageSendMS *OutageSends `json:"outage_send_ms,omitempty"`

	Partition *PartitionResult `json:"partition,omitempty"`
	Stages    []*StageResult   `json:"stages"`
	Links     []LinkStats      `json:"links"`
}

// OutageSends splits the sends of an outage by their room's stream leader.
type OutageSends struct {
	LeaderSurvived Percentiles  `json:"leader_survived"`
	LeaderLost     Percentiles  `json:"leader_lost"`
	AfterHeal      *Percentiles `json:"after_heal,omitempty"` // partition: from healing to the end
}

// PartitionResult is what only the partition scenario measures.
type PartitionResult struct {
	// IsolationSeconds: from the cut until every cut-off node reports health 503.
	IsolationSeconds float64 `json:"isolation_seconds"`
	// FencedSeconds: from the cut until every cut-off node reports its JetStream stopped.
	FencedSeconds float64 `json:"fenced_seconds"`
	// LeadersLostOnHeal counts the streams left without a leader after the link healed (each
	// pauses its writes for an election); fencing keeps it at 0.
	LeadersLostOnHeal int `json:"leaders_lost_on_heal"`
	// AcksFromCutNodes are sends the cut-off nodes acknowledged during the cut (each checked
	// like every other acknowledged send).
	AcksFromCutNodes int        `json:"acks_from_cut_nodes"`
	Probes           probeStats `json:"probes"`
}

// Percentiles summarise one measurement over clients or events, in milliseconds.
type Percentiles struct {
	P50 int64 `json:"p50"`
	P99 int64 `json:"p99"`
	Max int64 `json:"max"`
	N   int   `json:"n"`
}

func percentiles(ds []time.Duration) Percentiles {
	if len(ds) == 0 {
		return Percentiles{}
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	at := func(q float64) int64 {
		i := int(math.Ceil(q*float64(len(s)))) - 1 // nearest rank
		return s[max(0, min(i, len(s)-1))].Milliseconds()
	}
	return Percentiles{P50: at(0.50), P99: at(0.99), Max: s[len(s)-1].Milliseconds(), N: len(s)}
}

// longestGap is the longest time in [from, to] between successes (or the window's edges).
func longestGap(oks []time.Time, from, to time.Time) time.Duration {
	last, longest := from, time.Duration(0)
	for _, t := range oks {
		if t.Before(from) {
			continue
		}
		if t.After(to) {
			break
		}
		longest = max(longest, t.Sub(last))
		last = t
	}
	return max(longest, to.Sub(last))
}

// summarize fills in the report's totals from the stages and the load.
func (r *Report) summarize(l *load, undelivered []delivery) {
	acks := l.acks()
	r.AcknowledgedSends = len(acks)
	r.FailedSends = l.sendsFailed.Load()
	r.GapFillFailures = l.gapFillFailures.Load()
	l.errMu.Lock()
	r.SendErrors = maps.Clone(l.sendErrors)
	l.errMu.Unlock()
	lost, forked := map[string]bool{}, map[string]bool{}
	for _, s := range r.Stages {
		for id := range s.lost {
			lost[id] = true
		}
		for _, room := range s.ForkedRooms {
			forked[room] = true
		}
		r.DuplicateEvents = max(r.DuplicateEvents, s.DuplicateEvents)
		r.MismatchedAcks = max(r.MismatchedAcks, s.MismatchedAcks)
	}
	r.LostSends, r.ForkedRooms = len(lost), len(forked)
	r.UndeliveredEvents = len(undelivered)
	var writes, reads, deliveries []time.Duration
	for _, u := range l.users {
		r.AbandonedSends += u.abandoned
		writes = append(writes, longestGap(u.sendOK, l.started, l.sendsStopped))
		u.mu.Lock()
		reads = append(reads, longestOutage(u.readOutages, l.started, l.sendsStopped))
		r.DuplicateDeliveries += u.dupSeen
		u.mu.Unlock()
	}
	members := l.members()
	for _, a := range acks {
		for _, u := range members[a.Room] {
			if at, ok := u.hasReceived(a.EventID); ok {
				deliveries = append(deliveries, max(0, at.Sub(a.At)))
			}
		}
	}
	r.WriteUnavailableMS, r.ReadUnavailableMS, r.DeliveryMS = percentiles(writes), percentiles(reads), percentiles(deliveries)
	r.judge(undelivered)
}

// maxLostNamed bounds the lost sends a report names one by one; the rest it counts.
const maxLostNamed = 20

// judge lists every problem; the drill passes only with none.
func (r *Report) judge(undelivered []delivery) {
	add := func(cond bool, format string, args ...any) {
		if cond {
			r.Problems = append(r.Problems, fmt.Sprintf(format, args...))
		}
	}
	for _, s := range r.Stages {
		r.Problems = append(r.Problems, s.problems(max(0, maxLostNamed-len(r.Problems)))...)
	}
	for i, d := range undelivered {
		add(i < 10, "never delivered by sync: %s (room %s) to %s", d.ack.EventID, d.ack.Room, d.user.sess.UserID)
	}
	add(r.DuplicateDeliveries > 0, "sync delivered %d events twice", r.DuplicateDeliveries)
	add(len(r.Bypasses) > 0, "routes around the proxies: %v", r.Bypasses)
	r.Passed = len(r.Problems) == 0
}

func sortedAcks(m map[string]ack) []ack {
	out := slices.Collect(maps.Values(m))
	sort.Slice(out, func(i, j int) bool { return out[i].At.Before(out[j].At) })
	return out
}

// Print writes the report for a person.
func (r *Report) Print(w io.Writer) {
	verdict := "PASSED"
	if !r.Passed {
		verdict = "FAILED"
	}
	scenario := r.Scenario
	if r.Cut != "" {
		scenario += " (" + r.Cut + ")"
	}
	fmt.Fprintf(w, "\nfirebreak drill %q: %s\n", scenario, verdict)
	fmt.Fprintf(w, "  deployment      %d nodes in 3+ data centers, %s failed; %d users, %d rooms, %.1f msg/s per user, inter-DC latency %d ms\n",
		r.Nodes, r.FailedDC, r.Users, r.Rooms, r.Rate, r.LatencyMS)
	fmt.Fprintf(w, "  sends           %d acknowledged, %d failed attempts (retried), %d abandoned at stop\n",
		r.AcknowledgedSends, r.FailedSends, r.AbandonedSends)
	if len(r.SendErrors) > 0 {
		fmt.Fprintf(w, "  send errors     %s\n", formatCounts(r.SendErrors))
	}
	fmt.Fprintf(w, "  lost            %d   duplicates %d   forked rooms %d   mismatched acks %d\n",
		r.LostSends, r.DuplicateEvents, r.ForkedRooms, r.MismatchedAcks)
	fmt.Fprintf(w, "  sync            %d undelivered, %d delivered twice, %d gap fills failed\n",
		r.UndeliveredEvents, r.DuplicateDeliveries, r.GapFillFailures)
	fmt.Fprintf(w, "  write unavail.  %s  (longest time per client without an acknowledged send)\n", r.WriteUnavailableMS)
	fmt.Fprintf(w, "  read unavail.   %s  (longest time per client from a sync failing to the next successful one)\n", r.ReadUnavailableMS)
	fmt.Fprintf(w, "  delivery        %s  (acknowledgement to a member's sync)\n", r.DeliveryMS)
	if o := r.OutageSendMS; o != nil {
		fmt.Fprintf(w, "  outage sends    %s  (first attempt to ack; rooms whose stream leader was elsewhere)\n", o.LeaderSurvived)
		fmt.Fprintf(w, "                  %s  (rooms whose stream leader was in %s)\n", o.LeaderLost, r.FailedDC)
		if o.AfterHeal != nil {
			fmt.Fprintf(w, "                  %s  (every room, after healing)\n", *o.AfterHeal)
		}
	}
	for _, k := range slices.Sorted(maps.Keys(r.RestoreSeconds)) {
		fmt.Fprintf(w, "  restore %-10s replication complete after %.1f s (nodes healthy after %.1f s)\n", k,
			r.RestoreSeconds[k], r.ReadySeconds[k])
	}
	if p := r.Partition; p != nil {
		fmt.Fprintf(w, "  partition       cut-off nodes unhealthy after %.1f s, fenced after %.1f s; probes through them: %d attempts, %d acknowledged, %d failed; %d acks from cut-off nodes\n",
			p.IsolationSeconds, p.FencedSeconds, p.Probes.Attempts, p.Probes.Acknowledged, p.Probes.Failed, p.AcksFromCutNodes)
		fmt.Fprintf(w, "                  streams left without a leader when the link healed: %d\n", p.LeadersLostOnHeal)
	}
	for _, s := range r.Stages {
		fmt.Fprintf(w, "  check %-28s on %s: %d events, lost %d, dup %d, forked %d, committed unacknowledged %d (%.1f s)\n",
			s.Stage, strings.Join(s.Nodes, ","), s.Events, s.LostSends, s.DuplicateEvents, len(s.ForkedRooms), s.CommittedUnacknowledged, s.Seconds)
	}
	for _, n := range r.Notes {
		fmt.Fprintf(w, "  note: %s\n", n)
	}
	for _, p := range r.Problems {
		fmt.Fprintf(w, "  PROBLEM: %s\n", p)
	}
	if r.WorkDir != "" {
		fmt.Fprintf(w, "  work dir kept:  %s\n", r.WorkDir)
	}
	fmt.Fprintf(w, "  took %.0f s\n", r.TotalSecs)
}

func (p Percentiles) String() string {
	if p.N == 0 { // not a pause of 0 ms: nothing was measured (the lost DC led no room, say)
		return fmt.Sprintf("%-43s", "none measured") // as wide as the figures

	}
	return fmt.Sprintf("p50 %6d ms  p99 %6d ms  max %6d ms", p.P50, p.P99, p.Max)
}

func formatCounts(m map[string]int) string {
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(m)) {
		parts = append(parts, fmt.Sprintf("%s: %d", k, m[k]))
	}
	return strings.Join(parts, ", ")
}
