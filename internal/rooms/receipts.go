package rooms

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"time"

	"github.com/firebreak/firebreak/internal/store"
)

// Receipt says a user has read a room up to an event.
type Receipt struct {
	RoomID   string `json:"-"`
	UserID   string `json:"-"`
	Type     string `json:"-"`
	EventID  string `json:"event_id"`
	TS       int64  `json:"ts"`
	ThreadID string `json:"thread_id,omitempty"`
	Rev      uint64 `json:"-"` // the receipts bucket's position when it was stored
}

// receiptModel mirrors the receipts bucket: the latest receipt per room, user and type.
type receiptModel struct {
	mu       sync.RWMutex
	byRoom   map[string]map[string]map[string]Receipt
	rev      *store.Cursor
	onChange func(roomID string)
}

func newReceiptModel() *receiptModel {
	return &receiptModel{byRoom: map[string]map[string]map[string]Receipt{}, rev: store.NewCursor(), onChange: func(string) {}}
}

func (m *receiptModel) apply(c store.Change) {
	defer m.rev.Advance(c.Rev) // even past a change it cannot use, so waiters never stall
	parts, err := store.KeyParts(c.Key)
	if err != nil || len(parts) != 3 || c.Deleted {
		return
	}
	var r Receipt
	if json.Unmarshal(c.Value, &r) != nil {
		return
	}
	r.RoomID, r.UserID, r.Type, r.Rev = parts[0], parts[1], parts[2], c.Rev
	m.mu.Lock()
	users := m.byRoom[r.RoomID]
	if users == nil {
		users = map[string]map[string]Receipt{}
		m.byRoom[r.RoomID] = users
	}
	if users[r.UserID] == nil {
		users[r.UserID] = map[string]Receipt{}
	}
	users[r.UserID][r.Type] = r
	m.mu.Unlock()
	m.onChange(r.RoomID)
}

// ReceiptTypes are the receipt types a client may send.
var ReceiptTypes = map[string]bool{"m.read": true, "m.read.private": true}

// SetReceipt records that userID has read the room up to eventID. Receipts only move forward:
// one for an event older than the user's current one is accepted and ignored, as the spec asks.
func (s *Service) SetReceipt(ctx context.Context, roomID, userID, receiptType, eventID, threadID string) error {
	if !ReceiptTypes[receiptType] {
		return fmt.Errorf("%w: unknown receipt type %q", ErrBadRequest, receiptType)
	}
	if s.model.Membership(roomID, userID) != "join" {
		return fmt.Errorf("%w: you are not in this room", ErrForbidden)
	}
	ev, ok := s.model.Event(roomID, eventID)
	if !ok {
		return fmt.Errorf("%w: unknown event %s", ErrNotFound, eventID)
	}
	if cur, ok := s.receiptFor(roomID, userID, receiptType); ok {
		if old, ok := s.model.Event(roomID, cur.EventID); ok && old.Seq >= ev.Seq {
			return nil
		}
	}
	b, _ := json.Marshal(Receipt{EventID: eventID, TS: time.Now().UnixMilli(), ThreadID: threadID})
	rev, err := s.st.Put(ctx, store.BucketReceipts, store.Key(roomID, userID, receiptType), b)
	if err != nil {
		return unavailable(err)
	}
	return s.receipts.rev.WaitUpTo(ctx, rev, store.WaitLimit)
}

func (s *Service) receiptFor(roomID, userID, receiptType string) (Receipt, bool) {
	s.receipts.mu.RLock()
	defer s.receipts.mu.RUnlock()
	r, ok := s.receipts.byRoom[roomID][userID][receiptType]
	return r, ok
}

// ReceiptPosition is the receipts bucket position this node has applied.
func (s *Service) ReceiptPosition() uint64 { return s.receipts.rev.Load() }

// ReceiptsSince returns the room's receipts stored after position since. Private receipts are
// only shown to their owner.
func (s *Service) ReceiptsSince(roomID, viewer string, since uint64) []Receipt {
	s.receipts.mu.RLock()
	defer s.receipts.mu.RUnlock()
	var out []Receipt
	for user, byType := range s.receipts.byRoom[roomID] {
		for t, r := range byType {
			if r.Rev > since && (t == "m.read" || user == viewer) {
				out = append(out, r)
			}
		}
	}
	return out
}

// readUpTo is the position of the latest event the user has marked read in the room, 0 if none.
func (s *Service) readUpTo(roomID, userID string) uint64 {
	var upTo uint64
	for t := range ReceiptTypes {
		if r, ok := s.receiptFor(roomID, userID, t); ok {
			if ev, ok := s.model.Event(roomID, r.EventID); ok && ev.Seq > upTo {
				upTo = ev.Seq
			}
		}
	}
	return upTo
}

// WaitReceiptPosition waits until this node has applied the receipts bucket up to p.
func (s *Service) WaitReceiptPosition(ctx context.Context, p uint64) error {
	return s.st.WaitBucket(ctx, store.BucketReceipts, s.receipts.rev, p)
}
