package drill

import (
	"fmt"
	"io"
	"time"

	"github.com/firebreak/firebreak/internal/config"
)

// Scenarios the drill knows.
const (
	ScenarioBurn      = "burn"      // SIGKILL every process of one data center, then restore it
	ScenarioPartition = "partition" // cut one data center off the others while it keeps running
)

// How the partition cuts the links.
const (
	CutReject    = "reject"    // close every connection and refuse new ones (a rejecting firewall)
	CutBlackhole = "blackhole" // pass nothing, close nothing (a dead switch, a dropping firewall)
)

// Options say what the drill starts, what load it drives and which fault it injects.
type Options struct {
	Scenario string
	// Binary is the firebreak executable to start for every node (the CLI passes its own).
	Binary string
	// WorkDir is where the drill makes its own directory of data dirs, configs and logs;
	// empty means the system's temporary directory.
	WorkDir string
	// Keep leaves the drill's directory in place; it is also kept when the drill fails.
	Keep bool

	DCs        int // data centers (3: the deployment loses one and keeps a quorum)
	NodesPerDC int
	RoomShards int // the deployment's room shard streams (room_shards)
	// FailDC is the data center to burn or cut, "dc1".."dcN"; empty picks the one that leads
	// the most streams, the harshest choice.
	FailDC string

	Users int
	Rooms int
	Rate  float64 // messages per second per user

	Warmup  time.Duration // load before the fault
	Outage  time.Duration // load while the data center is down or cut off
	Settle  time.Duration // load after a partition heals, before the load stops
	Timeout time.Duration // bound for each wait (cluster start, catch-up, restore)

	InterDCLatency time.Duration // one-way latency the proxies add between data centers
	Cut            string        // partition: CutReject or CutBlackhole
	// DirectRoutes joins the nodes to each other without proxies, for a deployment that is
	// never cut and has no added latency (the bench): the proxies' copying costs CPU that a
	// real deployment does not spend.
	DirectRoutes bool

	// Progress receives one status line per second; nil prints none.
	Progress io.Writer
}

// DefaultOptions are sized for a 2-core machine: about 90 seconds for a burn drill.
func DefaultOptions() Options {
	return Options{
		Scenario:   ScenarioBurn,
		Cut:        CutReject,
		DCs:        3,
		NodesPerDC: 2,
		RoomShards: config.ClusterRoomShards,
		Users:      30,
		Rooms:      10,
		Rate:       2,
		Warmup:     10 * time.Second,
		Outage:     20 * time.Second,
		Settle:     5 * time.Second,
		Timeout:    120 * time.Second,
	}
}

// maxNodesPerDC bounds the nodes the drill starts in each data center.
const maxNodesPerDC = 9

// ValidNodesPerDC reports whether the drill can start n nodes in each data center.
func ValidNodesPerDC(n int) bool { return n >= 1 && n <= maxNodesPerDC }

// validate reports the first option that cannot work.
func (o Options) validate() error {
	switch {
	case o.Scenario != ScenarioBurn && o.Scenario != ScenarioPartition:
		return fmt.Errorf("unknown scenario %q (want %s or %s)", o.Scenario, ScenarioBurn, ScenarioPartition)
	case o.Cut != CutReject && o.Cut != CutBlackhole:
		return fmt.Errorf("unknown cut %q (want %s or %s)", o.Cut, CutReject, CutBlackhole)
	case o.Binary == "":
		return fmt.Errorf("no firebreak binary given")
	case o.DCs < 3 || o.DCs > 9:
		return fmt.Errorf("need 3 to 9 data centers (an R3 stream places one replica in each of 3), got %d", o.DCs)
	case !ValidNodesPerDC(o.NodesPerDC):
		return fmt.Errorf("nodes per data center must be 1 to %d, got %d", maxNodesPerDC, o.NodesPerDC)
	case !config.ValidRoomShards(o.RoomShards):
		return fmt.Errorf("room shards must be 1 to %d, got %d", config.MaxRoomShards, o.RoomShards)
	case o.Users < 2:
		return fmt.Errorf("need at least 2 users, got %d", o.Users)
	case o.Rooms < 1:
		return fmt.Errorf("need at least 1 room, got %d", o.Rooms)
	case o.Rate <= 0:
		return fmt.Errorf("rate must be positive, got %v", o.Rate)
	case o.Timeout <= 0:
		return fmt.Errorf("timeout must be positive")
	case o.Warmup < 0 || o.Outage < 0 || o.Settle < 0 || o.InterDCLatency < 0:
		return fmt.Errorf("durations may not be negative")
	case o.DirectRoutes:
		return fmt.Errorf("a drill needs its proxies between nodes, to cut a data center off")
	}
	if o.FailDC != "" {
		if _, err := dcIndex(o.FailDC, o.DCs); err != nil {
			return err
		}
	}
	return nil
}

func dcName(i int) string { return fmt.Sprintf("dc%d", i+1) }

// dcIndex turns "dc2" into 1.
func dcIndex(name string, dcs int) (int, error) {
	var i int
	if _, err := fmt.Sscanf(name, "dc%d", &i); err != nil || i < 1 || i > dcs || dcName(i-1) != name {
		return 0, fmt.Errorf("no data center %q (have dc1..dc%d)", name, dcs)
	}
	return i - 1, nil
}
