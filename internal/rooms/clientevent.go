package rooms

import (
	"encoding/json"
	"time"
)

// ClientEvent is an event in the Client-Server API's format.
type ClientEvent struct {
	Content        json.RawMessage `json:"content"`
	EventID        string          `json:"event_id"`
	OriginServerTS int64           `json:"origin_server_ts"`
	RoomID         string          `json:"room_id,omitempty"`
	Sender         string          `json:"sender"`
	StateKey       *string         `json:"state_key,omitempty"`
	Type           string          `json:"type"`
	Redacts        string          `json:"redacts,omitempty"`
	Unsigned       *Unsigned       `json:"unsigned,omitempty"`
}

// Unsigned is the part of a client event the server adds.
type Unsigned struct {
	Age             int64           `json:"age"`
	TransactionID   string          `json:"transaction_id,omitempty"`
	PrevContent     json.RawMessage `json:"prev_content,omitempty"`
	PrevSender      string          `json:"prev_sender,omitempty"`
	RedactedBecause *ClientEvent    `json:"redacted_because,omitempty"`
}

// Viewer says who a client event is rendered for: the transaction id is only echoed to the
// device that sent the event.
type Viewer struct {
	UserID, DeviceID string
}

// ClientEvent renders ev for the viewer. withRoomID is false inside sync's per-room sections.
func (s *Service) ClientEvent(roomID string, ev Event, v Viewer, withRoomID bool) ClientEvent {
	ce := ClientEvent{
		Content:        ev.PDU.Content(),
		EventID:        ev.PDU.EventID(),
		OriginServerTS: int64(ev.PDU.OriginServerTS()),
		Sender:         ev.Sender,
		StateKey:       ev.PDU.StateKey(),
		Type:           ev.PDU.Type(),
		Redacts:        ev.PDU.Redacts(),
		Unsigned: &Unsigned{
			Age:         time.Now().UnixMilli() - int64(ev.PDU.OriginServerTS()),
			PrevContent: ev.PrevContent,
			PrevSender:  ev.PrevSender,
		},
	}
	if withRoomID {
		ce.RoomID = roomID
	}
	if ev.Device != "" && ev.Sender == v.UserID && ev.Device == v.DeviceID {
		ce.Unsigned.TransactionID = ev.TxnID
	}
	if ev.RedactedBy != "" {
		if because, ok := s.model.Event(roomID, ev.RedactedBy); ok {
			rb := s.ClientEvent(roomID, because, Viewer{}, withRoomID)
			ce.Unsigned.RedactedBecause = &rb
		}
	}
	return ce
}

// ClientEvents renders a list of events.
func (s *Service) ClientEvents(roomID string, evs []Event, v Viewer, withRoomID bool) []ClientEvent {
	out := make([]ClientEvent, len(evs))
	for i, ev := range evs {
		out[i] = s.ClientEvent(roomID, ev, v, withRoomID)
	}
	return out
}
