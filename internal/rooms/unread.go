package rooms

import (
	"encoding/json"
	"math"

	"github.com/matrix-org/gomatrixserverlib/spec"

	"github.com/firebreak/firebreak/internal/push"
)

// UnreadCounts counts the events after the user's latest read receipt that the user's push
// rules say notify, and how many of those highlight. The user's own events never count.
func (s *Service) UnreadCounts(roomID, userID string) (notifications, highlights int) {
	readUpTo := s.readUpTo(roomID, userID)
	if me := s.model.StateEvent(roomID, "m.room.member", userID); me != nil && me.Seq > readUpTo {
		readUpTo = me.Seq // nothing before joining is unread
	}
	joined, _, _ := s.MemberSummary(roomID, userID, 0)
	c := push.Context{
		UserID:      userID,
		DisplayName: s.displayName(roomID, userID),
		MemberCount: joined,
	}
	rules := push.DefaultRules(userID)
	pl := s.model.StateEvent(roomID, "m.room.power_levels", "")
	for _, ev := range s.model.Range(roomID, readUpTo, End, true, math.MaxInt, func(e *Event) bool { return e.Sender != userID }) {
		c.SenderCanNotify = func(key string) bool { return canNotify(pl, ev.Sender, key) }
		a := push.Evaluate(rules, ev.PDU.JSON(), c)
		if a.Notify {
			notifications++
		}
		if a.Notify && a.Highlight {
			highlights++
		}
	}
	return notifications, highlights
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
