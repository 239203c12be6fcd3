package server

import (
	"log/slog"
	"math"
	"runtime/debug"
	"slices"
	"testing"
)

func TestMemTotal(t *testing.T) {
	tests := []struct {
		name, meminfo string
		want          uint64
		ok            bool
	}{
		{"machine", "MemTotal:       24684092 kB\nMemFree:        20414184 kB\n", 24684092 * 1024, true},
		{"not first", "MemFree: 1 kB\nMemTotal: 2048 kB\n", 2048 * 1024, true},
		{"missing", "MemFree: 1 kB\n", 0, false},
		{"zero", "MemTotal: 0 kB\n", 0, false},
		{"other unit", "MemTotal: 2 MB\n", 0, false},
		{"not a number", "MemTotal: lots kB\n", 0, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := memTotal(tt.meminfo)
			if got != tt.want || ok != tt.ok {
				t.Errorf("memTotal = %d, %v; want %d, %v", got, ok, tt.want, tt.ok)
			}
		})
	}
}

func TestCgroupLimit(t *testing.T) {
	tests := []struct {
		text string
		want uint64
		ok   bool
	}{
		{"4294967296\n", 4294967296, true},
		{"max\n", 0, false},
		{"9223372036854771712\n", 9223372036854771712, true}, // version 1's "no limit", above any machine's memory
		{"", 0, false},
	}
	for _, tt := range tests {
		if got, ok := cgroupLimit(tt.text); got != tt.want || ok != tt.ok {
			t.Errorf("cgroupLimit(%q) = %d, %v; want %d, %v", tt.text, got, ok, tt.want, tt.ok)
		}
	}
}

func TestCgroupLimitFiles(t *testing.T) {
	tests := []struct {
		name, cgroup string
		want         []string
	}{
		{"unified", "0::/system.slice/firebreak.service\n", []string{"/sys/fs/cgroup/system.slice/firebreak.service/memory.max"}},
		{"container root", "0::/\n", []string{"/sys/fs/cgroup/memory.max"}},
		{"version 1", "9:name=systemd:/\n4:memory:/process_api/a5\n2:cpu,cpuacct:/\n0::/\n",
			[]string{"/sys/fs/cgroup/memory/process_api/a5/memory.limit_in_bytes", "/sys/fs/cgroup/memory.max"}},
		{"combined controllers", "3:cpu,memory:/x\n", []string{"/sys/fs/cgroup/memory/x/memory.limit_in_bytes"}},
		{"no memory controller", "2:cpu:/x\n", nil},
		{"garbage", "nonsense\n", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := cgroupLimitFiles(tt.cgroup); !slices.Equal(got, tt.want) {
				t.Errorf("cgroupLimitFiles = %q, want %q", got, tt.want)
			}
		})
	}
}

// TestLimitMemory checks that Go's own GOMEMLIMIT wins over the node's limit. The runtime read
// it when the test binary started, so the test sets the limit to a known value itself and
// looks at what LimitMemory leaves.
func TestLimitMemory(t *testing.T) {
	tests := []struct {
		name, gomemlimit string
		wantLimited      bool
	}{
		{"default", "", true},
		{"GOMEMLIMIT set", "1GiB", false},
	}
	defer debug.SetMemoryLimit(debug.SetMemoryLimit(-1))
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			total, ok := usableMemory()
			if tt.wantLimited && !ok {
				t.Skip("this system does not say how much memory it has")
			}
			t.Setenv("GOMEMLIMIT", tt.gomemlimit)
			debug.SetMemoryLimit(math.MaxInt64)
			LimitMemory(slog.New(slog.DiscardHandler))
			limit := debug.SetMemoryLimit(-1)
			if limited := limit < math.MaxInt64; limited != tt.wantLimited {
				t.Fatalf("memory limited: %v, want %v", limited, tt.wantLimited)
			}
			if tt.wantLimited && (limit <= 0 || uint64(limit) >= total) {
				t.Errorf("limit %d, want a share of the %d bytes usable", limit, total)
			}
		})
	}
}
