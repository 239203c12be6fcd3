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
	// engineClusterAttempts and engineClusterStartTimeout bound the cluster's start: in
	// trials one start in about ten hung in stream creation; a fresh cluster on fresh ports
	// then came up.
	engineClusterAttempts     = 3
	engineClusterStartTimeout = 60 * time.Second
	// engineDCs is the data centers the engine's servers are spread over, as the deployment's
	// nodes are (drill's layout).
	engineDCs = 3
)

// MeasureEngineCluster measures JetStream as a three-data-center deployment runs it:
// opts.Servers embedded servers (three when unset) in one cluster, spread over three data
// center tags as the deployment's nodes are, every stream with three replicas (one per data
// center) and fsync always, publishing through the first. With as many servers as the
// deployment has nodes, the engine pays what the deployment's JetStream does for the servers
// it runs: their Raft groups, routes and idle work. The servers talk over loopback with no
// added latency, so this is the engine's ceiling, not a WAN figure.
func MeasureEngineCluster(ctx context.Context, opts EngineOptions) (*EngineResult, error) {
	if opts.Log == nil {
		opts.Log = slog.New(slog.DiscardHandler)
	}
	servers := max(opts.Servers, engineDCs)
	defer withNodeProcs(servers)()
	var err error
	for attempt := 1; attempt <= engineClusterAttempts; attempt++ {
		var stores []*store.Store
		dir := filepath.Join(opts.Dir, fmt.Sprintf("try%d", attempt))
		if stores, err = startEngineCluster(ctx, dir, servers, opts.Streams, opts.storeLog()); err == nil {
			defer closeStores(stores)
			return measurePublishes(ctx, stores[0], servers, 3, opts)
		}
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		opts.Log.Warn("bench: engine cluster did not start; trying again on fresh ports", "attempt", attempt, "err", err)
		_ = os.RemoveAll(dir)
	}
	return nil, err
}

// startEngineCluster starts n clustered stores together (they need each other to place
// their streams) and gives up after engineClusterStartTimeout.
func startEngineCluster(ctx context.Context, dir string, n, roomShards int, log *slog.Logger) ([]*store.Store, error) {
	addrs, err := distinctLoopbackAddrs(n)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, engineClusterStartTimeout)
	defer cancel()
	stores := make([]*store.Store, n)
	errs := make([]error, n)
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
		Cluster: &store.ClusterOptions{Name: "bench-engine", DC: fmt.Sprintf("dc%d", i%engineDCs+1), Listen: addrs[i],
			Routes: routes, Size: len(addrs)},
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
