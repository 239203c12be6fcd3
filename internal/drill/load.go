package drill

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

const (
	// sendTimeout is how long a client waits for a send before it retries elsewhere. A node
	// cut off from its quorum holds a send until its own timeout (up to 30 s); a client gives
	// up sooner, as real ones do.
	sendTimeout = 10 * time.Second
	// syncWait is the long-poll timeout; the request itself may take a little longer.
	syncWait      = 5 * time.Second
	syncSlack     = 10 * time.Second
	retryPause    = 200 * time.Millisecond
	gapFillPages  = 20
	gapFillPageSz = 100
)

// load is the simulated users and their traffic.
type load struct {
	o     Options
	bal   *balancer
	hc    *http.Client
	log   *slog.Logger
	users []*simUser
	rooms []*roomPlan

	sendsOK, sendsFailed atomic.Int64
	syncsOK, syncsFailed atomic.Int64
	gapFillFailures      atomic.Int64

	errMu      sync.Mutex
	sendErrors map[string]int // failure kind -> count, for the report

	started, sendsStopped time.Time

	sendCancel, syncCancel context.CancelFunc
	sendWG, syncWG         sync.WaitGroup

	probeMu   sync.Mutex
	probeAcks []ack
	probe     probeStats
}

func newLoad(o Options, bal *balancer, log *slog.Logger) *load {
	l := &load{o: o, bal: bal, hc: newHTTPClient(), log: log, rooms: planRooms(o.Users, o.Rooms), sendErrors: map[string]int{}}
	for i := 0; i < o.Users; i++ {
		l.users = append(l.users, &simUser{idx: i, name: fmt.Sprintf("drill%d", i+1),
			password: fmt.Sprintf("drill-password-%d", i+1), received: map[string]time.Time{}})
	}
	return l
}

// start runs every user's send loop and sync loop until stopSends and stopSyncs.
func (l *load) start(ctx context.Context) {
	l.started = time.Now()
	sendCtx, sendCancel := context.WithCancel(ctx)
	syncCtx, syncCancel := context.WithCancel(ctx)
	l.sendCancel, l.syncCancel = sendCancel, syncCancel
	for _, u := range l.users {
		l.sendWG.Add(1)
		l.syncWG.Add(1)
		go func() { defer l.sendWG.Done(); l.sendLoop(sendCtx, u) }()
		go func() { defer l.syncWG.Done(); l.syncLoop(syncCtx, u) }()
	}
}

// stopSends ends the send loops; sends still waiting for an answer are abandoned.
func (l *load) stopSends() {
	if l.sendCancel == nil {
		return
	}
	l.sendsStopped = time.Now()
	l.sendCancel()
	l.sendWG.Wait()
}

// stopSyncs ends the sync loops.
func (l *load) stopSyncs() {
	if l.syncCancel == nil {
		return
	}
	l.syncCancel()
	l.syncWG.Wait()
}

// sendLoop sends at the user's rate into the user's rooms, one send at a time, each retried
// with the same transaction id until it is acknowledged.
func (l *load) sendLoop(ctx context.Context, u *simUser) {
	cur := l.bal.cursorAt(u.idx)
	a := api{hc: l.hc, token: u.sess.Token}
	rng := rand.New(rand.NewPCG(uint64(u.idx), 42))
	interval := time.Duration(float64(time.Second) / l.o.Rate)
	next := time.Now().Add(time.Duration(rng.Int64N(int64(interval)))) // spread the users out
	for n := 1; ; n++ {
		if !sleep(ctx, time.Until(next)) {
			return
		}
		room := u.rooms[rng.IntN(len(u.rooms))]
		txn := fmt.Sprintf("t%d", n)
		started := time.Now()
		id, node, ok := l.sendUntilAcked(ctx, a, cur, room, u.name, txn)
		if !ok {
			u.abandoned++
			return
		}
		now := time.Now()
		u.acks = append(u.acks, ack{Room: room, Sender: u.sess.UserID, Txn: txn, EventID: id, Node: node, Started: started, At: now})
		u.sendOK = append(u.sendOK, now)
		// A send that took longer than the interval delays the next one; no burst catches up.
		if next = next.Add(interval); next.Before(now) {
			next = now
		}
	}
}

// sendUntilAcked retries one send, moving to another node after each failure, until it is
// acknowledged or ctx ends. It returns the event id and the node that acknowledged it.
func (l *load) sendUntilAcked(ctx context.Context, a api, cur *cursor, room, user, txn string) (string, string, bool) {
	for {
		n := cur.node()
		rctx, cancel := context.WithTimeout(ctx, sendTimeout)
		id, err := a.send(rctx, n.URL(), room, txn, messageContent(user, txn))
		cancel()
		if err == nil {
			l.sendsOK.Add(1)
			return id, n.Name, true
		}
		if ctx.Err() != nil {
			return "", "", false
		}
		l.sendsFailed.Add(1)
		l.countError(err)
		l.log.Debug("send failed", "user", user, "txn", txn, "room", room, "node", n.Name, "err", err)
		cur.move()
		pause := retryPause
		var ae *apiError
		if errors.As(err, &ae) && ae.RetryAfter > 0 {
			pause = ae.RetryAfter
		}
		if !sleep(ctx, pause) {
			return "", "", false
		}
	}
}

// countError files a failed send under a short kind: the status and error code, a timeout,
// or a refused connection.
func (l *load) countError(err error) {
	kind := "other"
	var ae *apiError
	var ne net.Error
	switch {
	case errors.As(err, &ae):
		kind = fmt.Sprintf("%d %s", ae.Status, ae.Code)
	case errors.Is(err, context.DeadlineExceeded), errors.As(err, &ne) && ne.Timeout():
		kind = "timeout"
	case strings.Contains(err.Error(), "connection refused"):
		kind = "connection refused"
	case strings.Contains(err.Error(), "connection reset"), strings.Contains(err.Error(), "EOF"):
		kind = "connection lost"
	}
	l.errMu.Lock()
	l.sendErrors[kind]++
	l.errMu.Unlock()
}

// syncLoop long-polls /sync, records every event it delivers and moves to another node when a
// sync fails. Like a real client it fills a limited timeline's gap from /messages.
func (l *load) syncLoop(ctx context.Context, u *simUser) {
	cur := l.bal.cursorAt(u.idx)
	a := api{hc: l.hc, token: u.sess.Token}
	var outageFrom time.Time // zero while syncs succeed
	defer func() {
		if !outageFrom.IsZero() {
			u.addReadOutage(span{outageFrom, time.Now()})
		}
	}()
	for ctx.Err() == nil {
		n := cur.node()
		started := time.Now()
		// After a failure a client asks for what is there at once instead of long-polling
		// (matrix-js-sdk does this until it is syncing again), so the answer shows when
		// reads came back rather than when the next message arrived.
		wait := syncWait
		if !outageFrom.IsZero() {
			wait = 0
		}
		rctx, cancel := context.WithTimeout(ctx, wait+syncSlack)
		resp, err := a.sync(rctx, n.URL(), u.since, wait)
		cancel()
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			l.syncsFailed.Add(1)
			l.log.Debug("sync failed", "user", u.name, "node", n.Name, "err", err)
			if outageFrom.IsZero() {
				outageFrom = outageStart(started, err)
			}
			cur.move()
			sleep(ctx, retryPause)
			continue
		}
		now := time.Now()
		l.syncsOK.Add(1)
		if !outageFrom.IsZero() {
			u.addReadOutage(span{outageFrom, now})
			l.log.Debug("reads back", "user", u.name, "node", n.Name, "after_ms", now.Sub(outageFrom).Milliseconds())
			outageFrom = time.Time{}
		}
		for roomID, jr := range resp.Rooms.Join {
			for _, ev := range jr.Timeline.Events {
				u.received1(ev.EventID, now, true)
			}
			if jr.Timeline.Limited {
				l.fillGap(ctx, a, cur, u, roomID, jr.Timeline.PrevBatch)
			}
		}
		u.since = resp.NextBatch
	}
}

// outageStart is when a failed sync's user lost reads: a long poll that was answered with an
// error (the node died, refused, or said 503) could read until that moment, so the outage
// starts then; one that hung until the client gave up may have been cut off all along, so
// the outage starts when it was sent.
func outageStart(sent time.Time, err error) time.Time {
	if errors.Is(err, context.DeadlineExceeded) || os.IsTimeout(err) {
		return sent
	}
	return time.Now()
}

// fillGap pages back from a limited timeline's prev_batch until it reaches an event the user
// already has, trying a few nodes before it gives up.
func (l *load) fillGap(ctx context.Context, a api, cur *cursor, u *simUser, roomID, from string) {
	for try := 0; try < 3; try++ {
		if err := l.fillGapOn(ctx, a, cur.node(), u, roomID, from); err == nil {
			return
		}
		if ctx.Err() != nil {
			return
		}
		cur.move()
	}
	l.gapFillFailures.Add(1)
}

func (l *load) fillGapOn(ctx context.Context, a api, n *node, u *simUser, roomID, from string) error {
	for page := 0; page < gapFillPages; page++ {
		rctx, cancel := context.WithTimeout(ctx, requestTimeout)
		resp, err := a.messages(rctx, n.URL(), roomID, from, gapFillPageSz)
		cancel()
		if err != nil {
			return err
		}
		now := time.Now()
		for _, ev := range resp.Chunk {
			if _, seen := u.hasReceived(ev.EventID); seen {
				return nil
			}
			u.received1(ev.EventID, now, false)
		}
		if resp.End == "" {
			return nil
		}
		from = resp.End
	}
	return nil
}

// acks lists every acknowledged send of the run, the probes' included.
func (l *load) acks() []ack {
	var out []ack
	for _, u := range l.users {
		out = append(out, u.acks...)
	}
	l.probeMu.Lock()
	out = append(out, l.probeAcks...)
	l.probeMu.Unlock()
	sort.Slice(out, func(i, j int) bool { return out[i].At.Before(out[j].At) })
	return out
}

// members maps each room id to the users in it.
func (l *load) members() map[string][]*simUser {
	out := map[string][]*simUser{}
	for _, p := range l.rooms {
		for _, m := range p.Members {
			out[p.ID] = append(out[p.ID], l.users[m])
		}
	}
	return out
}

// delivery is an acknowledged event some member has not received by sync.
type delivery struct {
	ack  ack
	user *simUser
}

// undelivered lists the (event, member) pairs still missing.
func (l *load) undelivered(acks []ack) []delivery {
	members := l.members()
	var out []delivery
	for _, a := range acks {
		for _, u := range members[a.Room] {
			if _, ok := u.hasReceived(a.EventID); !ok {
				out = append(out, delivery{a, u})
			}
		}
	}
	return out
}

// drain waits, with the sync loops still running, until every acknowledged event has reached
// every member of its room, or timeout passes; it returns what is still missing.
func (l *load) drain(ctx context.Context, timeout time.Duration) []delivery {
	missing := l.undelivered(l.acks())
	deadline := time.Now().Add(timeout)
	for len(missing) > 0 && time.Now().Before(deadline) && sleep(ctx, 250*time.Millisecond) {
		still := missing[:0]
		for _, d := range missing {
			if _, ok := d.user.hasReceived(d.ack.EventID); !ok {
				still = append(still, d)
			}
		}
		missing = still
	}
	return missing
}
