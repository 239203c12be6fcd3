package bench

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
)

// Result is everything one run measured. Its JSON names are a stable interface for scripts.
type Result struct {
	Workload    string   `json:"workload"`
	Homeservers []string `json:"homeservers"`
	Local       string   `json:"local,omitempty"`
	LocalNodes  int      `json:"local_nodes,omitempty"`       // nodes --local started
	RoomShards  int      `json:"local_room_shards,omitempty"` // their room_shards
	LocalRoutes string   `json:"local_routes,omitempty"`      // --local 3dc: how its nodes reach each other
	Users       int      `json:"users"`
	Rooms       int      `json:"rooms"`
	RoomSizes   string   `json:"room_sizes,omitempty"`
	OfferedRate float64  `json:"offered_rate,omitempty"` // open loop; 0 for closed loop
	Concurrency int      `json:"concurrency,omitempty"`  // closed loop senders
	DurationS   float64  `json:"duration_s"`
	WarmUpS     float64  `json:"warmup_s"`

	Sends       uint64  `json:"sends"`
	SendsPerSec float64 `json:"sends_per_sec"`
	AckP50Ms    float64 `json:"send_ack_p50_ms"`
	AckP99Ms    float64 `json:"send_ack_p99_ms"`
	AckP999Ms   float64 `json:"send_ack_p999_ms"`

	Deliveries          uint64  `json:"deliveries"`          // of acknowledged sends, at most one per member
	DeliveriesExpected  uint64  `json:"deliveries_expected"` // one per other member of the room per acknowledged send
	DeliveriesUnacked   uint64  `json:"deliveries_of_unacknowledged_sends"`
	DuplicateDeliveries uint64  `json:"duplicate_deliveries"`
	DeliveryP50Ms       float64 `json:"delivery_p50_ms"`
	DeliveryP99Ms       float64 `json:"delivery_p99_ms"`
	DeliveryP999Ms      float64 `json:"delivery_p999_ms"`
	DeliveryMaxMs       float64 `json:"delivery_max_ms"`
	LimitedTimelines    uint64  `json:"limited_timelines"`

	Errors       uint64            `json:"errors"`
	ErrorsByCode map[string]uint64 `json:"errors_by_code"`
	Skipped      uint64            `json:"skipped_overloaded"` // open-loop sends not made: too many in flight

	Server          *ServerUsage `json:"server,omitempty"`
	BenchCPUPercent float64      `json:"bench_cpu_percent"`
	OtherLoad       *MachineLoad `json:"other_load,omitempty"`
	Idle            *IdleResult  `json:"idle,omitempty"`

	Engine              *EngineResult `json:"engine,omitempty"`
	FractionOfEngine    float64       `json:"fraction_of_engine_async,omitempty"`
	FractionOfEngineOne float64       `json:"fraction_of_engine_sync,omitempty"`

	Machine Machine `json:"machine"`
}

// ServerUsage is what the homeserver process used while it was measured.
type ServerUsage struct {
	PIDs       []int   `json:"pids"`
	RSSKB      int64   `json:"rss_kb"`
	CPUPercent float64 `json:"cpu_percent"` // of one core, over the measured window
	CPUMsPer   float64 `json:"cpu_ms_per_send,omitempty"`
}

// IdleResult is the memory held open syncs cost the server.
type IdleResult struct {
	Connections int        `json:"connections"`
	Opened      int64      `json:"opened"` // syncs in flight when memory was last read
	RSSBeforeKB int64      `json:"rss_before_kb"`
	RSSWithKB   int64      `json:"rss_with_kb"`
	Steps       []IdleStep `json:"steps"`
	// RSSPerSyncKB is the slope from the first step to the last: what one more open sync costs.
	RSSPerSyncKB float64 `json:"rss_per_sync_kb"`
	// RSSPerSyncFromZeroKB divides the whole growth by the syncs; lower when setup left freed
	// heap behind for the first syncs to reuse.
	RSSPerSyncFromZeroKB float64 `json:"rss_per_sync_from_zero_kb"`
}

// IdleStep is the server's memory with Open syncs held.
type IdleStep struct {
	Open  int64 `json:"open"`
	RSSKB int64 `json:"rss_kb"`
}

// compareWithEngine sets the server's send rate as a fraction of the engine's.
func (r *Result) compareWithEngine() {
	if e := r.Engine; e != nil && r.Workload != WorkloadIdle {
		if e.AsyncPerSec > 0 {
			r.FractionOfEngine = r.SendsPerSec / e.AsyncPerSec
		}
		if e.SyncPerSec > 0 {
			r.FractionOfEngineOne = r.SendsPerSec / e.SyncPerSec
		}
	}
}

// WriteJSON writes the result as indented JSON.
func (r *Result) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(r)
}

// WriteTable writes the result for people.
func (r *Result) WriteTable(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	row := func(k, format string, a ...any) { fmt.Fprintf(tw, "%s\t"+format+"\n", append([]any{k}, a...)...) }
	if r.Workload == "engine" {
		row("machine", "%d CPUs, %s", r.Machine.CPUs, r.Machine.CPUModel)
		r.engineRows(row)
		return tw.Flush()
	}
	row("workload", "%s against %s", r.Workload, strings.Join(r.Homeservers, ", "))
	if r.Local != "" {
		routes := ""
		if r.LocalRoutes != "" {
			routes = ", routes " + r.LocalRoutes
		}
		row("deployment", "--local %s: %d node(s), %d room shards%s", r.Local, r.LocalNodes, r.RoomShards, routes)
	}
	row("machine", "%d CPUs, %s", r.Machine.CPUs, r.Machine.CPUModel)
	if r.Workload == WorkloadIdle {
		row("population", "%d users", r.Users)
	} else {
		row("population", "%d users, %d rooms (sizes %s)", r.Users, r.Rooms, r.RoomSizes)
	}
	if r.Workload == WorkloadIdle {
		row("measured", "syncs held %.0fs", r.DurationS)
	} else {
		row("measured", "%.0fs after %.0fs warm-up", r.DurationS, r.WarmUpS)
	}
	if r.Workload != WorkloadIdle {
		r.loadRows(row)
	}
	if i := r.Idle; i != nil {
		row("open syncs", "%d of %d", i.Opened, i.Connections)
		if i.RSSBeforeKB > 0 {
			steps := joinEach(i.Steps, ", ", func(s IdleStep) string { return fmt.Sprintf("%d: %d", s.Open, s.RSSKB) })
			row("server RSS (KiB)", "%d with none open; %s", i.RSSBeforeKB, steps)
			row("RSS per open sync", "%.1f KiB (slope over the steps; %.1f KiB from none open)", i.RSSPerSyncKB, i.RSSPerSyncFromZeroKB)
			if i.RSSPerSyncKB < 0 || i.RSSPerSyncFromZeroKB < 0 {
				row("  warning", "the server's memory fell while the syncs opened (freed memory returned to the system): "+
					"not a cost; run again with more --connections or a longer --duration")
			}
		}
	}
	row("errors", "%d", r.Errors)
	for _, k := range sortedKeys(r.ErrorsByCode) {
		row("  "+k, "%d", r.ErrorsByCode[k])
	}
	if s := r.Server; s != nil {
		row("server process", "pid %v, RSS %d KiB, CPU %.0f%% of a core", s.PIDs, s.RSSKB, s.CPUPercent)
		if s.CPUMsPer > 0 {
			row("server CPU per send", "%.2f ms", s.CPUMsPer)
		}
	}
	row("bench CPU", "%.0f%% of a core", r.BenchCPUPercent)
	if o := r.OtherLoad; o != nil {
		row("other load", "%.0f%% of a core by other processes, %.0f%% stolen by the hypervisor (load average %.1f before)",
			o.OtherCPUPercent, o.StealPercent, o.Load1Before)
		if o.OtherCPUPercent+o.StealPercent > 20 {
			row("  warning", "the machine was not quiet: these numbers are disturbed")
		}
	}
	r.engineRows(row)
	return tw.Flush()
}

func (r *Result) loadRows(row func(k, format string, a ...any)) {
	if r.OfferedRate > 0 {
		row("offered", "%.0f sends/s (open loop)", r.OfferedRate)
	} else {
		row("offered", "closed loop, %d senders", r.Concurrency)
	}
	row("acknowledged sends", "%d (%.1f/s)", r.Sends, r.SendsPerSec)
	row("send ack p50/p99/p99.9", "%.1f / %.1f / %.1f ms", r.AckP50Ms, r.AckP99Ms, r.AckP999Ms)
	if r.Skipped > 0 {
		row("skipped (overloaded)", "%d", r.Skipped)
	}
	if r.DeliveriesExpected > 0 || r.Deliveries > 0 {
		row("deliveries", "%d of %d owed by acknowledged sends", r.Deliveries, r.DeliveriesExpected)
		if r.DeliveriesUnacked > 0 || r.DuplicateDeliveries > 0 {
			row("  also seen", "%d of sends not acknowledged, %d duplicates", r.DeliveriesUnacked, r.DuplicateDeliveries)
		}
		row("delivery p50/p99/p99.9", "%.1f / %.1f / %.1f ms (max %.1f)", r.DeliveryP50Ms, r.DeliveryP99Ms, r.DeliveryP999Ms, r.DeliveryMaxMs)
		if r.LimitedTimelines > 0 {
			row("limited timelines", "%d", r.LimitedTimelines)
		}
	}
}

func (r *Result) engineRows(row func(k, format string, a ...any)) {
	e := r.Engine
	if e == nil {
		return
	}
	row("engine (JetStream)", "R%d over %d server(s), %d-byte messages, %s, %d Go processors each", e.Replicas, e.Servers,
		e.MessageBytes, e.Method, e.GoProcs)
	row("  one at a time", "%.0f publishes/s (p50 %.2f ms)", e.SyncPerSec, e.SyncP50Ms)
	row("  pipelined", "%.0f publishes/s with %d in flight over %d stream(s) (p99 %.1f ms), the best of %s",
		e.AsyncPerSec, e.InFlight, e.AsyncStreams, e.AsyncP99Ms,
		joinEach(e.Pipelined, ", ", func(s SpreadRate) string { return fmt.Sprintf("%.0f over %d", s.PerSec, s.Streams) }))
	if r.FractionOfEngine > 0 {
		row("sends / engine", "%.1f%% of pipelined, %.0f%% of one-at-a-time", 100*r.FractionOfEngine, 100*r.FractionOfEngineOne)
	}
}

// formatRoomSizes renders sizes the way --room-sizes reads them.
func formatRoomSizes(sizes []RoomSize) string {
	return joinEach(sizes, ",", func(s RoomSize) string { return fmt.Sprintf("%d:%d", s.Members, s.Weight) })
}

// joinEach formats each item and joins them with sep.
func joinEach[T any](items []T, sep string, format func(T) string) string {
	parts := make([]string, len(items))
	for i, item := range items {
		parts[i] = format(item)
	}
	return strings.Join(parts, sep)
}
