package bench

import (
	"bufio"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// readRSSKB reads a process's resident memory (VmRSS) in KiB from /proc.
func readRSSKB(pid int) (int64, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
			return strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
		}
	}
	return 0, fmt.Errorf("/proc/%d/status has no VmRSS", pid)
}

// clockTicks is USER_HZ, the unit of /proc/PID/stat's CPU times. Linux fixes it at 100 on
// every architecture Go supports, whatever the kernel's internal HZ.
const clockTicks = 100

// readCPUTime is the user plus system CPU time a process has used so far.
func readCPUTime(pid int) (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// The command name (field 2) may contain spaces; the fields after its ')' are fixed.
	s := string(b)
	fields := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	if len(fields) < 13 {
		return 0, fmt.Errorf("/proc/%d/stat: too few fields", pid)
	}
	utime, err1 := strconv.ParseInt(fields[11], 10, 64) // field 14 overall
	stime, err2 := strconv.ParseInt(fields[12], 10, 64) // field 15 overall
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("/proc/%d/stat: bad CPU times", pid)
	}
	return time.Duration(utime+stime) * time.Second / clockTicks, nil
}

// selfCPUTime is the CPU time the bench itself has used (not its children: a local server
// is measured separately).
func selfCPUTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// procs are the homeserver's processes on this machine (one per node of a local
// deployment); none when the bench only knows a URL.
type procs []int

// rssKB is their resident memory together, 0 when there are none or one cannot be read.
func (p procs) rssKB() int64 {
	var total int64
	for _, pid := range p {
		kb, err := readRSSKB(pid)
		if err != nil {
			return 0
		}
		total += kb
	}
	return total
}

// cpuTime is the CPU time they have used together.
func (p procs) cpuTime() (time.Duration, bool) {
	var total time.Duration
	for _, pid := range p {
		t, err := readCPUTime(pid)
		if err != nil {
			return 0, false
		}
		total += t
	}
	return total, len(p) > 0
}

// readMachineCPU reads the whole machine's busy and stolen CPU time from /proc/stat. Other
// work on the machine (another test run, a build) takes cores from the server and the bench;
// the report shows how much, so a disturbed run can be told from a slow server.
func readMachineCPU() (busy, steal time.Duration, ok bool) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, 0, false
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line) // cpu user nice system idle iowait irq softirq steal ...
	if len(f) < 9 || f[0] != "cpu" {
		return 0, 0, false
	}
	var v [8]int64
	for i := range v {
		if v[i], err = strconv.ParseInt(f[i+1], 10, 64); err != nil {
			return 0, 0, false
		}
	}
	ticks := func(n int64) time.Duration { return time.Duration(n) * time.Second / clockTicks }
	return ticks(v[0] + v[1] + v[2] + v[5] + v[6]), ticks(v[7]), true
}

// cpuSample is the CPU used by the server, the bench and the whole machine at one moment.
type cpuSample struct {
	at             time.Time
	server, self   time.Duration
	serverOK       bool
	machine, steal time.Duration
	machineOK      bool
}

func sampleCPU(p procs) cpuSample {
	s := cpuSample{at: time.Now(), self: selfCPUTime()}
	s.server, s.serverOK = p.cpuTime()
	s.machine, s.steal, s.machineOK = readMachineCPU()
	return s
}

// MachineLoad is what else used the machine's CPUs while the run was measured.
type MachineLoad struct {
	// OtherCPUPercent is CPU used by neither the bench nor the server (when the bench knows
	// the server's processes), as a percentage of one core.
	OtherCPUPercent float64 `json:"other_cpu_percent"`
	StealPercent    float64 `json:"steal_percent"` // taken by the hypervisor, of one core
	Load1Before     float64 `json:"loadavg_1m_before"`
}

// machineLoad compares two samples. Without the server's processes, their CPU counts as
// other load.
func machineLoad(start, end cpuSample, loadBefore float64) *MachineLoad {
	if !start.machineOK || !end.machineOK {
		return nil
	}
	wall := end.at.Sub(start.at)
	other := (end.machine - start.machine) - (end.self - start.self)
	if start.serverOK && end.serverOK {
		other -= end.server - start.server
	}
	return &MachineLoad{OtherCPUPercent: max(cpuPercent(other, wall), 0),
		StealPercent: cpuPercent(end.steal-start.steal, wall), Load1Before: loadBefore}
}

// loadAvg1 is the one-minute load average.
func loadAvg1() float64 {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return 0
	}
	var l float64
	_, _ = fmt.Sscan(string(b), &l)
	return l
}

// cpuPercent is the CPU used between two samples as a percentage of one core (so up to
// 100 × cores).
func cpuPercent(used, wall time.Duration) float64 {
	if wall <= 0 {
		return 0
	}
	return 100 * float64(used) / float64(wall)
}

// Machine describes where the numbers were measured.
type Machine struct {
	CPUs     int    `json:"cpus"`
	CPUModel string `json:"cpu_model"`
	GoOS     string `json:"goos"`
}

func thisMachine() Machine {
	m := Machine{CPUs: runtime.NumCPU(), GoOS: runtime.GOOS + "/" + runtime.GOARCH}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
				m.CPUModel = strings.TrimSpace(v)
				break
			}
		}
	}
	return m
}
