package store

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/firebreak/firebreak/internal/testnet"
)

// clusterOptions are n nodes, one per data center, routed to each other. Their cluster ports
// are picked free on a loopback address of the test's own (127.x.y.z): a port is free only
// until it is taken, and tests of other packages running at once pick theirs on 127.0.0.1.
func clusterOptions(t *testing.T, n int) []Options {
	t.Helper()
	addrs := testnet.LoopbackAddrs(t, n)
	opts := make([]Options, n)
	for i := range opts {
		opts[i] = Options{DataDir: t.TempDir(), NodeName: fmt.Sprintf("n%d", i+1), Replicas: n, RoomShards: 2,
			Cluster: &ClusterOptions{Name: "fence-test", DC: fmt.Sprintf("dc%d", i+1), Listen: addrs[i], Routes: addrs},
			Logger:  slog.New(slog.DiscardHandler)}
	}
	return opts
}

// openAll opens the nodes at once (each waits for the others to place streams). A node that
// cannot open fails the test within a minute rather than leaving the others waiting for it.
func openAll(t *testing.T, opts []Options) []*Store {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	stores := make([]*Store, len(opts))
	errs := make([]error, len(opts))
	var wg sync.WaitGroup
	for i := range opts {
		wg.Add(1)
		go func() {
			defer wg.Done()
			stores[i], errs[i] = Open(ctx, opts[i])
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			for _, st := range stores {
				if st != nil {
					st.Close()
				}
			}
			t.Fatalf("open %s: %v", opts[i].NodeName, err)
		}
	}
	return stores
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(30 * time.Second); !cond(); time.Sleep(100 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting until %s", what)
		}
	}
}

// TestFenceWhileCutOff: a node whose peers all go away stops its JetStream and refuses reads
// and writes at once; when they come back it starts JetStream again with its data, and its
// client port still wants this process's passwords (the restart renders the configuration
// again). The node cut off is the meta leader, which must hand its leadership over before it
// stops rather than wait for a transfer it cannot make (stepDownMetaLeader).
func TestFenceWhileCutOff(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a three-node JetStream cluster")
	}
	opts := clusterOptions(t, 3)
	stores := openAll(t, opts)
	lead := -1
	waitFor(t, "a meta leader", func() bool {
		lead = slices.IndexFunc(stores, func(st *Store) bool { return st.ns.JetStreamIsLeader() })
		return lead >= 0
	})
	st := stores[lead]
	defer st.Close()
	ctx := context.Background()
	sys, err := nats.Connect("", nats.InProcessServer(st.ns), st.opts.systemUser(),
		nats.ErrorHandler(func(*nats.Conn, *nats.Subscription, error) {})) // the refusal below is expected
	if err != nil {
		t.Fatal(err)
	}
	if _, err := sys.Request("$SYS.REQ.SERVER.PING.VARZ", nil, time.Second); err == nil {
		t.Error("the system user may ask the servers for more than a meta leader stepdown")
	}
	sys.Close()
	if _, err := st.CreateOrGet(ctx, BucketServer, "before", []byte("kept")); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the meta leader reaches all three DCs", func() bool { h := st.Health(); return h.Writable && h.DCs == 3 })

	var others []Options
	for i, other := range stores {
		if i != lead {
			other.Close()
			others = append(others, opts[i])
		}
	}
	fencing := st.Fencing()
	waitFor(t, "the meta leader fences", func() bool { return st.isFenced() && !st.ns.JetStreamEnabled() })
	if !st.fence.handedOverMeta.Load() {
		t.Error("the meta leader stopped JetStream without stepping down first")
	}
	select {
	case <-fencing:
	default:
		t.Error("Fencing's channel is still open on a fenced node")
	}
	if h := st.Health(); h.Writable || !h.Fenced || h.KnownDCs != 3 {
		t.Errorf("health while fenced = %+v", h)
	}
	start := time.Now()
	if _, _, err := st.Get(ctx, BucketServer, "before"); err == nil || time.Since(start) > time.Second {
		t.Fatalf("a fenced node's read: %v after %s; want an error at once", err, time.Since(start))
	}

	for _, other := range openAll(t, others) {
		defer other.Close()
	}
	waitFor(t, "the meta leader restarts JetStream", func() bool { return !st.isFenced() && st.ns.JetStreamEnabled() })
	select {
	case <-st.Fencing():
		t.Error("after the restart Fencing hands out a closed channel")
	default:
	}
	if nc, err := nats.Connect(st.ns.ClientURL()); err == nil {
		nc.Close()
		t.Fatal("the client port let a connection in without a password after the restart")
	}
	got, _, err := st.Get(ctx, BucketServer, "before")
	if err != nil || string(got) != "kept" {
		t.Fatalf("after the restart read %q, %v; want kept", got, err)
	}
	if _, err := st.CreateOrGet(ctx, BucketServer, "after", []byte("new")); err != nil {
		t.Fatalf("write after the restart: %v", err)
	}
}
