package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/tidwall/gjson"
)

// Each room lives in one of a fixed set of shard streams. A shard's events go on the shard's
// group subject, several rooms' to a message, and the shard's writer compares each append
// against the room's head (group.go). On an external NATS, and in a cluster created before
// group commit, a room's events are one subject there instead, whose sequence is the room's
// head: appends compare against it so the room's history stays a line.
const (
	roomSubjectPrefix = "fb.room"
	hdrDevice         = "Fb-Device"
	hdrTxnID          = "Fb-Txn"
	hdrEventID        = "Fb-Event-Id"
)

// RoomEvent is one event as stored in a room's log. Its JSON and strings may share the memory
// of the message it was read from, with the other events stored in it: they must not be
// changed, and a reader that keeps only some of them should copy those.
type RoomEvent struct {
	Shard int
	Seq   uint64 // position in the shard stream; the same on every replica
	JSON  []byte
	// EventID is the id the writer computed, so readers need not hash the event again; empty
	// for events stored before it was recorded.
	EventID string
	Device  string // the sending device and its transaction id, when a client sent it
	TxnID   string
}

// NewRoomEvent is an event ready to append.
type NewRoomEvent struct {
	JSON          []byte
	EventID       string
	Device, TxnID string
	// DedupID makes a retried append of the same logical send store once. (Group commit
	// needs none: its compare on the shard's last sequence does the same.)
	DedupID string
	// Seen is the shard position the event was built on (what the builder's read model had
	// applied). Group commit refuses the append, as a conflict, if another writer stored
	// anything after it; one message per event compares the room's head instead.
	Seen uint64
}

func shardStreamName(i int) string { return fmt.Sprintf("FB_ROOMS_%d", i) }

func (s *Store) shardStreamConfig(i int) jetstream.StreamConfig {
	return jetstream.StreamConfig{
		Name:        shardStreamName(i),
		Subjects:    []string{fmt.Sprintf("%s.%d.>", roomSubjectPrefix, i)},
		Storage:     jetstream.FileStorage,
		Replicas:    s.opts.Replicas,
		Duplicates:  s.opts.DedupWindow,
		MaxMsgSize:  256 << 10,
		AllowDirect: true,
		// Atomic batches let a new room's first events land all together or not at all.
		AllowAtomicPublish: true,
		Discard:            jetstream.DiscardNew,
	}
}

// RoomShard names the shard stream a room lives in.
func (s *Store) RoomShard(roomID string) int { return shardOf(roomID, s.shards) }

func (s *Store) roomSubject(roomID string) (string, error) {
	subject := fmt.Sprintf("%s.%d.%s", roomSubjectPrefix, s.RoomShard(roomID), Key(roomID))
	return subject, checkKey(subject)
}

// AppendRoomEvent appends ev to the room only if the room's last stored event is at afterSeq
// (0: the room has no events yet) and, with group commit, nothing another writer stored came
// after ev.Seen. It returns the new event's sequence. ErrConflict means another writer
// appended first. The returned sequence is acknowledged by a quorum, fsynced.
func (s *Store) AppendRoomEvent(ctx context.Context, roomID string, afterSeq uint64, ev NewRoomEvent) (uint64, error) {
	subject, err := s.roomSubject(roomID)
	if err != nil {
		return 0, err
	}
	if s.groups != nil {
		return s.groups.append(ctx, s.RoomShard(roomID), roomID, afterSeq, []NewRoomEvent{ev})
	}
	msg := roomMsg(subject, ev)
	expectHead(msg, afterSeq)
	// While a stream elects a leader nobody listens on its subjects (no responders), and a
	// publish sent to a leader that then died is never answered: retry sends the same message
	// again, with a short deadline per attempt. Its msg id and expected sequence keep a
	// publish that did land from being stored twice.
	return retry(ctx, s.writePolicy(), func(ctx context.Context) (uint64, error) {
		return s.publishAcked(ctx, msg)
	})
}

// AppendRoomEvents appends several events to a room in one atomic batch: either all are
// stored, after afterSeq and in order, or none is (ErrConflict when the head moved). It
// returns the last event's sequence. Like AppendRoomEvent it tries again, within the same
// budget, while the stream has no leader; a batch whose answer was lost but that landed is
// recognised by its last event's id.
func (s *Store) AppendRoomEvents(ctx context.Context, roomID string, afterSeq uint64, evs []NewRoomEvent) (uint64, error) {
	if len(evs) == 0 {
		return 0, errors.New("store: empty batch")
	}
	subject, err := s.roomSubject(roomID)
	if err != nil {
		return 0, err
	}
	if s.groups != nil {
		return s.groups.append(ctx, s.RoomShard(roomID), roomID, afterSeq, evs)
	}
	msgs := make([]*nats.Msg, len(evs))
	for i, ev := range evs {
		msgs[i] = roomMsg(subject, ev)
	}
	expectHead(msgs[0], afterSeq)
	return s.appendRecognising(ctx, func(actx context.Context) (uint64, error) {
		return s.publishAtomic(actx, msgs)
	}, func(error) (uint64, bool) {
		return s.landed(ctx, roomID, subject, evs[len(evs)-1].EventID)
	})
}

// appendRecognising runs publish under the write policy. A retry refused as a conflict asks
// landed whether the stream now holds an earlier attempt whose answer was lost, and if so
// counts as stored at the sequence landed gives.
func (s *Store) appendRecognising(ctx context.Context, publish func(context.Context) (uint64, error),
	landed func(conflict error) (uint64, bool)) (uint64, error) {
	attempts := 0
	return retry(ctx, s.writePolicy(), func(actx context.Context) (uint64, error) {
		attempts++
		seq, err := publish(actx)
		if attempts > 1 && errors.Is(err, ErrConflict) { // publishes' errors are translated
			if seq, ok := landed(err); ok {
				return seq, nil
			}
		}
		return seq, err
	})
}

// MaxAtomicBatch is the most messages JetStream takes in one atomic batch (its default
// max_batch_size): a new room's first events are one.
const MaxAtomicBatch = 1000

// JetStream's atomic batch headers.
const (
	hdrBatchID       = "Nats-Batch-Id"
	hdrBatchSequence = "Nats-Batch-Sequence"
	hdrBatchCommit   = "Nats-Batch-Commit"
)

// publishAtomic stores msgs all or none and returns the last one's sequence: one message as
// a plain publish, several as an atomic batch, every message but the last published as it is
// and the last committing the batch and carrying JetStream's answer for the whole. The
// caller's compare goes on the first message.
func (s *Store) publishAtomic(ctx context.Context, msgs []*nats.Msg) (uint64, error) {
	if len(msgs) == 1 {
		return s.publishAcked(ctx, msgs[0])
	}
	batchID := randomToken()[:32]
	for i, msg := range msgs {
		msg.Header.Set(hdrBatchID, batchID)
		msg.Header.Set(hdrBatchSequence, strconv.Itoa(i+1))
	}
	commit := msgs[len(msgs)-1]
	commit.Header.Set(hdrBatchCommit, "1")
	for _, msg := range msgs[:len(msgs)-1] {
		if err := s.nc.PublishMsg(msg); err != nil {
			return 0, translate(err)
		}
	}
	return s.publishAcked(ctx, commit)
}

// landed reports whether the room's latest event, as the stream's leader has it, is eventID.
func (s *Store) landed(ctx context.Context, roomID, subject, eventID string) (uint64, bool) {
	if eventID == "" {
		return 0, false
	}
	m, err := s.leaderLastMsg(ctx, shardStreamName(s.RoomShard(roomID)), subject)
	if err != nil || m.Header.Get(hdrEventID) != eventID {
		return 0, false
	}
	return m.Seq, true
}

// expectHead makes msg's append conditional: JetStream stores it only if the room's last
// stored event is at afterSeq (0: the room has none).
func expectHead(msg *nats.Msg, afterSeq uint64) {
	msg.Header.Set(jetstream.ExpectedLastSubjSeqHeader, strconv.FormatUint(afterSeq, 10))
}

// roomMsg is the message that stores one room event.
func roomMsg(subject string, ev NewRoomEvent) *nats.Msg {
	msg := nats.NewMsg(subject)
	msg.Data = ev.JSON
	if ev.EventID != "" {
		msg.Header.Set(hdrEventID, ev.EventID)
	}
	if ev.Device != "" {
		msg.Header.Set(hdrDevice, ev.Device)
		msg.Header.Set(hdrTxnID, ev.TxnID)
	}
	if ev.DedupID != "" {
		msg.Header.Set(jetstream.MsgIDHeader, ev.DedupID)
	}
	return msg
}

// publishAcked publishes msg (one event, or the message that commits a batch) and returns the
// stream sequence JetStream's acknowledgement gives it. It is a plain request, not
// jetstream.PublishMsg, whose options and decoding of the whole acknowledgement cost more than
// a send's other store work; a send makes one.
func (s *Store) publishAcked(ctx context.Context, msg *nats.Msg) (uint64, error) {
	resp, err := s.nc.RequestMsgWithContext(ctx, msg)
	if err != nil {
		return 0, err // translated by attempt, which both callers run it in
	}
	return readPubAck(resp.Data)
}

// readPubAck reads JetStream's answer to a publish: {"stream":...,"seq":N,...} when it stored
// the message (or had it already, "duplicate"), {"error":{...}} when it did not. Only an error
// is decoded in full.
func readPubAck(data []byte) (uint64, error) {
	if !gjson.ValidBytes(data) {
		return 0, fmt.Errorf("store: unreadable publish acknowledgement %q", data)
	}
	var stream, seq gjson.Result
	failed := false
	gjson.ParseBytes(data).ForEach(func(key, value gjson.Result) bool {
		switch key.Str {
		case "error":
			failed = true
		case "stream":
			stream = value
		case "seq":
			seq = value
		}
		return true
	})
	if failed {
		var ack struct {
			Error *jetstream.APIError `json:"error"`
		}
		if err := json.Unmarshal(data, &ack); err != nil || ack.Error == nil {
			return 0, fmt.Errorf("store: unreadable publish error %q", data)
		}
		return 0, translate(ack.Error)
	}
	if stream.Type != gjson.String || stream.Str == "" || seq.Type != gjson.Number || seq.Uint() == 0 {
		return 0, fmt.Errorf("store: publish acknowledgement without a stream and sequence: %q", data)
	}
	return seq.Uint(), nil
}

// RoomHeadSeq is the sequence of the room's last stored event, 0 when it has none (as a room
// whose id is too long to store cannot). Group commit keeps no index of a room's events in
// its shard, and gives the shard's last sequence instead, as the stream's leader has it:
// never before the room's head.
func (s *Store) RoomHeadSeq(ctx context.Context, roomID string) (uint64, error) {
	subject, err := s.roomSubject(roomID)
	if err != nil {
		return 0, nil
	}
	if s.groups != nil {
		return s.ShardHead(ctx, s.RoomShard(roomID))
	}
	m, err := readWithRetry(ctx, s, func(ctx context.Context) (*jetstream.RawStreamMsg, error) {
		return s.streams[s.RoomShard(roomID)].GetLastMsgForSubject(ctx, subject)
	})
	if errors.Is(err, ErrNotFound) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	return m.Sequence, nil
}

// RoomLatestSeq is RoomHeadSeq as the stream's leader knows it: never behind a write another
// node had acknowledged, for decisions that must not rest on a trailing replica.
func (s *Store) RoomLatestSeq(ctx context.Context, roomID string) (uint64, error) {
	subject, err := s.roomSubject(roomID)
	if err != nil {
		return 0, nil
	}
	if s.groups != nil {
		return s.ShardHead(ctx, s.RoomShard(roomID))
	}
	m, err := s.leaderLastMsg(ctx, shardStreamName(s.RoomShard(roomID)), subject)
	if errors.Is(err, ErrNotFound) {
		return 0, nil
	}
	return m.Seq, err
}

// ShardHead is the last sequence written to a shard stream.
func (s *Store) ShardHead(ctx context.Context, shard int) (uint64, error) {
	info, err := readWithRetry(ctx, s, func(ctx context.Context) (*jetstream.StreamInfo, error) {
		return s.streams[shard].Info(ctx)
	})
	if err != nil {
		return 0, err
	}
	return info.State.LastSeq, nil
}

// RoomEventsAt reads the events stored at seq in a shard (one, or with group commit those
// stored together) from whichever replica answers first, the local one included: it needs no
// stream leader, so it works during an election.
func (s *Store) RoomEventsAt(ctx context.Context, shard int, seq uint64) ([]RoomEvent, error) {
	m, err := readWithRetry(ctx, s, func(ctx context.Context) (*jetstream.RawStreamMsg, error) {
		return s.streams[shard].GetMsg(ctx, seq)
	})
	if err != nil {
		return nil, err
	}
	return roomEvents(shard, m.Sequence, m.Subject, m.Data, m.Header), nil
}

// FollowShard calls apply with the events of every message of the shard after afterSeq, in
// order (one event, or with group commit those stored together), and then for each new one as
// it is stored, until ctx ends or the follower fails. It needs no state on the
// server, so every node can follow every shard; the caller restarts it from where it stopped.
func (s *Store) FollowShard(ctx context.Context, shard int, afterSeq uint64, apply func([]RoomEvent)) error {
	return s.follow(ctx, shardStreamName(shard), followerConfig(afterSeq), nil, func(m jetstream.Msg, meta *jetstream.MsgMetadata) {
		apply(roomEvents(shard, meta.Sequence.Stream, m.Subject(), m.Data(), m.Headers()))
	})
}

// roomEvents reads one stored message. A group message that does not decode is handed on as
// one unreadable event, so that the reader skips it and still moves past its position.
func roomEvents(shard int, seq uint64, subject string, data []byte, h nats.Header) []RoomEvent {
	if !strings.HasSuffix(subject, "."+groupSubjectToken) {
		return []RoomEvent{roomEvent(shard, seq, data, h)}
	}
	evs, err := decodeGroup(shard, seq, data)
	if err != nil {
		return []RoomEvent{{Shard: shard, Seq: seq}}
	}
	return evs
}

// roomEvent copies the header values it keeps: nats.go decodes every value of a header block as
// a substring of one copy of the block, and the read model keeps these strings for as long as
// it keeps the event, which would keep the whole block (about 300 bytes an event) with them.
func roomEvent(shard int, seq uint64, data []byte, h nats.Header) RoomEvent {
	return RoomEvent{Shard: shard, Seq: seq, JSON: data, EventID: strings.Clone(h.Get(hdrEventID)),
		Device: strings.Clone(h.Get(hdrDevice)), TxnID: strings.Clone(h.Get(hdrTxnID))}
}
