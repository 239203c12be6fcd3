package syncer

import (
	"github.com/firebreak/firebreak/internal/rooms"
)

// Response is a /sync response body.
type Response struct {
	NextBatch   string       `json:"next_batch"`
	Rooms       RoomsSection `json:"rooms"`
	AccountData EventList    `json:"account_data"`
	Presence    EventList    `json:"presence"`
	ToDevice    EventList    `json:"to_device"`
	DeviceLists *DeviceLists `json:"device_lists,omitempty"`
	// The syncing device's one-time key counts and unused fallback key types.
	OneTimeKeysCount       map[string]int `json:"device_one_time_keys_count"`
	UnusedFallbackKeyTypes []string       `json:"device_unused_fallback_key_types"`

	members *memberMemo // the lazy-loaded members it sends, remembered once it is returned
}

// DeviceLists names the users whose devices the client should query again (changed), and
// those it no longer shares a room with (left).
type DeviceLists struct {
	Changed []string `json:"changed,omitempty"`
	Left    []string `json:"left,omitempty"`
}

// RoomsSection groups rooms by the user's membership.
type RoomsSection struct {
	Join   map[string]*JoinedRoom  `json:"join"`
	Invite map[string]*InvitedRoom `json:"invite"`
	Leave  map[string]*LeftRoom    `json:"leave"`
	Knock  map[string]*KnockedRoom `json:"knock"`
}

// EventList is {"events": [...]}.
type EventList struct {
	Events []any `json:"events"`
}

// Timeline is a room's new events.
type Timeline struct {
	Events    []rooms.ClientEvent `json:"events"`
	Limited   bool                `json:"limited"`
	PrevBatch string              `json:"prev_batch,omitempty"`
}

// StateList is the room's state before the timeline.
type StateList struct {
	Events []rooms.ClientEvent `json:"events"`
}

// JoinedRoom is one room in rooms.join.
type JoinedRoom struct {
	Summary             Summary     `json:"summary"`
	State               StateList   `json:"state"`
	Timeline            Timeline    `json:"timeline"`
	Ephemeral           EventList   `json:"ephemeral"`
	AccountData         EventList   `json:"account_data"`
	UnreadNotifications UnreadCount `json:"unread_notifications"`
	// UnreadThreadNotifications are each thread's counts, when the filter asks for them
	// (UnreadNotifications then counts the main timeline only).
	UnreadThreadNotifications map[string]UnreadCount `json:"unread_thread_notifications,omitempty"`
}

// Summary helps clients name a room without loading all its members.
type Summary struct {
	Heroes       []string `json:"m.heroes,omitempty"`
	JoinedCount  *int     `json:"m.joined_member_count,omitempty"`
	InvitedCount *int     `json:"m.invited_member_count,omitempty"`
}

// UnreadCount is a room's notification counts for the user.
type UnreadCount struct {
	NotificationCount int `json:"notification_count"`
	HighlightCount    int `json:"highlight_count"`
}

// InvitedRoom is one room in rooms.invite: only stripped state.
type InvitedRoom struct {
	InviteState EventList `json:"invite_state"`
}

// KnockedRoom is one room in rooms.knock: only stripped state, the user's knock in it.
type KnockedRoom struct {
	KnockState EventList `json:"knock_state"`
}

// LeftRoom is one room in rooms.leave.
type LeftRoom struct {
	State       StateList `json:"state"`
	Timeline    Timeline  `json:"timeline"`
	AccountData EventList `json:"account_data"`
}

func newResponse() *Response {
	return &Response{
		Rooms:       RoomsSection{Join: map[string]*JoinedRoom{}, Invite: map[string]*InvitedRoom{}, Leave: map[string]*LeftRoom{}, Knock: map[string]*KnockedRoom{}},
		AccountData: EventList{Events: []any{}},
		Presence:    EventList{Events: []any{}},
		ToDevice:    EventList{Events: []any{}},
	}
}

// empty reports whether there is nothing new for the client.
func (r *Response) empty() bool {
	return len(r.Rooms.Join) == 0 && len(r.Rooms.Invite) == 0 && len(r.Rooms.Knock) == 0 && len(r.Rooms.Leave) == 0 &&
		len(r.AccountData.Events) == 0 && len(r.ToDevice.Events) == 0 && r.DeviceLists == nil
}
