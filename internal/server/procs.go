package server

import (
	"log/slog"
	"os"
	"runtime"

	"github.com/firebreak/firebreak/internal/config"
)

// extraProcs is how many more Go processors (GOMAXPROCS) than CPUs a node with an embedded
// JetStream runs with. JetStream fsyncs each write in a system call that keeps its processor
// until the runtime's monitor hands it on, tens of microseconds or more later; with one
// processor per CPU, a CPU then idles while other goroutines wait. At maximum load on 2 CPUs,
// 2 extra took the server from 142% to 161% of a core and sends/s up by about a tenth; 6 extra
// cost more CPU per send than they won.
const extraProcs = 2

// AddProcsForFsync raises GOMAXPROCS by extraProcs when this node embeds JetStream (with
// nats_url, the fsyncs are another process's) and GOMAXPROCS is not set in the environment.
// The runtime then no longer follows later changes of the process's CPU limit.
func AddProcsForFsync(cfg config.Config, log *slog.Logger) {
	if cfg.NATSURL != "" || os.Getenv("GOMAXPROCS") != "" {
		return
	}
	procs := runtime.GOMAXPROCS(0) + extraProcs
	runtime.GOMAXPROCS(procs)
	log.Info("go processors", "gomaxprocs", procs, "cpus", runtime.NumCPU())
}
