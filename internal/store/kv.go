package store

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Bucket names one kind of keyed state.
type Bucket string

// The buckets. Every one is replicated like the room streams.
const (
	BucketServer      Bucket = "fb_server"         // signing key, deployment settings
	BucketAccounts    Bucket = "fb_accounts"       // user id -> account (password hash, profile)
	BucketDevices     Bucket = "fb_devices"        // user id, device id -> device
	BucketTokens      Bucket = "fb_tokens"         // hash of an access token -> user and device
	BucketFilters     Bucket = "fb_filters"        // user id, filter id -> filter JSON
	BucketAliases     Bucket = "fb_aliases"        // room alias -> room id
	BucketAccountData Bucket = "fb_account_data"   // user id, room id or "", type -> content
	BucketReceipts    Bucket = "fb_receipts"       // room id, user id, receipt type[, thread] -> receipt
	BucketDirectory   Bucket = "fb_room_directory" // room id -> listed in the public room directory
	BucketNonces      Bucket = "fb_nonces"         // shared-secret registration nonces, short-lived
	// End-to-end encryption (package e2ee).
	BucketDeviceKeys   Bucket = "fb_device_keys"    // user, device -> its keys; user, "cs", kind -> a cross-signing key; user, "sig"|"devsig"|"msig", id -> signatures (e2ee/signatures.go)
	BucketOneTimeKeys  Bucket = "fb_one_time_keys"  // user, device -> its one-time and fallback keys
	BucketToDevice     Bucket = "fb_to_device"      // user, device, message id -> a to-device message not yet delivered
	BucketToDeviceTxns Bucket = "fb_to_device_txns" // sender, device, type, transaction id -> sent (kept an hour)
	BucketKeyBackup    Bucket = "fb_key_backup"     // user, "v", version -> a key backup; user, "last" -> its last version; user, "k", version, room, session -> a backed-up key
)

var allBuckets = []Bucket{BucketServer, BucketAccounts, BucketDevices, BucketTokens, BucketFilters,
	BucketAliases, BucketAccountData, BucketReceipts, BucketDirectory, BucketNonces,
	BucketDeviceKeys, BucketOneTimeKeys, BucketToDevice, BucketToDeviceTxns, BucketKeyBackup}

func (s *Store) openBucket(ctx context.Context, b Bucket) error {
	s.bucketsMu.Lock()
	_, ok := s.buckets[b]
	s.bucketsMu.Unlock()
	if ok {
		return nil
	}
	cfg := jetstream.KeyValueConfig{
		Bucket:   string(b),
		Storage:  jetstream.FileStorage,
		Replicas: s.opts.Replicas,
		History:  1,
	}
	switch b {
	case BucketNonces:
		cfg.TTL = 5 * time.Minute
	case BucketToDeviceTxns:
		cfg.TTL = time.Hour // longer than any client retries a request
	}
	kv, err := s.js.CreateOrUpdateKeyValue(ctx, cfg)
	if err != nil {
		return fmt.Errorf("create bucket %s: %w", b, err)
	}
	s.bucketsMu.Lock()
	s.buckets[b] = kv
	s.bucketsMu.Unlock()
	return nil
}

// Get returns a key's value and its revision. Reads go to the nearest replica, which in a
// cluster may not yet have a value written a moment ago through another node; so a miss is
// confirmed with the bucket's leader before it is reported. A token issued on one node thus
// works at once on every other. A key this node wrote lately is read from the leader
// (recentWrites): the nearest replica may not have that write yet either.
func (s *Store) Get(ctx context.Context, b Bucket, key string) ([]byte, uint64, error) {
	if err := checkKey(key); err != nil {
		return nil, 0, err
	}
	if s.recent.has(b, key) { // kept in a cluster only
		return s.leaderGet(ctx, b, key)
	}
	e, err := readWithRetry(ctx, s, func(ctx context.Context) (jetstream.KeyValueEntry, error) {
		return s.buckets[b].Get(ctx, key)
	})
	if err == nil {
		return e.Value(), e.Revision(), nil
	}
	if errors.Is(err, ErrNotFound) && s.opts.Replicas > 1 {
		return s.leaderGet(ctx, b, key)
	}
	return nil, 0, err
}

// WrittenAt is when a key got its value, as its bucket's leader has it; ErrNotFound when it
// has none.
func (s *Store) WrittenAt(ctx context.Context, b Bucket, key string) (time.Time, error) {
	if err := checkKey(key); err != nil {
		return time.Time{}, err
	}
	m, err := s.keyLastMsg(ctx, b, key)
	if err == nil && isMarker(m.Header) {
		err = ErrNotFound
	}
	return m.Time, err
}

// latest reads a key as its bucket's leader has it, in a cluster: a compare-and-set must not
// decide on a replica that trails an acknowledged write.
func (s *Store) latest(ctx context.Context, b Bucket, key string) ([]byte, uint64, error) {
	if s.opts.Replicas == 1 {
		return s.Get(ctx, b, key) // the one replica is the leader
	}
	if err := checkKey(key); err != nil {
		return nil, 0, err
	}
	return s.leaderGet(ctx, b, key)
}

// leaderGet reads a key through the bucket stream's leader, which has every acknowledged write.
func (s *Store) leaderGet(ctx context.Context, b Bucket, key string) ([]byte, uint64, error) {
	m, err := s.keyLastMsg(ctx, b, key)
	if err != nil {
		return nil, 0, err
	}
	if isMarker(m.Header) {
		return nil, 0, ErrNotFound
	}
	return m.Data, m.Seq, nil
}

// leaderMsg is a stored message as a stream's leader returned it.
type leaderMsg struct {
	Seq    uint64
	Header nats.Header
	Data   []byte
	Time   time.Time // when it was stored
}

// leaderLastMsg asks a stream's leader for the last message on a subject; ErrNotFound when
// there is none. Unlike a direct read it is never behind an acknowledged write, but it needs
// the leader, so it waits out an election: JetStream's answers that it has none yet (a 503
// such as "JetStream system temporarily unavailable") are tried again like silence.
func (s *Store) leaderLastMsg(ctx context.Context, stream, subject string) (leaderMsg, error) {
	req, _ := json.Marshal(map[string]string{"last_by_subj": subject})
	return readWithRetry(ctx, s, func(ctx context.Context) (leaderMsg, error) {
		resp, err := s.nc.RequestWithContext(ctx, "$JS.API.STREAM.MSG.GET."+stream, req)
		if err != nil {
			return leaderMsg{}, err
		}
		return readMsgGet(resp.Data)
	})
}

// readMsgGet reads JetStream's answer to a message get.
func readMsgGet(data []byte) (leaderMsg, error) {
	var r struct {
		Message *struct {
			Seq     uint64    `json:"seq"`
			Headers []byte    `json:"hdrs"`
			Data    []byte    `json:"data"`
			Time    time.Time `json:"time"`
		} `json:"message"`
		Error *jetstream.APIError `json:"error"`
	}
	if err := json.Unmarshal(data, &r); err != nil {
		return leaderMsg{}, err
	}
	if r.Error != nil && r.Error.ErrorCode != jetstream.JSErrCodeMessageNotFound {
		return leaderMsg{}, translate(r.Error)
	}
	if r.Error != nil || r.Message == nil {
		return leaderMsg{}, ErrNotFound
	}
	m := leaderMsg{Seq: r.Message.Seq, Data: r.Message.Data, Header: nats.Header{}, Time: r.Message.Time}
	if len(r.Message.Headers) > 0 {
		if hdr, err := nats.DecodeHeadersMsg(r.Message.Headers); err == nil {
			m.Header = hdr
		}
	}
	return m, nil
}

// checkWrite refuses a write of a key or value too big to store, or while this node cannot
// reach a quorum, before anything is sent.
func (s *Store) checkWrite(key string, val []byte) error {
	if err := checkKey(key); err != nil {
		return err
	}
	if len(val) > MaxValueBytes {
		return fmt.Errorf("%w: %d bytes (at most %d)", ErrValueTooLarge, len(val), MaxValueBytes)
	}
	return s.checkWritable()
}

// MaxValueBytes bounds a stored value: NATS refuses a message over its 1 MiB payload limit, and
// the headers and key need room beside the value.
const MaxValueBytes = 1<<20 - 16<<10

// Create stores a value only if the key has none; ErrExists otherwise. Two nodes racing to
// create the same key (a user name, an alias) get one winner.
func (s *Store) Create(ctx context.Context, b Bucket, key string, val []byte) (uint64, error) {
	if err := s.checkWrite(key, val); err != nil {
		return 0, err
	}
	none := uint64(0)
	rev, err := s.writeKey(ctx, b, key, val, "", &none)
	if errors.Is(err, ErrConflict) {
		// A key deleted before is at its delete marker's revision: creating it again updates that.
		// None yet is another write of the key still in flight: it exists, or is about to.
		m, gerr := s.keyLastMsg(ctx, b, key)
		switch {
		case gerr != nil && !errors.Is(gerr, ErrNotFound):
			return 0, gerr
		case gerr == nil && isMarker(m.Header):
			rev, err = s.writeKey(ctx, b, key, val, "", &m.Seq)
		}
	}
	if errors.Is(err, ErrConflict) {
		return 0, ErrExists
	}
	return rev, s.wrote(b, key, err)
}

// CreateOrGet stores val under key unless a value is there already, and returns the value
// that is there: the deployment-wide settings every node must agree on (the signing key, the
// shard count) go through it, so nodes starting at once all end up with the first one written.
// It retries passing errors, which are common while a new cluster forms.
func (s *Store) CreateOrGet(ctx context.Context, b Bucket, key string, val []byte) ([]byte, error) {
	for attempt := 1; ; attempt++ {
		_, err := s.Create(ctx, b, key, val)
		if err == nil || errors.Is(err, ErrExists) {
			var got []byte
			if got, _, err = s.Get(ctx, b, key); err == nil {
				return got, nil
			}
		}
		if attempt == 10 {
			return nil, fmt.Errorf("store %s/%s: %w", b, key, err)
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(time.Duration(attempt) * 200 * time.Millisecond):
		}
	}
}

// Update stores a value only if the key is still at revision rev; ErrConflict otherwise.
func (s *Store) Update(ctx context.Context, b Bucket, key string, val []byte, rev uint64) (uint64, error) {
	if err := s.checkWrite(key, val); err != nil {
		return 0, err
	}
	newRev, err := s.writeKey(ctx, b, key, val, "", &rev)
	return newRev, s.wrote(b, key, err)
}

// Put stores a value whatever was there.
func (s *Store) Put(ctx context.Context, b Bucket, key string, val []byte) (uint64, error) {
	if err := s.checkWrite(key, val); err != nil {
		return 0, err
	}
	rev, err := s.writeKey(ctx, b, key, val, "", nil)
	return rev, s.wrote(b, key, err)
}

// Delete removes a key. Deleting a missing key is not an error.
func (s *Store) Delete(ctx context.Context, b Bucket, key string) error {
	return s.deleteKey(ctx, b, key, nil)
}

// DeleteAt removes a key only if it is still at revision rev; ErrConflict otherwise.
func (s *Store) DeleteAt(ctx context.Context, b Bucket, key string, rev uint64) error {
	return s.deleteKey(ctx, b, key, &rev)
}

func (s *Store) deleteKey(ctx context.Context, b Bucket, key string, expect *uint64) error {
	if err := s.checkWrite(key, nil); err != nil {
		return err
	}
	_, err := s.writeKey(ctx, b, key, nil, "DEL", expect)
	return s.wrote(b, key, err)
}

// writeKey publishes one change of a key (op "DEL" a delete marker), stored only if the key is
// at revision *expect when expect is set. It runs under the write policy: a bucket leader that
// died with the write in flight never answers, and the next try reaches the new leader in
// seconds instead of after the request's whole timeout. Every try carries the write's own
// message id, so a try that was stored though its answer was lost is recognised, by
// JetStream's dedup or by the id on the key's last message, and answered as stored rather
// than stored twice or refused as a conflict with itself.
func (s *Store) writeKey(ctx context.Context, b Bucket, key string, val []byte, op string, expect *uint64) (uint64, error) {
	msg := nats.NewMsg(keySubject(b, key))
	msg.Data = val
	id := randomToken()[:24]
	msg.Header.Set(jetstream.MsgIDHeader, id)
	if op != "" {
		msg.Header.Set(kvOperation, op)
	}
	if expect != nil {
		msg.Header.Set(jetstream.ExpectedLastSubjSeqHeader, strconv.FormatUint(*expect, 10))
	}
	unsure := false
	rev, err := s.appendRecognising(ctx, func(actx context.Context) (uint64, error) {
		return s.publishAcked(actx, msg)
	}, func(error) (uint64, bool) {
		m, err := s.keyLastMsg(ctx, b, key)
		landed := err == nil && m.Header.Get(jetstream.MsgIDHeader) == id
		unsure = !landed
		return m.Seq, landed
	})
	if unsure && errors.Is(err, ErrConflict) && s.opts.Replicas == 1 {
		// A try went unanswered, and the key has moved on since: perhaps past this very write,
		// since a stream of one replica compares before it looks for duplicates. A conflict
		// would have Modify make its change twice. (A replicated stream looks first, so a
		// conflict there is another writer's: Modify reads again and retries.)
		return 0, fmt.Errorf("%w: whether %s was written is unknown", ErrUnavailable, key)
	}
	return rev, err
}

// keyLastMsg is a key's last change (a value or a marker) as its bucket's leader has it.
func (s *Store) keyLastMsg(ctx context.Context, b Bucket, key string) (leaderMsg, error) {
	return s.leaderLastMsg(ctx, "KV_"+string(b), keySubject(b, key))
}

// keySubject is the subject a bucket stores a key's changes on.
func keySubject(b Bucket, key string) string { return "$KV." + string(b) + "." + key }

// isMarker reports whether a key's last message removed it: a delete or purge, or the
// server's own removal of an expired key.
func isMarker(h nats.Header) bool { return h.Get(kvOperation) != "" || h.Get(markerReason) != "" }

// wrote notes a write that succeeded for read-your-writes (recentWrites), and passes its
// error on. A write that failed may have been stored too (an answer lost on its way), so it
// is noted as well, unless the bucket refused it outright.
func (s *Store) wrote(b Bucket, key string, err error) error {
	if !errors.Is(err, ErrExists) && !errors.Is(err, ErrConflict) {
		s.recent.note(b, key)
	}
	return err
}

// Keys lists the keys that start with the given Key parts. The list is complete or an error:
// a caller such as "log out every device" must not act on half of it.
func (s *Store) Keys(ctx context.Context, b Bucket, prefix ...string) ([]string, error) {
	filter := ">"
	if len(prefix) > 0 {
		filter = Key(prefix...) + ".>"
	}
	if err := checkKey(filter); err != nil {
		return nil, err
	}
	return readWithRetry(ctx, s, func(ctx context.Context) ([]string, error) {
		return s.listKeys(ctx, b, filter)
	})
}

// listKeys reads the keys matching filter up to the marker that ends the current values.
// (jetstream's key lister reports a watch that closed early as a complete list.)
func (s *Store) listKeys(ctx context.Context, b Bucket, filter string) ([]string, error) {
	w, err := s.buckets[b].WatchFiltered(ctx, []string{filter}, jetstream.IgnoreDeletes(), jetstream.MetaOnly())
	if err != nil {
		return nil, err
	}
	defer w.Stop()
	var keys []string
	for {
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case e, ok := <-w.Updates():
			switch {
			case !ok:
				return nil, fmt.Errorf("%w: listing ended early", ErrUnavailable)
			case e == nil:
				return keys, nil
			}
			keys = append(keys, e.Key())
		}
	}
}

// WaitBucket waits until c, this node's mirror of bucket b, has applied position p (from a
// client's token). A position past the bucket's end, which no node handed out, is refused
// with ErrBeyondEnd after a short grace instead of being waited for.
func (s *Store) WaitBucket(ctx context.Context, b Bucket, c *Cursor, p uint64) error {
	if c.Load() >= p {
		return nil // the usual case: no timer to set up
	}
	quick, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	err := c.Wait(quick, p)
	cancel()
	if err == nil || ctx.Err() != nil {
		return err
	}
	hctx, cancel := context.WithTimeout(ctx, time.Second)
	head, herr := s.BucketHead(hctx, b)
	cancel()
	if herr == nil && p > head {
		return fmt.Errorf("%w: position %d of %s (its end is %d)", ErrBeyondEnd, p, b, head)
	}
	return c.Wait(ctx, p)
}

// BucketHead is the last position written to a bucket, as its stream's leader has it.
func (s *Store) BucketHead(ctx context.Context, b Bucket) (uint64, error) {
	// Looking the stream up fetches its info from the leader; that answer is the head.
	stream, err := readWithRetry(ctx, s, func(ctx context.Context) (jetstream.Stream, error) {
		return s.js.Stream(ctx, "KV_"+string(b))
	})
	if err != nil {
		return 0, err
	}
	return stream.CachedInfo().State.LastSeq, nil
}

// kvOperation is the header JetStream's buckets mark a delete or purge with; markerReason marks
// a key the server removed itself (an expired key, in buckets that ask for such markers).
const (
	kvOperation  = "KV-Operation"
	markerReason = "Nats-Marker-Reason"
)

// Change is one update of a bucket, in the order the bucket stored them.
type Change struct {
	Key     string
	Value   []byte
	Rev     uint64 // the bucket's position; comparable across nodes
	Deleted bool
}

// Watch calls apply with the current value of every key (afterRev 0) or with every change
// after afterRev, calls ready once those are delivered, then calls apply for every later change
// until ctx ends or the watch fails. A watch started again goes on from the last revision its
// caller applied: replaying every key from a replica that is still catching up would hand the
// caller older values than it has. A watch that stands still behind its bucket for a whole
// StallCheck ends (errWatchStalled), so it is not for buckets whose values expire: their head
// can sit past their last value.
func (s *Store) Watch(ctx context.Context, b Bucket, afterRev uint64, ready func(), apply func(Change)) error {
	prefix := keySubject(b, "")
	cfg := followerConfig(afterRev)
	cfg.FilterSubject = prefix + ">"
	if afterRev == 0 {
		cfg.DeliverPolicy, cfg.OptStartSeq = jetstream.DeliverLastPerSubjectPolicy, 0
	}
	// A watch whose consumer stands still behind the bucket ends, so its caller starts it again
	// on a consumer placed afresh, away from a replica its stream's leader sees behind.
	var applied atomic.Uint64
	applied.Store(afterRev)
	wctx, cancel := context.WithCancelCause(ctx)
	stallChecked := make(chan struct{})
	go func() {
		defer close(stallChecked)
		if err := watchForStall(wctx, s.stallCheck, s.quickBucketHead(b), &applied); errors.Is(err, errWatchStalled) {
			cancel(err)
		}
	}()
	defer func() { cancel(nil); <-stallChecked }() // the check may be reading the head: the store may close next
	err := s.follow(wctx, "KV_"+string(b), cfg, ready, func(m jetstream.Msg, meta *jetstream.MsgMetadata) {
		apply(Change{Key: strings.TrimPrefix(m.Subject(), prefix), Value: m.Data(), Rev: meta.Sequence.Stream,
			Deleted: isMarker(m.Headers())})
		applied.Store(meta.Sequence.Stream)
	})
	if cause := context.Cause(wctx); ctx.Err() == nil && errors.Is(err, context.Canceled) && errors.Is(cause, errWatchStalled) {
		return cause
	}
	return err
}

// quickBucketHead reads a bucket's head if its stream's leader answers within a second, else 0.
func (s *Store) quickBucketHead(b Bucket) func(context.Context) uint64 {
	return func(ctx context.Context) uint64 {
		ctx, cancel := context.WithTimeout(ctx, time.Second)
		defer cancel()
		head, _ := s.BucketHead(ctx, b)
		return head
	}
}

// Modify changes one value with compare-and-set: change gets the stored value (nil when there
// is none) and returns the new one, which is written only if the key is still as read. When
// change returns nil or the same bytes nothing is written. The value is read as the leader
// has it (latest): from a trailing replica, a change that looked done would be answered as
// such and never written. A lost race is tried again after a short random pause (racing
// writers spread out) for up to modifyBudget: every lost race is another writer's change made,
// so a key many write at once (one device's one-time keys, claimed by a dozen clients) keeps
// moving, and a count of tries would give up on a writer that was merely unlucky. It returns
// the revision the key then holds; an error from change is returned as it is, with nothing
// written. This node's own writers of the key take turns (package keylock): racing, a dozen
// writers of one key (clients claiming one device's one-time keys) kept losing to each other.
func (s *Store) Modify(ctx context.Context, b Bucket, key string, change func(old []byte) ([]byte, error)) (uint64, error) {
	giveUp := time.Now().Add(modifyBudget)
	lctx, cancel := context.WithDeadline(ctx, giveUp) // the turn is waited for within the budget
	unlock, err := s.modifying.Lock(lctx, bucketKey{b, key})
	cancel()
	if ctx.Err() != nil {
		return 0, ctx.Err()
	} else if err != nil {
		return 0, fmt.Errorf("%w: %s is busy", ErrUnavailable, key)
	}
	defer unlock()
	for attempt := 1; attempt == 1 || time.Now().Before(giveUp); attempt++ {
		old, rev, err := s.latest(ctx, b, key)
		if errors.Is(err, ErrNotFound) {
			old, rev = nil, 0
		} else if err != nil {
			return 0, err
		}
		val, err := change(old)
		if err != nil || val == nil || bytes.Equal(val, old) {
			return rev, err
		}
		if rev == 0 {
			rev, err = s.Create(ctx, b, key, val)
		} else {
			rev, err = s.Update(ctx, b, key, val, rev)
		}
		if !errors.Is(err, ErrExists) && !errors.Is(err, ErrConflict) {
			return rev, err
		}
		select {
		case <-ctx.Done():
			return 0, ctx.Err()
		case <-time.After(rand.N(min(time.Duration(attempt)*10*time.Millisecond, 100*time.Millisecond))):
		}
	}
	return 0, fmt.Errorf("%w: %s kept changing", ErrUnavailable, key)
}

// modifyBudget bounds how long Modify keeps trying after lost races.
const modifyBudget = 10 * time.Second
