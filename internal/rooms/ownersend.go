package rooms

import (
	"context"
	"encoding/json"
	"errors"
	"time"

	"github.com/firebreak/firebreak/internal/store"
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
const sendService = "send.v1"

// ownerSendWait is how long an owner gets for a forwarded send. A send takes milliseconds;
// an owner that takes longer is losing its shard or gone, and the node then sends the event
// itself, its append waiting out the election as any append does.
const ownerSendWait = 2 * time.Second

// forwardedSend is a send as the asking node hands it to the owner.
type forwardedSend struct {
	Proto
	Device string `json:"device"`
	TxnID  string `json:"txn_id"`
}

// sendAnswer is the owner's answer: the event's id and the owner's position in the shard once
// it had applied the event, or an error of a kind the API knows.
type sendAnswer struct {
	EventID string `json:"event_id,omitempty"`
	Applied uint64 `json:"applied,omitempty"`
	Kind    string `json:"kind,omitempty"`
	Error   string `json:"error,omitempty"`
}

// answeredErrors are the errors an owner's answer carries back as themselves. Any other error,
// ErrUnavailable first, has the asking node send the event itself.
var answeredErrors = []error{ErrForbidden, ErrNotFound, ErrTooLarge, ErrBadRequest, ErrInvalidParam,
	ErrCanonicalAlias, ErrUnsupportedVersion, store.ErrValueTooLarge, store.ErrKeyTooLong}

// sendAtOwner hands the send to the owner of the room's shard and waits until this node has
// applied the event. It returns store.ErrAskHere when this node should send it itself.
func (s *Service) sendAtOwner(ctx context.Context, p Proto, opt SendOptions) (string, error) {
	request := func() ([]byte, error) {
		return json.Marshal(forwardedSend{Proto: p, Device: opt.Device, TxnID: opt.TxnID})
	}
	shard := s.st.RoomShard(p.RoomID)
	data, err := s.st.AskShardOwner(ctx, sendService, shard, request, ownerSendWait)
	if err != nil {
		if ctx.Err() != nil {
			return "", unavailable(ctx.Err())
		}
		return "", store.ErrAskHere
	}
	var a sendAnswer
	if json.Unmarshal(data, &a) != nil {
		return "", store.ErrAskHere
	}
	if a.Kind != "" {
		return "", answeredError(a)
	}
	if err := s.awaitSeq(ctx, shard, a.Applied); err != nil {
		return "", err
	}
	return a.EventID, nil
}

// serveSend sends a forwarded send on this node, the shard's owner.
func (s *Service) serveSend(ctx context.Context, shard int, req []byte) []byte {
	var f forwardedSend
	if err := json.Unmarshal(req, &f); err != nil || f.TxnID == "" || s.st.RoomShard(f.RoomID) != shard {
		return encodeSendAnswer("", 0, ErrUnavailable) // of another build: sent by the node itself
	}
	// The asking node knew the room; this one may not have applied its creation yet.
	if err := s.AwaitRoom(ctx, f.RoomID); err != nil {
		return encodeSendAnswer("", 0, err)
	}
	id, err := s.sendHere(ctx, f.Proto, SendOptions{Device: f.Device, TxnID: f.TxnID})
	return encodeSendAnswer(id, s.model.applied[shard].Load(), err)
}

func encodeSendAnswer(id string, applied uint64, err error) []byte {
	a := sendAnswer{EventID: id, Applied: applied}
	if err != nil {
		a = sendAnswer{Kind: ErrUnavailable.Error(), Error: err.Error()}
		for _, known := range answeredErrors {
			if errors.Is(err, known) {
				a.Kind = known.Error()
			}
		}
	}
	out, _ := json.Marshal(a) // strings and a number: cannot fail
	return out
}

// answeredError is the owner's error as this node's: the same text, and errors.Is still
// finds its kind. A kind this node does not know has it send the event itself.
func answeredError(a sendAnswer) error {
	for _, known := range answeredErrors {
		if known.Error() == a.Kind {
			return &ownerError{kind: known, text: a.Error}
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
