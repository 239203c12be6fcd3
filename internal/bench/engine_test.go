package bench

import (
	"context"
	"fmt"
	"hash/crc32"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/firebreak/firebreak/internal/store"
	"github.com/firebreak/firebreak/internal/store/storetest"
)

func TestMeasureEngine(t *testing.T) {
	if testing.Short() {
		t.Skip("opens JetStream")
	}
	t.Setenv("GOMAXPROCS", "")  // as a node finds it when the operator has not set it
	bin, err := os.Executable() // TestMain runs the engine's servers
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name     string
		servers  int // asked for
		want     int // started
		replicas int
	}{
		{"R1", 1, 1, 1},
		{"R3", 2, 3, 3},
		{"R3 over six servers", 6, 6, 3},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			res, err := MeasureEngine(ctx, EngineOptions{Binary: bin, Dir: t.TempDir(), Duration: 500 * time.Millisecond,
				InFlight: 32, MessageBytes: 300, Streams: 4, Servers: tc.servers})
			if err != nil {
				t.Fatal(err)
			}
			if res.SyncPerSec <= 0 || res.AsyncPerSec <= 0 || res.MessageBytes != 300 || res.Servers != tc.want ||
				res.Replicas != tc.replicas ||
				!strings.Contains(res.Method, " 4 shard streams") {
				t.Errorf("engine result %+v", res)
			}
			checkBestSpread(t, res, []int{1, 4})
			// Measured with the processors a node, which embeds one server, runs with.
			if want, _ := store.ProcsForEmbedded(1); res.GoProcs != want {
				t.Errorf("measured with %d Go processors, want %d", res.GoProcs, want)
			}
			t.Logf("%s: %.0f/s one at a time, %.0f/s pipelined", tc.name, res.SyncPerSec, res.AsyncPerSec)
		})
	}
}

// TestMeasureEngineServerFails: a server that exits before it is ready is an error, after the
// attempts, with what it said; nothing is left waiting.
func TestMeasureEngineServerFails(t *testing.T) {
	bin, err := exec.LookPath("false")
	if err != nil {
		t.Skip("no false(1) here")
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	_, err = MeasureEngine(ctx, EngineOptions{Binary: bin, Dir: t.TempDir(), Duration: time.Second, InFlight: 1,
		MessageBytes: 300, Streams: 1, Servers: 3})
	if err == nil || !strings.Contains(err.Error(), "engine server exited") {
		t.Fatalf("got %v, want the server's exit", err)
	}
}

// checkBestSpread: the pipelined mode ran over each spread, and the result is the best of them.
func checkBestSpread(t *testing.T, res *EngineResult, spreads []int) {
	t.Helper()
	var ran []int
	for _, s := range res.Pipelined {
		ran = append(ran, s.Streams)
		if s.PerSec <= 0 {
			t.Errorf("over %d streams: %.0f publishes/s", s.Streams, s.PerSec)
		}
	}
	if !slices.Equal(ran, spreads) {
		t.Errorf("pipelined over %v streams, want %v", ran, spreads)
	}
	if best := bestSpread(res.Pipelined); res.AsyncPerSec != best.PerSec || res.AsyncStreams != best.Streams || res.AsyncP99Ms != best.P99Ms {
		t.Errorf("pipelined result %.0f over %d, want the best: %+v", res.AsyncPerSec, res.AsyncStreams, best)
	}
}

func TestBestSpread(t *testing.T) {
	one, four, all := SpreadRate{1, 900, 3}, SpreadRate{4, 700, 2}, SpreadRate{16, 1200, 1}
	for _, tc := range []struct {
		name    string
		spreads []SpreadRate
		want    SpreadRate
	}{
		{"none", nil, SpreadRate{}},
		{"first", []SpreadRate{one, four}, one},
		{"last", []SpreadRate{one, four, all}, all},
		{"middle", []SpreadRate{four, all, one}, all},
		{"equal rates keep the first", []SpreadRate{one, {4, 900, 9}}, one},
	} {
		if got := bestSpread(tc.spreads); got != tc.want {
			t.Errorf("%s: bestSpread = %+v, want %+v", tc.name, got, tc.want)
		}
	}
}

// TestPublishForLoadsItsSpread: a spread's publishes land on its streams and on no other, so
// the rate reported for one stream is one stream's.
func TestPublishForLoadsItsSpread(t *testing.T) {
	if testing.Short() {
		t.Skip("opens JetStream")
	}
	for _, streams := range []int{1, 2, 4} {
		t.Run(fmt.Sprintf("%d of 4", streams), func(t *testing.T) {
			st := storetest.Open(t, "")
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			rate, _, err := publishFor(ctx, st, []byte(`{"body":"x"}`), "async", 8, streams, 300*time.Millisecond)
			if err != nil || rate <= 0 {
				t.Fatalf("publishFor: %.0f/s, %v", rate, err)
			}
			for shard := range st.Shards() {
				head, err := st.ShardHead(ctx, shard)
				if err != nil {
					t.Fatal(err)
				}
				if loaded := head > 0; loaded != (shard < streams) {
					t.Errorf("shard %d holds %d messages after a spread over %d", shard, head, streams)
				}
			}
		})
	}
}

func TestEngineSpreads(t *testing.T) {
	for _, tc := range []struct {
		shards int
		want   []int
	}{
		{1, []int{1}},
		{2, []int{1, 2}},
		{4, []int{1, 4}},
		{16, []int{1, 4, 16}},
		{64, []int{1, 4, 64}},
	} {
		if got := engineSpreads(tc.shards); !slices.Equal(got, tc.want) {
			t.Errorf("engineSpreads(%d) = %v, want %v", tc.shards, got, tc.want)
		}
	}
}

// TestRoomOnShard: the rooms a spread publishes to fall on the shards it names, whatever
// the store's shard count.
func TestRoomOnShard(t *testing.T) {
	for _, shards := range []int{1, 4, 16} {
		shardOf := func(id string) int { return int(crc32.ChecksumIEEE([]byte(id)) % uint32(shards)) }
		for shard := range shards {
			id := roomOnShard(fmt.Sprintf("!t-%d", shards), shard, shardOf)
			if got := shardOf(id); got != shard || !strings.HasPrefix(id, fmt.Sprintf("!t-%d-", shards)) {
				t.Errorf("roomOnShard(%d of %d) = %s, on shard %d", shard, shards, id, got)
			}
		}
	}
}
