package store

import (
	"context"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
)

// The benchmarks run against a real embedded JetStream on b.TempDir() with the production
// settings (file storage, fsync on every write), so they measure what a send pays.

func openBenchStore(b *testing.B) *Store {
	return openBenchStoreWith(b, Options{RoomShards: 16})
}

// openBenchStoreWith opens a one-replica store in b.TempDir() with the options' shards and
// group commit.
func openBenchStoreWith(b *testing.B, opts Options) *Store {
	b.Helper()
	opts.DataDir = b.TempDir()
	st := openWith(b, opts)
	b.Cleanup(st.Close)
	return st
}

// benchEvent is about the size of a signed m.room.message event (≈ 600 bytes).
var benchEvent = []byte(`{"content":{"body":"` + strings.Repeat("x", 500) + `","msgtype":"m.text"}}`)

// BenchmarkAppendRoomEvent appends to one room, each append waiting for the previous one's
// acknowledgement: the cost of one send on a quiet server (a publish, an fsync, an ack).
func BenchmarkAppendRoomEvent(b *testing.B) {
	st := openBenchStore(b)
	ctx := context.Background()
	var head uint64
	b.SetBytes(int64(len(benchEvent)))
	for b.Loop() {
		seq, err := st.AppendRoomEvent(ctx, "!bench:localhost", head, NewRoomEvent{JSON: benchEvent})
		if err != nil {
			b.Fatal(err)
		}
		head = seq
	}
}

// BenchmarkAppendRoomEventParallel appends from GOMAXPROCS×16 goroutines, each to a room of
// its own (so no compare fails), spread over the shards: the store's throughput when many
// rooms are busy at once, one event per message over an external NATS's 16 shards, and
// grouped over a single node's one shard.
func BenchmarkAppendRoomEventParallel(b *testing.B) {
	for _, layout := range []struct {
		name string
		opts Options
	}{
		{"one per message", Options{RoomShards: 16}},
		{"group commit", Options{RoomShards: 1, GroupCommit: true}},
	} {
		b.Run(layout.name, func(b *testing.B) { benchmarkAppendParallel(b, openBenchStoreWith(b, layout.opts)) })
	}
}

func benchmarkAppendParallel(b *testing.B, st *Store) {
	ctx := context.Background()
	var next atomic.Int64
	b.SetBytes(int64(len(benchEvent)))
	b.SetParallelism(16)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		room := fmt.Sprintf("!bench%d:localhost", next.Add(1))
		var head uint64
		for pb.Next() {
			seq, err := st.AppendRoomEvent(ctx, room, head, NewRoomEvent{JSON: benchEvent})
			if err != nil {
				b.Error(err)
				return
			}
			head = seq
		}
	})
}

// BenchmarkAppendRoomEventDedup is an append that carries a dedup id, as every client send
// with a transaction id does.
func BenchmarkAppendRoomEventDedup(b *testing.B) {
	st := openBenchStore(b)
	ctx := context.Background()
	var head uint64
	i := 0
	for b.Loop() {
		i++
		seq, err := st.AppendRoomEvent(ctx, "!bench:localhost", head, NewRoomEvent{JSON: benchEvent,
			Device: "DEVICE", TxnID: fmt.Sprint(i), DedupID: fmt.Sprintf("dedup-%d", i)})
		if err != nil {
			b.Fatal(err)
		}
		head = seq
	}
}
