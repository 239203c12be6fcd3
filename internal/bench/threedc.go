package bench

import (
	"context"
	"errors"
)

// start3DC starts the drill's three-data-center layout (six nodes on loopback with proxies
// between the data centers) and returns every node's URL.
//
// The drill package does not export its launcher yet; until it does, this mode refuses to
// run rather than measure something else.
func start3DC(ctx context.Context, cfg Config, dir string) (*deployment, error) {
	_, _, _ = ctx, cfg, dir
	return nil, errors.New("--local 3dc needs an exported launcher from internal/drill (drill.Launch); not available yet")
}
