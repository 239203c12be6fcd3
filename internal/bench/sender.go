package bench

import (
	"context"
	"math/rand/v2"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/valyala/fasthttp"
)

// sendTimeout bounds one PUT: a send the server has not acknowledged by then is an error.
const sendTimeout = 60 * time.Second

// sender sends bench messages into random rooms from random members.
type sender struct {
	pop  *population
	st   *stats
	hc   *fasthttp.Client
	run  string
	body string
	seq  atomic.Uint64
}

// bodyText starts every message's body; --body-bytes pads it with "x".
const bodyText = "firebreak bench "

// minBodyBytes is the shortest body the bench sends.
const minBodyBytes = len(bodyText)

func newSender(pop *population, st *stats, hc *fasthttp.Client, run string, bodyBytes int) *sender {
	body := bodyText + strings.Repeat("x", max(bodyBytes-len(bodyText), 0))
	return &sender{pop: pop, st: st, hc: hc, run: run, body: body}
}

// sendOne sends one message and records its acknowledgement. It ignores ctx's end only in
// that an aborted send is not counted as a server error.
func (s *sender) sendOne(ctx context.Context) {
	r := s.pop.rooms[rand.IntN(len(s.pop.rooms))]
	u := r.members[rand.IntN(len(r.members))]
	n := s.seq.Add(1)
	txn := s.run + "-" + strconv.FormatUint(n, 10)
	ctx, cancel := context.WithTimeout(ctx, sendTimeout)
	defer cancel()
	start := time.Now()
	err := u.c.send(ctx, s.hc, r.id, txn, messageContent{MsgType: "m.text", Body: s.body,
		Bench: benchMark{Run: s.run, N: n, TSus: start.UnixMicro()}})
	took := time.Since(start)
	if err != nil {
		if ctx.Err() == nil || took >= sendTimeout {
			s.st.failed("send", err)
		}
		return
	}
	s.st.sent(n, start, took, len(r.members)-1)
}

// closedLoop runs n senders that each send, wait for the acknowledgement and send again,
// until stopAt. It returns when all of them have stopped.
func (s *sender) closedLoop(ctx context.Context, n int, stopAt time.Time) {
	var wg sync.WaitGroup
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil && time.Now().Before(stopAt) {
				s.st.inFlight.Add(1)
				s.sendOne(ctx)
				s.st.inFlight.Add(-1)
			}
		}()
	}
	wg.Wait()
}

// openLoop offers rate sends per second on a fixed schedule until stopAt, whether or not
// earlier ones were acknowledged, so a slow server shows as latency rather than as a lower
// offered load. Beyond maxInFlight outstanding sends new ones are skipped and counted: the
// server is not keeping up. It returns when every send it started has finished.
func (s *sender) openLoop(ctx context.Context, rate float64, maxInFlight int, stopAt time.Time) {
	interval := time.Duration(float64(time.Second) / rate)
	slots := make(chan struct{}, maxInFlight)
	var wg sync.WaitGroup
	defer wg.Wait()
	for next := time.Now(); ctx.Err() == nil; {
		now := time.Now()
		if !now.Before(stopAt) {
			return
		}
		// Launch every send that is due; at high rates several fall between two wake-ups.
		for ; !next.After(now); next = next.Add(interval) {
			select {
			case slots <- struct{}{}:
			default:
				s.st.overloaded.Add(1)
				continue
			}
			wg.Add(1)
			s.st.inFlight.Add(1)
			go func() {
				defer func() { <-slots; s.st.inFlight.Add(-1); wg.Done() }()
				s.sendOne(ctx)
			}()
		}
		pause(ctx, min(time.Until(next), time.Until(stopAt)))
	}
}
