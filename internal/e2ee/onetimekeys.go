package e2ee

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"

	"github.com/firebreak/firebreak/internal/store"
)

// maxOneTimeKeys bounds a device's stored one-time keys: clients keep about 50 and top them up.
const maxOneTimeKeys = 1000

// keyRecord is one device's one-time keys and fallback keys, kept as one value so that a
// claim takes a key with one compare-and-set.
type keyRecord struct {
	OneTime  map[string]json.RawMessage `json:"one_time,omitempty"` // "algorithm:key id" -> key
	Fallback map[string]fallbackKey     `json:"fallback,omitempty"` // algorithm -> key
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

// UploadKeys adds a device's one-time keys and replaces its fallback keys (both keyed
// "algorithm:key id"), and returns its one-time key counts. A key id already stored with
// another key is refused, as the spec's servers do: a client must not reuse one.
func (s *Service) UploadKeys(ctx context.Context, userID, deviceID string, oneTime, fallback map[string]json.RawMessage) (map[string]int, error) {
	for id := range fallback {
		if !strings.Contains(id, ":") {
			return nil, fmt.Errorf("%w: fallback key %q is not named algorithm:id", ErrBadRequest, id)
		}
	}
	rec, err := s.changeKeys(ctx, userID, deviceID, func(r *keyRecord) error {
		if r.OneTime == nil {
			r.OneTime = map[string]json.RawMessage{}
		}
		for id, key := range oneTime {
			if !strings.Contains(id, ":") {
				return fmt.Errorf("%w: one-time key %q is not named algorithm:id", ErrBadRequest, id)
			}
			if old, ok := r.OneTime[id]; ok && !bytes.Equal(old, key) {
				return fmt.Errorf("%w: one-time key %s already exists with another key", ErrBadRequest, id)
			}
			r.OneTime[id] = key
		}
		if len(r.OneTime) > maxOneTimeKeys {
			return fmt.Errorf("%w: a device keeps at most %d one-time keys", ErrBadRequest, maxOneTimeKeys)
		}
		for id, key := range fallback {
			alg, _, _ := strings.Cut(id, ":")
			if old, ok := r.Fallback[alg]; ok && old.ID == id && bytes.Equal(old.Key, key) {
				continue // the same key again keeps its used mark
			}
			if r.Fallback == nil {
				r.Fallback = map[string]fallbackKey{}
			}
			r.Fallback[alg] = fallbackKey{ID: id, Key: key}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return rec.counts().OneTime, nil
}

// Claim takes, for each user, device and algorithm asked for, one of the device's one-time
// keys of that algorithm (removing it), or its fallback key when none is left. Devices with
// neither are left out, as the spec's servers do.
func (s *Service) Claim(ctx context.Context, want map[string]map[string]string) (map[string]map[string]map[string]json.RawMessage, error) {
	out := map[string]map[string]map[string]json.RawMessage{}
	for userID, devices := range want {
		for deviceID, alg := range devices {
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
		var ids []string
		for k := range r.OneTime {
			if strings.HasPrefix(k, alg+":") {
				ids = append(ids, k)
			}
		}
		if len(ids) > 0 {
			id = slices.Min(ids) // the oldest, as clients number them upwards
			key = r.OneTime[id]
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
	err := s.changeValue(ctx, store.BucketOneTimeKeys, store.Key(userID, deviceID), func(old []byte) ([]byte, error) {
		rec = keyRecord{}
		if old != nil {
			if err := json.Unmarshal(old, &rec); err != nil {
				return nil, err
			}
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
