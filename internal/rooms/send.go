package rooms

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/firebreak/firebreak/internal/store"
	"github.com/matrix-org/gomatrixserverlib"
)

// appendRaceLimit bounds how long a send keeps rebuilding its event after losing races for the
// room's head to other writers. It is a time, not a count: in a room busy from several nodes
// the node whose turn comes first (the one hosting the stream's leader) can win many times in
// a row, and a count of 50 had a few sends a minute give up after under 2 s in the 3-DC
// maximum-load bench, while waiting a little longer lets them in.
const appendRaceLimit = store.WaitLimit

// SendOptions identify a client's send so a retry is stored once.
type SendOptions struct {
	Device string
	TxnID  string
	// stored, if set, is told the event's id and position as soon as they are known, before
	// this node has applied the event (a send built for another node: ownersend.go). It is
	// set only where shards have owners, whose group messages JetStream never deduplicates,
	// so the position is the event's own.
	stored func(eventID string, seq uint64)
}

// report tells opt.stored where the event is.
func (opt SendOptions) report(eventID string, seq uint64) {
	if opt.stored != nil {
		opt.stored(eventID, seq)
	}
}

// Send builds, checks, signs and appends an event to the room and returns its event id once a
// quorum has stored it and this node's read model has applied it. A retry with the same
// (sender, device, event type, transaction id) returns the first send's event id, whichever
// node gets it.
// Where shards have owners (group commit in a cluster), a send with a transaction id is built
// by the owner of the room's shard (ownersend.go).
func (s *Service) Send(ctx context.Context, p Proto, opt SendOptions) (string, error) {
	if opt.TxnID != "" {
		id, err := s.sendAtOwner(ctx, p, opt)
		if !errors.Is(err, store.ErrAskHere) {
			return id, err
		}
	}
	return s.sendHere(ctx, p, opt)
}

// sendHere is Send with the event built on this node.
func (s *Service) sendHere(ctx context.Context, p Proto, opt SendOptions) (id string, err error) {
	tr := sendTrace{start: time.Now()}
	defer func() { tr.report(s.log, p.RoomID, err) }()
	if err := s.checkCanonicalAlias(ctx, p); err != nil {
		return "", err
	}
	unlock, err := s.sending.Lock(ctx, p.RoomID)
	if err != nil {
		return "", unavailable(err)
	}
	defer unlock()
	tr.locked = time.Now()
	info, ok := s.model.Info(p.RoomID)
	if !ok {
		return "", fmt.Errorf("%w: unknown room %s", ErrNotFound, p.RoomID)
	}
	job := &sendJob{p: p, opt: opt, info: info, trace: &tr}
	if opt.TxnID != "" {
		job.dedupID = sendDedupID(p.RoomID, p.Sender, opt.Device, p.Type, opt.TxnID)
	}
	for attempt := 1; ; attempt++ {
		if opt.TxnID != "" {
			if id := s.model.TxnEvent(p.RoomID, p.Sender, opt.Device, p.Type, opt.TxnID); id != "" {
				ev, _ := s.model.Event(p.RoomID, id)
				opt.report(id, ev.Seq)
				return id, nil
			}
		}
		// After the lookup: a retry whose first send was stored is answered, whatever came since.
		if err := s.checkThreadRoot(p); err != nil {
			return "", err
		}
		pdu, err := s.buildOnLatest(ctx, job)
		if err != nil {
			return "", err
		}
		tr.attempts = attempt
		id, lost, err := s.appendBuilt(ctx, job, pdu)
		if !lost || time.Since(tr.start) > appendRaceLimit {
			return id, err
		}
	}
}

// sendJob is one Send: what to send, and the room's head it builds on.
type sendJob struct {
	p       Proto
	opt     SendOptions
	dedupID string
	info    RoomInfo
	trace   *sendTrace
}

// buildOnLatest builds the event on the job's head. A refusal is checked again on the room's
// latest events: this node's view may trail a change made through another node a moment ago
// (the invite a join needs, a new power level).
func (s *Service) buildOnLatest(ctx context.Context, job *sendJob) (gomatrixserverlib.PDU, error) {
	pdu, err := s.build(job.p, job.info, s.model)
	if !errors.Is(err, ErrForbidden) {
		return pdu, err
	}
	fresh, moved := s.refreshed(ctx, job.p.RoomID, job.info)
	if !moved {
		return nil, err
	}
	job.info = fresh
	return s.build(job.p, fresh, s.model)
}

// appendBuilt appends the event after the job's head and waits until this node has applied
// it. lost reports a race lost to another writer; the job then holds the new head to build on.
func (s *Service) appendBuilt(ctx context.Context, job *sendJob, pdu gomatrixserverlib.PDU) (id string, lost bool, err error) {
	defer s.model.built.add(pdu)()
	seq, err := s.st.AppendRoomEvent(ctx, job.p.RoomID, job.info.HeadSeq, store.NewRoomEvent{
		JSON: pdu.JSON(), EventID: pdu.EventID(), Device: job.opt.Device, TxnID: job.opt.TxnID, DedupID: job.dedupID,
		Seen: job.info.Seen,
	})
	job.trace.appended = time.Now()
	if errors.Is(err, store.ErrConflict) {
		if job.info, err = s.catchUp(ctx, job.p.RoomID, job.info, err); err != nil {
			return "", false, err
		}
		// The writer may have been this very event: a publish whose answer was lost in a
		// failover landed, and its retry found the head already past it.
		if ev, landed := s.model.Event(job.p.RoomID, pdu.EventID()); landed {
			job.opt.report(pdu.EventID(), ev.Seq)
			return pdu.EventID(), false, nil
		}
		return "", true, fmt.Errorf("%w: the room kept changing", ErrUnavailable)
	}
	if err != nil {
		return "", false, unavailable(err)
	}
	job.opt.report(pdu.EventID(), seq)
	// Capped: this send holds the room's lock. Past the cap the client is told to retry; the
	// retry finds the stored event by its transaction id.
	if err := s.awaitSeq(ctx, job.info.Shard, seq); err != nil {
		return "", false, err
	}
	// On a deduplicated retry the event at seq is the first send's, not pdu.
	if stored, ok := s.model.eventAtSeq(job.p.RoomID, seq); ok {
		return stored.PDU.EventID(), false, nil
	}
	return pdu.EventID(), false, nil
}

// slowSend is how long a send may take before it is logged with where the time went.
const slowSend = 2 * time.Second

// sendTrace times a send's phases: waiting for the room's lock, appending (through any
// failover), and this node's read model applying the event.
type sendTrace struct {
	start, locked, appended time.Time
	attempts                int
}

func (t *sendTrace) report(log *slog.Logger, roomID string, err error) {
	took := time.Since(t.start)
	if took < slowSend {
		return
	}
	since := func(from, to time.Time) int64 {
		if from.IsZero() || to.IsZero() {
			return 0
		}
		return to.Sub(from).Milliseconds()
	}
	log.Warn("slow send", "room", roomID, "total_ms", took.Milliseconds(),
		"lock_ms", since(t.start, t.locked), "append_ms", since(t.locked, t.appended),
		"apply_ms", since(t.appended, time.Now()), "attempts", t.attempts, "err", err)
}

// refreshed brings the read model up to the room's latest event and reports whether that
// moved the room's head past info's.
func (s *Service) refreshed(ctx context.Context, roomID string, info RoomInfo) (RoomInfo, bool) {
	if s.CatchUpRoom(ctx, roomID) != nil {
		return info, false
	}
	fresh, ok := s.model.Info(roomID)
	return fresh, ok && fresh.HeadSeq != info.HeadSeq
}

// CatchUpRoom brings this node's read model up to the room's latest event as the stream's
// leader has it, for decisions (a refusal) that must not rest on a view trailing another
// node's writes.
func (s *Service) CatchUpRoom(ctx context.Context, roomID string) error {
	head, err := s.st.RoomLatestSeq(ctx, roomID)
	if err != nil {
		return unavailable(err)
	}
	return s.awaitSeq(ctx, s.st.RoomShard(roomID), head)
}

// FindEvent finds an event of the room; ErrNotFound when it has none. When this node's view
// lacks it, it first catches up with the room's latest events: an event acknowledged through
// another node a moment ago is not unknown here (a client may send through one node and
// redact through another). A catch-up that fails is ErrUnavailable, not a 404.
func (s *Service) FindEvent(ctx context.Context, roomID, eventID string) (Event, error) {
	if ev, ok := s.model.Event(roomID, eventID); ok {
		return ev, nil
	}
	if err := s.CatchUpRoom(ctx, roomID); err != nil {
		return Event{}, err
	}
	if ev, ok := s.model.Event(roomID, eventID); ok {
		return ev, nil
	}
	return Event{}, fmt.Errorf("%w: unknown event %s", ErrNotFound, eventID)
}

// awaitSeq waits, at most store.WaitLimit, until the read model has applied a shard up to seq.
func (s *Service) awaitSeq(ctx context.Context, shard int, seq uint64) error {
	if s.model.applied[shard].Load() >= seq {
		return nil // the usual case: the follower applied it before the append was answered
	}
	wctx, cancel := context.WithTimeout(ctx, store.WaitLimit)
	defer cancel()
	if err := s.awaitApplied(wctx, shard, seq); err != nil {
		return unavailable(err)
	}
	return nil
}

// AwaitRoom makes sure this node's read model holds a room that exists: a room created a
// moment ago through another node may not have reached it yet, and a client must not be told
// such a room is unknown. It is a no-op for rooms the model already has.
func (s *Service) AwaitRoom(ctx context.Context, roomID string) error {
	if _, ok := s.model.Info(roomID); ok {
		return nil
	}
	// A room unknown everywhere has head 0 (with group commit, the shard's head, which this
	// node has usually applied already): little or nothing to wait for.
	return s.awaitHead(ctx, roomID)
}

// awaitHead waits until the read model holds the room's latest stored event.
func (s *Service) awaitHead(ctx context.Context, roomID string) error {
	head, err := s.st.RoomHeadSeq(ctx, roomID)
	if err != nil {
		return unavailable(err)
	}
	return s.awaitSeq(ctx, s.st.RoomShard(roomID), head)
}

// CatchUpShards waits until the read model has applied every shard up to the given positions
// (a sync token from another node). A shard whose follower is stalled, because its stream is
// electing a new leader after a node or data center was lost, is filled by reading the
// missing events from the replicas directly: reads need no leader, so they go on at once.
// Positions past the end of their stream (a forged token) are refused with store.ErrBeyondEnd.
func (s *Service) CatchUpShards(ctx context.Context, positions []uint64) error {
	return s.catchUpShards(ctx, positions, forClientToken)
}

// CatchUpShard is CatchUpShards for one shard's position (a pagination token).
func (s *Service) CatchUpShard(ctx context.Context, shard int, pos uint64) error {
	return s.catchUpShards(ctx, s.onlyShard(shard, pos), forClientToken)
}

// awaitApplied waits until this node has applied a position the store handed out: after a
// send, the sender's node must show the event even while the shard's follower waits out an
// election.
func (s *Service) awaitApplied(ctx context.Context, shard int, seq uint64) error {
	return s.catchUpShards(ctx, s.onlyShard(shard, seq), forStoredPosition)
}

func (s *Service) onlyShard(shard int, pos uint64) []uint64 {
	positions := make([]uint64, len(s.model.applied))
	positions[shard] = pos
	return positions
}

// catchUpMode says how a catch-up treats lagging shards.
type catchUpMode struct {
	grace time.Duration // how long followers get before the gaps are filled from the replicas
	// onlyStalled leaves a shard whose follower is moving, however far behind (a node
	// replaying its history at start), to the follower.
	onlyStalled bool
	// fromClient: the positions come from a client's token and may be past the streams' ends.
	fromClient bool
}

var (
	forClientToken    = catchUpMode{grace: followerGrace, fromClient: true}
	forStoredPosition = catchUpMode{grace: followerGrace}
	forStart          = catchUpMode{grace: startGrace, onlyStalled: true}
)

// catchUpShards waits for the shards' followers and, after each grace, fills the shards that
// are still short from the replicas.
func (s *Service) catchUpShards(ctx context.Context, positions []uint64, mode catchUpMode) error {
	if s.model.AppliedAll(positions) {
		return nil // the usual case: no timer to set up
	}
	checked := !mode.fromClient
	for {
		var before []uint64
		if mode.onlyStalled {
			before = s.model.Applied()
		}
		quick, cancel := context.WithTimeout(ctx, mode.grace)
		err := s.model.WaitAppliedAll(quick, positions)
		cancel()
		if err == nil || ctx.Err() != nil {
			return err
		}
		for shard, upTo := range positions {
			if shard >= len(s.model.applied) || s.model.applied[shard].Load() >= upTo {
				continue
			}
			if mode.onlyStalled && s.model.applied[shard].Load() != before[shard] {
				continue
			}
			// A replica that lacks an event answers "not found" and the next round retries;
			// the first time, the positions are checked against the streams' ends. A node cut
			// off from the cluster cannot read until the link heals: its client does better
			// asking another node (a send's event is stored; its retry finds it).
			err := s.fillShard(ctx, shard, upTo)
			if errors.Is(err, store.ErrCutOff) {
				return err
			}
			if errors.Is(err, store.ErrNotFound) && !checked {
				checked = true
				if err := s.checkWithinShards(ctx, positions); err != nil {
					return err
				}
			}
		}
	}
}

// checkWithinShards refuses positions past the end of their shard stream: no node of this
// deployment handed them out (a forged token, or one from another deployment), and waiting for
// them would only time out. A head that cannot be read now is not held against the positions.
func (s *Service) checkWithinShards(ctx context.Context, positions []uint64) error {
	for shard, pos := range positions {
		if shard >= len(s.model.applied) || s.model.applied[shard].Load() >= pos {
			continue
		}
		head, err := s.quickShardHead(ctx, shard)
		if err == nil && pos > head {
			return fmt.Errorf("%w: position %d is past the end (%d) of room shard %d", store.ErrBeyondEnd, pos, head, shard)
		}
	}
	return nil
}

// followerGrace is how long a lagging shard is left to its follower before it is filled.
const followerGrace = 50 * time.Millisecond

// fillShard applies a shard's messages up to upTo read one by one from the replicas. Fills of
// a shard take turns, so each reads only what the one before it left.
func (s *Service) fillShard(ctx context.Context, shard int, upTo uint64) error {
	select {
	case s.filling[shard] <- struct{}{}:
		defer func() { <-s.filling[shard] }()
	case <-ctx.Done():
		return ctx.Err()
	}
	for seq := s.model.applied[shard].Load() + 1; seq <= upTo; seq = s.model.applied[shard].Load() + 1 {
		evs, err := s.st.RoomEventsAt(ctx, shard, seq)
		if err != nil {
			return err
		}
		s.model.apply(evs)
	}
	return nil
}

// catchUp waits until the read model holds the head the lost race reported (or, when the
// conflict did not say, the room's latest stored event) and returns the room's fresh head.
func (s *Service) catchUp(ctx context.Context, roomID string, info RoomInfo, conflict error) (RoomInfo, error) {
	var c *store.ConflictError
	if errors.As(conflict, &c) && c.Head > 0 {
		if err := s.awaitSeq(ctx, info.Shard, c.Head); err != nil {
			return info, err
		}
	} else if err := s.awaitHead(ctx, roomID); err != nil {
		return info, err
	}
	if fresh, ok := s.model.Info(roomID); ok {
		return fresh, nil
	}
	return info, nil
}

func unavailable(err error) error {
	if errors.Is(err, ErrUnavailable) {
		return err
	}
	return fmt.Errorf("%w: %v", ErrUnavailable, err)
}

// sendDedupID names one logical send for JetStream's duplicate window.
func sendDedupID(roomID, sender, device, evType, txn string) string {
	sum := sha256.Sum256([]byte(strings.Join([]string{sender, device, evType, txn, roomID}, "\x00")))
	return hex.EncodeToString(sum[:16])
}
