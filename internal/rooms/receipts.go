package rooms

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"time"

	"github.com/firebreak/firebreak/internal/store"
)

// Receipt says a user has read a room, or a thread of it, up to an event.
type Receipt struct {
	RoomID   string `json:"-"`
	UserID   string `json:"-"`
	Type     string `json:"-"`
	EventID  string `json:"event_id"`
	TS       int64  `json:"ts"`
	ThreadID string `json:"thread_id,omitempty"`
	Rev      uint64 `json:"-"` // the receipts bucket's position when it was stored
}

// receiptKey names one of a user's receipts in a room: its type and its thread ("" for an
// unthreaded receipt, "main" for the main timeline, or a thread root's event id).
type receiptKey struct{ Type, Thread string }

// receiptModel mirrors the receipts bucket: the latest receipt per room, user, type and thread.
type receiptModel struct {
	mu       sync.RWMutex
	byRoom   map[string]map[string]map[receiptKey]Receipt
	rev      *store.Cursor
	onChange func(roomID string)
}

func newReceiptModel() *receiptModel {
	return &receiptModel{byRoom: map[string]map[string]map[receiptKey]Receipt{}, rev: store.NewCursor(), onChange: func(string) {}}
}

func (m *receiptModel) apply(c store.Change) {
	defer m.rev.Advance(c.Rev) // even past a change it cannot use, so waiters never stall
	parts, err := store.KeyParts(c.Key)
	if err != nil || (len(parts) != 3 && len(parts) != 4) || c.Deleted {
		return
	}
	var r Receipt
	if json.Unmarshal(c.Value, &r) != nil {
		return
	}
	r.RoomID, r.UserID, r.Type, r.Rev = parts[0], parts[1], parts[2], c.Rev
	r.ThreadID = "" // a receipt under three parts is unthreaded, whatever its JSON says
	if len(parts) == 4 {
		r.ThreadID = parts[3]
	}
	m.mu.Lock()
	users := m.byRoom[r.RoomID]
	if users == nil {
		users = map[string]map[receiptKey]Receipt{}
		m.byRoom[r.RoomID] = users
	}
	if users[r.UserID] == nil {
		users[r.UserID] = map[receiptKey]Receipt{}
	}
	users[r.UserID][receiptKey{r.Type, r.ThreadID}] = r
	m.mu.Unlock()
	m.onChange(r.RoomID)
}

// receiptStoreKey is where a receipt is stored: an unthreaded one under the room, user and
// type (as before threads were told apart), a threaded one under its thread as well.
func receiptStoreKey(roomID, userID string, k receiptKey) string {
	if k.Thread == "" {
		return store.Key(roomID, userID, k.Type)
	}
	return store.Key(roomID, userID, k.Type, k.Thread)
}

// ReceiptTypes are the receipt types a client may send.
var ReceiptTypes = map[string]bool{"m.read": true, "m.read.private": true}

// SetReceipt records that userID has read the room up to eventID, or with a thread id ("main"
// or a thread root's event id) that thread up to eventID. Each type and thread has its own
// receipt, which only moves forward: one for an event older than the current one is accepted
// and ignored, as the spec asks.
func (s *Service) SetReceipt(ctx context.Context, roomID, userID, receiptType, eventID, threadID string) error {
	if !ReceiptTypes[receiptType] {
		return fmt.Errorf("%w: unknown receipt type %q", ErrBadRequest, receiptType)
	}
	if s.model.Membership(roomID, userID) != "join" {
		return fmt.Errorf("%w: you are not in this room", ErrForbidden)
	}
	ev, err := s.FindEvent(ctx, roomID, eventID)
	if err != nil {
		return err
	}
	// A thread is named by its root, an event of the room: anything else would be stored
	// for good under a key nobody reads. The event must be in that thread (its root counts
	// as in the main timeline and in its own thread).
	if threadID != "" && threadID != "main" {
		if _, ok := s.model.Event(roomID, threadID); !ok {
			return fmt.Errorf("%w: thread_id %s is not an event of this room", ErrInvalidParam, threadID)
		}
	}
	if !inThread(ev, threadID) {
		return fmt.Errorf("%w: event %s is not in thread %s", ErrInvalidParam, eventID, threadID)
	}
	key := receiptKey{receiptType, threadID}
	if cur, ok := s.receiptFor(roomID, userID, key); ok {
		if old, ok := s.model.Event(roomID, cur.EventID); ok && old.Seq >= ev.Seq {
			return nil
		}
	}
	b, _ := json.Marshal(Receipt{EventID: eventID, TS: time.Now().UnixMilli(), ThreadID: threadID})
	rev, err := s.st.Put(ctx, store.BucketReceipts, receiptStoreKey(roomID, userID, key), b)
	if err != nil {
		return unavailable(err)
	}
	return s.receipts.rev.WaitUpTo(ctx, rev, store.WaitLimit)
}

func (s *Service) receiptFor(roomID, userID string, key receiptKey) (Receipt, bool) {
	s.receipts.mu.RLock()
	defer s.receipts.mu.RUnlock()
	r, ok := s.receipts.byRoom[roomID][userID][key]
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
	for user, byKey := range s.receipts.byRoom[roomID] {
		for k, r := range byKey {
			if r.Rev > since && (k.Type == "m.read" || user == viewer) {
				out = append(out, r)
			}
		}
	}
	return out
}

// readMarks is how far the user has read a room: everything up to unthreaded, the main
// timeline up to main, and each thread up to its own mark. The revisions are the receipts
// bucket's positions of the newest receipt of all, of the unthreaded and main ones, and of
// the unthreaded and thread ones: each changes when a receipt it covers moves, so counts
// that depend on only some receipts are not made again for the others. skipped says a
// receipt's event is not applied here yet: counts made without it are not kept.
type readMarks struct {
	unthreaded, main         uint64
	threads                  map[string]uint64
	rev, mainRev, threadsRev uint64
	skipped                  bool
}

// userReadMarks gathers the user's receipts in the room, of either read type.
func (s *Service) userReadMarks(roomID, userID string) readMarks {
	var few [4]Receipt // a user's read and private receipts, unthreaded and for "main"
	receipts := few[:0]
	s.receipts.mu.RLock()
	for _, r := range s.receipts.byRoom[roomID][userID] {
		receipts = append(receipts, r)
	}
	s.receipts.mu.RUnlock()
	var marks readMarks
	for _, r := range receipts {
		ev, ok := s.model.Event(roomID, r.EventID)
		if !ok {
			marks.skipped = true
			continue
		}
		marks.rev = max(marks.rev, r.Rev)
		switch r.ThreadID {
		case "":
			marks.unthreaded = max(marks.unthreaded, ev.Seq)
			marks.mainRev, marks.threadsRev = max(marks.mainRev, r.Rev), max(marks.threadsRev, r.Rev)
		case "main":
			marks.main = max(marks.main, ev.Seq)
			marks.mainRev = max(marks.mainRev, r.Rev)
		default:
			marks.threadsRev = max(marks.threadsRev, r.Rev)
			if marks.threads == nil {
				marks.threads = map[string]uint64{}
			}
			marks.threads[r.ThreadID] = max(marks.threads[r.ThreadID], ev.Seq)
		}
	}
	return marks
}

// read reports whether an event at seq in the thread ("main" or a root) is read. Counted for
// the whole room, a main-timeline receipt also marks the thread events before it read (see
// "Counted for the whole room, a main-timeline receipt..." in docs/ARCHITECTURE.md); split by
// thread, it does not.
func (m readMarks) read(seq uint64, thread string, split bool) bool {
	switch {
	case seq <= m.unthreaded, seq <= m.threads[thread]:
		return true
	}
	return seq <= m.main && (thread == "main" || !split)
}

// WaitReceiptPosition waits until this node has applied the receipts bucket up to p.
func (s *Service) WaitReceiptPosition(ctx context.Context, p uint64) error {
	return s.st.WaitBucket(ctx, store.BucketReceipts, s.receipts.rev, p)
}

// inThread reports whether a receipt for thread (the spec's thread_id: "" for none, "main",
// or a thread's root) may name ev.
func inThread(ev Event, thread string) bool {
	switch thread {
	case "":
		return true
	case "main":
		return ev.Thread == ""
	}
	return ev.Thread == thread || ev.PDU.EventID() == thread
}
