package store

import (
	"runtime"
	"testing"
)

func TestProcsForEmbedded(t *testing.T) {
	base := runtime.GOMAXPROCS(0)
	tests := []struct {
		name    string
		env     string
		servers int
		want    int
		wantOK  bool
	}{
		{"one node", "", 1, base + 2, true},
		{"the engine's three-server cluster in one process", "", 3, base + 6, true},
		{"GOMAXPROCS set by the operator", "3", 1, 0, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv("GOMAXPROCS", tt.env)
			got, ok := ProcsForEmbedded(tt.servers)
			if got != tt.want || ok != tt.wantOK {
				t.Errorf("ProcsForEmbedded(%d) = %d, %v; want %d, %v", tt.servers, got, ok, tt.want, tt.wantOK)
			}
		})
	}
}
