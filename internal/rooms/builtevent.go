package rooms

import (
	"sync"
	"time"
	"unicode/utf8"

	"github.com/matrix-org/gomatrixserverlib"
	"github.com/matrix-org/gomatrixserverlib/spec"
	"golang.org/x/crypto/ed25519"
)

// builtEvent is an event this node has just built and signed. Its fields are the ones it was
// built from, so it answers gomatrixserverlib's PDU interface without parsing its own JSON
// back: that parse (encoding/json into gomatrixserverlib's event) was the largest cost of a
// send after the signature. What the fields do not answer (the content accessors of state
// events, and the methods that change an event) goes to gomatrixserverlib's own event, parsed
// from the JSON on first use, so its behaviour is gomatrixserverlib's.
//
// newBuiltEvent only makes one where the fields are exactly what that parse would give: every
// string valid UTF-8 (encoding/json replaces invalid bytes), a room id the parse accepts and a
// time after 1970 (the parse refuses a negative origin_server_ts).
type builtEvent struct {
	id, eventType, sender, roomID, redacts string
	stateKey                               *string
	content, json, unsigned                []byte
	redacted                               bool
	prev, auth                             []string
	depth                                  int64
	ts                                     spec.Timestamp
	version                                gomatrixserverlib.IRoomVersion

	parseOnce sync.Once
	parsed    gomatrixserverlib.PDU
}

// newBuiltEvent returns the event built from eb with the given id and JSON, or nil where only
// gomatrixserverlib's parse gives the exact fields or the right error.
func newBuiltEvent(eb *gomatrixserverlib.EventBuilder, version gomatrixserverlib.IRoomVersion, id string,
	eventJSON, content []byte, prev, auth []string, now time.Time) *builtEvent {
	if now.UnixMilli() < 0 || !acceptedRoomID(eb.RoomID) || !allValidUTF8(eb.Type, eb.SenderID, eb.Redacts) ||
		(eb.StateKey != nil && !utf8.ValidString(*eb.StateKey)) || !allValidUTF8(prev...) || !allValidUTF8(auth...) {
		return nil
	}
	e := &builtEvent{id: id, eventType: eb.Type, sender: eb.SenderID, roomID: eb.RoomID, redacts: eb.Redacts,
		content: content, json: eventJSON, prev: prev, auth: auth, depth: eb.Depth, ts: spec.AsTimestamp(now), version: version}
	if eb.StateKey != nil {
		stateKey := *eb.StateKey
		e.stateKey = &stateKey
	}
	return e
}

// acceptedRoomID is the room id check gomatrixserverlib's parse makes: a '!', a ':' and at
// most 255 characters and bytes.
func acceptedRoomID(id string) bool {
	colon := false
	for i := 0; i < len(id); i++ {
		colon = colon || id[i] == ':'
	}
	return colon && id[0] == '!' && len(id) <= 255 && utf8.ValidString(id)
}

func allValidUTF8(ss ...string) bool {
	for _, s := range ss {
		if !utf8.ValidString(s) {
			return false
		}
	}
	return true
}

// full is gomatrixserverlib's own event for the same JSON, parsed once.
func (e *builtEvent) full() gomatrixserverlib.PDU {
	e.parseOnce.Do(func() { e.parsed = e.parse() })
	return e.parsed
}

// parse is gomatrixserverlib's own event for the same JSON.
func (e *builtEvent) parse() gomatrixserverlib.PDU {
	p, err := e.version.NewEventFromTrustedJSONWithEventID(e.id, e.json, e.redacted)
	if err != nil {
		// newBuiltEvent admits only JSON this parse accepts; anything else is a bug here.
		panic("rooms: a built event does not parse: " + err.Error())
	}
	return p
}

func (e *builtEvent) EventID() string                { return e.id }
func (e *builtEvent) StateKey() *string              { return e.stateKey }
func (e *builtEvent) Type() string                   { return e.eventType }
func (e *builtEvent) Content() []byte                { return e.content }
func (e *builtEvent) Redacts() string                { return e.redacts }
func (e *builtEvent) Redacted() bool                 { return e.redacted }
func (e *builtEvent) PrevEventIDs() []string         { return e.prev }
func (e *builtEvent) AuthEventIDs() []string         { return e.auth }
func (e *builtEvent) OriginServerTS() spec.Timestamp { return e.ts }
func (e *builtEvent) SenderID() spec.SenderID        { return spec.SenderID(e.sender) }
func (e *builtEvent) Unsigned() []byte               { return e.unsigned }
func (e *builtEvent) Depth() int64                   { return e.depth }
func (e *builtEvent) JSON() []byte                   { return e.json }

func (e *builtEvent) Version() gomatrixserverlib.RoomVersion { return e.version.Version() }

func (e *builtEvent) StateKeyEquals(s string) bool {
	return e.stateKey != nil && *e.stateKey == s
}

// RoomID panics on an id spec.NewRoomID refuses, as gomatrixserverlib's does (its rules are
// stricter than the event parse's).
func (e *builtEvent) RoomID() spec.RoomID {
	roomID, err := spec.NewRoomID(e.roomID)
	if err != nil {
		panic("rooms: RoomID is invalid: " + err.Error())
	}
	return *roomID
}

func (e *builtEvent) JoinRule() (string, error) { return e.full().JoinRule() }

func (e *builtEvent) HistoryVisibility() (gomatrixserverlib.HistoryVisibility, error) {
	return e.full().HistoryVisibility()
}

func (e *builtEvent) Membership() (string, error) { return e.full().Membership() }

func (e *builtEvent) PowerLevels() (*gomatrixserverlib.PowerLevelContent, error) {
	return e.full().PowerLevels()
}

func (e *builtEvent) ToHeaderedJSON() ([]byte, error) { return e.full().ToHeaderedJSON() }

// The methods that change an event (none of Firebreak's code calls them) act on a parsed copy,
// which they return or which replaces this event's fields. Sign returns the signed copy and
// leaves this event as it was, as the interface says (gomatrixserverlib's own also changes
// the event it is called on).

func (e *builtEvent) SetUnsigned(unsigned any) (gomatrixserverlib.PDU, error) {
	return e.parse().SetUnsigned(unsigned)
}

func (e *builtEvent) Sign(signingName string, keyID gomatrixserverlib.KeyID, key ed25519.PrivateKey) gomatrixserverlib.PDU {
	return e.parse().Sign(signingName, keyID, key)
}

func (e *builtEvent) Redact() {
	p := e.parse()
	p.Redact()
	e.become(p)
}

func (e *builtEvent) SetUnsignedField(path string, value any) error {
	p := e.parse()
	if err := p.SetUnsignedField(path, value); err != nil {
		return err
	}
	e.become(p)
	return nil
}

// become makes this event answer from p, a changed copy of it.
func (e *builtEvent) become(p gomatrixserverlib.PDU) {
	e.id, e.eventType, e.sender, e.redacts, e.stateKey = p.EventID(), p.Type(), string(p.SenderID()), p.Redacts(), p.StateKey()
	e.content, e.json, e.unsigned, e.redacted = p.Content(), p.JSON(), p.Unsigned(), p.Redacted()
	e.prev, e.auth, e.depth, e.ts = p.PrevEventIDs(), p.AuthEventIDs(), p.Depth(), p.OriginServerTS()
	e.parseOnce.Do(func() {})
	e.parsed = p
}
