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
	Relations       *Relations      `json:"m.relations,omitempty"`
}

// Relations are the spec's bundled aggregations of an event's children.
type Relations struct {
	Thread    *ThreadSummary `json:"m.thread,omitempty"`
	Replace   *ClientEvent   `json:"m.replace,omitempty"` // the newest valid edit
	Reference *References    `json:"m.reference,omitempty"`
}

// ThreadSummary sums up the thread an event is the root of.
type ThreadSummary struct {
	LatestEvent             ClientEvent `json:"latest_event"`
	Count                   int         `json:"count"`
	CurrentUserParticipated bool        `json:"current_user_participated"`
}

// References lists the events that reference an event.
type References struct {
	Chunk []EventRef `json:"chunk"`
}

// EventRef names an event.
type EventRef struct {
	EventID string `json:"event_id"`
}

// Viewer says who a client event is rendered for: the transaction id is only echoed to the
// device that sent the event.
type Viewer struct {
	UserID, DeviceID string
}

// ClientEvent renders ev for the viewer, with the aggregations of its children the viewer may
// see. withRoomID is false inside sync's per-room sections.
func (s *Service) ClientEvent(roomID string, ev Event, v Viewer, withRoomID bool) ClientEvent {
	return s.clientEvent(roomID, ev, v, withRoomID, bundleDepth)
}

// bundleDepth is how many levels of aggregations an event carries: its own, and those of its
// thread's latest reply (the spec asks for both), but not further.
const bundleDepth = 2

func (s *Service) clientEvent(roomID string, ev Event, v Viewer, withRoomID bool, bundles int) ClientEvent {
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
			rb := s.clientEvent(roomID, because, Viewer{}, withRoomID, 0)
			ce.Unsigned.RedactedBecause = &rb
		}
	}
	if bundles > 0 && len(ev.children) > 0 {
		ce.Unsigned.Relations = s.relations(roomID, ev, v, withRoomID, bundles)
	}
	return ce
}

// relations renders the aggregations of ev's children for the viewer; nil when there are none.
func (s *Service) relations(roomID string, ev Event, v Viewer, withRoomID bool, bundles int) *Relations {
	a := s.model.aggregate(roomID, ev, v.UserID)
	if a.empty() {
		return nil
	}
	rel := &Relations{}
	if a.threadLatest != nil {
		rel.Thread = &ThreadSummary{
			LatestEvent:             s.clientEvent(roomID, *a.threadLatest, v, withRoomID, bundles-1),
			Count:                   a.threadCount,
			CurrentUserParticipated: a.participated,
		}
	}
	if a.edit != nil {
		edit := s.clientEvent(roomID, *a.edit, v, withRoomID, 0)
		rel.Replace = &edit
	}
	if len(a.references) > 0 {
		rel.Reference = &References{}
		for _, id := range a.references {
			rel.Reference.Chunk = append(rel.Reference.Chunk, EventRef{id})
		}
	}
	return rel
}

// ClientEvents renders a list of events.
func (s *Service) ClientEvents(roomID string, evs []Event, v Viewer, withRoomID bool) []ClientEvent {
	out := make([]ClientEvent, len(evs))
	for i, ev := range evs {
		out[i] = s.ClientEvent(roomID, ev, v, withRoomID)
	}
	return out
}
