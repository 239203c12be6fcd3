// Package e2ee owns what end-to-end encryption needs of a homeserver: devices' identity keys,
// one-time and fallback keys, cross-signing keys and signatures, to-device messages, and
// server-side key backups. The
// server never sees a plaintext; it stores and hands out what clients upload. Everything is
// kept in JetStream buckets; each node mirrors what sync asks about on every request (who
// changed keys since a position, a device's key counts, its undelivered messages), so a sync
// reads memory, not the store.
package e2ee

import (
	"context"
	"errors"
	"log/slog"
	"sync"

	"github.com/firebreak/firebreak/internal/accounts"
	"github.com/firebreak/firebreak/internal/store"
)

// Errors the API answers with the spec's codes.
var (
	ErrBadRequest       = errors.New("bad request")
	ErrInvalidSignature = errors.New("invalid signature")
	ErrNotFound         = errors.New("not found")
	ErrForbidden        = errors.New("forbidden")
	ErrMissingMaster    = errors.New("no master key")
)

// Devices is what the service needs to know of accounts: a user's devices, for a message to
// all of them ("*") and for the display names clients see next to keys.
type Devices interface {
	Devices(ctx context.Context, userID string) ([]accounts.Device, error)
}

// Service stores keys and to-device messages and mirrors them for sync.
type Service struct {
	st      *store.Store
	devices Devices

	mu      sync.RWMutex
	changes changeLog                  // who changed their keys, in bucket order
	counts  map[deviceKey]Counts       // each device's one-time key counts
	inboxes map[deviceKey][]toDeviceAt // undelivered to-device messages, in bucket order

	keysRev, countsRev, inboxRev *store.Cursor

	onKeysChange func(KeyChange)     // a user's device list or cross-signing keys changed
	onMessage    func(userID string) // a to-device message for the user arrived
}

type deviceKey struct{ userID, deviceID string }

// New returns the service; Run fills its mirrors.
func New(st *store.Store, devices Devices) *Service {
	return &Service{st: st, devices: devices, counts: map[deviceKey]Counts{}, inboxes: map[deviceKey][]toDeviceAt{},
		keysRev: store.NewCursor(), countsRev: store.NewCursor(), inboxRev: store.NewCursor(),
		onKeysChange: func(KeyChange) {}, onMessage: func(string) {}}
}

// OnChange sets who hears of a key change and of a message arriving for a user.
func (s *Service) OnChange(keysChanged func(KeyChange), messageArrived func(userID string)) {
	s.onKeysChange, s.onMessage = keysChanged, messageArrived
}

// Run mirrors the three buckets until ctx ends, starting each watch again whenever it fails;
// ready is called once all three have loaded what was stored.
func (s *Service) Run(ctx context.Context, log *slog.Logger, ready func()) {
	var runs []func(loaded func())
	for _, m := range []struct {
		name   string
		bucket store.Bucket
		rev    *store.Cursor
		apply  func(store.Change)
	}{
		{"device keys", store.BucketDeviceKeys, s.keysRev, s.applyKeyChange},
		{"one-time keys", store.BucketOneTimeKeys, s.countsRev, s.applyCounts},
		{"to-device messages", store.BucketToDevice, s.inboxRev, s.applyMessage},
	} {
		runs = append(runs, func(loaded func()) {
			store.KeepFollowing(ctx, log, m.name, func() error {
				return s.st.Watch(ctx, m.bucket, m.rev.Load(), loaded, m.apply)
			})
		})
	}
	var wg sync.WaitGroup
	loaded := store.StartMirrors(&wg, runs...)
	wg.Go(func() {
		select {
		case <-loaded:
			ready()
		case <-ctx.Done():
		}
	})
	wg.Wait()
}

// Positions are how far this node's mirrors have read, for sync tokens.
type Positions struct{ Keys, ToDevice uint64 }

// Position is what this node's mirrors have applied.
func (s *Service) Position() Positions {
	return Positions{Keys: s.keysRev.Load(), ToDevice: s.inboxRev.Load()}
}

// WaitPosition waits until the mirrors have applied p (from a token); a position past a
// bucket's end is refused with store.ErrBeyondEnd.
func (s *Service) WaitPosition(ctx context.Context, p Positions) error {
	if err := s.st.WaitBucket(ctx, store.BucketDeviceKeys, s.keysRev, p.Keys); err != nil {
		return err
	}
	return s.st.WaitBucket(ctx, store.BucketToDevice, s.inboxRev, p.ToDevice)
}

// ForgetDevice removes what a logged-out device left: its keys, its one-time keys and its
// undelivered messages. Best effort: a device id is not reused by another device.
func (s *Service) ForgetDevice(ctx context.Context, userID, deviceID string) {
	// The device is gone already: finish even if the request that logged it out ends.
	ctx, cancel := accounts.Detached(ctx)
	defer cancel()
	// Only what exists: a deletion of nothing would still be a change of the user's keys,
	// which every member of their rooms would hear of.
	for _, k := range []struct {
		bucket store.Bucket
		key    string
	}{
		{store.BucketDeviceKeys, store.Key(userID, deviceID)},
		{store.BucketDeviceKeys, store.Key(userID, deviceSigsPart, deviceID)},
		{store.BucketOneTimeKeys, store.Key(userID, deviceID)},
	} {
		if _, _, err := s.st.Get(ctx, k.bucket, k.key); err == nil {
			_ = s.st.Delete(ctx, k.bucket, k.key)
		}
	}
	// From the bucket, not the mirror: a message stored a moment ago may not be mirrored yet.
	keys, _ := s.st.Keys(ctx, store.BucketToDevice, userID, deviceID)
	for _, key := range keys {
		_ = s.st.Delete(ctx, store.BucketToDevice, key)
	}
}
