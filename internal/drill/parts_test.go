package drill

import (
	"bufio"
	"io"
	"log/slog"
	"net"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// echoServer answers every line with the same line until closed.
func echoServer(t *testing.T) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() { defer c.Close(); _, _ = io.Copy(c, c) }()
		}
	}()
	return ln
}

func testProxy(t *testing.T, latency time.Duration) *proxy {
	t.Helper()
	target := echoServer(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := startProxy(ln, linkSpec{FromDC: "dc1", ToNode: "n3", Target: target.Addr().String()}, latency, slog.Default())
	t.Cleanup(p.close)
	return p
}

func roundTrip(t *testing.T, c net.Conn, msg string) string {
	t.Helper()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Write([]byte(msg + "\n")); err != nil {
		t.Fatalf("write: %v", err)
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		t.Fatalf("read: %v", err)
	}
	return line[:len(line)-1]
}

func TestProxyForwardsInOrderWithLatency(t *testing.T) {
	p := testProxy(t, 20*time.Millisecond)
	c, err := net.Dial("tcp", p.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	start := time.Now()
	if got := roundTrip(t, c, "hello"); got != "hello" {
		t.Fatalf("echo through proxy = %q", got)
	}
	// One-way latency on each direction: a round trip takes at least twice the latency.
	if rtt := time.Since(start); rtt < 40*time.Millisecond {
		t.Errorf("round trip took %s, want at least 40ms", rtt)
	}
	// Many chunks written back to back arrive complete and in order.
	var want []byte
	for i := 0; i < 2000; i++ {
		want = append(want, byte('a'+i%26))
	}
	want = append(want, '\n')
	go func() { _, _ = c.Write(want) }()
	got := make([]byte, len(want))
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.ReadFull(c, got); err != nil || !slices.Equal(got, want) {
		t.Fatalf("bulk echo differs (err %v)", err)
	}
}

func TestProxyCutAndHeal(t *testing.T) {
	p := testProxy(t, 0)
	c, err := net.Dial("tcp", p.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	roundTrip(t, c, "before")
	p.Cut()
	// The open connection is closed...
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Read(make([]byte, 1)); err == nil {
		t.Fatal("connection still open after the cut")
	}
	// ...and a new one is closed at once.
	c2, err := net.Dial("tcp", p.Addr())
	if err == nil {
		_ = c2.SetReadDeadline(time.Now().Add(5 * time.Second))
		_, _ = c2.Write([]byte("x\n"))
		if _, err := c2.Read(make([]byte, 1)); err == nil {
			t.Fatal("a new connection got through the cut")
		}
		c2.Close()
	}
	p.Heal()
	c3, err := net.Dial("tcp", p.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c3.Close()
	if got := roundTrip(t, c3, "after"); got != "after" {
		t.Fatalf("after heal got %q", got)
	}
	if s := p.stats(); s.Refused == 0 || s.Accepted < 2 || s.Bytes == 0 {
		t.Errorf("stats %+v", s)
	}
}

func TestProxyBlackholeAndHeal(t *testing.T) {
	for _, latency := range []time.Duration{0, 5 * time.Millisecond} {
		t.Run(latency.String(), func(t *testing.T) {
			p := testProxy(t, latency)
			c, err := net.Dial("tcp", p.Addr())
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			r := bufio.NewReader(c)
			roundTrip(t, c, "before")
			p.Blackhole()
			// Nothing comes back while the link is silently cut, and the connection stays open.
			if _, err := c.Write([]byte("held\n")); err != nil {
				t.Fatal(err)
			}
			_ = c.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
			if line, err := r.ReadString('\n'); err == nil {
				t.Fatalf("got %q through the blackhole", line)
			} else if ne, ok := err.(net.Error); !ok || !ne.Timeout() {
				t.Fatalf("the connection failed instead of going silent: %v", err)
			}
			// A connection made meanwhile is accepted and carries nothing until the heal.
			c2, err := net.Dial("tcp", p.Addr())
			if err != nil {
				t.Fatal(err)
			}
			defer c2.Close()
			p.Heal()
			_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
			if line, err := r.ReadString('\n'); err != nil || line != "held\n" {
				t.Fatalf("after heal got %q, %v; want the held line", line, err)
			}
			if got := roundTrip(t, c2, "after"); got != "after" {
				t.Fatalf("a connection made during the blackhole got %q after heal", got)
			}
		})
	}
}

func TestPercentiles(t *testing.T) {
	var ds []time.Duration
	for i := 1; i <= 100; i++ {
		ds = append(ds, time.Duration(i)*time.Millisecond)
	}
	got := percentiles(ds)
	if got.P50 != 50 || got.P99 != 99 || got.Max != 100 || got.N != 100 {
		t.Errorf("percentiles = %+v", got)
	}
	if (percentiles(nil) != Percentiles{}) {
		t.Error("percentiles of nothing should be zero")
	}
}

func TestGaps(t *testing.T) {
	t0 := time.Unix(1000, 0)
	at := func(s float64) time.Time { return t0.Add(time.Duration(s * float64(time.Second))) }
	oks := []time.Time{at(1), at(2), at(7), at(8)}
	if g := longestGap(oks, at(0), at(10)); g != 5*time.Second {
		t.Errorf("longestGap = %s, want 5s", g)
	}
	if g := longestGap(nil, at(0), at(10)); g != 10*time.Second {
		t.Errorf("longestGap with no success = %s, want the window", g)
	}
	spans := []span{{at(-3), at(2)}, {at(4), at(7)}, {at(9), at(20)}}
	if g := longestOutage(spans, at(0), at(10)); g != 3*time.Second {
		t.Errorf("longestOutage = %s, want 3s (clipped to the window)", g)
	}
}

func TestPlanRooms(t *testing.T) {
	for _, tc := range []struct{ users, rooms int }{{30, 10}, {8, 4}, {2, 1}, {3, 9}} {
		plans := planRooms(tc.users, tc.rooms)
		if len(plans) != tc.rooms {
			t.Errorf("%d users, %d rooms: planned %d", tc.users, tc.rooms, len(plans))
		}
		inSome := map[int]bool{}
		for _, p := range plans {
			if len(p.Members) < 2 || p.Members[0] != p.Creator {
				t.Errorf("%d users, %d rooms: bad room %+v", tc.users, tc.rooms, p)
			}
			for _, m := range p.Members {
				inSome[m] = true
			}
		}
		if len(inSome) != tc.users {
			t.Errorf("%d users, %d rooms: only %d users in a room", tc.users, tc.rooms, len(inSome))
		}
	}
}

func TestParseProcAddr(t *testing.T) {
	got, err := parseProcAddr("0101007F:1F90")
	if err != nil || got != "127.0.1.1:8080" {
		t.Errorf("parseProcAddr = %q, %v", got, err)
	}
}

func TestCompare(t *testing.T) {
	ev := func(id, sender, txn string) clientEvent {
		e := clientEvent{EventID: id, Sender: sender}
		e.Content.Txn = txn
		return e
	}
	hist := []clientEvent{ev("$create", "@a", ""), ev("$1", "@a", "t1"), ev("$2", "@a", "t1"), ev("$3", "@b", "t9")}
	acks := []ack{
		{EventID: "$1", Sender: "@a", Txn: "t1"},
		{EventID: "$3", Sender: "@b", Txn: "t2"}, // the id holds another send's message
		{EventID: "$4", Sender: "@b", Txn: "t3"}, // missing
	}
	dup, mismatched, unacked, missing := compare(hist, acks)
	if dup != 1 || mismatched != 1 || unacked != 1 || len(missing) != 1 || missing[0].EventID != "$4" {
		t.Errorf("compare = dup %d, mismatched %d, unacked %d, missing %v", dup, mismatched, unacked, missing)
	}
	if !sameOrder(hist, slices.Clone(hist)) || sameOrder(hist, hist[1:]) {
		t.Error("sameOrder is wrong")
	}
}

func TestOptionsValidate(t *testing.T) {
	ok := DefaultOptions()
	ok.Binary = "firebreak"
	if err := ok.validate(); err != nil {
		t.Fatalf("defaults: %v", err)
	}
	for name, mutate := range map[string]func(*Options){
		"two data centers": func(o *Options) { o.DCs = 2 },
		"no room shards":   func(o *Options) { o.RoomShards = 0 },
		"too many shards":  func(o *Options) { o.RoomShards = 1025 },
		"one user":         func(o *Options) { o.Users = 1 },
		"unknown scenario": func(o *Options) { o.Scenario = "flood" },
		"direct routes":    func(o *Options) { o.DirectRoutes = true },
	} {
		o := ok
		mutate(&o)
		if o.validate() == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

// TestJudgeStages: a report fails on anything a stage found wrong, names at most
// maxLostNamed lost sends over all stages and counts the rest.
func TestJudgeStages(t *testing.T) {
	lost := func(n int) map[string]ack {
		m := map[string]ack{}
		for i := range n {
			id := "$e" + strconv.Itoa(i)
			m[id] = ack{EventID: id, At: time.Unix(int64(i), 0)}
		}
		return m
	}
	cases := []struct {
		name   string
		stages []*StageResult
		want   []string // substrings the problems hold, in order; none means passed
	}{
		{"clean", []*StageResult{{Stage: "a"}, {Stage: "b"}}, nil},
		{"duplicates", []*StageResult{{Stage: "a", DuplicateEvents: 2}}, []string{"a: 2 duplicate events"}},
		{"forked and unreadable", []*StageResult{{Stage: "a", ForkedRooms: []string{"!r"}, UnreadableRooms: []string{"!s"}}},
			[]string{"a: histories differ", "a: unreadable"}},
		{"mismatched", []*StageResult{{Stage: "b", MismatchedAcks: 1}}, []string{"b: 1 acknowledged event ids"}},
		{"a few lost, oldest first", []*StageResult{{Stage: "a", lost: lost(2)}}, []string{"a: lost $e0", "a: lost $e1"}},
		{"lost past the cap, over two stages", []*StageResult{{Stage: "a", lost: lost(maxLostNamed - 1)}, {Stage: "b", lost: lost(3)}},
			append(slices.Repeat([]string{"a: lost"}, maxLostNamed-1), "b: lost $e0", "b: 2 more sends lost")},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := &Report{Stages: c.stages}
			r.judge(nil)
			if r.Passed != (len(c.want) == 0) || len(r.Problems) != len(c.want) {
				t.Fatalf("passed %v, problems %q, want %q", r.Passed, r.Problems, c.want)
			}
			for i, w := range c.want {
				if !strings.Contains(r.Problems[i], w) {
					t.Errorf("problem %d = %q, want it to hold %q", i, r.Problems[i], w)
				}
			}
		})
	}
}
