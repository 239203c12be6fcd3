package bench

import (
	"context"
	"os"
	"path/filepath"
)

// deployment is what the bench sends load to: base URLs, and the processes to weigh when
// the bench started them (or was told a pid).
type deployment struct {
	urls   []string
	procs  procs
	secret string
	stop   func() error
}

// deploy starts the local deployment asked for, or describes the external one.
func deploy(ctx context.Context, cfg Config, dir string) (*deployment, error) {
	switch cfg.Local {
	case LocalSingle:
		bin, err := serverBinary(cfg)
		if err != nil {
			return nil, err
		}
		return startLocalSingle(ctx, bin, filepath.Join(dir, "single"), cfg.RoomShards, cfg.Log)
	case Local3DC:
		return start3DC(ctx, cfg, filepath.Join(dir, "3dc"))
	}
	dep := &deployment{urls: cfg.Homeservers, stop: func() error { return nil }}
	if cfg.ServerPID > 0 {
		dep.procs = procs{cfg.ServerPID}
	}
	return dep, nil
}

func serverBinary(cfg Config) (string, error) {
	if cfg.ServerBinary != "" {
		return cfg.ServerBinary, nil
	}
	return os.Executable()
}
