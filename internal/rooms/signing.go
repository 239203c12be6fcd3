package rooms

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/matrix-org/gomatrixserverlib"
	voied "github.com/oasisprotocol/curve25519-voi/primitives/ed25519"

	"github.com/firebreak/firebreak/internal/store"
)

// SigningKey is the server's ed25519 key. It is created once per deployment and kept in
// JetStream, so every node signs with the same key.
type SigningKey struct {
	ID   gomatrixserverlib.KeyID
	Priv ed25519.PrivateKey
}

// sign signs msg with curve25519-voi rather than crypto/ed25519. Ed25519 signatures are
// deterministic, so both give the same bytes (TestSignAgreesWithStandardLibrary), and voi's
// takes about half the CPU: a signature was a tenth of the server's CPU per send, the largest
// cost of its own a send has.
func (k SigningKey) sign(msg []byte) []byte {
	return voied.Sign(voied.PrivateKey(k.Priv), msg)
}

type storedKey struct {
	ID   string `json:"key_id"`
	Seed string `json:"seed"`
}

const signingKeyName = "signing_key"

// LoadOrCreateSigningKey returns the deployment's key, creating it if no node has yet.
// Nodes racing on a fresh cluster all end up with the one that won the Create.
func LoadOrCreateSigningKey(ctx context.Context, st *store.Store) (SigningKey, error) {
	seed := make([]byte, ed25519.SeedSize)
	if _, err := rand.Read(seed); err != nil {
		return SigningKey{}, err
	}
	idBytes := make([]byte, 4)
	_, _ = rand.Read(idBytes)
	fresh, _ := json.Marshal(storedKey{
		ID:   "ed25519:" + base64.RawURLEncoding.EncodeToString(idBytes),
		Seed: base64.StdEncoding.EncodeToString(seed),
	})
	b, err := st.CreateOrGet(ctx, store.BucketServer, signingKeyName, fresh)
	if err != nil {
		return SigningKey{}, fmt.Errorf("signing key: %w", err)
	}
	var sk storedKey
	if err := json.Unmarshal(b, &sk); err != nil {
		return SigningKey{}, fmt.Errorf("stored signing key: %w", err)
	}
	raw, err := base64.StdEncoding.DecodeString(sk.Seed)
	if err != nil || len(raw) != ed25519.SeedSize {
		return SigningKey{}, errors.New("stored signing key is corrupt")
	}
	return SigningKey{ID: gomatrixserverlib.KeyID(sk.ID), Priv: ed25519.NewKeyFromSeed(raw)}, nil
}
