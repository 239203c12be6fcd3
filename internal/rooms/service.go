// Package rooms owns rooms and their events: building and signing events, checking them
// against the auth rules, appending them to the room's log in JetStream without ever forking
// it, and the read model every query about rooms is answered from.
package rooms

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/matrix-org/gomatrixserverlib"

	"github.com/firebreak/firebreak/internal/keylock"
	"github.com/firebreak/firebreak/internal/push"
	"github.com/firebreak/firebreak/internal/store"
)

// Service is the rooms API over the store and the read model.
type Service struct {
	st             *store.Store
	serverName     string
	signer         *eventSigner
	verdicts       *authVerdicts
	defaultVersion gomatrixserverlib.RoomVersion
	log            *slog.Logger

	model    *Model
	receipts *receiptModel
	typing   *typingModel
	sending  *keylock.Locks[string]
	filling  []chan struct{} // per shard: a token held by the gap fill running
	// followers are the shard followers' current runs, which the stall watchdog restarts.
	followers []restartable

	unreadMu    sync.Mutex
	unread      map[unreadKey]unreadState
	pushDecoded *pushDecoded
	pushRules   func(userID string) push.Ruleset // the user's rules, for unread counts

	wg sync.WaitGroup
}

// New prepares the rooms service; Start must run before it serves.
func New(ctx context.Context, st *store.Store, serverName, defaultVersion string, log *slog.Logger) (*Service, error) {
	if _, err := gomatrixserverlib.GetRoomVersion(gomatrixserverlib.RoomVersion(defaultVersion)); err != nil {
		return nil, fmt.Errorf("default_room_version: %w", err)
	}
	key, err := LoadOrCreateSigningKey(ctx, st)
	if err != nil {
		return nil, err
	}
	signer, err := newEventSigner(serverName, key)
	if err != nil {
		return nil, err
	}
	model := newModel(st.Shards(), log)
	return &Service{
		st: st, serverName: serverName, signer: signer, verdicts: newAuthVerdicts(), defaultVersion: gomatrixserverlib.RoomVersion(defaultVersion),
		log: log, model: model, receipts: newReceiptModel(), typing: newTypingModel(), sending: keylock.New[string](), filling: fillTokens(st.Shards()),
		followers: make([]restartable, st.Shards()),
		unread:    map[unreadKey]unreadState{}, pushDecoded: newPushDecoded(), pushRules: push.DefaultRules,
	}, nil
}

// SetPushRules sets where unread counts get each user's push rules; until then every user has
// the server defaults. Call it before the service serves.
func (s *Service) SetPushRules(rules func(userID string) push.Ruleset) { s.pushRules = rules }

// Model is the read model queries are answered from.
func (s *Service) Model() *Model { return s.model }

// OnChange sets who is told which users a change concerns (sync's long-poll waiters).
func (s *Service) OnChange(fn func(users []string)) {
	s.model.onChange = fn
	s.receipts.onChange = func(roomID string) { fn(s.model.interested(roomID)) }
	s.typing.onChange = func(roomID string) { fn(s.model.interested(roomID)) }
}

// Start follows every shard stream and the receipts bucket until ctx ends, and returns once
// the read model has caught up with what was stored before it started; from then on it also
// watches for followers that stall.
func (s *Service) Start(ctx context.Context) error {
	heads := make([]uint64, s.st.Shards())
	for shard := range heads {
		head, err := s.st.ShardHead(ctx, shard)
		if err != nil {
			return fmt.Errorf("read shard %d: %w", shard, err)
		}
		heads[shard] = head
		s.goFollow(ctx, fmt.Sprintf("shard %d", shard), func() error {
			return s.followers[shard].run(ctx, func(ctx context.Context) error {
				return s.st.FollowShard(ctx, shard, s.model.applied[shard].Load(), s.model.apply)
			})
		})
	}
	receiptsReady := make(chan struct{})
	var once sync.Once
	s.goFollow(ctx, "receipts", func() error {
		return s.st.Watch(ctx, store.BucketReceipts, s.receipts.rev.Load(), func() { once.Do(func() { close(receiptsReady) }) }, s.receipts.apply)
	})
	stopTyping, err := s.typing.subscribe(s.st)
	if err != nil {
		return err
	}
	context.AfterFunc(ctx, func() {
		stopTyping()
		s.typing.stop()
	})
	// A follower whose consumer was placed on a replica still catching up (a data center
	// just restored) can stay silent for many seconds; after startGrace the rest is read from
	// the replicas directly.
	if err := s.catchUpShards(ctx, heads, forStart); err != nil {
		return err
	}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		s.watchStalls(ctx)
	}()
	// Only a node whose read model has caught up and follows the shards builds other nodes'
	// sends.
	context.AfterFunc(ctx, s.st.ServeAtShardOwner(sendService, s.serveSend))
	select {
	case <-receiptsReady:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func fillTokens(shards int) []chan struct{} {
	out := make([]chan struct{}, shards)
	for i := range out {
		out[i] = make(chan struct{}, 1)
	}
	return out
}

// startGrace is how long starting followers get to replay the shards before the gaps are filled.
const startGrace = 2 * time.Second

// goFollow runs a follower until ctx ends, restarting it after an error (a lost connection,
// an election) from where it stopped.
func (s *Service) goFollow(ctx context.Context, what string, follow func() error) {
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		store.KeepFollowing(ctx, s.log, what, follow)
	}()
}

// Wait blocks until every follower started by Start has stopped.
func (s *Service) Wait() { s.wg.Wait() }
