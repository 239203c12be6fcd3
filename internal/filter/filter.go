// Package filter owns Matrix event filters: their JSON form, their storage per user, and the
// matching of events against them, for sync and for room history.
package filter

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"

	"github.com/firebreak/firebreak/internal/store"
)

// Filter is a whole filter as uploaded to /user/{userId}/filter or given inline to /sync.
type Filter struct {
	EventFields []string    `json:"event_fields,omitempty"`
	EventFormat string      `json:"event_format,omitempty"`
	Presence    EventFilter `json:"presence"`
	AccountData EventFilter `json:"account_data"`
	Room        RoomFilter  `json:"room"`
}

// EventFilter selects events by type and sender.
type EventFilter struct {
	Limit      *int      `json:"limit,omitempty"`
	Types      *[]string `json:"types,omitempty"`
	NotTypes   []string  `json:"not_types,omitempty"`
	Senders    *[]string `json:"senders,omitempty"`
	NotSenders []string  `json:"not_senders,omitempty"`
}

// RoomEventFilter adds room and content conditions and member lazy-loading.
type RoomEventFilter struct {
	EventFilter
	Rooms                   *[]string `json:"rooms,omitempty"`
	NotRooms                []string  `json:"not_rooms,omitempty"`
	ContainsURL             *bool     `json:"contains_url,omitempty"`
	LazyLoadMembers         bool      `json:"lazy_load_members,omitempty"`
	IncludeRedundantMembers bool      `json:"include_redundant_members,omitempty"`
	// UnreadThreadNotifications (on the timeline filter) splits a room's unread counts by
	// thread in sync.
	UnreadThreadNotifications bool `json:"unread_thread_notifications,omitempty"`
}

// RoomFilter is the "room" part of a filter.
type RoomFilter struct {
	Rooms        *[]string       `json:"rooms,omitempty"`
	NotRooms     []string        `json:"not_rooms,omitempty"`
	Ephemeral    RoomEventFilter `json:"ephemeral"`
	IncludeLeave bool            `json:"include_leave,omitempty"`
	State        RoomEventFilter `json:"state"`
	Timeline     RoomEventFilter `json:"timeline"`
	AccountData  RoomEventFilter `json:"account_data"`
}

// ErrInvalid wraps every reason a filter is refused.
var ErrInvalid = errors.New("invalid filter")

// ErrNotFound: no stored filter with that id.
var ErrNotFound = errors.New("filter not found")

// Parse reads and checks a filter's JSON.
func Parse(b []byte) (Filter, error) {
	var f Filter
	if err := json.Unmarshal(b, &f); err != nil {
		return f, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	if err := checkLimits(f.Presence.Limit, f.AccountData.Limit, f.Room.Timeline.Limit, f.Room.State.Limit,
		f.Room.Ephemeral.Limit, f.Room.AccountData.Limit); err != nil {
		return f, err
	}
	if f.EventFormat != "" && f.EventFormat != "client" && f.EventFormat != "federation" {
		return f, fmt.Errorf("%w: event_format must be client or federation", ErrInvalid)
	}
	return f, nil
}

// ParseRoomEvents reads and checks a room event filter's JSON, as /messages and /context take
// it inline, with the checks Parse makes of the room event filters inside a filter.
func ParseRoomEvents(b []byte) (RoomEventFilter, error) {
	var f RoomEventFilter
	if err := json.Unmarshal(b, &f); err != nil {
		return f, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	return f, checkLimits(f.Limit)
}

func checkLimits(limits ...*int) error {
	for _, l := range limits {
		if l != nil && *l < 0 {
			return fmt.Errorf("%w: limit must not be negative", ErrInvalid)
		}
	}
	return nil
}

// Event is what a filter looks at.
type Event struct {
	Type    string
	Sender  string
	RoomID  string
	Content json.RawMessage
}

// Matches reports whether the event passes the filter's type and sender conditions.
func (f EventFilter) Matches(ev Event) bool {
	if f.Types != nil && !anyGlob(*f.Types, ev.Type) {
		return false
	}
	if anyGlob(f.NotTypes, ev.Type) {
		return false
	}
	if f.Senders != nil && !contains(*f.Senders, ev.Sender) {
		return false
	}
	return !contains(f.NotSenders, ev.Sender)
}

// Matches reports whether the event passes every condition of a room event filter.
func (f RoomEventFilter) Matches(ev Event) bool {
	if !f.EventFilter.Matches(ev) || !f.AllowsRoom(ev.RoomID) {
		return false
	}
	if f.ContainsURL != nil {
		var c struct {
			URL any `json:"url"`
		}
		_ = json.Unmarshal(ev.Content, &c)
		if (c.URL != nil) != *f.ContainsURL {
			return false
		}
	}
	return true
}

// KeepsEveryEvent reports whether the filter has no condition that could drop an event.
func (f RoomEventFilter) KeepsEveryEvent() bool {
	return f.Types == nil && len(f.NotTypes) == 0 && f.Senders == nil && len(f.NotSenders) == 0 &&
		f.ContainsURL == nil && f.Rooms == nil && len(f.NotRooms) == 0
}

// AllowsRoom applies the rooms and not_rooms conditions.
func (f RoomEventFilter) AllowsRoom(roomID string) bool {
	return allowsRoom(f.Rooms, f.NotRooms, roomID)
}

// AllowsRoom applies the room filter's top-level rooms and not_rooms conditions.
func (f RoomFilter) AllowsRoom(roomID string) bool {
	return allowsRoom(f.Rooms, f.NotRooms, roomID)
}

func allowsRoom(rooms *[]string, notRooms []string, roomID string) bool {
	if rooms != nil && !contains(*rooms, roomID) {
		return false
	}
	return !contains(notRooms, roomID)
}

// LimitOr returns the filter's limit, or def when it has none, capped at max.
func (f EventFilter) LimitOr(def, max int) int {
	if f.Limit == nil {
		return def
	}
	return min(*f.Limit, max)
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// anyGlob matches s against patterns where '*' stands for any run of characters.
func anyGlob(patterns []string, s string) bool {
	for _, p := range patterns {
		if glob(p, s) {
			return true
		}
	}
	return false
}

func glob(pattern, s string) bool {
	if !strings.Contains(pattern, "*") {
		return pattern == s
	}
	parts := strings.Split(pattern, "*")
	if !strings.HasPrefix(s, parts[0]) {
		return false
	}
	s = s[len(parts[0]):]
	for _, mid := range parts[1 : len(parts)-1] {
		i := strings.Index(s, mid)
		if i < 0 {
			return false
		}
		s = s[i+len(mid):]
	}
	return strings.HasSuffix(s, parts[len(parts)-1])
}

// Save stores a user's filter and returns its new id.
func Save(ctx context.Context, st *store.Store, userID string, raw json.RawMessage) (string, error) {
	for {
		b := make([]byte, 6)
		_, _ = rand.Read(b)
		id := base64.RawURLEncoding.EncodeToString(b)
		_, err := st.Create(ctx, store.BucketFilters, store.Key(userID, id), raw)
		if !errors.Is(err, store.ErrExists) {
			return id, err
		}
	}
}

// Load returns a user's stored filter by id, as it was uploaded.
func Load(ctx context.Context, st *store.Store, userID, id string) (json.RawMessage, error) {
	b, _, err := st.Get(ctx, store.BucketFilters, store.Key(userID, id))
	if errors.Is(err, store.ErrNotFound) {
		return nil, ErrNotFound
	}
	return b, err
}

// Cache keeps parsed stored filters: a client passes the same filter id to every /sync, and a
// stored filter never changes (a new one gets a new id), so an entry never goes stale.
type Cache struct {
	mu     sync.Mutex
	parsed map[string]Filter
	bytes  int // the stored size of the cached filters, a stand-in for their parsed size
}

// maxCachedFilterBytes bounds the cache by the size of what it holds, since a filter may be
// as large as a request body; when it would overflow it starts again empty.
const maxCachedFilterBytes = 16 << 20

// LoadParsed returns the user's stored filter id, parsed.
func (c *Cache) LoadParsed(ctx context.Context, st *store.Store, userID, id string) (Filter, error) {
	key := store.Key(userID, id)
	c.mu.Lock()
	f, ok := c.parsed[key]
	c.mu.Unlock()
	if ok {
		return f, nil
	}
	raw, err := Load(ctx, st, userID, id)
	if err != nil {
		return Filter{}, err
	}
	if f, err = Parse(raw); err != nil {
		return Filter{}, err
	}
	c.mu.Lock()
	if c.parsed == nil || c.bytes+len(raw) > maxCachedFilterBytes {
		c.parsed, c.bytes = map[string]Filter{}, 0
	}
	c.parsed[key] = f
	c.bytes += len(raw)
	c.mu.Unlock()
	return f, nil
}
