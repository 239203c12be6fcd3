package api

import (
	"net/http/httptest"
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

func TestClientIP(t *testing.T) {
	for _, tc := range []struct {
		name       string
		xForwarded bool
		header     []string
		want       string
	}{
		{"direct", false, nil, "192.0.2.1"},
		{"direct ignores the header", false, []string{"198.51.100.1"}, "192.0.2.1"},
		{"behind a proxy", true, []string{"198.51.100.1"}, "198.51.100.1"},
		{"the proxy's entry, not the client's own", true, []string{"203.0.113.9, 198.51.100.1"}, "198.51.100.1"},
		{"the last header line", true, []string{"203.0.113.9", "198.51.100.2 "}, "198.51.100.2"},
		{"no header behind a proxy", true, nil, "192.0.2.1"},
		{"an empty entry", true, []string{"198.51.100.1, "}, "192.0.2.1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := &Server{Deps: Deps{Config: config.Config{XForwarded: tc.xForwarded}}}
			r := httptest.NewRequest("GET", "/", nil)
			r.RemoteAddr = "192.0.2.1:4711"
			r.Header["X-Forwarded-For"] = tc.header
			if got := srv.clientIP(r); got != tc.want {
				t.Errorf("clientIP = %q, want %q", got, tc.want)
			}
		})
	}
}

// Tokens held are not there for others, so parallel attempts cannot share the last one; a
// held token given back is there for the next attempt, one taken is not.
func TestLimiterHold(t *testing.T) {
	l := newLimiter(config.RateLimit{PerSecond: 0.001, BurstCount: 2})
	first, err := l.hold("k")
	if err != nil {
		t.Fatal(err)
	}
	second, err := l.hold("k")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := l.hold("k"); err == nil {
		t.Fatal("a third token held from a bucket of two")
	}
	first(false)
	third, err := l.hold("k")
	if err != nil {
		t.Fatalf("the token given back is not there: %v", err)
	}
	second(true)
	third(true)
	if err := l.check("k"); err == nil {
		t.Error("two failed attempts left a token in a bucket of two")
	}
	if len(l.held) != 0 {
		t.Errorf("held tokens left over: %v", l.held)
	}
}
