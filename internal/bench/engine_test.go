package bench

import (
	"context"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/firebreak/firebreak/internal/store"
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
