// Package storetest opens real single-node stores for the tests of the packages above the
// store: no JetStream mock, the embedded server in a temporary directory.
package storetest

import (
	"context"
	"log/slog"
	"testing"

	"github.com/firebreak/firebreak/internal/store"
)

// Open opens a one-replica store in dir (a fresh temporary directory when empty) with four
// room shards, closed when the test ends.
func Open(t testing.TB, dir string) *store.Store {
	t.Helper()
	if dir == "" {
		dir = t.TempDir()
	}
	st, err := store.Open(context.Background(), store.Options{DataDir: dir, NodeName: "test", Replicas: 1, RoomShards: 4,
		Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatalf("open store: %v", err)
	}
	t.Cleanup(st.Close)
	return st
}
