package server

import (
	"log/slog"
	"math"
	"os"
	"path"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
)

// memoryLimitShare is how much of the machine's memory (or its cgroup's limit) the Go runtime
// may use before its collector works harder than GOGC says, unless GOMEMLIMIT is set.
//
// The read model keeps every event in memory, so a node's live heap grows with history, and
// at Go's default GOGC of 100 the heap may grow to twice what is live before a collection: a
// node whose live heap passed half the machine's memory would run out of it although what it
// needs still fits. The soft limit makes the collector run more often near the limit instead.
const memoryLimitShare = 0.75

// LimitMemory gives the process's garbage collector a soft memory limit of memoryLimitShare of
// the memory it may use, unless Go's GOMEMLIMIT sets one.
func LimitMemory(log *slog.Logger) {
	if os.Getenv("GOMEMLIMIT") == "" {
		if total, ok := usableMemory(); ok {
			debug.SetMemoryLimit(int64(float64(total) * memoryLimitShare))
		}
	}
	limit := "none"
	if l := debug.SetMemoryLimit(-1); l < math.MaxInt64 {
		limit = strconv.FormatInt(l>>20, 10) + " MiB"
	}
	log.Info("garbage collector", "memory_limit", limit)
}

// usableMemory is the smaller of the machine's memory and the process's cgroup limit.
func usableMemory() (uint64, bool) {
	meminfo, err := os.ReadFile("/proc/meminfo")
	if err != nil {
		return 0, false
	}
	total, ok := memTotal(string(meminfo))
	if !ok {
		return 0, false
	}
	cgroups, _ := os.ReadFile("/proc/self/cgroup")
	for _, path := range cgroupLimitFiles(string(cgroups)) {
		if b, err := os.ReadFile(path); err == nil {
			if limit, ok := cgroupLimit(string(b)); ok && limit < total {
				total = limit
			}
		}
	}
	return total, true
}

// memTotal reads MemTotal, in bytes, from the text of /proc/meminfo.
func memTotal(meminfo string) (uint64, bool) {
	for line := range strings.Lines(meminfo) {
		fields := strings.Fields(line)
		if len(fields) == 3 && fields[0] == "MemTotal:" && fields[2] == "kB" {
			kb, err := strconv.ParseUint(fields[1], 10, 64)
			return kb * 1024, err == nil && kb > 0
		}
	}
	return 0, false
}

// cgroupLimitFiles are the memory limit files of the cgroups /proc/self/cgroup names: the
// unified hierarchy's memory.max and the version 1 memory controller's limit_in_bytes.
func cgroupLimitFiles(procSelfCgroup string) []string {
	var files []string
	for line := range strings.Lines(procSelfCgroup) {
		parts := strings.SplitN(strings.TrimSpace(line), ":", 3)
		if len(parts) != 3 || !strings.HasPrefix(parts[2], "/") {
			continue
		}
		switch {
		case parts[0] == "0" && parts[1] == "":
			files = append(files, path.Join("/sys/fs/cgroup", parts[2], "memory.max"))
		case slices.Contains(strings.Split(parts[1], ","), "memory"):
			files = append(files, path.Join("/sys/fs/cgroup/memory", parts[2], "memory.limit_in_bytes"))
		}
	}
	return files
}

// cgroupLimit reads a cgroup memory limit file: bytes, or "max" for none.
func cgroupLimit(text string) (uint64, bool) {
	limit, err := strconv.ParseUint(strings.TrimSpace(text), 10, 64)
	return limit, err == nil && limit > 0
}
