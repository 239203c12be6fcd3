// Package accountdata owns per-user account data (global and per room): client settings such
// as m.direct, m.fully_read or m.push_rules. Values live in a JetStream bucket; each node keeps
// a mirror of it so sync can tell what changed since a position.
package accountdata

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"sync"

	"github.com/firebreak/firebreak/internal/store"
)

// ErrNotFound: the user has no account data of that type.
var ErrNotFound = errors.New("account data not found")

// ErrQuota: the write would take the user's account data past MaxUserBytes.
var ErrQuota = errors.New("account data over its quota")

// MaxUserBytes bounds one user's account data, which every node holds in memory for sync.
// Element keeps tens of kilobytes there; without a bound one account could fill the nodes'
// memory with writes of a megabyte each.
const MaxUserBytes = 8 << 20

// itemOverhead is what an item costs beyond its content, counted against the quota so that
// many empty items are not free.
const itemOverhead = 128

// Item is one piece of account data. RoomID is "" for global account data.
type Item struct {
	UserID  string
	RoomID  string
	Type    string
	Content json.RawMessage
	Rev     uint64
}

// Service stores account data and mirrors it for sync.
type Service struct {
	st *store.Store

	mu     sync.RWMutex
	byUser map[string]map[itemKey]Item
	bytes  map[string]int // each user's items, sized as the quota counts them
	rev    *store.Cursor

	onChange func(userID string)
}

type itemKey struct{ roomID, evType string }

// New returns the service; Start fills the mirror.
func New(st *store.Store) *Service {
	return &Service{st: st, byUser: map[string]map[itemKey]Item{}, bytes: map[string]int{}, rev: store.NewCursor(),
		onChange: func(string) {}}
}

// OnChange sets who hears that a user's account data changed.
func (s *Service) OnChange(fn func(userID string)) { s.onChange = fn }

// Run mirrors the bucket until ctx ends, starting the watch again whenever it fails; ready is
// called each time the stored values are loaded.
func (s *Service) Run(ctx context.Context, log *slog.Logger, ready func()) {
	store.KeepFollowing(ctx, log, "account data", func() error {
		return s.st.Watch(ctx, store.BucketAccountData, s.rev.Load(), ready, s.apply)
	})
}

func (s *Service) apply(c store.Change) {
	parts, err := store.KeyParts(c.Key)
	if err != nil || len(parts) != 3 {
		s.rev.Advance(c.Rev) // even past a change it cannot use, so waiters never stall
		return
	}
	it := Item{UserID: parts[0], RoomID: parts[1], Type: parts[2], Content: c.Value, Rev: c.Rev}
	s.mu.Lock()
	items := s.byUser[it.UserID]
	if items == nil {
		items = map[itemKey]Item{}
		s.byUser[it.UserID] = items
	}
	key := itemKey{it.RoomID, it.Type}
	if old, ok := items[key]; ok {
		s.bytes[it.UserID] -= key.size(len(old.Content))
	}
	if c.Deleted {
		delete(items, key)
	} else {
		items[key] = it
		s.bytes[it.UserID] += key.size(len(it.Content))
	}
	s.mu.Unlock()
	// Moved on before the wake, so a sync it wakes finds the change within its position.
	s.rev.Advance(c.Rev)
	s.onChange(it.UserID)
}

func (k itemKey) size(contentLen int) int {
	return contentLen + len(k.roomID) + len(k.evType) + itemOverhead
}

// checkQuota refuses a write that would take the user's account data, as this node's mirror
// has it, past MaxUserBytes with the item at key holding newLen bytes.
func (s *Service) checkQuota(userID string, key itemKey, newLen int) error {
	s.mu.RLock()
	defer s.mu.RUnlock()
	total := s.bytes[userID] + key.size(newLen)
	if old, ok := s.byUser[userID][key]; ok {
		total -= key.size(len(old.Content))
	}
	if total > MaxUserBytes {
		return fmt.Errorf("%w: a user's account data may take %d bytes", ErrQuota, MaxUserBytes)
	}
	return nil
}

// Set stores account data and returns once this node's mirror shows it.
func (s *Service) Set(ctx context.Context, userID, roomID, evType string, content json.RawMessage) error {
	if err := s.checkQuota(userID, itemKey{roomID, evType}, len(content)); err != nil {
		return err
	}
	rev, err := s.st.Put(ctx, store.BucketAccountData, store.Key(userID, roomID, evType), content)
	if err != nil {
		return err
	}
	return s.rev.WaitUpTo(ctx, rev, store.WaitLimit)
}

// Modify changes one piece of account data: change gets the stored content (nil when there is
// none) and returns the new content. It is written with a compare-and-set and tried again on a
// lost race, so two changes made at once, through any nodes, never undo each other (a user's
// push rules and room tags are read, changed and written whole). It returns once this node's
// mirror shows the result; an error from change is returned as it is, with nothing written.
func (s *Service) Modify(ctx context.Context, userID, roomID, evType string, change func(old json.RawMessage) (json.RawMessage, error)) error {
	rev, err := s.st.Modify(ctx, store.BucketAccountData, store.Key(userID, roomID, evType), func(old []byte) ([]byte, error) {
		val, err := change(old)
		if err == nil && len(val) > len(old) {
			err = s.checkQuota(userID, itemKey{roomID, evType}, len(val))
		}
		return val, err
	})
	if err != nil {
		return err
	}
	return s.rev.WaitUpTo(ctx, rev, store.WaitLimit)
}

// Get returns one piece of account data.
func (s *Service) Get(userID, roomID, evType string) (json.RawMessage, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	it, ok := s.byUser[userID][itemKey{roomID, evType}]
	if !ok {
		return nil, ErrNotFound
	}
	return it.Content, nil
}

// Since returns the user's account data stored after position since, oldest first.
func (s *Service) Since(userID string, since uint64) []Item {
	s.mu.RLock()
	defer s.mu.RUnlock()
	var out []Item
	for _, it := range s.byUser[userID] {
		if it.Rev > since {
			out = append(out, it)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Rev < out[j].Rev })
	return out
}

// Position is the bucket position this node's mirror has applied.
func (s *Service) Position() uint64 { return s.rev.Load() }

// WaitPosition waits until the mirror has applied position p (from a token); one past the
// bucket's end is refused with store.ErrBeyondEnd.
func (s *Service) WaitPosition(ctx context.Context, p uint64) error {
	return s.st.WaitBucket(ctx, store.BucketAccountData, s.rev, p)
}
