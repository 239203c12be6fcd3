package rooms

import (
	"maps"
	"math"
	"strings"
	"sync"

	"github.com/matrix-org/gomatrixserverlib"
	"github.com/matrix-org/gomatrixserverlib/spec"
	"github.com/tidwall/gjson"

	"github.com/firebreak/firebreak/internal/push"
)

// Counts are unread counts: events the push rules say notify, and those that highlight.
type Counts struct{ Notifications, Highlights int }

// UnreadCounts counts the room's unread events that the user's push rules say notify, and how
// many of those highlight. An event is read when an unthreaded or main-timeline receipt is at
// or after it, or a receipt for its own thread is (readMarks). The user's own events count as
// read: an event the user sent resets both counts, as it does in other homeservers.
func (s *Service) UnreadCounts(roomID, userID string) (notifications, highlights int) {
	st := s.unreadState(roomID, userID, false)
	return st.main.Notifications, st.main.Highlights
}

// ThreadUnreadCounts are the room's unread counts split by thread, as a client asking for
// unread_thread_notifications gets them: the main timeline's, and each thread's that has any.
// An event the user sent resets only its own thread's counts.
func (s *Service) ThreadUnreadCounts(roomID, userID string) (main Counts, threads map[string]Counts) {
	st := s.unreadState(roomID, userID, true)
	return st.main, st.threads
}

// unreadState gives the user's counts in the room, split by thread or not. Counts are kept
// per room, user and split and extended with new events only, so a sync does not re-read the
// history; a receipt that moves starts again the counts it bears on. Split, the main timeline
// is counted from its receipt and the threads' events from the unthreaded receipt: a
// main-timeline receipt does not mark them read.
func (s *Service) unreadState(roomID, userID string, split bool) unreadState {
	marks := s.userReadMarks(roomID, userID)
	stay := s.model.StayStart(roomID, userID) // nothing before joining is unread
	key := unreadKey{roomID, userID, split}
	s.unreadMu.Lock()
	st := s.unread[key]
	s.unreadMu.Unlock()
	changed := st.restart(marks, stay, split)
	lo := st.upTo
	if split {
		lo = min(lo, st.threadsUpTo)
	}
	if evs := s.model.Range(roomID, lo, End, true, math.MaxInt, nil); len(evs) > 0 {
		st.threads = maps.Clone(st.threads) // the cached state's map is shared with other syncs
		s.tallyUnread(roomID, userID, marks, split, evs, &st)
		changed = true
	}
	if changed && !marks.skipped {
		s.unreadMu.Lock()
		s.unread[key] = st
		s.unreadMu.Unlock()
	}
	return st
}

// restart starts afresh the parts of the counts whose receipts moved, and reports whether
// any did. Not split, every receipt bears on the one count.
func (st *unreadState) restart(marks readMarks, stay uint64, split bool) bool {
	from, mainRev := max(marks.unthreaded, marks.main, stay), marks.rev
	if split {
		mainRev = marks.mainRev
	}
	changed := false
	if st.from != from || st.mainRev != mainRev || st.upTo < from {
		st.from, st.upTo, st.mainRev, st.main = from, from, mainRev, Counts{}
		changed = true
	}
	if threadsFrom := max(marks.unthreaded, stay); split &&
		(st.threadsFrom != threadsFrom || st.threadsRev != marks.threadsRev || st.threadsUpTo < threadsFrom) {
		st.threadsFrom, st.threadsUpTo, st.threadsRev, st.threads = threadsFrom, threadsFrom, marks.threadsRev, nil
		changed = true
	}
	return changed
}

// tallyUnread counts evs, in stream order, into the parts of st they are new to: an event
// after upTo into the room's counts (split, only the main timeline's events), one after
// threadsUpTo into its thread's (split only). Both cursors then stand at the last event.
func (s *Service) tallyUnread(roomID, userID string, marks readMarks, split bool, evs []Event, st *unreadState) {
	tally := s.newUnreadTally(roomID, userID, marks, split)
	for _, ev := range evs {
		switch {
		case ev.Seq > st.upTo && (!split || ev.Thread == ""):
			tally.count(st, "main", ev)
		case split && ev.Thread != "" && ev.Seq > st.threadsUpTo:
			tally.count(st, ev.Thread, ev)
		}
	}
	last := evs[len(evs)-1].Seq
	st.upTo = max(st.upTo, last)
	if split {
		st.threadsUpTo = max(st.threadsUpTo, last)
	}
}

type unreadKey struct {
	roomID, userID string
	split          bool
}

// unreadState is the counts for events in (from, upTo], under the receipts as they stood at
// mainRev: all of them in main or, split by thread, the main timeline's in main and the
// threads' events in (threadsFrom, threadsUpTo], under the receipts at threadsRev, in threads.
type unreadState struct {
	from, upTo, mainRev                  uint64
	threadsFrom, threadsUpTo, threadsRev uint64
	main                                 Counts
	threads                              map[string]Counts
}

// unreadTally counts events for one user in one room.
type unreadTally struct {
	s      *Service
	userID string
	marks  readMarks
	split  bool
	ctx    push.Context
	rules  push.Ruleset
	pl     *Event
}

func (s *Service) newUnreadTally(roomID, userID string, marks readMarks, split bool) *unreadTally {
	joined, _, _ := s.MemberSummary(roomID, userID, 0)
	return &unreadTally{s: s, userID: userID, marks: marks, split: split,
		ctx:   push.Context{UserID: userID, DisplayName: s.displayName(roomID, userID), MemberCount: joined},
		rules: s.pushRules(userID), pl: s.model.StateEvent(roomID, "m.room.power_levels", "")}
}

// count adds ev to the counts named into ("main" or a thread's root) if it is unread and
// notifies. The user's own event resets those counts instead.
func (t *unreadTally) count(st *unreadState, into string, ev Event) {
	if ev.Sender == t.userID {
		st.set(into, Counts{})
		return
	}
	if t.marks.read(ev.Seq, ev.thread(), t.split) {
		return
	}
	decoded, ok := t.s.pushDecoded.get(ev.PDU)
	if !ok {
		return
	}
	t.ctx.SenderCanNotify = func(key string) bool { return canNotify(t.pl, ev.Sender, key) }
	if a := push.EvaluateDecoded(t.rules, decoded, t.ctx); a.Notify {
		counts := st.get(into)
		counts.Notifications++
		if a.Highlight {
			counts.Highlights++
		}
		st.set(into, counts)
	}
}

func (st *unreadState) get(thread string) Counts {
	if thread == "main" {
		return st.main
	}
	return st.threads[thread]
}

// set records a thread's counts, leaving out threads with none.
func (st *unreadState) set(thread string, counts Counts) {
	switch {
	case thread == "main":
		st.main = counts
	case counts == Counts{}:
		delete(st.threads, thread)
	default:
		if st.threads == nil {
			st.threads = map[string]Counts{}
		}
		st.threads[thread] = counts
	}
}

// pushDecodedCap is how many recent events stay decoded for push rules: enough for every
// member's sync to find the events it has not counted yet.
const pushDecodedCap = 4096

// pushDecoded shares the decoding of recent events for push rules between the members of their
// rooms: each new event is evaluated once per member, and decoding it every time was most of
// that cost. Keys are PDUs, which gomatrixserverlib implements as pointers, so a redacted event
// (a new PDU) is decoded afresh.
type pushDecoded struct {
	mu    sync.Mutex
	byPDU map[gomatrixserverlib.PDU]push.Event
	ring  []gomatrixserverlib.PDU // insertion order, for evicting the oldest
	next  int
}

func newPushDecoded() *pushDecoded {
	return &pushDecoded{byPDU: map[gomatrixserverlib.PDU]push.Event{}, ring: make([]gomatrixserverlib.PDU, pushDecodedCap)}
}

func (d *pushDecoded) get(pdu gomatrixserverlib.PDU) (push.Event, bool) {
	d.mu.Lock()
	ev, ok := d.byPDU[pdu]
	d.mu.Unlock()
	if ok {
		return ev, true
	}
	if ev, ok = push.Decode(pdu.JSON()); !ok {
		return ev, false
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if _, raced := d.byPDU[pdu]; !raced {
		delete(d.byPDU, d.ring[d.next])
		d.ring[d.next] = pdu
		d.next = (d.next + 1) % len(d.ring)
		d.byPDU[pdu] = ev
	}
	return ev, true
}

func canNotify(plEvent *Event, sender, key string) bool {
	if plEvent == nil {
		return false
	}
	pl, err := plEvent.PDU.PowerLevels()
	if err != nil {
		return false
	}
	return pl.UserLevel(spec.SenderID(sender)) >= pl.NotificationLevel(key)
}

// displayName is the user's display name in the room, from their member event. It is decoded
// as the rest of the server decodes member events (encoding/json: the last of repeated keys, a
// key matched regardless of case), so a highlight agrees with /joined_members.
func (s *Service) displayName(roomID, userID string) string {
	ev := s.model.StateEvent(roomID, "m.room.member", userID)
	if ev == nil {
		return ""
	}
	return memberDisplayName(ev.PDU.Content())
}

// memberDisplayName reads a member event's display name as encoding/json reads it into a
// string field: of the keys that match (without regard to case), the last that is a string.
// The two agree on stored content, which is valid UTF-8 JSON (a send with anything else is
// refused); they may not on broken JSON, which gjson reads as far as it can.
// It runs for every member on every message, and decoding the content through encoding/json
// was a tenth of the cost of counting unread messages.
func memberDisplayName(content []byte) string {
	var name string
	gjson.ParseBytes(content).ForEach(func(key, value gjson.Result) bool {
		if value.Type == gjson.String && strings.EqualFold(key.String(), "displayname") {
			name = value.Str
		}
		return true
	})
	return name
}
