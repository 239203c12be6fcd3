package bench

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strconv"
	"strings"
	"time"

	"github.com/firebreak/firebreak/internal/config"
	"github.com/firebreak/firebreak/internal/drill"
)

// Workloads.
const (
	WorkloadMix  = "mix"  // mostly DMs and small groups, a few large ones, everyone syncing
	WorkloadMax  = "max"  // closed loop: as many sends as the server acknowledges
	WorkloadIdle = "idle" // N long-polling syncs held open, to weigh their memory
)

// Local deployments the bench can start itself.
const (
	LocalNone   = ""
	LocalSingle = "single"
	Local3DC    = "3dc"
)

// Config is one bench run.
type Config struct {
	Homeservers  []string // base URLs; users are spread over them in turn
	SharedSecret string   // for /_synapse/admin/v1/register; empty: /register with m.login.dummy
	Local        string   // start a deployment: "single" or "3dc"; Homeservers must be empty
	ServerBinary string   // the firebreak binary --local and the engine start; default: this executable
	ServerPID    int      // a homeserver process on this machine to read memory and CPU of
	// InterDCLatency is the one-way delay --local 3dc adds between data centers.
	InterDCLatency time.Duration
	RoomShards     int  // a local deployment's room_shards; 0: its layout's default
	NodesPerDC     int  // --local 3dc: nodes in each of the three data centers
	KeepData       bool // leave a local deployment's data directory behind

	Workload    string
	Users       int
	Rooms       int
	RoomSizes   []RoomSize
	Rate        float64 // mix: messages per second offered (open loop); 0: closed loop
	Concurrency int     // closed loop: senders each waiting for their last send's ack
	MaxInFlight int     // open loop: sends in flight beyond which new ones are skipped
	Sync        bool    // every member runs a /sync long-poll loop (delivery latency)
	Connections int     // idle: long-polling syncs to hold open
	SyncTimeout time.Duration
	Duration    time.Duration
	WarmUp      time.Duration
	Drain       time.Duration // after the sends stop: how long to wait for late deliveries
	BodyBytes   int           // length of each message's body text
	Seed        int64

	Engine         bool          // also measure the raw JetStream publish rate
	EngineOnly     bool          // measure only the engine, with EngineReplicas (1 or 3)
	EngineReplicas int           // for EngineOnly; otherwise the deployment's
	EngineDuration time.Duration // per publish mode

	Progress io.Writer // the live progress line; nil: none
	Log      *slog.Logger
}

// RoomSize is a share of the rooms that have Members members.
type RoomSize struct {
	Members int
	Weight  int
}

// Defaults returns a configuration for the given workload: a short, modest run that any
// homeserver on a laptop sustains.
func Defaults(workload string) Config {
	c := Config{
		Workload: workload, Users: 100, Rooms: 100,
		RoomSizes:      []RoomSize{{2, 70}, {6, 25}, {50, 5}},
		Rate:           200,
		Concurrency:    64,
		MaxInFlight:    2000,
		Sync:           true,
		Connections:    1000,
		SyncTimeout:    30 * time.Second,
		Duration:       30 * time.Second,
		WarmUp:         5 * time.Second,
		Drain:          10 * time.Second,
		BodyBytes:      100,
		Seed:           1,
		EngineReplicas: 1,
		EngineDuration: 5 * time.Second,
		NodesPerDC:     drill.DefaultOptions().NodesPerDC,
	}
	switch workload {
	case WorkloadMax:
		c.Rate, c.Sync = 0, false
	case WorkloadIdle:
		c.Rooms, c.Sync = 0, false
		c.SyncTimeout = 90 * time.Second
	}
	return c
}

// ParseRoomSizes reads "2:70,6:25,50:5": rooms of 2 members weigh 70, of 6 members 25, ...
func ParseRoomSizes(s string) ([]RoomSize, error) {
	var out []RoomSize
	for _, part := range strings.Split(s, ",") {
		size, weight, ok := strings.Cut(strings.TrimSpace(part), ":")
		m, err1 := strconv.Atoi(size)
		w, err2 := strconv.Atoi(weight)
		if !ok || err1 != nil || err2 != nil || m < 2 || w < 1 {
			return nil, fmt.Errorf("room size %q: want MEMBERS:WEIGHT with MEMBERS >= 2 and WEIGHT >= 1", part)
		}
		out = append(out, RoomSize{Members: m, Weight: w})
	}
	return out, nil
}

// localRoomShards is the room shard count of the deployment --local starts.
func (c Config) localRoomShards() int {
	layout := config.Config{RoomShards: c.RoomShards}
	if c.Local == Local3DC {
		layout.Cluster = &config.Cluster{}
	}
	return layout.RoomShardCount()
}

// directRoutes says whether --local 3dc joins its nodes without the drill's proxies: they only
// copy bytes unless they add latency, at a CPU cost that neither a real deployment nor the
// engine's baseline pays.
func (c Config) directRoutes() bool { return c.InterDCLatency == 0 }

// localRoutes says, for the report, how --local 3dc's nodes reach each other.
func (c Config) localRoutes() string {
	if c.directRoutes() {
		return "direct"
	}
	return "through proxies adding " + c.InterDCLatency.String() + " one way between data centers"
}

// engineStreams is how many shard streams the engine's servers make: the deployment's, but
// never fewer than minEngineStreams. On one server each stream fsyncs one message at a
// time, so the engine is at its best over many (docs/PERFORMANCE.md, "Group commit"); its
// pipelined mode also tries fewer of them (engineSpreads), where a cluster is at its best.
func (c Config) engineStreams() int {
	return max(c.localRoomShards(), minEngineStreams)
}

// minEngineStreams: over 16 streams the engine made 11–14k publishes/s on one node, against
// 4.4–4.7k over one.
const minEngineStreams = 16

// Validate reports the first setting that cannot work.
func (c Config) Validate() error {
	if c.RoomShards != 0 && !config.ValidRoomShards(c.RoomShards) {
		return fmt.Errorf("--room-shards must be 1 to %d", config.MaxRoomShards)
	}
	if c.EngineOnly {
		switch {
		case c.EngineReplicas != 1 && c.EngineReplicas != 3:
			return errors.New("--engine-replicas must be 1 or 3")
		case c.EngineReplicas == 3 && !drill.ValidNodesPerDC(c.NodesPerDC):
			return fmt.Errorf("--nodes-per-dc %d: the drill's layout cannot start that many", c.NodesPerDC)
		}
		return nil
	}
	switch {
	case c.Local != LocalNone && len(c.Homeservers) > 0:
		return errors.New("use either --local or --homeserver, not both")
	case c.Local == LocalNone && len(c.Homeservers) == 0:
		return errors.New("say where to send load: --homeserver URL or --local single|3dc")
	case c.Local != LocalNone && c.Local != LocalSingle && c.Local != Local3DC:
		return fmt.Errorf("--local %q: want single or 3dc", c.Local)
	case c.Workload != WorkloadMix && c.Workload != WorkloadMax && c.Workload != WorkloadIdle:
		return fmt.Errorf("--workload %q: want mix, max or idle", c.Workload)
	case c.Local == Local3DC && !drill.ValidNodesPerDC(c.NodesPerDC):
		return fmt.Errorf("--nodes-per-dc %d: the drill's layout cannot start that many", c.NodesPerDC)
	case c.Users < 2:
		return errors.New("--users must be at least 2")
	case c.Duration <= 0 || c.WarmUp < 0 || c.Drain < 0:
		return errors.New("--duration must be positive, --warmup and --drain not negative")
	case c.Workload == WorkloadIdle && c.Connections < 1:
		return errors.New("--connections must be at least 1")
	case c.Workload != WorkloadIdle && c.Rooms < 1:
		return errors.New("--rooms must be at least 1")
	case c.Workload != WorkloadIdle && len(c.RoomSizes) == 0:
		return errors.New("--room-sizes must name at least one size")
	case c.Rate < 0 || (c.Rate == 0 && c.Concurrency < 1):
		return errors.New("--rate must be positive, or 0 with --concurrency >= 1 (closed loop)")
	case c.Rate > 0 && c.MaxInFlight < 1:
		return errors.New("--max-inflight must be at least 1")
	case c.BodyBytes < minBodyBytes:
		return fmt.Errorf("--body-bytes must be at least %d (the body's fixed text)", minBodyBytes)
	case c.InterDCLatency < 0:
		return errors.New("--inter-dc-latency must not be negative")
	case c.InterDCLatency > 0 && c.Local != Local3DC:
		return errors.New("--inter-dc-latency needs --local 3dc (it delays the links between its data centers)")
	case c.SyncTimeout <= 0:
		return errors.New("--sync-timeout must be positive")
	}
	if c.Workload == WorkloadIdle {
		return nil // no rooms
	}
	for _, rs := range c.RoomSizes {
		if rs.Members > c.Users {
			return fmt.Errorf("rooms of %d members need at least that many --users (have %d)", rs.Members, c.Users)
		}
	}
	return nil
}
