package api

import (
	"testing"

	"github.com/firebreak/firebreak/internal/config"
)

// check never uses up the bucket; allow does, and then both refuse.
func TestLimiterCheckTakesNothing(t *testing.T) {
	l := newLimiter(config.RateLimit{PerSecond: 0.001, BurstCount: 2})
	steps := []struct {
		op      string
		refused bool
	}{
		{"check", false}, {"check", false}, {"check", false},
		{"allow", false}, {"check", false}, {"allow", false},
		{"check", true}, {"allow", true},
	}
	for i, st := range steps {
		op := l.allow
		if st.op == "check" {
			op = l.check
		}
		if err := op("1.2.3.4"); (err != nil) != st.refused {
			t.Fatalf("step %d (%s): err %v, want refused=%v", i, st.op, err, st.refused)
		}
	}
	if err := l.allow("5.6.7.8"); err != nil {
		t.Errorf("another address was limited too: %v", err)
	}
}
