package store

import (
	"context"
	"maps"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

func TestPickNear(t *testing.T) {
	dcs := map[string]string{"a1": "dc1", "a2": "dc1", "b1": "dc2", "c1": "dc3"}
	set := func(names ...string) map[string]bool {
		m := map[string]bool{}
		for _, n := range names {
			m[n] = true
		}
		return m
	}
	tests := []struct {
		name    string
		current map[string]bool
		own     string
		ownDC   string
		want    map[string]bool
	}{
		{"own server current", set("a1", "b1", "c1"), "a1", "dc1", set("a1")},
		{"own server behind: its data center's other", set("a2", "b1", "c1"), "a1", "dc1", set("a2")},
		{"no replica here: the data center's", set("a1", "b1", "c1"), "a2", "dc1", set("a1")},
		{"none current in the data center: any current", set("b1", "c1"), "a1", "dc1", set("b1", "c1")},
		{"a data center not recorded", set("a1", "b1"), "x1", "dc9", set("a1", "b1")},
		{"no data center configured", set("b1", "c1"), "a2", "", set("b1", "c1")},
		{"the leader did not answer", nil, "a1", "dc1", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := pickNear(tt.current, tt.own, tt.ownDC, func(name string) string { return dcs[name] })
			if !maps.Equal(got, tt.want) || (got == nil) != (tt.want == nil) {
				t.Fatalf("got %v, want %v", got, tt.want)
			}
		})
	}
}

func TestReplicaCurrent(t *testing.T) {
	seen := func(mut func(*jetstream.PeerInfo)) *jetstream.PeerInfo {
		p := &jetstream.PeerInfo{Name: "b1", Active: 300 * time.Millisecond, Lag: 3}
		mut(p)
		return p
	}
	tests := []struct {
		name string
		peer *jetstream.PeerInfo
		want bool
	}{
		{"seen lately, a few entries behind", seen(func(*jetstream.PeerInfo) {}), true},
		{"offline", seen(func(p *jetstream.PeerInfo) { p.Offline = true }), false},
		{"not in the group yet", seen(func(p *jetstream.PeerInfo) { p.Pending = true }), false},
		{"never seen by a new leader", seen(func(p *jetstream.PeerInfo) { p.Active = 0 }), false},
		{"not heard from for 2 s", seen(func(p *jetstream.PeerInfo) { p.Active = replicaSeenWithin }), false},
		{"far behind", seen(func(p *jetstream.PeerInfo) { p.Lag = replicaLagAllowed + 1 }), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := replicaCurrent(tt.peer); got != tt.want {
				t.Fatalf("replicaCurrent(%+v) = %v, want %v", *tt.peer, got, tt.want)
			}
		})
	}
}

// A server's recorded data center is read again once the copy this node holds is older than
// serverDCFresh: a node rebuilt under its old name in another data center is placed there.
// While it cannot be read, the stale copy serves.
func TestDCOfReadsAgainWhenStale(t *testing.T) {
	st := openStore(t)
	ctx := context.Background()
	record := func(dc string) {
		t.Helper()
		if _, err := st.Put(ctx, BucketServer, nodeDCKey("n1"), []byte(dc)); err != nil {
			t.Fatal(err)
		}
	}
	record("dc1")
	if got := st.dcOf(ctx, "n1"); got != "dc1" {
		t.Fatalf("dcOf = %q, want dc1", got)
	}
	record("dc4")
	if got := st.dcOf(ctx, "n1"); got != "dc1" {
		t.Errorf("dcOf within serverDCFresh = %q, want the copy read before, dc1", got)
	}
	st.serverDCs.Store("n1", serverDC{dc: "dc1", read: time.Now().Add(-serverDCFresh)})
	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	if got := st.dcOf(cancelled, "n1"); got != "dc1" {
		t.Errorf("dcOf once stale, unreadable = %q, want the copy it had, dc1", got)
	}
	if got := st.dcOf(ctx, "n1"); got != "dc4" {
		t.Errorf("dcOf once stale = %q, want dc4", got)
	}
	if got := st.dcOf(ctx, "n2"); got != "" {
		t.Errorf("dcOf of a server that recorded none = %q", got)
	}
}
