package bench

import (
	"sort"
	"sync"
	"sync/atomic"
	"time"
)

// window is the measured part of a run: what starts inside it counts, what starts during the
// warm-up or after it does not. Zero until the warm-up ends.
type window struct {
	start, end atomic.Int64 // unix nanoseconds
}

func (w *window) open(start time.Time, d time.Duration) {
	w.end.Store(start.Add(d).UnixNano())
	w.start.Store(start.UnixNano())
}

// contains reports whether a send started at t (unix ns) is measured.
func (w *window) contains(t int64) bool {
	s := w.start.Load()
	return s != 0 && t >= s && t < w.end.Load()
}

// stats is everything a run measures. Every method is safe for concurrent use.
type stats struct {
	win window

	acked      atomic.Uint64 // every acknowledged send, warm-up included (progress line)
	sends      atomic.Uint64 // acknowledged sends started inside the window
	overloaded atomic.Uint64 // open-loop sends skipped because too many were in flight
	limited    atomic.Uint64 // sync timelines the server cut short (deliveries may be missed)
	inFlight   atomic.Int64  // requests in flight now (sends, or idle syncs)

	ack      histogram   // PUT round trip of measured sends
	delivery histogram   // send to appearance in another member's sync
	msgs     *deliveries // sends inside the window against their appearances

	mu     sync.Mutex
	errors map[string]uint64 // "op errcode" -> count
}

func newStats() *stats { return &stats{errors: map[string]uint64{}, msgs: newDeliveries()} }

// sent records that message n, sent at start, was acknowledged after took and is owed to
// recipients other members.
func (s *stats) sent(n uint64, start time.Time, took time.Duration, recipients int) {
	s.acked.Add(1)
	if !s.win.contains(start.UnixNano()) {
		return
	}
	s.sends.Add(1)
	s.ack.Record(took)
	s.msgs.acked(n, recipients)
}

// seen records that a member's sync showed message n, which its sender stamped sentAt.
// Latency counts every appearance, acknowledged or not: the member saw it then.
func (s *stats) seen(n uint64, sentAt, now time.Time) {
	if !s.win.contains(sentAt.UnixNano()) {
		return
	}
	s.msgs.seen(n)
	s.delivery.Record(now.Sub(sentAt))
}

// failed counts an error of an operation (send, sync, ...) by its Matrix errcode.
func (s *stats) failed(op string, err error) {
	key := op + " " + errCode(err)
	s.mu.Lock()
	s.errors[key]++
	s.mu.Unlock()
}

// errorCounts returns the errors by "op errcode" and their total.
func (s *stats) errorCounts() (map[string]uint64, uint64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make(map[string]uint64, len(s.errors))
	var total uint64
	for k, v := range s.errors {
		out[k] = v
		total += v
	}
	return out, total
}

// sortedKeys lists a map's keys in order, for stable output.
func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// allDelivered reports whether every acknowledged measured send reached every member.
func (s *stats) allDelivered() bool {
	owed, delivered, _, _ := s.msgs.counts()
	return delivered >= owed
}
