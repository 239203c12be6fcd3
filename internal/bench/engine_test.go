package bench

import (
	"context"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/firebreak/firebreak/internal/store"
)

func TestMeasureEngine(t *testing.T) {
	if testing.Short() {
		t.Skip("opens JetStream")
	}
	t.Setenv("GOMAXPROCS", "") // as a node finds it when the operator has not set it
	procsBefore := runtime.GOMAXPROCS(0)
	for _, tc := range []struct {
		name    string
		measure func(context.Context, EngineOptions) (*EngineResult, error)
		servers int // asked for
		want    int // started
	}{
		{"R1", MeasureEngine, 0, 1},
		{"R3", MeasureEngineCluster, 0, 3},
		{"R3 over six servers", MeasureEngineCluster, 6, 6},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			res, err := tc.measure(ctx, EngineOptions{Dir: t.TempDir(), Duration: 500 * time.Millisecond, InFlight: 32, MessageBytes: 300,
				Streams: 4, Servers: tc.servers})
			if err != nil {
				t.Fatal(err)
			}
			if res.SyncPerSec <= 0 || res.AsyncPerSec <= 0 || res.MessageBytes != 300 || res.Servers != tc.want ||
				!strings.Contains(res.Method, " 4 shard streams") {
				t.Errorf("engine result %+v", res)
			}
			// Measured with the processors its nodes run with, and the setting put back.
			if want, _ := store.ProcsForEmbedded(tc.want); res.GoProcs != want {
				t.Errorf("measured with %d Go processors, want %d", res.GoProcs, want)
			}
			if got := runtime.GOMAXPROCS(0); got != procsBefore {
				t.Errorf("GOMAXPROCS left at %d, was %d", got, procsBefore)
			}
			t.Logf("%s: %.0f/s one at a time, %.0f/s pipelined", tc.name, res.SyncPerSec, res.AsyncPerSec)
		})
	}
}
