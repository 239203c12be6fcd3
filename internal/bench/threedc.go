package bench

import (
	"context"

	"github.com/firebreak/firebreak/internal/drill"
)

// start3DC starts the drill's three-data-center layout (cfg.NodesPerDC nodes per data center,
// two by default, on their own loopback addresses) and returns every node's URL; users are
// spread over them. The routes go through the drill's proxies only to add latency between
// data centers (Config.directRoutes).
func start3DC(ctx context.Context, cfg Config, dir string) (*deployment, error) {
	bin, err := serverBinary(cfg)
	if err != nil {
		return nil, err
	}
	o := drill.DefaultOptions()
	o.Binary, o.InterDCLatency, o.RoomShards, o.NodesPerDC = bin, cfg.InterDCLatency, cfg.localRoomShards(), cfg.NodesPerDC
	o.DirectRoutes = cfg.directRoutes()
	d, err := drill.Launch(ctx, dir, o, cfg.Log)
	if err != nil {
		return nil, err
	}
	cfg.Log.Info("bench: local 3-DC deployment ready", "urls", d.URLs())
	return &deployment{urls: d.URLs(), procs: procs(d.PIDs()), stop: func() error { d.Close(); return nil }}, nil
}
