package store

import (
	"fmt"
	"testing"
)

// TestClusterReadsItsOwnWrites: in a three-node cluster a node reads what it has just been
// told is stored, and Modify decides on the latest value, whichever replica is nearest. From a
// trailing replica, a change that looked done already would be answered and never written:
// a client's acknowledged write, lost.
func TestClusterReadsItsOwnWrites(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a three-node JetStream cluster")
	}
	stores := openAll(t, clusterOptions(t, 3))
	for _, st := range stores {
		defer st.Close()
	}
	ctx := t.Context()
	// Several buckets, whose leaders sit on different nodes: whether a node's replica trails
	// depends on which nodes made up each write's quorum.
	buckets := []Bucket{BucketAccounts, BucketDevices, BucketFilters, BucketDirectory}
	const rounds = 25
	stale, lost := 0, 0
	for _, b := range buckets {
		for n, st := range stores {
			key := Key("user", fmt.Sprint(n))
			for i := range rounds {
				want := fmt.Sprintf("B%d", i)
				if _, err := st.Put(ctx, b, key, []byte(want)); err != nil {
					t.Fatalf("put: %v", err)
				}
				if got, _, err := st.Get(ctx, b, key); err != nil || string(got) != want {
					stale++
				}
				if _, err := st.Modify(ctx, b, key, func([]byte) ([]byte, error) { return []byte("A"), nil }); err != nil {
					t.Fatalf("modify: %v", err)
				}
				if got, _, err := st.latest(ctx, b, key); err != nil || string(got) != "A" {
					lost++
				}
			}
		}
	}
	if stale > 0 || lost > 0 {
		t.Errorf("of %d writes, %d read back stale through the node that wrote them, and %d modifications were lost",
			len(buckets)*len(stores)*rounds, stale, lost)
	}
}
