package bench

import (
	"testing"
	"time"
)

func TestParseRoomSizes(t *testing.T) {
	got, err := ParseRoomSizes("2:70, 6:25,50:5")
	if err != nil {
		t.Fatal(err)
	}
	want := []RoomSize{{2, 70}, {6, 25}, {50, 5}}
	if len(got) != len(want) {
		t.Fatalf("got %v", got)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("got %v, want %v", got, want)
		}
	}
	if formatRoomSizes(got) != "2:70,6:25,50:5" {
		t.Errorf("format = %q", formatRoomSizes(got))
	}
	for _, bad := range []string{"", "2", "1:5", "2:0", "x:1", "2:1,"} {
		if _, err := ParseRoomSizes(bad); err == nil {
			t.Errorf("ParseRoomSizes(%q) accepted", bad)
		}
	}
}

func TestApportion(t *testing.T) {
	counts := apportion(100, []RoomSize{{2, 70}, {6, 25}, {50, 5}})
	if counts[0] != 70 || counts[1] != 25 || counts[2] != 5 {
		t.Errorf("apportion = %v", counts)
	}
	counts = apportion(7, []RoomSize{{2, 1}, {3, 1}, {4, 1}})
	if counts[0]+counts[1]+counts[2] != 7 || counts[0] < 2 || counts[2] < 2 {
		t.Errorf("apportion of 7 over 3 = %v", counts)
	}
}

func TestPlanRoomsSpreadsUsers(t *testing.T) {
	plan := planRooms(100, 100, []RoomSize{{2, 70}, {6, 25}, {50, 5}}, 1)
	if len(plan) != 100 {
		t.Fatalf("%d rooms planned", len(plan))
	}
	inRooms := make([]int, 100)
	for _, members := range plan {
		seen := map[int]bool{}
		for _, u := range members {
			if seen[u] {
				t.Fatalf("user %d twice in one room: %v", u, members)
			}
			seen[u] = true
			inRooms[u]++
		}
	}
	// 70*2 + 25*6 + 5*50 = 540 memberships over 100 users: 5 or 6 each.
	for u, n := range inRooms {
		if n < 5 || n > 6 {
			t.Errorf("user %d is in %d rooms, want 5 or 6", u, n)
		}
	}
}

func TestValidate(t *testing.T) {
	ok := Defaults(WorkloadMix)
	ok.Local = LocalSingle
	if err := ok.Validate(); err != nil {
		t.Fatalf("defaults: %v", err)
	}
	for name, mutate := range map[string]func(*Config){
		"no target":          func(c *Config) { c.Local = "" },
		"both targets":       func(c *Config) { c.Homeservers = []string{"http://127.0.0.1:1"} },
		"bad workload":       func(c *Config) { c.Workload = "heavy" },
		"room over users":    func(c *Config) { c.Users = 10 },
		"no duration":        func(c *Config) { c.Duration = 0 },
		"closed loop no one": func(c *Config) { c.Rate, c.Concurrency = 0, 0 },
		"bad local":          func(c *Config) { c.Local = "cloud" },
		"no sync timeout":    func(c *Config) { c.SyncTimeout = -time.Second },
		"negative shards":    func(c *Config) { c.RoomShards = -1 },
		"too many shards":    func(c *Config) { c.RoomShards = 1025 },
		"no nodes per DC":    func(c *Config) { c.Local, c.NodesPerDC = Local3DC, 0 },
		"no sends in flight": func(c *Config) { c.MaxInFlight = -1 },
		"short body":         func(c *Config) { c.BodyBytes = minBodyBytes - 1 },
		"negative latency":   func(c *Config) { c.Local, c.InterDCLatency = Local3DC, -time.Millisecond },
		"latency, one node":  func(c *Config) { c.InterDCLatency = 10 * time.Millisecond },
	} {
		c := ok
		mutate(&c)
		if c.Validate() == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	// The idle workload makes no rooms, so their sizes do not ask for users.
	idle := Defaults(WorkloadIdle)
	idle.Local, idle.Users = LocalSingle, 20
	if err := idle.Validate(); err != nil {
		t.Errorf("idle with fewer users than the default rooms' members: %v", err)
	}
}

func TestRoomShardsByLayout(t *testing.T) {
	for _, tc := range []struct {
		local                 string
		configured            int
		deployment, engineFor int
	}{
		{LocalSingle, 0, 1, 16},
		{Local3DC, 0, 4, 16},
		{LocalSingle, 4, 4, 16},
		{Local3DC, 32, 32, 32},
	} {
		c := Config{Local: tc.local, RoomShards: tc.configured}
		if got, engine := c.localRoomShards(), c.engineStreams(); got != tc.deployment || engine != tc.engineFor {
			t.Errorf("--local %s --room-shards %d: deployment %d, engine %d; want %d, %d",
				tc.local, tc.configured, got, engine, tc.deployment, tc.engineFor)
		}
	}
}
