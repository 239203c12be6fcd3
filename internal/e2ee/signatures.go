package e2ee

import (
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/firebreak/firebreak/internal/store"
)

// Failure is why one uploaded signature was refused.
type Failure struct {
	ErrCode string `json:"errcode"`
	Error   string `json:"error"`
}

// UploadSignatures stores signatures the requester made: of their own devices (with their
// self-signing key), of their own master key (with one of their devices' keys), and of other
// users' master keys (with their user-signing key). Each is checked against the key that made
// it, over the stored key it signs; refused ones are reported by user and key, the rest stored.
func (s *Service) UploadSignatures(ctx context.Context, requester string, body map[string]map[string]json.RawMessage) (map[string]map[string]Failure, error) {
	failures := map[string]map[string]Failure{}
	for userID, byKey := range body {
		for keyID, object := range byKey {
			err := s.uploadSignature(ctx, requester, userID, keyID, object)
			if err == nil {
				continue
			}
			code := "M_INVALID_SIGNATURE"
			switch {
			case errors.Is(err, ErrNotFound):
				code = "M_NOT_FOUND"
			case errors.Is(err, ErrBadRequest):
				code = "M_INVALID_PARAM"
			case !errors.Is(err, ErrInvalidSignature):
				return nil, err
			}
			if failures[userID] == nil {
				failures[userID] = map[string]Failure{}
			}
			failures[userID][keyID] = Failure{ErrCode: code, Error: err.Error()}
		}
	}
	return failures, nil
}

// Where signatures uploaded after their keys are kept, apart from the keys they sign (a key
// uploaded again, unchanged, keeps them; a key replaced drops them): user, part, id.
const (
	deviceSigsPart = "devsig" // id: the device; by the user's self-signing key
	masterSigsPart = "msig"   // id: "master"; by the user's devices
)

func (s *Service) uploadSignature(ctx context.Context, requester, userID, keyID string, object json.RawMessage) error {
	o, err := parseSigned(object)
	if err != nil {
		return err
	}
	sigs := o.Signatures[requester]
	if len(sigs) == 0 {
		return fmt.Errorf("%w: no signature by %s", ErrBadRequest, requester)
	}
	if userID != requester {
		return s.signOthersMaster(ctx, requester, userID, keyID, sigs)
	}
	if device, _, err := s.st.Get(ctx, store.BucketDeviceKeys, store.Key(userID, keyID)); err == nil {
		// One of the requester's devices, signed with their self-signing key.
		return s.addVerified(ctx, userID, kindSelfSigning, device, sigs, store.Key(userID, deviceSigsPart, keyID))
	} else if !errors.Is(err, store.ErrNotFound) {
		return err
	}
	master, err := s.crossSigningKey(ctx, userID, kindMaster)
	if err != nil {
		return err
	}
	if !namesKey(master, keyID) {
		return fmt.Errorf("%w: %s is neither a device nor the master key of %s", ErrNotFound, keyID, userID)
	}
	// The requester's master key, signed with their devices' keys: each signature checked.
	verified := map[string]string{}
	for sigKeyID, sig := range sigs {
		if err := s.verifyByDevice(ctx, userID, sigKeyID, withSignatures(master, signatures{userID: {sigKeyID: sig}})); err != nil {
			return err
		}
		verified[sigKeyID] = sig
	}
	return s.addSignatures(ctx, store.Key(userID, masterSigsPart, kindMaster), userID, verified)
}

// signedWith checks the signature that signer's one key made of object among sigs, and
// returns only it: no other entry of sigs is stored unchecked.
func signedWith(signerUser string, signer, object json.RawMessage, sigs map[string]string) (map[string]string, error) {
	so, err := parseSigned(signer)
	if err != nil {
		return nil, err
	}
	id, pub, err := onlyKey(so)
	if err != nil {
		return nil, err
	}
	sig, ok := sigs[id]
	if !ok {
		return nil, fmt.Errorf("%w: no signature by %s", ErrInvalidSignature, id)
	}
	if err := verify(signerUser, id, pub, withSignatures(object, signatures{signerUser: {id: sig}})); err != nil {
		return nil, err
	}
	return map[string]string{id: sig}, nil
}

// signOthersMaster stores the requester's signature of another user's master key, made with
// the requester's user-signing key. It is kept apart from the key, for the requester's eyes.
func (s *Service) signOthersMaster(ctx context.Context, requester, userID, keyID string, sigs map[string]string) error {
	master, err := s.crossSigningKey(ctx, userID, kindMaster)
	if err != nil {
		return err
	}
	if !namesKey(master, keyID) {
		return fmt.Errorf("%w: %s is not the master key of %s", ErrNotFound, keyID, userID)
	}
	return s.addVerified(ctx, requester, kindUserSigning, master, sigs, store.Key(userID, signaturesPart, requester))
}

// addVerified stores under key the signer's signature of object, once it is checked against
// the signer's cross-signing key of the given kind.
func (s *Service) addVerified(ctx context.Context, signer, kind string, object json.RawMessage, sigs map[string]string, key string) error {
	signingKey, err := s.crossSigningKey(ctx, signer, kind)
	if err != nil {
		return err
	}
	verified, err := signedWith(signer, signingKey, object, sigs)
	if err != nil {
		return err
	}
	return s.addSignatures(ctx, key, signer, verified)
}

// addSignatures adds signer's checked signatures to a stored signatures record.
func (s *Service) addSignatures(ctx context.Context, key, signer string, sigs map[string]string) error {
	_, err := s.st.Modify(ctx, store.BucketDeviceKeys, key, func(old []byte) ([]byte, error) {
		all := storedSignatures(old)
		all.add(signatures{signer: sigs})
		return json.Marshal(all)
	})
	return err
}

// crossSigningKey is one of the user's stored cross-signing keys; ErrNotFound without it.
func (s *Service) crossSigningKey(ctx context.Context, userID, kind string) (json.RawMessage, error) {
	key, _, err := s.st.Get(ctx, store.BucketDeviceKeys, store.Key(userID, crossSigningPart, kind))
	if errors.Is(err, store.ErrNotFound) {
		return nil, fmt.Errorf("%w: %s has no %s key", ErrNotFound, userID, kind)
	}
	return key, err
}

// namesKey reports whether a cross-signing key is the one keyID names (its public key, as
// the signatures upload names it, with or without the "ed25519:" prefix).
func namesKey(key json.RawMessage, keyID string) bool {
	o, err := parseSigned(key)
	if err != nil {
		return false
	}
	id, _, err := onlyKey(o)
	return err == nil && (id == keyID || strings.TrimPrefix(id, "ed25519:") == keyID)
}

// verifyByDevice checks a signature made with one of the user's devices' ed25519 keys.
func (s *Service) verifyByDevice(ctx context.Context, userID, sigKeyID string, object json.RawMessage) error {
	deviceID, ok := strings.CutPrefix(sigKeyID, "ed25519:")
	if !ok {
		return fmt.Errorf("%w: %s is not an ed25519 key", ErrInvalidSignature, sigKeyID)
	}
	dev, _, err := s.st.Get(ctx, store.BucketDeviceKeys, store.Key(userID, deviceID))
	if errors.Is(err, store.ErrNotFound) {
		return fmt.Errorf("%w: no device %s signs for %s", ErrInvalidSignature, deviceID, userID)
	} else if err != nil {
		return err
	}
	o, err := parseSigned(dev)
	if err != nil {
		return err
	}
	pub, err := base64.RawStdEncoding.DecodeString(o.Keys[sigKeyID])
	if err != nil || len(pub) != ed25519.PublicKeySize {
		return fmt.Errorf("%w: device %s has no ed25519 key", ErrInvalidSignature, deviceID)
	}
	return verify(userID, sigKeyID, pub, object)
}
