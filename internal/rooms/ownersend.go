package rooms

import (
	"context"
	"encoding/json"
	"errors"
	"time"

	"github.com/firebreak/firebreak/internal/store"
	"github.com/firebreak/firebreak/internal/wire"
)

// Sends built at the shard's owner. In a cluster that groups its appends one node writes each
// shard (docs/ARCHITECTURE.md, "Group commit"). A send built on another node builds on that
// node's view of the room, which trails the owner's by as long as the owner's writes take to
// reach it, so sends into one room through two nodes refused each other's appends and were
// built again. A node therefore hands a client's send to the shard's owner, whose own writes
// keep its view current, and then waits until it has applied the event itself, so that the
// sender reads it back from the node it asked.
//
// Only sends with a transaction id go to the owner: should the owner fail to answer, the node
// sends the event itself, and the transaction id makes sure that a send the owner stored all
// the same is found rather than stored twice.

// sendService names forwarded sends (store.AskShardOwner), with their encoding's version.
// (v1 was JSON, whose encoding and decoding cost 2.7% of three nodes' CPU at maximum load.)
const sendService = "send.v2"

// ownerSendWait is how long an owner gets for a forwarded send. A send takes milliseconds;
// an owner that takes longer is losing its shard or gone, and the node then sends the event
// itself, its append waiting out the election as any append does.
const ownerSendWait = 2 * time.Second

// forwardedSend is a send as the asking node hands it to the owner.
type forwardedSend struct {
	Proto
	Device string
	TxnID  string
	// Seen is how far the asking node had applied the shard: the owner builds on no less, so
	// that it allows what the asking node saw allowed (a join made through it a moment ago).
	Seen uint64
}

// A forwarded send is Seen, then the proto event's fields, the device and the transaction id,
// each prefixed with its length; the state key is preceded by 1 if the event has one, else 0.
func (f forwardedSend) encode() []byte {
	var stateKey string
	hasStateKey := f.StateKey != nil
	if hasStateKey {
		stateKey = *f.StateKey
	}
	size := 2*wire.MaxUvarintSize + wire.FieldSize(len(f.Content)) +
		wire.FieldsSize(f.RoomID, f.Sender, f.Type, stateKey, f.Redacts, f.Device, f.TxnID)
	buf := wire.AppendUvarint(make([]byte, 0, size), f.Seen)
	buf = wire.AppendFields(buf, f.RoomID, f.Sender, f.Type)
	if hasStateKey {
		buf = wire.AppendField(wire.AppendUvarint(buf, 1), stateKey)
	} else {
		buf = wire.AppendUvarint(buf, 0)
	}
	buf = wire.AppendField(buf, f.Content)
	return wire.AppendFields(buf, f.Redacts, f.Device, f.TxnID)
}

var errBadForwardedSend = errors.New("rooms: unreadable forwarded send")

func decodeForwardedSend(data []byte) (forwardedSend, error) {
	r := wire.NewReader(data)
	f := forwardedSend{Seen: r.Uvarint()}
	f.RoomID, f.Sender, f.Type = r.String(), r.String(), r.String()
	switch r.Uvarint() {
	case 0:
	case 1:
		key := r.String()
		f.StateKey = &key
	default:
		return forwardedSend{}, errBadForwardedSend
	}
	if content := r.Field(); len(content) > 0 {
		f.Content = json.RawMessage(content)
	}
	f.Redacts, f.Device, f.TxnID = r.String(), r.String(), r.String()
	if !r.OK() || r.More() {
		return forwardedSend{}, errBadForwardedSend
	}
	return f, nil
}

// sendAnswer is the owner's answer: the event's id and its position in the shard, or an error
// of a kind the asking node knows. It travels as Seq, then the other fields, each prefixed
// with its length.
type sendAnswer struct {
	EventID string
	Seq     uint64
	Kind    string
	Error   string
}

func (a sendAnswer) encode() []byte {
	size := wire.MaxUvarintSize + wire.FieldsSize(a.EventID, a.Kind, a.Error)
	return wire.AppendFields(wire.AppendUvarint(make([]byte, 0, size), a.Seq), a.EventID, a.Kind, a.Error)
}

func decodeSendAnswer(data []byte) (sendAnswer, bool) {
	r := wire.NewReader(data)
	a := sendAnswer{Seq: r.Uvarint()}
	a.EventID, a.Kind, a.Error = r.String(), r.String(), r.String()
	return a, r.OK() && !r.More()
}

// answeredErrors are the errors an owner's answer carries back as themselves, by a code of
// their own. Any other error, ErrUnavailable first, has the asking node send the event itself.
var answeredErrors = []struct {
	code string
	err  error
}{
	{"forbidden", ErrForbidden},
	{"not_found", ErrNotFound},
	{"too_large", ErrTooLarge},
	{"bad_request", ErrBadRequest},
	{"canonical_alias", ErrCanonicalAlias},
	{"nested_thread", ErrNestedThread},
}

// sendAtOwner hands the send to the owner of the room's shard and waits until this node has
// applied the event. It returns store.ErrAskHere when this node should send it itself.
func (s *Service) sendAtOwner(ctx context.Context, p Proto, opt SendOptions) (string, error) {
	shard := s.st.RoomShard(p.RoomID)
	request := func() ([]byte, error) {
		return forwardedSend{Proto: p, Device: opt.Device, TxnID: opt.TxnID, Seen: s.model.applied[shard].Load()}.encode(), nil
	}
	data, err := s.st.AskShardOwner(ctx, sendService, shard, request, ownerSendWait)
	if err != nil {
		if ctx.Err() != nil {
			return "", unavailable(ctx.Err())
		}
		return "", store.ErrAskHere
	}
	a, ok := decodeSendAnswer(data)
	if !ok {
		return "", store.ErrAskHere
	}
	if a.Kind != "" {
		return "", answeredError(a)
	}
	if err := s.awaitSeq(ctx, shard, a.Seq); err != nil {
		return "", err
	}
	return a.EventID, nil
}

// serveSend sends a forwarded send on this node, the shard's owner. It answers as soon as the
// event is stored, and then still holds the room until this node has applied the event, so
// that the room's next send builds on it.
func (s *Service) serveSend(ctx context.Context, shard int, req []byte, answer func([]byte)) {
	f, err := decodeForwardedSend(req)
	if err != nil || f.TxnID == "" || s.st.RoomShard(f.RoomID) != shard {
		return // an empty answer: the asking node sends the event itself
	}
	if err := s.awaitSeq(ctx, shard, f.Seen); err != nil {
		answer(encodeSendAnswer("", 0, err))
		return
	}
	opt := SendOptions{Device: f.Device, TxnID: f.TxnID, stored: func(id string, seq uint64) {
		answer(encodeSendAnswer(id, seq, nil))
	}}
	if _, err := s.sendHere(ctx, f.Proto, opt); err != nil {
		answer(encodeSendAnswer("", 0, err)) // dropped if the event was stored and answered
	}
}

func encodeSendAnswer(id string, seq uint64, err error) []byte {
	a := sendAnswer{EventID: id, Seq: seq}
	if err != nil {
		a = sendAnswer{Kind: "unavailable", Error: err.Error()}
		for _, known := range answeredErrors {
			if errors.Is(err, known.err) {
				a.Kind = known.code
				break
			}
		}
	}
	return a.encode()
}

// answeredError is the owner's error as this node's: the same text, and errors.Is still
// finds its kind. A kind this node does not know has it send the event itself.
func answeredError(a sendAnswer) error {
	for _, known := range answeredErrors {
		if known.code == a.Kind {
			return &ownerError{kind: known.err, text: a.Error}
		}
	}
	return store.ErrAskHere
}

type ownerError struct {
	kind error
	text string
}

func (e *ownerError) Error() string { return e.text }
func (e *ownerError) Unwrap() error { return e.kind }
