package rooms

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"testing"
)

// TestSignAgreesWithStandardLibrary holds the signer's ed25519 to crypto/ed25519's: the same
// signature for the same key and message, on random keys and messages of every size from
// empty to beyond a SHA-512 block.
func TestSignAgreesWithStandardLibrary(t *testing.T) {
	for size := range 300 {
		_, priv, err := ed25519.GenerateKey(rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		msg := make([]byte, size)
		_, _ = rand.Read(msg)
		key := SigningKey{ID: "ed25519:test", Priv: priv}
		if got, want := key.sign(msg), ed25519.Sign(priv, msg); !bytes.Equal(got, want) {
			t.Fatalf("%d-byte message: signature %x, crypto/ed25519 gives %x", size, got, want)
		}
	}
}

// BenchmarkSign signs a message's redacted form (about 600 bytes) the way the signer does, and
// with crypto/ed25519 for comparison.
func BenchmarkSign(b *testing.B) {
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		b.Fatal(err)
	}
	key := SigningKey{ID: "ed25519:bench", Priv: priv}
	msg := make([]byte, 600)
	_, _ = rand.Read(msg)
	b.Run("voi", func(b *testing.B) {
		for b.Loop() {
			key.sign(msg)
		}
	})
	b.Run("stdlib", func(b *testing.B) {
		for b.Loop() {
			ed25519.Sign(priv, msg)
		}
	})
}
