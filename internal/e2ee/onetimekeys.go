package e2ee

import (
	"bytes"
	"cmp"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sort"
	"strings"

	"github.com/matrix-org/gomatrixserverlib"

	"github.com/firebreak/firebreak/internal/store"
)

// maxOneTimeKeys bounds a device's stored one-time keys: clients keep about 50 and top them up.
const maxOneTimeKeys = 1000

// keyRecord is one device's one-time keys and fallback keys, kept as one value so that a
// claim takes a key with one compare-and-set.
type keyRecord struct {
	OneTime  map[string]oneTimeKey  `json:"one_time,omitempty"` // "algorithm:key id" -> key
	Fallback map[string]fallbackKey `json:"fallback,omitempty"` // algorithm -> key
	Uploaded uint64                 `json:"uploaded,omitempty"` // one-time keys ever uploaded
}

// oneTimeKey is a one-time key in canonical JSON and its place in the order keys were
// uploaded: a claim takes the oldest, as clients forget their oldest first.
type oneTimeKey struct {
	Key json.RawMessage `json:"key"`
	N   uint64          `json:"n"`
}

// fallbackKey is handed out when a device's one-time keys of its algorithm run out, as often
// as asked, until the device uploads another.
type fallbackKey struct {
	ID   string          `json:"id"` // "algorithm:key id"
	Key  json.RawMessage `json:"key"`
	Used bool            `json:"used,omitempty"`
}

// Counts are what sync tells a device of its keys: one-time keys left per algorithm (always
// with signed_curve25519, the one clients use), and the algorithms whose fallback key is
// unused.
type Counts struct {
	OneTime        map[string]int
	UnusedFallback []string
}

func (r keyRecord) counts() Counts {
	c := Counts{OneTime: map[string]int{"signed_curve25519": 0}, UnusedFallback: []string{}}
	for id := range r.OneTime {
		alg, _, _ := strings.Cut(id, ":")
		c.OneTime[alg]++
	}
	for alg, fb := range r.Fallback {
		if !fb.Used {
			c.UnusedFallback = append(c.UnusedFallback, alg)
		}
	}
	sort.Strings(c.UnusedFallback)
	return c
}

func (s *Service) applyCounts(c store.Change) {
	defer s.countsRev.Advance(c.Rev)
	parts, err := store.KeyParts(c.Key)
	if err != nil || len(parts) != 2 {
		return
	}
	var rec keyRecord
	if !c.Deleted {
		_ = json.Unmarshal(c.Value, &rec)
	}
	s.mu.Lock()
	if c.Deleted {
		delete(s.counts, deviceKey{parts[0], parts[1]})
	} else {
		s.counts[deviceKey{parts[0], parts[1]}] = rec.counts()
	}
	s.mu.Unlock()
}

// noKeys are the counts of a device that uploaded none (most, in a server whose clients do
// not encrypt): one value, read by every sync of such a device, changed by none.
var noKeys = keyRecord{}.counts()

// Counts is the device's key counts as this node has them. Callers must not change them.
func (s *Service) Counts(userID, deviceID string) Counts {
	s.mu.RLock()
	c, ok := s.counts[deviceKey{userID, deviceID}]
	s.mu.RUnlock()
	if !ok {
		return noKeys
	}
	return c
}

// Limits on names of one-time and fallback keys: "algorithm:key id".
const (
	maxAlgorithmLen = 64
	maxKeyIDLen     = 128
)

// KeyUpload is what a /keys/upload may carry, each part optional.
type KeyUpload struct {
	DeviceKeys   json.RawMessage
	OneTimeKeys  map[string]json.RawMessage
	FallbackKeys map[string]json.RawMessage
}

// Upload stores a device's keys and returns its one-time key counts. Everything is checked
// before anything is stored: keys of another user or device, badly named or empty keys, two
// fallback keys of one algorithm, or a one-time key id stored before with another key (the
// spec's servers refuse a reused id) fail the whole upload; only a concurrent upload of the
// same key id can still refuse the one-time keys once the device keys are stored.
func (s *Service) Upload(ctx context.Context, userID, deviceID string, up KeyUpload) (map[string]int, error) {
	deviceKeys := given(up.DeviceKeys)
	if deviceKeys != nil {
		if _, err := checkDeviceKeys(userID, deviceID, deviceKeys); err != nil {
			return nil, err
		}
	}
	oneTime, err := canonicalKeys(up.OneTimeKeys)
	if err != nil {
		return nil, err
	}
	fallback, err := canonicalKeys(up.FallbackKeys)
	if err != nil {
		return nil, err
	}
	fallbackByAlg := map[string]fallbackKey{}
	for id, key := range fallback {
		alg, _, _ := strings.Cut(id, ":")
		if _, twice := fallbackByAlg[alg]; twice {
			return nil, fmt.Errorf("%w: two fallback keys of %s", ErrBadRequest, alg)
		}
		fallbackByAlg[alg] = fallbackKey{ID: id, Key: key}
	}
	// The device keys go first, once the one-time keys are known to fit: a node that dies
	// between the two writes then leaves new device keys without the new one-time keys, which
	// the client's retry stores, never one-time keys signed by device keys no one can see.
	if deviceKeys != nil {
		if err := s.checkAdd(ctx, userID, deviceID, oneTime, fallbackByAlg); err != nil {
			return nil, err
		}
		if err := s.UploadDeviceKeys(ctx, userID, deviceID, deviceKeys); err != nil {
			return nil, err
		}
	}
	rec, err := s.changeKeys(ctx, userID, deviceID, func(r *keyRecord) error {
		return r.add(oneTime, fallbackByAlg)
	})
	if err != nil {
		return nil, err
	}
	return rec.counts().OneTime, nil
}

// checkAdd reports whether the keys could be added to the device's record as it is now.
func (s *Service) checkAdd(ctx context.Context, userID, deviceID string, oneTime map[string]json.RawMessage, fallback map[string]fallbackKey) error {
	stored, _, err := s.st.Get(ctx, store.BucketOneTimeKeys, store.Key(userID, deviceID))
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		return err
	}
	rec, err := decodeRecord(stored)
	if err != nil {
		return err
	}
	return rec.add(oneTime, fallback)
}

// decodeRecord reads a device's stored key record; none stored is an empty one.
func decodeRecord(stored []byte) (keyRecord, error) {
	var rec keyRecord
	if stored == nil {
		return rec, nil
	}
	return rec, json.Unmarshal(stored, &rec)
}

// canonicalKeys checks the names of uploaded one-time or fallback keys and puts each key in
// canonical JSON, so that the same key sent again compares equal however it is spaced.
func canonicalKeys(keys map[string]json.RawMessage) (map[string]json.RawMessage, error) {
	out := make(map[string]json.RawMessage, len(keys))
	for id, key := range keys {
		alg, keyID, ok := strings.Cut(id, ":")
		if !ok || alg == "" || keyID == "" || len(alg) > maxAlgorithmLen || len(keyID) > maxKeyIDLen {
			return nil, fmt.Errorf("%w: key %.200q is not named algorithm:id", ErrBadRequest, id)
		}
		if len(key) == 0 || (key[0] != '{' && key[0] != '"') {
			return nil, fmt.Errorf("%w: key %s is neither an object nor a string", ErrBadRequest, id)
		}
		canonical, err := gomatrixserverlib.CanonicalJSON(key)
		if err != nil {
			return nil, fmt.Errorf("%w: key %s: %v", ErrBadRequest, id, err)
		}
		out[id] = canonical
	}
	return out, nil
}

// add adds one-time keys, numbered in upload order (within one upload, by key id as clients
// count them), and replaces fallback keys; the same fallback key again keeps its used mark.
func (r *keyRecord) add(oneTime map[string]json.RawMessage, fallback map[string]fallbackKey) error {
	if r.OneTime == nil {
		r.OneTime = map[string]oneTimeKey{}
	}
	ids := slices.SortedFunc(maps.Keys(oneTime), byKeyCounter)
	for _, id := range ids {
		key := oneTime[id]
		if old, ok := r.OneTime[id]; ok {
			if !bytes.Equal(old.Key, key) {
				return fmt.Errorf("%w: one-time key %s already exists with another key", ErrBadRequest, id)
			}
			continue
		}
		r.Uploaded++
		r.OneTime[id] = oneTimeKey{Key: key, N: r.Uploaded}
	}
	if len(r.OneTime) > maxOneTimeKeys {
		return fmt.Errorf("%w: a device keeps at most %d one-time keys", ErrBadRequest, maxOneTimeKeys)
	}
	for alg, fb := range fallback {
		if old, ok := r.Fallback[alg]; ok && old.ID == fb.ID && bytes.Equal(old.Key, fb.Key) {
			continue
		}
		if r.Fallback == nil {
			r.Fallback = map[string]fallbackKey{}
		}
		r.Fallback[alg] = fb
	}
	return nil
}

// byKeyCounter orders key ids as clients number them: Olm names a key by its counter in
// unpadded base64, whose characters do not sort as the numbers do.
func byKeyCounter(a, b string) int {
	_, ka, _ := strings.Cut(a, ":")
	_, kb, _ := strings.Cut(b, ":")
	na, errA := base64.RawStdEncoding.DecodeString(ka)
	nb, errB := base64.RawStdEncoding.DecodeString(kb)
	if errA != nil || errB != nil || len(na) != len(nb) {
		return cmp.Or(cmp.Compare(len(ka), len(kb)), strings.Compare(a, b))
	}
	return bytes.Compare(na, nb)
}

// Claim takes, for each user, device and algorithm asked for, one of the device's one-time
// keys of that algorithm (removing it), or its fallback key when none is left. Devices with
// neither are left out, as the spec's servers do.
func (s *Service) Claim(ctx context.Context, want map[string]map[string]string) (map[string]map[string]map[string]json.RawMessage, error) {
	out := map[string]map[string]map[string]json.RawMessage{}
	for userID, devices := range want {
		names, err := s.displayNames(ctx, userID)
		if err != nil {
			return nil, err
		}
		for deviceID, alg := range devices {
			if _, exists := names[deviceID]; !exists {
				continue // logged out: its keys are no one's
			}
			id, key, err := s.claimOne(ctx, userID, deviceID, alg)
			if errors.Is(err, ErrNotFound) {
				continue
			} else if err != nil {
				return nil, err
			}
			if out[userID] == nil {
				out[userID] = map[string]map[string]json.RawMessage{}
			}
			out[userID][deviceID] = map[string]json.RawMessage{id: key}
		}
	}
	return out, nil
}

func (s *Service) claimOne(ctx context.Context, userID, deviceID, alg string) (id string, key json.RawMessage, err error) {
	_, err = s.changeKeys(ctx, userID, deviceID, func(r *keyRecord) error {
		id = ""
		for k, otk := range r.OneTime {
			if strings.HasPrefix(k, alg+":") && (id == "" || otk.N < r.OneTime[id].N) {
				id = k // the oldest
			}
		}
		if id != "" {
			key = r.OneTime[id].Key
			delete(r.OneTime, id)
			return nil
		}
		fb, ok := r.Fallback[alg]
		if !ok {
			return ErrNotFound
		}
		id, key = fb.ID, fb.Key
		fb.Used = true
		r.Fallback[alg] = fb
		return nil
	})
	return id, key, err
}

// changeKeys changes a device's key record with compare-and-set, reading it again after a
// lost race (two claims of one device's keys each get their own key). A record that did not
// change is not written (an upload that only asks for the counts).
func (s *Service) changeKeys(ctx context.Context, userID, deviceID string, change func(*keyRecord) error) (keyRecord, error) {
	var rec keyRecord
	_, err := s.st.Modify(ctx, store.BucketOneTimeKeys, store.Key(userID, deviceID), func(old []byte) ([]byte, error) {
		var err error
		if rec, err = decodeRecord(old); err != nil {
			return nil, err
		}
		before, _ := json.Marshal(rec)
		if err := change(&rec); err != nil {
			return nil, err
		}
		val, _ := json.Marshal(rec)
		if bytes.Equal(val, before) {
			return nil, nil
		}
		return val, nil
	})
	return rec, err
}
