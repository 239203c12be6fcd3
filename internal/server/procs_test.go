package server

import (
	"log/slog"
	"runtime"
	"testing"

	"github.com/firebreak/firebreak/internal/config"
)

func TestAddProcsForFsync(t *testing.T) {
	before := runtime.GOMAXPROCS(0)
	t.Cleanup(func() { runtime.GOMAXPROCS(before) })
	tests := []struct {
		name, env, natsURL string
		want               int
	}{
		{"embedded JetStream", "", "", before + 2},
		{"GOMAXPROCS set by the operator", "3", "", before},
		{"external NATS", "", "nats://127.0.0.1:4222", before},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			runtime.GOMAXPROCS(before)
			t.Setenv("GOMAXPROCS", tt.env)
			cfg := config.Default()
			cfg.NATSURL = tt.natsURL
			AddProcsForFsync(cfg, slog.New(slog.DiscardHandler))
			if got := runtime.GOMAXPROCS(0); got != tt.want {
				t.Errorf("GOMAXPROCS %d, want %d", got, tt.want)
			}
		})
	}
}
