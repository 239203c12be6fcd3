package server

import (
	"log/slog"
	"runtime"

	"github.com/firebreak/firebreak/internal/config"
	"github.com/firebreak/firebreak/internal/store"
)

// AddProcsForFsync raises GOMAXPROCS for the JetStream server this node embeds
// (store.ProcsForEmbedded), unless GOMAXPROCS is set in the environment or the node uses an
// external NATS (nats_url: the fsyncs are another process's). The runtime then no longer
// follows later changes of the process's CPU limit.
func AddProcsForFsync(cfg config.Config, log *slog.Logger) {
	if cfg.NATSURL != "" {
		return
	}
	procs, ok := store.ProcsForEmbedded(1)
	if !ok {
		return
	}
	runtime.GOMAXPROCS(procs)
	log.Info("go processors", "gomaxprocs", procs, "cpus", runtime.NumCPU())
}
