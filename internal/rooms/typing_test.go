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

// TestTypingExpiries: an indicator renewed again and again keeps one timer; stopping typing,
// running out and the node's stop each drop it, and running out still wakes the room.
func TestTypingExpiries(t *testing.T) {
	m := newTypingModel()
	woken := make(chan string, 8)
	m.onChange = func(roomID string) { woken <- roomID }
	timers := func() int {
		m.mu.Lock()
		defer m.mu.Unlock()
		return len(m.expiries)
	}
	typing := func(user string, on bool, ms int64) {
		m.apply(typingUpdate{RoomID: "!r:x", UserID: user, Typing: on, Timeout: ms})
		<-woken
	}
	for range 5 {
		typing("@a:x", true, 60_000)
	}
	if n := timers(); n != 1 {
		t.Fatalf("%d timers after renewing one indicator, want 1", n)
	}
	typing("@a:x", false, 0)
	if n := timers(); n != 0 {
		t.Fatalf("%d timers after the user stopped typing, want 0", n)
	}
	typing("@b:x", true, 20)
	select {
	case <-woken:
	case <-time.After(10 * time.Second):
		t.Fatal("running out did not wake the room")
	}
	if n := timers(); n != 0 {
		t.Errorf("%d timers after the indicator ran out, want 0", n)
	}
	typing("@c:x", true, 60_000)
	m.stop()
	if n := timers(); n != 0 {
		t.Errorf("%d timers after stop, want 0", n)
	}
}
