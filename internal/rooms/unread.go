package rooms

import (
	"encoding/json"
	"math"

	"github.com/matrix-org/gomatrixserverlib/spec"

	"github.com/firebreak/firebreak/internal/push"
)

// UnreadCounts counts the events after the user's latest read receipt that the user's push
// rules say notify, and how many of those highlight. The user's own events count as read: an
// event the user sent resets both counts, as it does in other homeservers. Counts are kept per
// room and user and extended with new events only, so a sync does not re-read the history.
func (s *Service) UnreadCounts(roomID, userID string) (notifications, highlights int) {
	readUpTo := s.readUpTo(roomID, userID)
	if me := s.model.StateEvent(roomID, "m.room.member", userID); me != nil && me.Seq > readUpTo {
		readUpTo = me.Seq // nothing before joining is unread
	}
	key := unreadKey{roomID, userID}
	s.unreadMu.Lock()
	st := s.unread[key]
	s.unreadMu.Unlock()
	if st.from != readUpTo || st.upTo < readUpTo {
		st = unreadState{from: readUpTo, upTo: readUpTo}
	}
	evs := s.model.Range(roomID, st.upTo, End, true, math.MaxInt, nil)
	if len(evs) > 0 {
		s.countUnread(roomID, userID, evs, &st)
		s.unreadMu.Lock()
		s.unread[key] = st
		s.unreadMu.Unlock()
	}
	return st.notifications, st.highlights
}

type unreadKey struct{ roomID, userID string }

// unreadState is the counts for events in (from, upTo].
type unreadState struct {
	from, upTo                uint64
	notifications, highlights int
}

func (s *Service) countUnread(roomID, userID string, evs []Event, st *unreadState) {
	joined, _, _ := s.MemberSummary(roomID, userID, 0)
	c := push.Context{UserID: userID, DisplayName: s.displayName(roomID, userID), MemberCount: joined}
	rules := s.pushRules(userID)
	pl := s.model.StateEvent(roomID, "m.room.power_levels", "")
	for _, ev := range evs {
		st.upTo = ev.Seq
		if ev.Sender == userID {
			st.notifications, st.highlights = 0, 0
			continue
		}
		c.SenderCanNotify = func(key string) bool { return canNotify(pl, ev.Sender, key) }
		if a := push.Evaluate(rules, ev.PDU.JSON(), c); a.Notify {
			st.notifications++
			if a.Highlight {
				st.highlights++
			}
		}
	}
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

// displayName is the user's display name in the room, from their member event.
func (s *Service) displayName(roomID, userID string) string {
	ev := s.model.StateEvent(roomID, "m.room.member", userID)
	if ev == nil {
		return ""
	}
	var c struct {
		DisplayName string `json:"displayname"`
	}
	_ = json.Unmarshal(ev.PDU.Content(), &c)
	return c.DisplayName
}
