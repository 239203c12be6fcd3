// Package syncer answers /sync, /messages, /context, /relations and /threads: it assembles
// what a user sees from the rooms read model, receipts, typing, account data and the
// end-to-end encryption mirrors (to-device messages, key changes and counts), and wakes
// long-polling syncs when something that concerns their user arrives.
package syncer

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/firebreak/firebreak/internal/accountdata"
	"github.com/firebreak/firebreak/internal/e2ee"
	"github.com/firebreak/firebreak/internal/filter"
	"github.com/firebreak/firebreak/internal/rooms"
	"github.com/firebreak/firebreak/internal/store"
)

// ErrBadRequest wraps every request error (bad token, bad filter).
var ErrBadRequest = errors.New("bad sync request")

// ErrNotReady: a token is ahead of this node and it did not catch up in time.
var ErrNotReady = errors.New("this node has not caught up with that token yet")

// ErrSessionEnded: the request's session ended (its token was revoked) while it waited.
var ErrSessionEnded = errors.New("the session ended while the sync waited")

const (
	maxLongPoll      = 2 * time.Minute
	defaultTimeline  = 10
	maxTimeline      = 500
	forgottenDataKey = "im.firebreak.forgotten"
	// slowCatchUp is when waiting for a token is worth a log line: it means this node lagged.
	slowCatchUp = 500 * time.Millisecond
)

// Service assembles syncs.
type Service struct {
	rooms *rooms.Service
	data  *accountdata.Service
	keys  *e2ee.Service
	stop  <-chan struct{} // closed on shutdown, ending every long poll
	// fencing is closed when this node fences itself (store.Fencing): a long poll then ends
	// with 503, so its client moves to a data center that still hears new events.
	fencing func() <-chan struct{}

	mu      sync.Mutex
	waiters map[string]chan struct{} // user -> closed when something for them arrives

	lazy *lazyMembers // the member events each device's lazy-loading syncs have sent
}

// New wires the syncer to the services whose changes it reports. Long polls end when ctx does,
// and with an error when the channel fencing returns closes.
func New(ctx context.Context, r *rooms.Service, d *accountdata.Service, k *e2ee.Service, fencing func() <-chan struct{}) *Service {
	s := &Service{rooms: r, data: d, keys: k, stop: ctx.Done(), fencing: fencing, waiters: map[string]chan struct{}{}, lazy: newLazyMembers()}
	r.OnChange(s.wake)
	d.OnChange(s.Wake)
	k.OnChange(s.wakeForKeys, s.Wake)
	return s
}

// wakeForKeys wakes who a key change concerns: everyone whose clients track the user's
// devices, or the one user it is for.
func (s *Service) wakeForKeys(c e2ee.KeyChange) {
	if c.OnlyFor != "" {
		s.Wake(c.OnlyFor)
		return
	}
	s.wake(append(s.rooms.Model().RoomMates(c.UserID), c.UserID))
}

// Wake ends the user's long polls on this node whose session has ended (Request.Ended); every
// node hears of a logout anywhere (accounts.WatchSessionEnds).
func (s *Service) Wake(userID string) { s.wake([]string{userID}) }

// wake ends the long poll of every listed user.
func (s *Service) wake(users []string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, u := range users {
		if ch, ok := s.waiters[u]; ok {
			close(ch)
			delete(s.waiters, u)
		}
	}
}

// waitChan returns the channel the next wake for user closes. Taken before the sync looks at
// the data, so a change that lands while the response is built is never missed.
func (s *Service) waitChan(user string) <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	ch, ok := s.waiters[user]
	if !ok {
		ch = make(chan struct{})
		s.waiters[user] = ch
	}
	return ch
}

// current is the token for everything this node has applied.
func (s *Service) current() Token {
	keys := s.keys.Position()
	return Token{
		Rooms:       s.rooms.Model().Applied(),
		Receipts:    s.rooms.ReceiptPosition(),
		AccountData: s.data.Position(),
		Typing:      s.rooms.TypingPosition(),
		Keys:        keys.Keys,
		ToDevice:    keys.ToDevice,
	}
}

// Shards is the number of room shards tokens carry.
func (s *Service) Shards() int { return len(s.rooms.Model().Applied()) }

// catchUp waits until this node has applied everything the token covers, so a client that
// moves between nodes never sees time go backwards.
func (s *Service) catchUp(ctx context.Context, t Token) error {
	keys := s.keys.Position()
	if s.rooms.Model().AppliedAll(t.Rooms) && s.rooms.ReceiptPosition() >= t.Receipts && s.data.Position() >= t.AccountData &&
		keys.Keys >= t.Keys && keys.ToDevice >= t.ToDevice {
		return nil // the usual case: this node has everything the token names; no timer to set up
	}
	ctx, cancel := context.WithTimeout(ctx, store.WaitLimit)
	defer cancel()
	start := time.Now()
	err := s.rooms.CatchUpShards(ctx, t.Rooms)
	rooms := time.Since(start)
	if err == nil {
		err = s.rooms.WaitReceiptPosition(ctx, t.Receipts)
	}
	if err == nil {
		err = s.data.WaitPosition(ctx, t.AccountData)
	}
	if err == nil {
		err = s.keys.WaitPosition(ctx, e2ee.Positions{Keys: t.Keys, ToDevice: t.ToDevice})
	}
	if took := time.Since(start); took > slowCatchUp {
		slog.Warn("sync waited to catch up with a token", "rooms_ms", rooms.Milliseconds(), "total_ms", took.Milliseconds(), "err", err)
	}
	return notReady(err)
}

// notReady explains a failed wait for a token's positions: a position no node ever reached is
// the client's bad token, anything else this node's lag.
func notReady(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, store.ErrBeyondEnd):
		return fmt.Errorf("%w: the token is not from this server (%v)", ErrBadRequest, err)
	}
	return fmt.Errorf("%w: %v", ErrNotReady, err)
}

// Request is one /sync call.
type Request struct {
	UserID, DeviceID string
	Since            string
	Timeout          time.Duration
	FullState        bool
	Filter           filter.Filter
	Ended            func() bool // whether the caller's session has ended (its token revoked)

	ignored map[string]bool // the users the user ignores, as the sync being built reads them
}

// Sync answers a /sync: at once when there is something new (or on an initial sync), else
// when something arrives for the user or the timeout ends.
func (s *Service) Sync(ctx context.Context, req Request) (*Response, error) {
	var since *Token
	if req.Since != "" {
		t, err := ParseToken(req.Since, s.Shards())
		if err != nil {
			return nil, fmt.Errorf("%w: since is not a token this server issued", ErrBadRequest)
		}
		if err := s.catchUp(ctx, t); err != nil {
			return nil, err
		}
		since = &t
		s.acknowledge(ctx, req, t)
	}
	resp, err := s.poll(ctx, req, since)
	if resp != nil {
		s.lazy.finish(req, resp.members, resp.NextBatch)
	}
	return resp, err
}

// acknowledge deletes the to-device messages the device's token covers: its client got them.
// Should that fail, they are only deleted at its next sync.
func (s *Service) acknowledge(ctx context.Context, req Request, since Token) {
	if req.DeviceID == "" {
		return
	}
	if err := s.keys.Acknowledge(ctx, req.UserID, req.DeviceID, since.ToDevice); err != nil {
		slog.Warn("deleting delivered to-device messages", "user", req.UserID, "device", req.DeviceID, "err", err)
	}
}

// poll builds the response, at once or, when there is nothing new, whenever something arrives
// for the user before the timeout.
func (s *Service) poll(ctx context.Context, req Request, since *Token) (*Response, error) {
	fencing := s.fencing()
	deadline := time.NewTimer(min(req.Timeout, maxLongPoll))
	defer deadline.Stop()
	for woken := false; ; woken = true {
		// Woken: perhaps the session ended (see Wake), and what woke it was the logout itself.
		if woken && req.Ended != nil && req.Ended() {
			return nil, ErrSessionEnded
		}
		wake := s.waitChan(req.UserID)
		now := s.current()
		resp := s.build(ctx, req, since, now)
		if since == nil || req.FullState || !resp.empty() || req.Timeout <= 0 {
			return resp, nil
		}
		select {
		case <-wake:
		case <-deadline.C:
			return resp, nil
		case <-ctx.Done():
			return resp, nil
		case <-s.stop:
			return resp, nil
		case <-fencing:
			return nil, store.ErrCutOff
		}
	}
}
