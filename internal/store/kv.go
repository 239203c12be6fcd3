package store

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// Bucket names one kind of keyed state.
type Bucket string

// The buckets. Every one is replicated like the room streams.
const (
	BucketServer      Bucket = "fb_server"       // signing key, deployment settings
	BucketAccounts    Bucket = "fb_accounts"     // user id -> account (password hash, profile)
	BucketDevices     Bucket = "fb_devices"      // user id, device id -> device
	BucketTokens      Bucket = "fb_tokens"       // hash of an access token -> user and device
	BucketFilters     Bucket = "fb_filters"      // user id, filter id -> filter JSON
	BucketAliases     Bucket = "fb_aliases"      // room alias -> room id
	BucketAccountData Bucket = "fb_account_data" // user id, room id or "", type -> content
	BucketReceipts    Bucket = "fb_receipts"     // room id, user id, receipt type -> receipt
	BucketNonces      Bucket = "fb_nonces"       // shared-secret registration nonces, short-lived
)

var allBuckets = []Bucket{BucketServer, BucketAccounts, BucketDevices, BucketTokens, BucketFilters,
	BucketAliases, BucketAccountData, BucketReceipts, BucketNonces}

func (s *Store) openBucket(ctx context.Context, b Bucket) error {
	if _, ok := s.buckets[b]; ok {
		return nil
	}
	cfg := jetstream.KeyValueConfig{
		Bucket:   string(b),
		Storage:  jetstream.FileStorage,
		Replicas: s.opts.Replicas,
		History:  1,
	}
	if b == BucketNonces {
		cfg.TTL = 5 * time.Minute
	}
	kv, err := s.js.CreateOrUpdateKeyValue(ctx, cfg)
	if err != nil {
		return fmt.Errorf("create bucket %s: %w", b, err)
	}
	s.buckets[b] = kv
	return nil
}

// Get returns a key's value and its revision.
func (s *Store) Get(ctx context.Context, b Bucket, key string) ([]byte, uint64, error) {
	e, err := s.buckets[b].Get(ctx, key)
	if err != nil {
		return nil, 0, translate(err)
	}
	return e.Value(), e.Revision(), nil
}

// Create stores a value only if the key has none; ErrExists otherwise. Two nodes racing to
// create the same key (a user name, an alias) get one winner.
func (s *Store) Create(ctx context.Context, b Bucket, key string, val []byte) (uint64, error) {
	rev, err := s.buckets[b].Create(ctx, key, val)
	if errors.Is(err, jetstream.ErrKeyExists) {
		return 0, ErrExists
	}
	return rev, translate(err)
}

// Update stores a value only if the key is still at revision rev; ErrConflict otherwise.
func (s *Store) Update(ctx context.Context, b Bucket, key string, val []byte, rev uint64) (uint64, error) {
	newRev, err := s.buckets[b].Update(ctx, key, val, rev)
	return newRev, translate(err)
}

// Put stores a value whatever was there.
func (s *Store) Put(ctx context.Context, b Bucket, key string, val []byte) (uint64, error) {
	rev, err := s.buckets[b].Put(ctx, key, val)
	return rev, translate(err)
}

// Delete removes a key. Deleting a missing key is not an error.
func (s *Store) Delete(ctx context.Context, b Bucket, key string) error {
	err := translate(s.buckets[b].Delete(ctx, key))
	if errors.Is(err, ErrNotFound) {
		return nil
	}
	return err
}

// Keys lists the keys that start with the given Key parts.
func (s *Store) Keys(ctx context.Context, b Bucket, prefix ...string) ([]string, error) {
	filter := ">"
	if len(prefix) > 0 {
		filter = Key(prefix...) + ".>"
	}
	lister, err := s.buckets[b].ListKeysFiltered(ctx, filter)
	if err != nil {
		return nil, translate(err)
	}
	var keys []string
	for k := range lister.Keys() {
		keys = append(keys, k)
	}
	// The lister stops by itself once every key is delivered.
	return keys, nil
}

// Change is one update of a bucket, in the order the bucket stored them.
type Change struct {
	Key     string
	Value   []byte
	Rev     uint64 // the bucket's position; comparable across nodes
	Deleted bool
}

// Watch calls apply with the current value of every key, calls ready once those are
// delivered, then calls apply for every later change until ctx ends.
func (s *Store) Watch(ctx context.Context, b Bucket, ready func(), apply func(Change)) error {
	w, err := s.buckets[b].WatchAll(ctx)
	if err != nil {
		return translate(err)
	}
	defer w.Stop()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case e, ok := <-w.Updates():
			if !ok {
				return ctx.Err()
			}
			if e == nil {
				ready()
				continue
			}
			apply(Change{Key: e.Key(), Value: e.Value(), Rev: e.Revision(), Deleted: e.Operation() != jetstream.KeyValuePut})
		}
	}
}
