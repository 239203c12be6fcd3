package drill

import (
	"fmt"
	"slices"
	"sync"
	"time"
)

// simUser is one simulated person with one client (one device), which runs a send loop and a
// sync loop at the same time.
type simUser struct {
	idx      int
	name     string // localpart
	password string
	sess     session
	rooms    []string // ids of the rooms the user is in

	// Owned by the send loop; read once it has stopped.
	acks      []ack
	sendOK    []time.Time // when each acknowledgement arrived
	abandoned int         // sends still unacknowledged when the load stopped

	// Written by the sync loop, read by the delivery check while it runs.
	mu       sync.Mutex
	received map[string]time.Time // event id -> when a sync (or gap fill) first delivered it
	// readOutages are the times syncs failed: from the last successful sync before a failure
	// to the next successful one. A long poll that waits for news is not an outage.
	readOutages []span
	since       string
	dupSeen     int // events a sync delivered again after an earlier sync had delivered them
}

// span is a stretch of time.
type span struct{ from, to time.Time }

// ack is one acknowledged send: the server answered 200 with an event id.
type ack struct {
	Room    string
	Sender  string
	Txn     string
	EventID string
	Node    string    // the node that answered
	Started time.Time // the first attempt
	At      time.Time
	Probe   bool // sent by a partition probe through a cut-off node
}

// marker names one logical send: a sender's transaction id is unique per drill.
func (a ack) marker() string { return a.Sender + " " + a.Txn }

// messageContent carries the transaction id in the body, so a send stored twice under two
// event ids still shows up as two events with one marker.
func messageContent(user, txn string) map[string]any {
	return map[string]any{
		"msgtype":      "m.text",
		"body":         fmt.Sprintf("drill message %s from %s", txn, user),
		"fb_drill_txn": txn,
	}
}

func (u *simUser) received1(eventID string, at time.Time, fromTimeline bool) {
	u.mu.Lock()
	defer u.mu.Unlock()
	if _, seen := u.received[eventID]; seen {
		if fromTimeline {
			u.dupSeen++
		}
		return
	}
	u.received[eventID] = at
}

func (u *simUser) hasReceived(eventID string) (time.Time, bool) {
	u.mu.Lock()
	defer u.mu.Unlock()
	t, ok := u.received[eventID]
	return t, ok
}

// roomPlan is one room of the drill and who is in it.
type roomPlan struct {
	ID      string
	Name    string
	Direct  bool
	Creator int   // user index
	Members []int // user indexes, the creator first
}

// planRooms spreads users over group rooms and direct chats: about a third of the rooms are
// direct chats between two users, the rest are groups; every user is in at least one group.
func planRooms(users, rooms int) []*roomPlan {
	dms := rooms / 3
	if dms > users/2 {
		dms = users / 2
	}
	groups := rooms - dms
	var out []*roomPlan
	for g := 0; g < groups; g++ {
		p := &roomPlan{Name: fmt.Sprintf("group %d", g+1)}
		for u := g; u < users; u += groups {
			p.Members = append(p.Members, u)
		}
		// More groups than users: fill up with the next users so every room has a conversation.
		for k := 0; len(p.Members) < 2; k++ {
			if u := (g + k) % users; !slices.Contains(p.Members, u) {
				p.Members = append(p.Members, u)
			}
		}
		p.Creator = p.Members[0]
		out = append(out, p)
	}
	for d := 0; d < dms; d++ {
		a, b := 2*d, 2*d+1
		out = append(out, &roomPlan{Name: fmt.Sprintf("dm %d", d+1), Direct: true, Creator: a, Members: []int{a, b}})
	}
	return out
}

func (u *simUser) addReadOutage(s span) {
	u.mu.Lock()
	u.readOutages = append(u.readOutages, s)
	u.mu.Unlock()
}

// longestOutage is the longest of the spans, clipped to [from, to].
func longestOutage(spans []span, from, to time.Time) time.Duration {
	var longest time.Duration
	for _, s := range spans {
		a, b := s.from, s.to
		if a.Before(from) {
			a = from
		}
		if b.After(to) {
			b = to
		}
		longest = max(longest, b.Sub(a))
	}
	return longest
}
