package server

import (
	"log/slog"
	"maps"
	"math"
	"os"
	"path/filepath"
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
		{"unified", "0::/system.slice/firebreak.service\n", []string{
			"/sys/fs/cgroup/system.slice/firebreak.service/memory.max",
			"/sys/fs/cgroup/system.slice/memory.max",
			"/sys/fs/cgroup/memory.max"}},
		{"container root", "0::/\n", []string{"/sys/fs/cgroup/memory.max"}},
		{"version 1", "9:name=systemd:/\n4:memory:/process_api/a5\n2:cpu,cpuacct:/\n", []string{
			"/sys/fs/cgroup/memory/process_api/a5/memory.limit_in_bytes",
			"/sys/fs/cgroup/memory/process_api/memory.limit_in_bytes",
			"/sys/fs/cgroup/memory/memory.limit_in_bytes"}},
		{"combined controllers", "3:cpu,memory:/x\n", []string{
			"/sys/fs/cgroup/memory/x/memory.limit_in_bytes",
			"/sys/fs/cgroup/memory/memory.limit_in_bytes"}},
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

func TestUsableMemory(t *testing.T) {
	const gib = 1 << 30
	machine := map[string]string{"proc/meminfo": "MemTotal: 8388608 kB\nMemFree: 1 kB\n"}
	tests := []struct {
		name  string
		files map[string]string
		want  uint64
		ok    bool
	}{
		{"no cgroup limit", map[string]string{"proc/self/cgroup": "0::/\n"}, 8 * gib, true},
		{"the service's own limit", map[string]string{
			"proc/self/cgroup": "0::/system.slice/fb.service\n",
			"sys/fs/cgroup/system.slice/fb.service/memory.max": "2147483648\n"}, 2 * gib, true},
		{"a parent's smaller limit", map[string]string{
			"proc/self/cgroup": "0::/system.slice/fb.service\n",
			"sys/fs/cgroup/system.slice/fb.service/memory.max": "max\n",
			"sys/fs/cgroup/system.slice/memory.max":            "1073741824\n"}, 1 * gib, true},
		{"version 1 container without its own cgroup namespace", map[string]string{
			"proc/self/cgroup":                           "4:memory:/docker/abc\n",
			"sys/fs/cgroup/memory/memory.limit_in_bytes": "536870912\n"}, gib / 2, true},
		{"a limit above the machine's memory", map[string]string{
			"proc/self/cgroup": "0::/big\n", "sys/fs/cgroup/big/memory.max": "68719476736\n"}, 8 * gib, true},
		{"no /proc/meminfo", map[string]string{"proc/meminfo": ""}, 0, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			root := t.TempDir()
			for name, text := range mergeFiles(machine, tt.files) {
				if text == "" {
					continue
				}
				file := filepath.Join(root, name)
				if err := os.MkdirAll(filepath.Dir(file), 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(file, []byte(text), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			if got, ok := usableMemoryUnder(root); got != tt.want || ok != tt.ok {
				t.Errorf("usableMemoryUnder = %d, %v; want %d, %v", got, ok, tt.want, tt.ok)
			}
		})
	}
}

// mergeFiles is base with over's files added or replaced.
func mergeFiles(base, over map[string]string) map[string]string {
	merged := maps.Clone(base)
	maps.Copy(merged, over)
	return merged
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
		{"GOMEMLIMIT off", "off", false},
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
			if want := int64(float64(total) * memoryLimitShare); tt.wantLimited && limit != want {
				t.Errorf("limit %d, want %d (%v of %d)", limit, want, memoryLimitShare, total)
			}
		})
	}
}
