package rooms

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"slices"
	"time"

	"github.com/matrix-org/gomatrixserverlib"
	"github.com/matrix-org/gomatrixserverlib/spec"
)

// eventSigner builds the events this server signs.
type eventSigner struct {
	origin spec.ServerName
	key    SigningKey
	// signaturesPrefix and signaturesSuffix enclose the signature in the canonical
	// {"signatures":{origin:{key id:signature}}}.
	signaturesPrefix []byte
}

const signaturesSuffix = `"}}}`

func newEventSigner(origin string, key SigningKey) (*eventSigner, error) {
	originJSON, err := canonicalString(origin)
	if err != nil {
		return nil, err
	}
	keyJSON, err := canonicalString(string(key.ID))
	if err != nil {
		return nil, err
	}
	prefix := fmt.Appendf(nil, `{"signatures":{%s:{%s:"`, originJSON, keyJSON)
	return &eventSigner{origin: spec.ServerName(origin), key: key, signaturesPrefix: prefix}, nil
}

func canonicalString(s string) ([]byte, error) {
	b, err := json.Marshal(s)
	if err != nil {
		return nil, err
	}
	return gomatrixserverlib.CanonicalJSONAssumeValid(b), nil
}

// build does what EventBuilder.Build does, with the same event id and bytes, in about half
// the CPU. Build marshals and parses the whole event a dozen times over (adding the content
// hash, redacting, signing, re-canonicalising, then hashing the redacted form again for the
// event id). Here the event is canonicalised once, in three groups of top-level keys whose
// concatenation is the canonical event, so the hash and signature slot in between the groups;
// the bytes signed are the bytes hashed for the event id. Only the event format of room
// versions 3 and later, the ones Firebreak creates, takes this path.
//
// The signature differs from Build's in one case, where Build's is wrong: Build signs the
// redacted event before canonicalising it, so content that canonical JSON rewrites (a lone
// UTF-16 surrogate, a duplicated key, -0.1 in rooms without integer-only JSON) in a key the
// redaction keeps gets a signature that does not verify. Here the canonical event is signed,
// as the spec says. The tests hold the rest to Build byte for byte and check the signature.
func (s *eventSigner) build(eb *gomatrixserverlib.EventBuilder, version gomatrixserverlib.IRoomVersion,
	now time.Time) (gomatrixserverlib.PDU, error) {
	prev, prevOK := eb.PrevEvents.([]string)
	auth, authOK := eb.AuthEvents.([]string)
	if version.EventFormat() != gomatrixserverlib.EventFormatV2 || !prevOK || !authOK || prev == nil || auth == nil ||
		len(eb.Signature) > 0 || len(eb.Unsigned) > 0 {
		return eb.Build(now, s.origin, s.key.ID, s.key.Priv)
	}
	groups, err := canonicalGroups(eb, version, prev, auth, now, s.origin)
	if err != nil {
		return nil, err
	}
	contentHash := sha256.Sum256(joinObjects(groups.head, groups.middle, groups.tail))
	hashes := fmt.Appendf(nil, `{"hashes":{"sha256":%q}}`, base64.RawStdEncoding.EncodeToString(contentHash[:]))
	redacted, err := version.RedactEventJSON(joinObjects(groups.head, hashes, groups.middle, groups.tail))
	if err != nil {
		return nil, err
	}
	// Signatures and the event id both cover the canonical redacted event.
	signed := gomatrixserverlib.CanonicalJSONAssumeValid(redacted)
	signature := base64.RawStdEncoding.EncodeToString(ed25519.Sign(s.key.Priv, signed))
	signatures := slices.Concat(s.signaturesPrefix, []byte(signature+signaturesSuffix))
	eventJSON := joinObjects(groups.head, hashes, groups.middle, signatures, groups.tail)
	pdu, err := version.NewEventFromTrustedJSONWithEventID(eventIDOf(signed, version), eventJSON, false)
	if err != nil {
		return nil, err
	}
	return pdu, gomatrixserverlib.CheckFields(pdu)
}

// eventGroups are the canonical JSON objects of an event's top-level keys that sort before
// "hashes" (head), between "hashes" and "signatures" (middle), and after "signatures" (tail).
type eventGroups struct{ head, middle, tail []byte }

func canonicalGroups(eb *gomatrixserverlib.EventBuilder, version gomatrixserverlib.IRoomVersion,
	prev, auth []string, now time.Time, origin spec.ServerName) (eventGroups, error) {
	head, err := json.Marshal(struct {
		AuthEvents []string     `json:"auth_events"`
		Content    spec.RawJSON `json:"content"`
		Depth      int64        `json:"depth"`
	}{auth, eb.Content, eb.Depth})
	if err != nil {
		return eventGroups{}, err
	}
	// The content is the client's: this checks it is canonical JSON the room version accepts.
	if head, err = gomatrixserverlib.EnforcedCanonicalJSON(head, version.Version()); err != nil {
		return eventGroups{}, err
	}
	var prevState *[]string
	if eb.StateKey != nil {
		prevState = &[]string{} // Build keeps this historical key on state events
	}
	middle, err := json.Marshal(struct {
		Origin         spec.ServerName `json:"origin"`
		OriginServerTS spec.Timestamp  `json:"origin_server_ts"`
		PrevEvents     []string        `json:"prev_events"`
		PrevState      *[]string       `json:"prev_state,omitempty"`
		Redacts        string          `json:"redacts,omitempty"`
		RoomID         string          `json:"room_id"`
		Sender         string          `json:"sender"`
	}{origin, spec.AsTimestamp(now), prev, prevState, eb.Redacts, eb.RoomID, eb.SenderID})
	if err != nil {
		return eventGroups{}, err
	}
	tail, err := json.Marshal(struct {
		StateKey *string `json:"state_key,omitempty"`
		Type     string  `json:"type"`
	}{eb.StateKey, eb.Type})
	if err != nil {
		return eventGroups{}, err
	}
	return eventGroups{
		head:   head,
		middle: gomatrixserverlib.CanonicalJSONAssumeValid(middle),
		tail:   gomatrixserverlib.CanonicalJSONAssumeValid(tail),
	}, nil
}

// joinObjects merges non-empty JSON objects, given in key order, into one.
func joinObjects(objects ...[]byte) []byte {
	var b bytes.Buffer
	b.WriteByte('{')
	for i, o := range objects {
		if i > 0 {
			b.WriteByte(',')
		}
		b.Write(o[1 : len(o)-1])
	}
	b.WriteByte('}')
	return b.Bytes()
}

// eventIDOf is the reference hash of an event, given its canonical redacted JSON.
func eventIDOf(redacted []byte, version gomatrixserverlib.IRoomVersion) string {
	sum := sha256.Sum256(redacted)
	enc := base64.RawURLEncoding
	if version.EventIDFormat() == gomatrixserverlib.EventIDFormatV2 {
		enc = base64.RawStdEncoding
	}
	return "$" + enc.EncodeToString(sum[:])
}
