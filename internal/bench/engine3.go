package bench

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/firebreak/firebreak/internal/store"
)

const (
	// engine3Attempts and engine3StartTimeout bound the cluster's start: in trials one start
	// in about ten hung in stream creation; a fresh cluster on fresh ports then came up.
	engine3Attempts     = 3
	engine3StartTimeout = 60 * time.Second
)

// MeasureEngine3 measures JetStream as a three-data-center deployment runs it: three
// embedded servers in one cluster (one per data center tag), every stream with three
// replicas and fsync always, publishing through the first. The servers talk over loopback
// with no added latency, so this is the engine's ceiling, not a WAN figure.
func MeasureEngine3(ctx context.Context, opts EngineOptions) (*EngineResult, error) {
	if opts.Log == nil {
		opts.Log = slog.New(slog.DiscardHandler)
	}
	defer withNodeProcs(3)()
	var err error
	for attempt := 1; attempt <= engine3Attempts; attempt++ {
		var stores []*store.Store
		dir := filepath.Join(opts.Dir, fmt.Sprintf("try%d", attempt))
		if stores, err = startEngineCluster(ctx, dir, opts.Streams, opts.storeLog()); err == nil {
			defer closeStores(stores)
			return measurePublishes(ctx, stores[0], 3, opts)
		}
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		opts.Log.Warn("bench: engine cluster did not start; trying again on fresh ports", "attempt", attempt, "err", err)
		_ = os.RemoveAll(dir)
	}
	return nil, err
}

// startEngineCluster starts three clustered stores together (they need each other to place
// their streams) and gives up after engine3StartTimeout.
func startEngineCluster(ctx context.Context, dir string, roomShards int, log *slog.Logger) ([]*store.Store, error) {
	addrs, err := distinctLoopbackAddrs(3)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, engine3StartTimeout)
	defer cancel()
	stores := make([]*store.Store, 3)
	errs := make([]error, 3)
	var wg sync.WaitGroup
	for i := range stores {
		wg.Add(1)
		go func() {
			defer wg.Done()
			stores[i], errs[i] = store.Open(ctx, engineNodeOptions(dir, roomShards, log, addrs, i))
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		closeStores(stores)
		return nil, err
	}
	return stores, nil
}

func closeStores(stores []*store.Store) {
	for _, st := range stores {
		if st != nil {
			st.Close()
		}
	}
}

func engineNodeOptions(dir string, roomShards int, log *slog.Logger, addrs []string, i int) store.Options {
	var routes []string
	for j, a := range addrs {
		if j != i {
			routes = append(routes, a)
		}
	}
	name := fmt.Sprintf("engine%d", i+1)
	return store.Options{
		DataDir: filepath.Join(dir, name), NodeName: name, Replicas: 3, RoomShards: roomShards, Logger: log,
		Cluster: &store.ClusterOptions{Name: "bench-engine", DC: fmt.Sprintf("dc%d", i+1), Listen: addrs[i],
			Routes: routes, Size: 3},
	}
}

// distinctLoopbackAddrs picks n loopback addresses whose ports were free a moment ago and
// differ from each other (the kernel may hand a just-closed port out again).
func distinctLoopbackAddrs(n int) ([]string, error) {
	seen := map[string]bool{}
	var out []string
	for tries := 0; len(out) < n; tries++ {
		if tries > 100 {
			return nil, errors.New("no free loopback ports")
		}
		a, err := freeLoopbackAddr()
		if err != nil {
			return nil, err
		}
		if !seen[a] {
			seen[a] = true
			out = append(out, a)
		}
	}
	return out, nil
}
