package server

import (
	"log/slog"
	"math"
	"os"
	"path"
	"path/filepath"
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
// the memory it may use, unless Go's GOMEMLIMIT sets one (GOMEMLIMIT=off: no limit).
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

// usableMemory is the smaller of the machine's memory and the limits of the process's cgroups.
func usableMemory() (uint64, bool) { return usableMemoryUnder("/") }

// usableMemoryUnder is usableMemory with /proc and /sys read under root, for tests.
func usableMemoryUnder(root string) (uint64, bool) {
	meminfo, err := os.ReadFile(filepath.Join(root, "proc/meminfo"))
	if err != nil {
		return 0, false
	}
	total, ok := memTotal(string(meminfo))
	if !ok {
		return 0, false
	}
	cgroups, _ := os.ReadFile(filepath.Join(root, "proc/self/cgroup"))
	for _, file := range cgroupLimitFiles(string(cgroups)) {
		if b, err := os.ReadFile(filepath.Join(root, file)); err == nil {
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

// cgroupLimitFiles are the memory limit files that may bound the process: for each memory
// hierarchy /proc/self/cgroup names (the unified one's memory.max, version 1's
// memory.limit_in_bytes), those of its cgroup and of every parent up to the mount's root. The
// parents' limits bound the children. And inside a container without its own cgroup namespace,
// /proc/self/cgroup names a path from the host's root while the container's own cgroup is
// mounted at /sys/fs/cgroup: that path does not exist there, and the mount root's file is the
// container's limit.
func cgroupLimitFiles(procSelfCgroup string) []string {
	var files []string
	for line := range strings.Lines(procSelfCgroup) {
		parts := strings.SplitN(strings.TrimSpace(line), ":", 3)
		if len(parts) != 3 || !strings.HasPrefix(parts[2], "/") {
			continue
		}
		switch {
		case parts[0] == "0" && parts[1] == "":
			files = append(files, withParents("/sys/fs/cgroup", parts[2], "memory.max")...)
		case slices.Contains(strings.Split(parts[1], ","), "memory"):
			files = append(files, withParents("/sys/fs/cgroup/memory", parts[2], "memory.limit_in_bytes")...)
		}
	}
	return files
}

// withParents is the file name in the cgroup at path under mount and in each of its parents.
func withParents(mount, cgroup, name string) []string {
	var files []string
	for dir := path.Clean(cgroup); ; dir = path.Dir(dir) {
		files = append(files, path.Join(mount, dir, name))
		if dir == "/" {
			return files
		}
	}
}

// cgroupLimit reads a cgroup memory limit file: bytes, or "max" for none.
func cgroupLimit(text string) (uint64, bool) {
	limit, err := strconv.ParseUint(strings.TrimSpace(text), 10, 64)
	return limit, err == nil && limit > 0
}
