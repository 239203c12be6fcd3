package e2ee

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"

	"github.com/matrix-org/gomatrixserverlib"

	"github.com/firebreak/firebreak/internal/store"
)

// Cross-signing key kinds, as the keys' usage names them and their records are keyed.
const (
	kindMaster      = "master"
	kindSelfSigning = "self_signing"
	kindUserSigning = "user_signing"
)

// The second part of a user's three-part keys in BucketDeviceKeys (a device's key has two).
const (
	crossSigningPart = "cs"
	signaturesPart   = "sig"
)

// changeLog records whose keys changed, in bucket order: sync asks who changed since its
// token. It keeps each user's latest change; older ones are dropped when they pile up.
type changeLog struct {
	entries []keyChange // by rev
	latest  map[string]uint64
	dropped uint64 // the newest change dropped
}

type keyChange struct {
	rev    uint64
	userID string
}

func (l *changeLog) add(rev uint64, userID string) {
	if l.latest == nil {
		l.latest = map[string]uint64{}
	}
	l.entries = append(l.entries, keyChange{rev, userID})
	l.latest[userID] = rev
	if len(l.entries) > 2*len(l.latest)+1024 {
		l.compact()
	}
}

func (l *changeLog) compact() {
	kept := make([]keyChange, 0, len(l.latest))
	for _, c := range l.entries {
		if l.latest[c.userID] == c.rev {
			kept = append(kept, c)
		} else {
			l.dropped = max(l.dropped, c.rev)
		}
	}
	l.entries = kept
}

// between lists the users whose keys changed after position after, up to upTo. Up to the
// newest change the latest changes answer exactly; a window ending earlier that reaches past
// dropped changes also names the users who changed after it, more than it must (a client then
// queries keys that did not change), never fewer.
func (l *changeLog) between(after, upTo uint64) []string {
	var users []string
	if n := len(l.entries); n > 0 && upTo < l.entries[n-1].rev && after < l.dropped {
		upTo = l.entries[n-1].rev
	}
	i := sort.Search(len(l.entries), func(i int) bool { return l.entries[i].rev > after })
	for ; i < len(l.entries) && l.entries[i].rev <= upTo; i++ {
		if !slices.Contains(users, l.entries[i].userID) {
			users = append(users, l.entries[i].userID)
		}
	}
	return users
}

func (s *Service) applyKeyChange(c store.Change) {
	defer s.keysRev.Advance(c.Rev)
	parts, err := store.KeyParts(c.Key)
	if err != nil || len(parts) < 2 {
		return
	}
	s.mu.Lock()
	s.changes.add(c.Rev, parts[0])
	s.mu.Unlock()
	s.onKeysChange(parts[0])
}

// ChangedBetween lists the users whose device list or cross-signing keys changed between two
// positions this node has applied.
func (s *Service) ChangedBetween(after, upTo uint64) []string {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.changes.between(after, upTo)
}

// signedObject is the part of an uploaded key object the server checks.
type signedObject struct {
	UserID     string                       `json:"user_id"`
	DeviceID   string                       `json:"device_id"`
	Algorithms []string                     `json:"algorithms"`
	Usage      []string                     `json:"usage"`
	Keys       map[string]string            `json:"keys"`
	Signatures map[string]map[string]string `json:"signatures"`
}

func parseSigned(raw json.RawMessage) (signedObject, error) {
	var o signedObject
	if err := json.Unmarshal(raw, &o); err != nil {
		return o, fmt.Errorf("%w: %v", ErrBadRequest, err)
	}
	return o, nil
}

// UploadDeviceKeys stores a device's identity keys, which must name the device and its user.
// Keys the same as those stored change nothing, so clients that upload them again on every
// start do not make every member of their rooms query them again.
func (s *Service) UploadDeviceKeys(ctx context.Context, userID, deviceID string, keys json.RawMessage) error {
	o, err := parseSigned(keys)
	switch {
	case err != nil:
		return err
	case o.UserID != userID || o.DeviceID != deviceID:
		return fmt.Errorf("%w: device_keys must name this user and device (%s, %s)", ErrBadRequest, userID, deviceID)
	case len(o.Algorithms) == 0 || len(o.Keys) == 0:
		return fmt.Errorf("%w: device_keys need algorithms and keys", ErrBadRequest)
	}
	return s.putIfChanged(ctx, store.Key(userID, deviceID), keys)
}

func (s *Service) putIfChanged(ctx context.Context, key string, val json.RawMessage) error {
	old, _, err := s.st.Get(ctx, store.BucketDeviceKeys, key)
	if err == nil && bytes.Equal(old, val) {
		return nil
	} else if err != nil && !errors.Is(err, store.ErrNotFound) {
		return err
	}
	_, err = s.st.Put(ctx, store.BucketDeviceKeys, key, val)
	return err
}

// QueryResult is the /keys/query response body.
type QueryResult struct {
	DeviceKeys      map[string]map[string]json.RawMessage `json:"device_keys"`
	MasterKeys      map[string]json.RawMessage            `json:"master_keys"`
	SelfSigningKeys map[string]json.RawMessage            `json:"self_signing_keys"`
	UserSigningKeys map[string]json.RawMessage            `json:"user_signing_keys"`
	Failures        map[string]any                        `json:"failures"`
}

// userKeys is everything BucketDeviceKeys holds for one user.
type userKeys struct {
	devices      map[string]json.RawMessage
	crossSigning map[string]json.RawMessage // by kind
	signedBy     map[string]json.RawMessage // other users' signatures of the master key, by signer
}

func (s *Service) loadUser(ctx context.Context, userID string) (userKeys, error) {
	u := userKeys{devices: map[string]json.RawMessage{}, crossSigning: map[string]json.RawMessage{}, signedBy: map[string]json.RawMessage{}}
	keys, err := s.st.Keys(ctx, store.BucketDeviceKeys, userID)
	if err != nil {
		return u, err
	}
	for _, k := range keys {
		parts, err := store.KeyParts(k)
		if err != nil {
			continue
		}
		val, _, err := s.st.Get(ctx, store.BucketDeviceKeys, k)
		if errors.Is(err, store.ErrNotFound) {
			continue // removed since it was listed
		} else if err != nil {
			return u, err
		}
		switch {
		case len(parts) == 2:
			u.devices[parts[1]] = val
		case len(parts) == 3 && parts[1] == crossSigningPart:
			u.crossSigning[parts[2]] = val
		case len(parts) == 3 && parts[1] == signaturesPart:
			u.signedBy[parts[2]] = val
		}
	}
	return u, nil
}

// Query answers /keys/query for requester: the named devices' keys (all of a user's when the
// list is empty), with their display names, and each user's cross-signing keys (the
// user-signing key only for the requester's own). The requester's own signatures of another
// user's master key are shown to the requester alone, as they say whom the requester
// verified.
func (s *Service) Query(ctx context.Context, requester string, want map[string][]string) (*QueryResult, error) {
	res := &QueryResult{DeviceKeys: map[string]map[string]json.RawMessage{}, MasterKeys: map[string]json.RawMessage{},
		SelfSigningKeys: map[string]json.RawMessage{}, UserSigningKeys: map[string]json.RawMessage{}, Failures: map[string]any{}}
	for userID, deviceIDs := range want {
		u, err := s.loadUser(ctx, userID)
		if err != nil {
			return nil, err
		}
		names, err := s.displayNames(ctx, userID)
		if err != nil {
			return nil, err
		}
		devs := map[string]json.RawMessage{}
		for deviceID, keys := range u.devices {
			if len(deviceIDs) == 0 || slices.Contains(deviceIDs, deviceID) {
				devs[deviceID] = withDisplayName(keys, names[deviceID])
			}
		}
		res.DeviceKeys[userID] = devs
		if master, ok := u.crossSigning[kindMaster]; ok {
			res.MasterKeys[userID] = withSignatures(master, storedSignatures(u.signedBy[requester]))
		}
		if self, ok := u.crossSigning[kindSelfSigning]; ok {
			res.SelfSigningKeys[userID] = self
		}
		if us, ok := u.crossSigning[kindUserSigning]; ok && userID == requester {
			res.UserSigningKeys[userID] = us
		}
	}
	return res, nil
}

func (s *Service) displayNames(ctx context.Context, userID string) (map[string]string, error) {
	devs, err := s.devices.Devices(ctx, userID)
	if err != nil {
		return nil, err
	}
	names := make(map[string]string, len(devs))
	for _, d := range devs {
		names[d.DeviceID] = d.DisplayName
	}
	return names, nil
}

// withDisplayName adds unsigned.device_display_name, as the spec's query shows it.
func withDisplayName(keys json.RawMessage, name string) json.RawMessage {
	if name == "" {
		return keys
	}
	var obj map[string]json.RawMessage
	if json.Unmarshal(keys, &obj) != nil {
		return keys
	}
	unsigned := map[string]json.RawMessage{}
	_ = json.Unmarshal(obj["unsigned"], &unsigned)
	unsigned["device_display_name"], _ = json.Marshal(name)
	obj["unsigned"], _ = json.Marshal(unsigned)
	out, _ := json.Marshal(obj)
	return out
}

// signatures is a signed object's signatures: by user, then by key id.
type signatures map[string]map[string]string

func (sigs signatures) add(more signatures) {
	for signer, byKey := range more {
		if sigs[signer] == nil {
			sigs[signer] = map[string]string{}
		}
		for id, sig := range byKey {
			sigs[signer][id] = sig
		}
	}
}

// withSignatures adds more signatures to a key's.
func withSignatures(key json.RawMessage, more signatures) json.RawMessage {
	if len(more) == 0 {
		return key
	}
	var obj map[string]json.RawMessage
	if json.Unmarshal(key, &obj) != nil {
		return key
	}
	all := signatures{}
	_ = json.Unmarshal(obj["signatures"], &all)
	all.add(more)
	obj["signatures"], _ = json.Marshal(all)
	out, _ := json.Marshal(obj)
	return out
}

// storedSignatures reads a stored signatures object; nil reads as none.
func storedSignatures(raw json.RawMessage) signatures {
	sigs := signatures{}
	_ = json.Unmarshal(raw, &sigs)
	return sigs
}

// CrossSigningKeys is a /keys/device_signing/upload body: any of the three keys.
type CrossSigningKeys struct {
	Master      json.RawMessage `json:"master_key"`
	SelfSigning json.RawMessage `json:"self_signing_key"`
	UserSigning json.RawMessage `json:"user_signing_key"`
}

// MasterKey is the user's stored master key; ErrNotFound when there is none.
func (s *Service) MasterKey(ctx context.Context, userID string) (json.RawMessage, error) {
	key, _, err := s.st.Get(ctx, store.BucketDeviceKeys, store.Key(userID, crossSigningPart, kindMaster))
	if errors.Is(err, store.ErrNotFound) {
		return nil, ErrNotFound
	}
	return key, err
}

// UploadCrossSigning stores a user's cross-signing keys. Each must belong to the user, carry
// its usage and one ed25519 key; the self-signing and user-signing keys must be signed by the
// master key (the one uploaded with them, else the stored one). Nothing is stored unless all
// of them are valid.
func (s *Service) UploadCrossSigning(ctx context.Context, userID string, k CrossSigningKeys) error {
	master := k.Master
	if len(master) == 0 {
		stored, err := s.MasterKey(ctx, userID)
		if err != nil && !errors.Is(err, ErrNotFound) {
			return err
		}
		master = stored
	}
	uploads := []struct {
		kind string
		key  json.RawMessage
	}{{kindMaster, k.Master}, {kindSelfSigning, k.SelfSigning}, {kindUserSigning, k.UserSigning}}
	for _, up := range uploads {
		if len(up.key) == 0 {
			continue
		}
		if err := checkCrossSigningKey(userID, up.kind, up.key, master); err != nil {
			return err
		}
	}
	for _, up := range uploads {
		if len(up.key) == 0 {
			continue
		}
		if err := s.putIfChanged(ctx, store.Key(userID, crossSigningPart, up.kind), up.key); err != nil {
			return err
		}
	}
	return nil
}

func checkCrossSigningKey(userID, kind string, key, master json.RawMessage) error {
	o, err := parseSigned(key)
	if err != nil {
		return err
	}
	if o.UserID != userID || !slices.Contains(o.Usage, kind) {
		return fmt.Errorf("%w: the %s key must be the user's and name its usage", ErrBadRequest, kind)
	}
	if _, _, err := onlyKey(o); err != nil {
		return err
	}
	if kind == kindMaster {
		return nil
	}
	if len(master) == 0 {
		return fmt.Errorf("%w: a %s key needs a master key to be signed by", ErrBadRequest, kind)
	}
	return verifiedBy(userID, master, key)
}

// onlyKey is a cross-signing key's one ed25519 key: its id and public key.
func onlyKey(o signedObject) (string, ed25519.PublicKey, error) {
	if len(o.Keys) != 1 {
		return "", nil, fmt.Errorf("%w: a cross-signing key holds exactly one key", ErrBadRequest)
	}
	for id, pub := range o.Keys {
		raw, err := base64.RawStdEncoding.DecodeString(pub)
		if !strings.HasPrefix(id, "ed25519:") || err != nil || len(raw) != ed25519.PublicKeySize || strings.TrimPrefix(id, "ed25519:") != pub {
			return "", nil, fmt.Errorf("%w: key %q is not an ed25519 key named by itself", ErrBadRequest, id)
		}
		return id, raw, nil
	}
	panic("unreachable")
}

// verifiedBy checks that signer's user signed object with signer's one key.
func verifiedBy(signerUser string, signer, object json.RawMessage) error {
	so, err := parseSigned(signer)
	if err != nil {
		return err
	}
	id, pub, err := onlyKey(so)
	if err != nil {
		return err
	}
	return verify(signerUser, id, pub, object)
}

func verify(signerUser, keyID string, pub ed25519.PublicKey, object json.RawMessage) error {
	if err := gomatrixserverlib.VerifyJSON(signerUser, gomatrixserverlib.KeyID(keyID), pub, object); err != nil {
		return fmt.Errorf("%w: %v", ErrInvalidSignature, err)
	}
	return nil
}
