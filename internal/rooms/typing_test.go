package rooms

import (
	"math"
	"testing"
	"time"
)

// TestTypingTimeoutIsClamped: a typing indicator lasts what the update asks, at most
// maxTypingTimeout, also when the milliseconds asked for overflow a Duration.
func TestTypingTimeoutIsClamped(t *testing.T) {
	cases := []struct {
		name      string
		timeoutMS int64
		want      time.Duration
	}{
		{"one second", 1000, time.Second},
		{"ten minutes", (10 * time.Minute).Milliseconds(), maxTypingTimeout},
		{"past a Duration's range", math.MaxInt64, maxTypingTimeout},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			m := newTypingModel()
			before := time.Now()
			m.apply(typingUpdate{RoomID: "!r:x", UserID: "@u:x", Typing: true, Timeout: tc.timeoutMS})
			after := time.Now()
			m.mu.Lock()
			until, ok := m.until["!r:x"]["@u:x"]
			m.mu.Unlock()
			if !ok {
				t.Fatalf("the user is not typing")
			}
			if until.Before(before.Add(tc.want)) || until.After(after.Add(tc.want)) {
				t.Errorf("typing until %v after the update, want %v", until.Sub(before), tc.want)
			}
		})
	}
}
