package bench

import (
	"context"
	"strings"
	"testing"
	"time"
)

func TestMeasureEngine(t *testing.T) {
	if testing.Short() {
		t.Skip("opens JetStream")
	}
	for name, measure := range map[string]func(context.Context, EngineOptions) (*EngineResult, error){
		"R1": MeasureEngine, "R3": MeasureEngine3,
	} {
		t.Run(name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			res, err := measure(ctx, EngineOptions{Dir: t.TempDir(), Duration: 500 * time.Millisecond, InFlight: 32, MessageBytes: 300,
				RoomShards: 4})
			if err != nil {
				t.Fatal(err)
			}
			if res.SyncPerSec <= 0 || res.AsyncPerSec <= 0 || res.MessageBytes != 300 ||
				!strings.Contains(res.Method, " 4 shard streams") {
				t.Errorf("engine result %+v", res)
			}
			t.Logf("%s: %.0f/s one at a time, %.0f/s pipelined", name, res.SyncPerSec, res.AsyncPerSec)
		})
	}
}
