package bench

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/firebreak/firebreak/internal/store"
)

// EngineOptions say how to measure the storage engine on its own.
type EngineOptions struct {
	Binary       string        // the firebreak executable, which runs each server (EngineServerCommand)
	Dir          string        // an empty directory for the engine's data
	Duration     time.Duration // per publish mode
	InFlight     int           // publishes outstanding at once in the pipelined mode
	MessageBytes int
	Streams      int          // shard streams to spread the publishes over
	Servers      int          // 1: a single node; more: a cluster of as many as the deployment's nodes
	Log          *slog.Logger // the bench's own messages
}

func (o EngineOptions) log() *slog.Logger {
	if o.Log == nil {
		return slog.New(slog.DiscardHandler)
	}
	return o.Log
}

// EngineResult is the raw publish rate of JetStream as Firebreak configures it: file
// storage, fsync on every write, the same stream settings as a room shard.
type EngineResult struct {
	Replicas     int     `json:"replicas"`
	Servers      int     `json:"servers"` // JetStream servers in the measured cluster (1 for a single node)
	MessageBytes int     `json:"message_bytes"`
	SyncPerSec   float64 `json:"sync_publish_per_sec"`  // one publish at a time, each waiting for its ack
	SyncP50Ms    float64 `json:"sync_publish_p50_ms"`   // one publish's round trip
	AsyncPerSec  float64 `json:"async_publish_per_sec"` // InFlight publishes outstanding at once: the best of Pipelined
	AsyncP99Ms   float64 `json:"async_publish_p99_ms"`
	AsyncStreams int     `json:"async_streams"` // the streams the best pipelined rate was spread over
	InFlight     int     `json:"async_in_flight"`
	// Pipelined is the pipelined rate over each spread tried. Which spread the engine likes
	// depends on the layout: one server fsyncs each stream's messages one at a time and is
	// fastest over many streams; a cluster's Raft group writes the proposals queued while it
	// was busy as one entry and is fastest over few (docs/PERFORMANCE.md, "The engine at its
	// best").
	Pipelined []SpreadRate `json:"pipelined"`
	Method    string       `json:"method"`
	GoProcs   int          `json:"go_procs"` // GOMAXPROCS while measuring: what the nodes it stands for run with
}

// SpreadRate is the pipelined publish rate over a number of streams.
type SpreadRate struct {
	Streams int     `json:"streams"`
	PerSec  float64 `json:"per_sec"`
	P99Ms   float64 `json:"p99_ms"`
}

// measurePublishes runs the one-at-a-time mode, then the pipelined mode over each spread of
// streams (engineSpreads), against an open store, and keeps the best pipelined rate: the
// baseline is what the engine can do on this deployment, not what it does over one layout.
//
// Publishing goes through store.AppendRoomEvent, as every Firebreak send does: a plain
// JetStream publish plus the expected-last-subject-sequence header. Each publisher appends
// to a room subject of its own so the compare never fails; the one-at-a-time mode uses one
// room (one stream), the pipelined mode's rooms fall evenly on the streams of its spread. It
// keeps InFlight appends outstanding from as many goroutines on the store's one connection,
// which is what an async publish with that many pending acks does on the wire.
func measurePublishes(ctx context.Context, st *store.Store, servers, replicas int, opts EngineOptions) (*EngineResult, error) {
	payload := []byte(`{"body":"` + strings.Repeat("x", max(opts.MessageBytes-11, 0)) + `"}`)
	res := &EngineResult{Replicas: replicas, Servers: servers, MessageBytes: len(payload), InFlight: opts.InFlight,
		Method:  fmt.Sprintf("store.AppendRoomEvent, fsync always, %d shard streams, a process per server", st.Shards()),
		GoProcs: runtime.GOMAXPROCS(0)}
	rate, h, err := publishFor(ctx, st, payload, "sync", 1, 1, opts.Duration)
	if err != nil {
		return nil, err
	}
	res.SyncPerSec, res.SyncP50Ms = rate, Ms(h.Quantile(0.5))
	for _, spread := range engineSpreads(st.Shards()) {
		rate, h, err = publishFor(ctx, st, payload, "async", opts.InFlight, spread, opts.Duration)
		if err != nil {
			return nil, err
		}
		res.Pipelined = append(res.Pipelined, SpreadRate{Streams: spread, PerSec: rate, P99Ms: Ms(h.Quantile(0.99))})
	}
	best := bestSpread(res.Pipelined)
	res.AsyncPerSec, res.AsyncP99Ms, res.AsyncStreams = best.PerSec, best.P99Ms, best.Streams
	return res, nil
}

// bestSpread is the spread with the highest rate (the first of equals).
func bestSpread(spreads []SpreadRate) SpreadRate {
	var best SpreadRate
	for _, s := range spreads {
		if s.PerSec > best.PerSec {
			best = s
		}
	}
	return best
}

// engineSpreads are the numbers of streams the pipelined mode is spread over, out of the
// store's shards: one, four and all of them.
func engineSpreads(shards int) []int {
	var spreads []int
	for _, n := range []int{1, 4, shards} {
		if n <= shards && !slices.Contains(spreads, n) {
			spreads = append(spreads, n)
		}
	}
	return spreads
}

// measuring is how long measurePublishes publishes: the one-at-a-time mode and each spread.
func (o EngineOptions) measuring() time.Duration {
	return time.Duration(1+len(engineSpreads(o.Streams))) * o.Duration
}

// publishFor runs workers publishers for d, each on a room of its own (named after the mode,
// so no two modes share a room), the rooms spread evenly over the first streams shards, and
// returns the acknowledged publishes per second and their round trips.
func publishFor(ctx context.Context, st *store.Store, payload []byte, mode string, workers, streams int, d time.Duration) (float64, *histogram, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	start := time.Now()
	stopAt := start.Add(d)
	var acked atomic.Uint64
	var firstErr error
	var once sync.Once
	h := &histogram{}
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			roomID := roomOnShard(fmt.Sprintf("!engine-%s-%d-%d", mode, streams, w), w%streams, st.RoomShard)
			var head uint64
			for ctx.Err() == nil && time.Now().Before(stopAt) {
				t0 := time.Now()
				seq, err := st.AppendRoomEvent(ctx, roomID, head, store.NewRoomEvent{JSON: payload})
				if errors.Is(err, store.ErrConflict) {
					// An attempt that timed out under load landed after all: go on from the
					// stored head; only acknowledged publishes count.
					if head, err = conflictHead(ctx, st, roomID, err); err == nil {
						continue
					}
				}
				if err != nil {
					once.Do(func() { firstErr = fmt.Errorf("engine publish: %w", err); cancel() })
					return
				}
				h.Record(time.Since(t0))
				head = seq
				acked.Add(1)
			}
		}()
	}
	wg.Wait()
	return float64(acked.Load()) / time.Since(start).Seconds(), h, firstErr
}

// roomOnShard is a room id starting with prefix that shardOf puts in the given shard: a
// room's shard is a hash of its id, so it tries suffixes until one lands there.
func roomOnShard(prefix string, shard int, shardOf func(roomID string) int) string {
	for i := 0; ; i++ {
		if id := fmt.Sprintf("%s-%d:bench", prefix, i); shardOf(id) == shard {
			return id
		}
	}
}

// conflictHead is the head a lost compare-and-append names, or, when it names none (another
// append to the subject was still in flight), the head read back.
func conflictHead(ctx context.Context, st *store.Store, roomID string, conflict error) (uint64, error) {
	if c := (*store.ConflictError)(nil); errors.As(conflict, &c) && c.Head > 0 {
		return c.Head, nil
	}
	return st.RoomHeadSeq(ctx, roomID)
}
