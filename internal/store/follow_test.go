package store

import (
	"context"
	"errors"
	"log/slog"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// runningFollower is FollowShard running in the background.
type runningFollower struct {
	events chan RoomEvent
	done   chan error
	cancel context.CancelFunc
}

func startFollower(t *testing.T, st *Store, shard int, afterSeq uint64) *runningFollower {
	t.Helper()
	ctx, cancel := context.WithCancel(t.Context())
	f := &runningFollower{events: make(chan RoomEvent, 16), done: make(chan error, 1), cancel: cancel}
	go func() { f.done <- st.FollowShard(ctx, shard, afterSeq, func(evs []RoomEvent) { f.events <- evs[0] }) }()
	return f
}

func (f *runningFollower) next(t *testing.T) RoomEvent {
	t.Helper()
	select {
	case e := <-f.events:
		return e
	case err := <-f.done:
		f.done <- err // for stop
		t.Fatalf("follower ended before the next event: %v", err)
	case <-time.After(30 * time.Second):
		t.Fatal("no event after 30 s")
	}
	return RoomEvent{}
}

func (f *runningFollower) stop() {
	f.cancel()
	<-f.done
}

// followerHost names the server holding the shard's one consumer. A consumer just created
// can be missing from the listing, or listed without its leader, for a moment: it asks again
// for up to 5 s.
func followerHost(t *testing.T, st *Store, shard int) string {
	t.Helper()
	var hosts []string
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if hosts = consumerHosts(t, st, shard); len(hosts) == 1 && hosts[0] != "" {
			return hosts[0]
		}
	}
	t.Fatalf("consumer hosts %v, want one", hosts)
	return ""
}

// consumerHosts names the server holding each consumer of the shard's stream.
func consumerHosts(t *testing.T, st *Store, shard int) []string {
	t.Helper()
	var hosts []string
	list := st.streams[shard].ListConsumers(t.Context())
	for ci := range list.Info() {
		if ci.Cluster != nil {
			hosts = append(hosts, ci.Cluster.Leader)
		}
	}
	if err := list.Err(); err != nil {
		t.Fatalf("list consumers: %v", err)
	}
	return hosts
}

// openWithOneEvent opens clustered stores, closed when the test ends, and stores one event in
// shard 0, at position first.
func openWithOneEvent(t *testing.T, opts []Options) (stores []*Store, first uint64) {
	t.Helper()
	stores = openAll(t, opts)
	for _, st := range stores {
		t.Cleanup(st.Close)
	}
	room := roomsInShard(stores[0], 0, 1)[0]
	first, err := stores[0].AppendRoomEvent(t.Context(), room, 0, NewRoomEvent{JSON: []byte(`{"i":1}`)})
	if err != nil {
		t.Fatal(err)
	}
	return stores, first
}

// TestFollowShardEndsWhenItsConsumerIsLost: a follower whose consumer's server goes away
// returns an error instead of waiting on it, so its caller restarts it on a live server, and
// the restart from where it stopped misses nothing.
func TestFollowShardEndsWhenItsConsumerIsLost(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a three-node JetStream cluster")
	}
	opts := clusterOptions(t, 3)
	stores, first := openWithOneEvent(t, opts)
	st := stores[0]

	// The follower's consumer is placed at random among the stream's three servers (as for a
	// node that holds no replica); the one to lose must not be the follower's own.
	st.placementTries = 1
	var f *runningFollower
	var host string
	for host == "" || host == opts[0].NodeName {
		if f != nil {
			f.stop()
		}
		f = startFollower(t, st, 0, 0)
		if e := f.next(t); e.Seq != first {
			t.Fatalf("first event at %d, want %d", e.Seq, first)
		}
		host = followerHost(t, st, 0)
	}
	for i, o := range opts {
		if o.NodeName == host {
			stores[i].Close()
		}
	}
	select {
	case err := <-f.done:
		if err == nil || errors.Is(err, context.Canceled) {
			t.Fatalf("follower ended with %v, want the lost consumer's error", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the follower still waits 30 s after its consumer's server went away")
	}

	second, err := st.AppendRoomEvent(t.Context(), roomsInShard(st, 0, 1)[0], first, NewRoomEvent{JSON: []byte(`{"i":2}`)})
	if err != nil {
		t.Fatal(err)
	}
	// Restarted as the rooms service does, from the last event it applied.
	ctx, cancel := context.WithCancel(t.Context())
	got := make(chan RoomEvent, 16)
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		KeepFollowing(ctx, slog.New(slog.NewTextHandler(t.Output(), nil)), "shard 0", func() error {
			return st.FollowShard(ctx, 0, first, func(evs []RoomEvent) { got <- evs[0] })
		})
	}()
	defer func() { cancel(); <-stopped }()
	select {
	case e := <-got:
		if e.Seq != second || string(e.JSON) != `{"i":2}` {
			t.Fatalf("after the restart got seq %d %s, want %d {\"i\":2}", e.Seq, e.JSON, second)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("nothing delivered 30 s after the restart")
	}
}

// TestFollowersReadANearReplica: a node follows a shard's stream through a consumer on its own
// server when that holds a replica, else on the replica in its data center, so its reads
// cross no data center and outlive any other. Four nodes over three data centers, three
// replicas: one of dc1's two nodes holds no replica. JetStream alone would place a third of
// the followers there.
func TestFollowersReadANearReplica(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a four-node JetStream cluster")
	}
	opts := clusterOptions(t, 4)
	for i := range opts {
		opts[i].Replicas = 3
	}
	opts[3].Cluster.DC = "dc1"
	stores, _ := openWithOneEvent(t, opts)
	holds := func(i int) bool {
		return stores[i].ns.JetStreamIsStreamAssigned(server.DEFAULT_GLOBAL_ACCOUNT, shardStreamName(0))
	}
	// Each placement misses with odds of (2/3)^12, so one miss per node is already unlikely.
	for i, st := range stores {
		want, tries := opts[i].NodeName, 3
		if !holds(i) { // n1 or n4, dc1's two nodes (dc2's and dc3's hold one each): the other does
			want, tries = opts[3-i].NodeName, 6
		}
		near := 0
		for range tries {
			f := startFollower(t, st, 0, 0)
			f.next(t)
			if followerHost(t, st, 0) == want {
				near++
			}
			f.stop()
		}
		if near < tries-1 {
			t.Errorf("%d of %s's %d followers were held by %s", near, opts[i].NodeName, tries, want)
		}
	}
}
