// Package store keeps every piece of Firebreak's persistent state in NATS JetStream and hides
// JetStream's streams, subjects, headers and buckets from the rest of the code. Callers speak in
// room ids, user ids and opaque keys; this package turns them into subjects and KV keys.
package store

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/firebreak/firebreak/internal/keylock"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Options say where the data lives and how many copies of it JetStream keeps.
type Options struct {
	DataDir  string
	NodeName string
	// Cluster, when set, joins this node's embedded JetStream to the deployment's one cluster
	// stretched over the data centers.
	Cluster *ClusterOptions
	// NATSURL, when set, uses an external NATS cluster instead of an embedded server.
	NATSURL  string
	Replicas int // 1 for a single node; 3 (one per data center) in a cluster
	// GroupCommit stores the events that queue for a shard while its last append is in flight
	// as one message (group.go). Only on an embedded server: in a cluster the node that leads
	// a shard's stream writes it, and the others forward to it (forward.go). A cluster created
	// before its nodes did this keeps one message per event (agreeOnRoomWrites).
	GroupCommit bool
	RoomShards  int // fixed for the deployment's life: a room's shard is a hash of its id
	// DedupWindow is how long JetStream remembers a publish id; a retry inside it is stored once.
	DedupWindow time.Duration
	Logger      *slog.Logger

	// The loopback client port a clustered node must open takes two users, each with a password
	// only this process knows: the store's own connection, and the system account's, which
	// only the fence uses (fence.go).
	clientPassword, systemPassword string
	// The server's configuration holds only the passwords' bcrypt hashes (setPasswords).
	clientPasswordHash, systemPasswordHash string
}

var (
	// ErrNotFound: no such key or message.
	ErrNotFound = errors.New("store: not found")
	// ErrExists: Create found the key already there.
	ErrExists = errors.New("store: key exists")
	// ErrConflict: a compare-and-set lost a race; reload and retry.
	ErrConflict = errors.New("store: concurrent update")
	// ErrUnavailable: JetStream cannot reach a quorum right now; nothing was written.
	ErrUnavailable = errors.New("store: storage unavailable")
	// ErrKeyTooLong: a key (a user, room or device id in it) is too long to store.
	ErrKeyTooLong = errors.New("store: key too long")
	// ErrValueTooLarge: a value is over MaxValueBytes.
	ErrValueTooLarge = errors.New("store: value too large")
	// ErrBeyondEnd: a position (from a client's token) past the end of its stream or bucket.
	ErrBeyondEnd = errors.New("store: position past the end")
)

// Store is an open connection to JetStream, embedded in this process.
type Store struct {
	opts      Options
	ns        *server.Server
	nc        *nats.Conn
	js        jetstream.JetStream
	buckets   map[Bucket]jetstream.KeyValue // written only while opening; read freely after
	bucketsMu sync.Mutex
	media     jetstream.ObjectStore // uploaded media (objects.go)
	log       *slog.Logger
	shards    int
	// streams are the shard streams' handles, kept from bootstrap: looking one up asks the
	// stream's leader, which a read must not need while the stream elects a new one.
	streams []jetstream.Stream
	// lost is closed when the connection to JetStream closes for good while the store is open
	// (NATS closes a connection on a protocol error): the node can then only be restarted.
	lost    chan struct{}
	closing atomic.Bool
	fence   *fence // clustered embedded nodes only
	// grouped: this deployment stores appends through group writers (Options.GroupCommit,
	// where the deployment agrees).
	grouped bool
	groups  *groupWriters // when grouped
	// stallCheck is how often bucket watches are checked for standing still (StallCheck;
	// shorter in tests).
	stallCheck time.Duration
	// placementTries is how many consumers a follower creates, at most, to get one near this
	// node (placement.go; 1 in a test that needs one placed at random).
	placementTries int
	serverDCs      sync.Map                  // server name: serverDC, its data center as last read (dcOf)
	recent         *recentWrites             // keys this node wrote lately, in a cluster (recent.go)
	modifying      *keylock.Locks[bucketKey] // keys a Modify on this node is changing
}

// errGroupNeedsEmbedded: group commit asks the node's own server which shards it leads, and an
// external NATS, or replicas a lone server cannot hold, gives it none to ask.
var errGroupNeedsEmbedded = errors.New("open JetStream: group commit needs an embedded server")

// Open starts the embedded JetStream server, connects to it in-process and creates (or
// finds) every stream and bucket. Creation is idempotent so every node may run it at once.
func Open(ctx context.Context, opts Options) (*Store, error) {
	if opts.Replicas < 1 {
		opts.Replicas = 1
	}
	if opts.DedupWindow == 0 {
		opts.DedupWindow = 10 * time.Minute
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.GroupCommit && (opts.NATSURL != "" || opts.Cluster == nil && opts.Replicas != 1) {
		return nil, errGroupNeedsEmbedded
	}
	s := &Store{opts: opts, buckets: map[Bucket]jetstream.KeyValue{}, log: opts.Logger, lost: make(chan struct{}),
		stallCheck: StallCheck, placementTries: nearPlacementTries, modifying: keylock.New[bucketKey]()}
	if opts.Replicas > 1 {
		s.recent = newRecentWrites()
	}
	conn := []nats.Option{nats.Name(opts.NodeName), nats.MaxReconnects(-1), nats.ClosedHandler(s.connectionClosed)}
	var err error
	if opts.NATSURL != "" {
		s.nc, err = nats.Connect(opts.NATSURL, conn...)
	} else {
		// On s.opts: a JetStream restart (fence.go) renders the same configuration again.
		if err = s.opts.setPasswords(); err == nil {
			s.ns, err = startEmbedded(ctx, s.opts)
		}
		if err == nil {
			s.nc, err = nats.Connect("", append(conn, nats.InProcessServer(s.ns), s.opts.clientUser())...)
		}
	}
	if err == nil {
		s.js, err = jetstream.New(s.nc, jetstream.WithDefaultTimeout(30*time.Second))
	}
	if err == nil {
		err = s.startFence()
	}
	if err == nil {
		err = s.bootstrap(ctx)
	}
	if err != nil {
		s.Close()
		return nil, fmt.Errorf("open JetStream: %w", err)
	}
	if s.grouped {
		s.startGroupWriters()
		if opts.Cluster != nil {
			s.startShardOwners()
		}
	}
	return s, nil
}

func startEmbedded(ctx context.Context, opts Options) (*server.Server, error) {
	if err := preflight(opts); err != nil {
		return nil, err
	}
	sopts, err := embeddedOptions(opts)
	if err != nil {
		return nil, err
	}
	ns, err := server.NewServer(sopts)
	if err != nil {
		return nil, fmt.Errorf("embedded JetStream: %w", err)
	}
	ns.SetLoggerV2(newNATSLogger(opts.Logger), false, false, false)
	ns.Start()
	deadline := time.Now().Add(embeddedReadyTimeout)
	for !ns.ReadyForConnections(250 * time.Millisecond) {
		if ctx.Err() != nil || time.Now().After(deadline) {
			ns.Shutdown()
			return nil, fmt.Errorf("embedded JetStream did not become ready within %v (see its log above): %w",
				embeddedReadyTimeout, cmp.Or(ctx.Err(), context.DeadlineExceeded))
		}
	}
	return ns, nil
}

// embeddedReadyTimeout bounds the embedded server's start; a stop asked for ends it sooner.
const embeddedReadyTimeout = 60 * time.Second

// preflight checks what the NATS server would only log about and then wait on for a minute:
// a JetStream directory this process cannot write (it reports "not a directory"), and a
// cluster port another process holds (it retries the listen every few seconds).
func preflight(opts Options) error {
	dir := filepath.Join(opts.DataDir, "jetstream")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("data_dir: %w", err)
	}
	probe, err := os.CreateTemp(dir, ".writable-*")
	if err != nil {
		return fmt.Errorf("data_dir %s is not writable: %w", opts.DataDir, err)
	}
	probe.Close()
	_ = os.Remove(probe.Name())
	if opts.Cluster == nil {
		return nil
	}
	ln, err := net.Listen("tcp", opts.Cluster.Listen)
	if err != nil {
		return fmt.Errorf("cluster listen %s: %w", opts.Cluster.Listen, err)
	}
	return ln.Close()
}

// embeddedOptions are the embedded server's options, the same at start and at every restart
// of its JetStream.
func embeddedOptions(opts Options) (*server.Options, error) {
	sopts := &server.Options{}
	if err := sopts.ProcessConfigString(renderConfig(opts)); err != nil {
		return nil, fmt.Errorf("embedded JetStream config: %w", err)
	}
	// No client port on a single node: only this process talks to its JetStream. NoSigs keeps
	// the NATS server from installing a signal handler that would exit the process.
	sopts.DontListen = opts.Cluster == nil
	sopts.NoSigs = true
	return sopts, nil
}

// Close closes the connection (whoever used it has stopped by now) and shuts the embedded
// server down cleanly; an unclean exit can leave JetStream's files needing repair on the next
// start. Closing again does nothing.
func (s *Store) Close() {
	if s.closing.Swap(true) {
		return
	}
	s.stopFence()
	if s.groups != nil {
		s.groups.close()
	}
	if s.nc != nil {
		s.nc.Close()
	}
	if s.ns != nil {
		s.ns.Shutdown()
		s.ns.WaitForShutdown()
	}
}

// Lost is closed if the connection to JetStream closes for good while the store is open.
func (s *Store) Lost() <-chan struct{} { return s.lost }

func (s *Store) connectionClosed(nc *nats.Conn) {
	if s.closing.Load() {
		return
	}
	s.log.Error("connection to JetStream closed for good", "err", nc.LastError())
	close(s.lost)
}

// bootstrap creates the fixed set of room shard streams and the KV buckets. In a cluster
// this waits for enough peers (three data centers) to place them; every node runs it, and
// creation is idempotent, so all nodes of a new cluster may start at once.
func (s *Store) bootstrap(ctx context.Context) error {
	s.waitForMetaLeader(ctx)
	for attempt := 1; ; attempt++ {
		// A reply sent while a new cluster is still propagating interest can be lost; a short
		// deadline per attempt, growing with each, retries soon. Each attempt keeps what earlier
		// ones created.
		actx, cancel := context.WithTimeout(ctx, min(time.Duration(attempt)*2*time.Second, 20*time.Second))
		err := s.createAll(actx)
		cancel()
		if err == nil || s.opts.Cluster == nil && s.opts.NATSURL == "" {
			return err
		}
		s.log.Info("waiting for the JetStream cluster to place streams", "attempt", attempt, "err", err)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(time.Second):
		}
	}
}

func (s *Store) createAll(ctx context.Context) (err error) {
	if s.grouped, err = s.agreeOnRoomWrites(ctx); err != nil {
		return err
	}
	shards, err := s.agreeOnShardCount(ctx)
	if err != nil {
		return err
	}
	if err := s.recordDC(ctx); err != nil {
		return err
	}
	s.shards = shards
	s.streams = make([]jetstream.Stream, shards)
	// Creating a replicated stream waits for its new Raft group to elect a leader, which takes
	// seconds; creating them all at once overlaps those waits.
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		errs []error
	)
	try := func(create func() error) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := create(); err != nil {
				mu.Lock()
				errs = append(errs, err)
				mu.Unlock()
			}
		}()
	}
	for i := 0; i < shards; i++ {
		try(func() error {
			stream, err := s.js.CreateOrUpdateStream(ctx, s.shardStreamConfig(i))
			if err != nil {
				return fmt.Errorf("create room shard stream %d: %w", i, err)
			}
			s.streams[i] = stream
			return nil
		})
	}
	for _, b := range allBuckets {
		try(func() error { return s.openBucket(ctx, b) })
	}
	try(func() error { return s.openMedia(ctx) })
	wg.Wait()
	return errors.Join(errs...)
}

// roomShardsKey is BucketServer's record of the deployment's shard count.
const roomShardsKey = "room_shards"

// agreeOnShardCount records the shard count the deployment was created with, so a node
// started later with a different setting still maps every room to the same stream.
func (s *Store) agreeOnShardCount(ctx context.Context) (int, error) {
	if err := s.openBucket(ctx, BucketServer); err != nil {
		return 0, err
	}
	got, err := s.CreateOrGet(ctx, BucketServer, roomShardsKey, []byte(fmt.Sprint(s.opts.RoomShards)))
	if err != nil {
		return 0, err
	}
	var n int
	if _, err := fmt.Sscan(string(got), &n); err != nil || n < 1 {
		return 0, fmt.Errorf("stored room_shards %q is invalid", got)
	}
	if n != s.opts.RoomShards {
		// Info, not a warning: a deployment keeps its count, and one created under another
		// default (16, for single nodes and clusters made before their group commit) meets
		// this at every start.
		s.log.Info("room_shards is fixed when a deployment is created; using the deployment's", "configured", s.opts.RoomShards, "stored", n)
	}
	return n, nil
}

// How a cluster stores its room events (BucketServer's room_writes): grouped (group.go), or
// one message per event, conditional on the room's subject. The two must not mix: a node
// writing one message per event compares against its room's subject, which a group message
// does not move.
const (
	roomWritesKey     = "room_writes"
	roomWritesGrouped = "grouped"
	roomWritesSingly  = "per_event"
)

// agreeOnRoomWrites says whether this node groups its appends. A single node is the only
// writer of its shards, and groups whenever it is asked to. A cluster node does what the
// cluster does, whatever it was asked: a cluster groups if it was created by nodes that
// group. One created before has room_shards but no room_writes, and its older nodes write
// one message per event. room_writes is created before room_shards, so a node that finds
// room_shards finds room_writes too, unless the cluster is older.
func (s *Store) agreeOnRoomWrites(ctx context.Context) (bool, error) {
	if s.opts.Cluster == nil {
		return s.opts.GroupCommit, nil
	}
	if err := s.openBucket(ctx, BucketServer); err != nil {
		return false, err
	}
	mode := roomWritesGrouped
	if !s.opts.GroupCommit {
		mode = roomWritesSingly
	} else if _, _, err := s.Get(ctx, BucketServer, roomShardsKey); err == nil {
		mode = roomWritesSingly
	} else if !errors.Is(err, ErrNotFound) {
		return false, err
	}
	got, err := s.CreateOrGet(ctx, BucketServer, roomWritesKey, []byte(mode))
	if err != nil {
		return false, err
	}
	if string(got) != roomWritesGrouped {
		s.log.Info("this cluster was created storing one message per event, and keeps doing so")
	}
	return string(got) == roomWritesGrouped, nil
}

// Shards is the number of room shard streams.
func (s *Store) Shards() int { return s.shards }

// ConflictError is ErrConflict with, when known, a shard position to catch up to before
// building again: the room's real head as the stream's leader gave it or, with group commit,
// the shard's last sequence. A writer that lost a race can catch up to it without asking a
// replica, which may not have it yet.
type ConflictError struct {
	Head uint64 // 0 when the leader did not say
}

func (e *ConflictError) Error() string { return fmt.Sprintf("%v (head at %d)", ErrConflict, e.Head) }
func (e *ConflictError) Unwrap() error { return ErrConflict }

// conflict reads the head from JetStream's "wrong last sequence: N".
func conflict(apiErr *jetstream.APIError) error {
	var head uint64
	if _, num, ok := strings.Cut(apiErr.Description, "wrong last sequence: "); ok {
		head, _ = strconv.ParseUint(strings.TrimSpace(num), 10, 64)
	}
	return &ConflictError{Head: head}
}

// JetStream's answers to a batch cut short by a change of stream leader, to too many batches at
// once, and to a message whose id is in a publish still in process (an earlier try of the same
// write): like every answer it gives with status 503 (no quorum yet, a compare the leader
// cannot make yet after an election), all are worth another try.
var retriedCodes = []jetstream.ErrorCode{errCodeIncompleteBatch, errCodeBatchesInFlight, errCodeDuplicateInProcess}

const (
	errCodeIncompleteBatch    jetstream.ErrorCode = 10176
	errCodeBatchesInFlight    jetstream.ErrorCode = 10210
	errCodeDuplicateInProcess jetstream.ErrorCode = 10158
)

// translate maps JetStream's errors onto the store's own.
func translate(err error) error {
	var apiErr *jetstream.APIError
	switch {
	case err == nil:
		return nil
	case errors.Is(err, jetstream.ErrKeyNotFound), errors.Is(err, jetstream.ErrMsgNotFound):
		return ErrNotFound
	case errors.As(err, &apiErr) && (apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence ||
		apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequenceConstant):
		return conflict(apiErr)
	case errors.As(err, &apiErr) && (apiErr.Code == http.StatusServiceUnavailable || slices.Contains(retriedCodes, apiErr.ErrorCode)):
		return fmt.Errorf("%w: %v", ErrUnavailable, err)
	case errors.Is(err, nats.ErrNoResponders), errors.Is(err, context.DeadlineExceeded),
		errors.Is(err, nats.ErrTimeout), errors.Is(err, jetstream.ErrNoStreamResponse),
		strings.Contains(err.Error(), "no responders"),
		// A direct read answered with a status (a 503 during an election) is a plain error.
		strings.Contains(err.Error(), "temporarily unavailable"):
		return fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	return err
}
