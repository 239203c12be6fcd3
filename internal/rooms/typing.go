package rooms

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"sort"
	"sync"
	"time"

	"github.com/firebreak/firebreak/internal/store"
)

// Typing notifications are ephemeral: nodes tell each other over core NATS and nothing is
// stored. A node that misses one shows a stale indicator until it times out.
const (
	typingTopic      = "typing"
	maxTypingTimeout = 2 * time.Minute
)

type typingUpdate struct {
	RoomID  string `json:"room_id"`
	UserID  string `json:"user_id"`
	Typing  bool   `json:"typing"`
	Timeout int64  `json:"timeout_ms"`
}

type typingModel struct {
	mu    sync.Mutex
	until map[string]map[string]time.Time // room -> user -> typing until
	// expiries wake a room's syncs when an indicator runs out: one timer per indicator,
	// moved when it is renewed, so a client renewing every few seconds leaves one behind.
	expiries map[typingKey]*time.Timer
	changed  map[string]uint64 // room -> serial of its last change
	// serial is the last change's or token's: microseconds of the wall clock, or one more than
	// the serial before when the clock has not moved on (typingSerial). Clocks are close on
	// every node, so a token from another node compares with this one's serials, as its
	// client's view of typing (heard over core NATS on every node) does with this node's.
	// started is the serial of every room no change reached since this process started: a
	// token from before may show an indicator this process never heard of, so every room's is
	// sent to it once (one stayed on for good after a restart before).
	serial   uint64 // guarded by mu
	started  uint64
	onChange func(roomID string)
}

type typingKey struct{ roomID, userID string }

func newTypingModel() *typingModel {
	m := &typingModel{until: map[string]map[string]time.Time{}, expiries: map[typingKey]*time.Timer{},
		changed: map[string]uint64{}, onChange: func(string) {}}
	m.started = typingSerial(0)
	m.serial = m.started
	return m
}

// typingSerial is the serial of a change after the one at last.
func typingSerial(last uint64) uint64 { return max(last+1, uint64(time.Now().UnixMicro())) }

func (m *typingModel) subscribe(st *store.Store) (func(), error) {
	return st.SubscribeEphemeral(typingTopic, func(b []byte) {
		var u typingUpdate
		if json.Unmarshal(b, &u) == nil {
			m.apply(u)
		}
	})
}

func (m *typingModel) apply(u typingUpdate) {
	m.mu.Lock()
	users := m.until[u.RoomID]
	if users == nil {
		users = map[string]time.Time{}
		m.until[u.RoomID] = users
	}
	if u.Typing {
		// Clamped in milliseconds, as the client gave them: a huge count would wrap round as
		// a Duration and end the indicator at once.
		timeout := time.Duration(min(u.Timeout, maxTypingTimeout.Milliseconds())) * time.Millisecond
		users[u.UserID] = time.Now().Add(timeout)
		m.expireAfter(typingKey{u.RoomID, u.UserID}, timeout)
	} else {
		delete(users, u.UserID)
		m.stopExpiry(typingKey{u.RoomID, u.UserID})
	}
	m.mu.Unlock()
	m.bump(u.RoomID)
}

// expireAfter has the indicator k expire after d, instead of when it was to. m.mu is held.
func (m *typingModel) expireAfter(k typingKey, d time.Duration) {
	if t := m.expiries[k]; t != nil {
		t.Reset(d) // if it fired meanwhile, expire finds the indicator renewed, and runs again
		return
	}
	m.expiries[k] = time.AfterFunc(d, func() { m.expire(k) })
}

// stopExpiry drops the indicator k's timer. m.mu is held.
func (m *typingModel) stopExpiry(k typingKey) {
	if t := m.expiries[k]; t != nil {
		t.Stop()
		delete(m.expiries, k)
	}
}

// stop drops every timer, when the node stops hearing typing updates.
func (m *typingModel) stop() {
	m.mu.Lock()
	defer m.mu.Unlock()
	for k := range m.expiries {
		m.stopExpiry(k)
	}
}

// expire forgets a typing indicator that has run out (unless it was renewed meanwhile) and
// wakes the room's syncs.
func (m *typingModel) expire(k typingKey) {
	roomID, userID := k.roomID, k.userID
	m.mu.Lock()
	until, ok := m.until[roomID][userID]
	expired := ok && !until.After(time.Now())
	if expired {
		delete(m.expiries, k)
		delete(m.until[roomID], userID)
		if len(m.until[roomID]) == 0 {
			delete(m.until, roomID)
		}
	}
	m.mu.Unlock()
	if expired {
		m.bump(roomID)
	}
}

func (m *typingModel) bump(roomID string) {
	m.mu.Lock()
	m.serial = typingSerial(m.serial)
	m.changed[roomID] = m.serial
	m.mu.Unlock()
	m.onChange(roomID)
}

// SetTyping tells every node that the user is, or has stopped, typing in the room.
func (s *Service) SetTyping(_ context.Context, roomID, userID string, typing bool, timeoutMS int64) error {
	if s.model.Membership(roomID, userID) != "join" {
		return fmt.Errorf("%w: you are not in this room", ErrForbidden)
	}
	return s.publishTyping(typingUpdate{RoomID: roomID, UserID: userID, Typing: typing, Timeout: timeoutMS})
}

// publishTyping tells every node, this one included (it hears its own publish, so every node
// applies the update the same way).
func (s *Service) publishTyping(u typingUpdate) error {
	b, _ := json.Marshal(u)
	if err := s.st.PublishEphemeral(typingTopic, b); err != nil {
		return unavailable(err)
	}
	return nil
}

// TypingIn lists who is typing in the room now, and the serial of the room's last change.
func (s *Service) TypingIn(roomID string) ([]string, uint64) {
	s.typing.mu.Lock()
	now := time.Now()
	var typing []string
	for user, until := range s.typing.until[roomID] {
		if until.After(now) {
			typing = append(typing, user)
		}
	}
	serial, ok := s.typing.changed[roomID]
	if !ok {
		serial = s.typing.started
	}
	s.typing.mu.Unlock()
	// Members only (someone who left stops typing there); asked outside the typing lock, so
	// the model's lock is never taken under it.
	out := slices.DeleteFunc(typing, func(user string) bool { return s.model.Membership(roomID, user) != "join" })
	sort.Strings(out)
	return out, serial
}

// TypingPosition is the typing serial for a sync token: this node's clock now, which every
// change applied so far is at or before and every later one after, here or (within the
// clocks' skew) on another node. The token of a node that has had no change since another
// started must not read there as older than every room.
func (s *Service) TypingPosition() uint64 {
	m := s.typing
	m.mu.Lock()
	defer m.mu.Unlock()
	m.serial = typingSerial(m.serial - 1) // now, or the last change's serial if later
	return m.serial
}
