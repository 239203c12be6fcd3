package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/firebreak/firebreak/internal/matrixclient"
)

func TestReportJSONHasTheAgreedFields(t *testing.T) {
	st := newStats()
	st.win.open(time.Now().Add(-time.Second), time.Hour)
	start := time.Now()
	for i := range 1000 {
		n := uint64(i)
		st.sent(n, start, time.Duration(i)*time.Microsecond, 2)
		st.seen(n, start, start.Add(time.Duration(i+1)*time.Millisecond))
		st.seen(n, start, start.Add(time.Duration(i+1)*time.Millisecond))
	}
	st.failed("send", &matrixclient.Error{Status: 429, Code: "M_LIMIT_EXCEEDED"})
	cfg := Defaults(WorkloadMix)
	cfg.Duration = 10 * time.Second
	cfg.Local, cfg.NodesPerDC, cfg.RoomShards = Local3DC, 1, 4
	res := loadResult(cfg, st, &population{rooms: make([]*room, 3)})
	res.Engine = &EngineResult{Replicas: 1, SyncPerSec: 1000, AsyncPerSec: 4000, AsyncStreams: 1,
		Pipelined: []SpreadRate{{Streams: 1, PerSec: 4000}, {Streams: 16, PerSec: 2500}}}
	res.compareWithEngine()

	var buf bytes.Buffer
	if err := res.WriteJSON(&buf); err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(buf.Bytes(), &m); err != nil {
		t.Fatal(err)
	}
	want := map[string]float64{"sends_per_sec": 100, "delivery_p50_ms": 500, "delivery_p99_ms": 990,
		"delivery_p999_ms": 999, "errors": 1, "deliveries": 2000, "deliveries_expected": 2000,
		"fraction_of_engine_async": 0.025, "local_nodes": 3, "local_room_shards": 4}
	for k, v := range want {
		got, ok := m[k].(float64)
		if !ok {
			t.Errorf("JSON has no number %q: %s", k, buf.String())
			continue
		}
		if got < v*0.99 || got > v*1.01 {
			t.Errorf("%s = %v, want about %v", k, got, v)
		}
	}
	if codes, _ := m["errors_by_code"].(map[string]any); codes["send M_LIMIT_EXCEEDED"] != 1.0 {
		t.Errorf("errors_by_code = %v", m["errors_by_code"])
	}

	var table bytes.Buffer
	if err := res.WriteTable(&table); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"acknowledged sends", "1000 (100.0/s)", "delivery p50/p99/p99.9", "send M_LIMIT_EXCEEDED",
		"4000 publishes/s with 0 in flight over 1 stream(s)", "the best of 4000 over 1, 2500 over 16",
		"--local 3dc: 3 node(s), 4 room shards, routes direct"} {
		if !strings.Contains(table.String(), want) {
			t.Errorf("table lacks %q:\n%s", want, table.String())
		}
	}
}

func TestWindowCountsOnlyMeasuredSends(t *testing.T) {
	st := newStats()
	now := time.Now()
	st.sent(1, now, time.Millisecond, 1) // before the window opened
	st.win.open(now.Add(time.Second), time.Second)
	st.sent(2, now, time.Millisecond, 1)                            // warm-up
	st.sent(3, now.Add(1500*time.Millisecond), time.Millisecond, 3) // measured
	st.sent(4, now.Add(2*time.Second), time.Millisecond, 1)         // after
	owed, _, _, _ := st.msgs.counts()
	if st.sends.Load() != 1 || owed != 3 || st.acked.Load() != 4 {
		t.Errorf("sends %d owed %d acked %d, want 1, 3, 4", st.sends.Load(), owed, st.acked.Load())
	}
}

func TestErrCode(t *testing.T) {
	for want, err := range map[string]error{
		"M_FORBIDDEN": &matrixclient.Error{Status: 403, Code: "M_FORBIDDEN"},
		"HTTP_502":    &matrixclient.Error{Status: 502},
		"TIMEOUT":     fmt.Errorf("get: %w", context.DeadlineExceeded),
		"NETWORK":     errors.New("something else"),
	} {
		if got := errCode(err); got != want {
			t.Errorf("errCode(%v) = %s, want %s", err, got, want)
		}
	}
}
