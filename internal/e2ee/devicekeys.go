package e2ee

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sort"
	"strings"

	"github.com/matrix-org/gomatrixserverlib"

	"github.com/firebreak/firebreak/internal/accounts"
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
// token. It keeps each change's latest; older ones are dropped when they pile up.
type changeLog struct {
	entries []keyChange // by rev
	latest  map[KeyChange]uint64
	dropped uint64 // the newest change dropped
}

// KeyChange is a change of a user's keys, for every user sharing a room with them, or, when
// OnlyFor is set, for that one user alone (their signature of the user's master key).
type KeyChange struct {
	UserID, OnlyFor string
}

type keyChange struct {
	rev uint64
	KeyChange
}

func (l *changeLog) add(rev uint64, c KeyChange) {
	if l.latest == nil {
		l.latest = map[KeyChange]uint64{}
	}
	l.entries = append(l.entries, keyChange{rev, c})
	l.latest[c] = rev
	if len(l.entries) > 2*len(l.latest)+1024 {
		l.compact()
	}
}

func (l *changeLog) compact() {
	kept := make([]keyChange, 0, len(l.latest))
	for _, c := range l.entries {
		if l.latest[c.KeyChange] == c.rev {
			kept = append(kept, c)
		} else {
			l.dropped = max(l.dropped, c.rev)
		}
	}
	l.entries = kept
}

// between lists the changes after position after, up to upTo. Up to the newest change the
// latest changes answer exactly; a window ending earlier that reaches past dropped changes
// also names the changes after it, more than it must (a client then queries keys that did not
// change), never fewer.
func (l *changeLog) between(after, upTo uint64) []KeyChange {
	var out []KeyChange
	if n := len(l.entries); n > 0 && upTo < l.entries[n-1].rev && after < l.dropped {
		upTo = l.entries[n-1].rev
	}
	i := sort.Search(len(l.entries), func(i int) bool { return l.entries[i].rev > after })
	for ; i < len(l.entries) && l.entries[i].rev <= upTo; i++ {
		if !slices.Contains(out, l.entries[i].KeyChange) {
			out = append(out, l.entries[i].KeyChange)
		}
	}
	return out
}

func (s *Service) applyKeyChange(c store.Change) {
	parts, err := store.KeyParts(c.Key)
	if err != nil || len(parts) < 2 {
		s.keysRev.Advance(c.Rev)
		return
	}
	change := KeyChange{UserID: parts[0]}
	if len(parts) == 3 && parts[1] == signaturesPart {
		change.OnlyFor = parts[2]
	}
	s.mu.Lock()
	s.changes.add(c.Rev, change)
	s.mu.Unlock()
	// Moved on before the wake, so a sync it wakes finds the change within its position.
	s.keysRev.Advance(c.Rev)
	s.onKeysChange(change)
}

// ChangedBetween lists the key changes between two positions this node has applied.
func (s *Service) ChangedBetween(after, upTo uint64) []KeyChange {
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
// start do not make every member of their rooms query them again. New keys drop the device's
// signature by the self-signing key, which signed the old ones.
func (s *Service) UploadDeviceKeys(ctx context.Context, userID, deviceID string, keys json.RawMessage) error {
	o, err := checkDeviceKeys(userID, deviceID, keys)
	if err != nil {
		return err
	}
	old, err := s.putIfChanged(ctx, store.Key(userID, deviceID), keys)
	if err != nil || old == nil {
		return err
	}
	if was, _ := parseSigned(old); maps.Equal(was.Keys, o.Keys) {
		return nil
	}
	// New keys: the self-signing key's signature of the old ones, and the old keys' signature
	// of the master key, no longer hold.
	if err := s.st.Delete(ctx, store.BucketDeviceKeys, store.Key(userID, deviceSigsPart, deviceID)); err != nil {
		return err
	}
	_, err = s.st.Modify(ctx, store.BucketDeviceKeys, store.Key(userID, masterSigsPart, kindMaster), func(stored []byte) ([]byte, error) {
		if stored == nil {
			return nil, nil
		}
		sigs := storedSignatures(stored)
		delete(sigs[userID], "ed25519:"+deviceID)
		return json.Marshal(sigs)
	})
	return err
}

// checkDeviceKeys checks uploaded device keys before anything of the upload is stored.
func checkDeviceKeys(userID, deviceID string, keys json.RawMessage) (signedObject, error) {
	o, err := parseSigned(keys)
	switch {
	case err != nil:
		return o, err
	case o.UserID != userID || o.DeviceID != deviceID:
		return o, fmt.Errorf("%w: device_keys must name this user and device (%s, %s)", ErrBadRequest, userID, deviceID)
	case len(o.Algorithms) == 0 || len(o.Keys) == 0:
		return o, fmt.Errorf("%w: device_keys need algorithms and keys", ErrBadRequest)
	}
	return o, nil
}

// putIfChanged stores a key object in canonical form unless the same is stored, and returns
// the value it replaced (nil when there was none or nothing changed).
func (s *Service) putIfChanged(ctx context.Context, key string, val json.RawMessage) (old []byte, err error) {
	canonical, err := gomatrixserverlib.CanonicalJSON(val)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadRequest, err)
	}
	_, err = s.st.Modify(ctx, store.BucketDeviceKeys, key, func(stored []byte) ([]byte, error) {
		if !bytes.Equal(stored, canonical) {
			old = stored
		}
		return canonical, nil
	})
	return old, err
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
	deviceSigs   map[string]json.RawMessage // the self-signing key's signatures, by device
	masterSigs   json.RawMessage            // the user's devices' signatures of the master key
}

func (s *Service) loadUser(ctx context.Context, userID string) (userKeys, error) {
	u := userKeys{devices: map[string]json.RawMessage{}, crossSigning: map[string]json.RawMessage{},
		signedBy: map[string]json.RawMessage{}, deviceSigs: map[string]json.RawMessage{}}
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
		case len(parts) == 3 && parts[1] == deviceSigsPart:
			u.deviceSigs[parts[2]] = val
		case len(parts) == 3 && parts[1] == masterSigsPart:
			u.masterSigs = val
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
			// Only devices still logged in: keys a logout left behind are no one's.
			if _, exists := names[deviceID]; exists && (len(deviceIDs) == 0 || slices.Contains(deviceIDs, deviceID)) {
				devs[deviceID] = withDisplayName(withSignatures(keys, storedSignatures(u.deviceSigs[deviceID])), names[deviceID])
			}
		}
		res.DeviceKeys[userID] = devs
		if master, ok := u.crossSigning[kindMaster]; ok {
			master = withSignatures(master, storedSignatures(u.masterSigs))
			res.MasterKeys[userID] = withSignatures(master, s.stillSignedBy(ctx, requester, master, u.signedBy[requester]))
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

// stillSignedBy is the requester's stored signature of a master key if their current
// user-signing key made it: one made with a key since replaced no longer counts.
func (s *Service) stillSignedBy(ctx context.Context, requester string, master, stored json.RawMessage) signatures {
	sigs := storedSignatures(stored)[requester]
	if len(sigs) == 0 {
		return nil
	}
	userSigning, err := s.crossSigningKey(ctx, requester, kindUserSigning)
	if err != nil {
		return nil
	}
	if verified, err := signedWith(requester, userSigning, master, sigs); err == nil {
		return signatures{requester: verified}
	}
	return nil
}

// displayNames maps each of the user's devices to its display name ("" for none).
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

// given is an uploaded key, nil when the client left it out or sent null.
func given(raw json.RawMessage) json.RawMessage {
	if len(raw) == 0 || string(raw) == "null" {
		return nil
	}
	return raw
}

// byKind is the upload's keys by kind, the ones left out as nil.
func (k CrossSigningKeys) byKind() map[string]json.RawMessage {
	return map[string]json.RawMessage{kindMaster: given(k.Master), kindSelfSigning: given(k.SelfSigning), kindUserSigning: given(k.UserSigning)}
}

// NeedsPassword reports whether an upload replaces a cross-signing key the user has: setting
// up the first ones, or sending the same ones again, does not.
func (s *Service) NeedsPassword(ctx context.Context, userID string, k CrossSigningKeys) (bool, error) {
	if _, err := s.crossSigningKey(ctx, userID, kindMaster); errors.Is(err, ErrNotFound) {
		return false, nil
	} else if err != nil {
		return false, err
	}
	for kind, key := range k.byKind() {
		if key == nil {
			continue
		}
		stored, err := s.crossSigningKey(ctx, userID, kind)
		if err != nil && !errors.Is(err, ErrNotFound) {
			return false, err
		}
		if canonical, _ := gomatrixserverlib.CanonicalJSON(key); !bytes.Equal(canonical, stored) {
			return true, nil
		}
	}
	return false, nil
}

// UploadCrossSigning stores a user's cross-signing keys. Each must belong to the user, carry
// its usage and one ed25519 key; the self-signing and user-signing keys must be signed by the
// master key (the one uploaded with them, else the stored one), and none may take the name
// of one of the user's devices. Nothing is stored unless all of them are valid. A
// replaced key drops the signatures made of or with the one before.
func (s *Service) UploadCrossSigning(ctx context.Context, userID string, k CrossSigningKeys) error {
	uploads := k.byKind()
	master := uploads[kindMaster]
	if master == nil {
		stored, err := s.crossSigningKey(ctx, userID, kindMaster)
		if err != nil && !errors.Is(err, ErrNotFound) {
			return err
		}
		master = stored
	}
	for _, kind := range crossSigningKinds {
		if key := uploads[kind]; key != nil {
			if err := checkCrossSigningKey(userID, kind, key, master); err != nil {
				return err
			}
		}
	}
	if err := s.checkNotADevice(ctx, userID, uploads); err != nil {
		return err
	}
	for _, kind := range crossSigningKinds {
		key := uploads[kind]
		if key == nil {
			continue
		}
		replaced, err := s.putIfChanged(ctx, store.Key(userID, crossSigningPart, kind), key)
		if err != nil {
			return err
		}
		if replaced != nil {
			if err := s.dropSignaturesOf(ctx, userID, kind, uploads); err != nil {
				return err
			}
		}
	}
	return nil
}

var crossSigningKinds = []string{kindMaster, kindSelfSigning, kindUserSigning}

// checkNotADevice refuses cross-signing keys whose public key is the id of one of the user's
// devices: the two are named alike in signatures, and a client could not tell them apart.
func (s *Service) checkNotADevice(ctx context.Context, userID string, uploads map[string]json.RawMessage) error {
	devices, err := s.devices.Devices(ctx, userID)
	if err != nil {
		return err
	}
	for kind, key := range uploads {
		if key == nil {
			continue
		}
		pubs, err := publicKeys(key)
		if err != nil {
			return err
		}
		if slices.ContainsFunc(devices, func(d accounts.Device) bool { return slices.Contains(pubs, d.DeviceID) }) {
			return fmt.Errorf("%w: the %s key's public key is the id of one of your devices", ErrForbidden, kind)
		}
	}
	return nil
}

// IsCrossSigningKey reports whether id is the public key of one of the user's cross-signing
// keys, which no device of theirs may take as its id.
func (s *Service) IsCrossSigningKey(ctx context.Context, userID, id string) (bool, error) {
	for _, kind := range crossSigningKinds {
		key, err := s.crossSigningKey(ctx, userID, kind)
		if errors.Is(err, ErrNotFound) {
			continue
		} else if err != nil {
			return false, err
		}
		if pubs, err := publicKeys(key); err == nil && slices.Contains(pubs, id) {
			return true, nil
		}
	}
	return false, nil
}

func publicKeys(key json.RawMessage) ([]string, error) {
	o, err := parseSigned(key)
	if err != nil {
		return nil, err
	}
	return slices.Collect(maps.Values(o.Keys)), nil
}

// dropSignaturesOf removes what a replaced cross-signing key's signatures vouched for: a new
// master key drops the signatures of the old one (by the user's devices and other users) and
// the user's other cross-signing keys the old one signed, unless uploaded with it; a new
// self-signing key drops its predecessor's signatures of the user's devices. (Signatures made
// with a replaced user-signing key are dropped when read: Query checks them.)
func (s *Service) dropSignaturesOf(ctx context.Context, userID, kind string, uploads map[string]json.RawMessage) error {
	var stale []string
	switch kind {
	case kindMaster:
		for _, part := range []string{masterSigsPart, signaturesPart} {
			keys, err := s.st.Keys(ctx, store.BucketDeviceKeys, userID, part)
			if err != nil {
				return err
			}
			stale = append(stale, keys...)
		}
		for _, signed := range []string{kindSelfSigning, kindUserSigning} {
			if uploads[signed] == nil {
				stale = append(stale, store.Key(userID, crossSigningPart, signed))
			}
		}
	case kindSelfSigning:
		keys, err := s.st.Keys(ctx, store.BucketDeviceKeys, userID, deviceSigsPart)
		if err != nil {
			return err
		}
		stale = keys
	}
	for _, key := range stale {
		if err := s.st.Delete(ctx, store.BucketDeviceKeys, key); err != nil {
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
		return fmt.Errorf("%w: a %s key needs a master key to be signed by", ErrMissingMaster, kind)
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
