package store

import (
	"encoding/base64"
	"fmt"
	"hash/fnv"
	"strings"
)

// Key joins identifiers into one KV key or subject suffix. Each part is base64url-encoded so
// Matrix ids, which contain '!', ':', '@' and '.', become single safe tokens, and the key can
// be split back into its parts.
func Key(parts ...string) string {
	enc := make([]string, len(parts))
	for i, p := range parts {
		enc[i] = encodePart(p)
	}
	return strings.Join(enc, ".")
}

// maxKeyBytes bounds a key or a room's subject. NATS closes a connection that sends a protocol
// line over 4 KiB, and this node has only one: a request naming a huge id must fail here,
// before it reaches the wire. Matrix ids are at most 255 bytes, so real keys are far shorter.
const maxKeyBytes = 1024

// CheckKey refuses a key too long to store (ErrKeyTooLong), for a caller that must know
// before it writes anything of a request.
func CheckKey(key string) error { return checkKey(key) }

func checkKey(key string) error {
	if len(key) > maxKeyBytes {
		return fmt.Errorf("%w: %d bytes", ErrKeyTooLong, len(key))
	}
	return nil
}

// KeyParts is the inverse of Key.
func KeyParts(key string) ([]string, error) {
	toks := strings.Split(key, ".")
	out := make([]string, len(toks))
	for i, t := range toks {
		b, err := base64.RawURLEncoding.DecodeString(strings.TrimPrefix(t, "_"))
		if err != nil {
			return nil, err
		}
		out[i] = string(b)
	}
	return out, nil
}

// encodePart never returns an empty token: an empty part (a state key of "") becomes "_".
func encodePart(p string) string {
	return "_" + base64.RawURLEncoding.EncodeToString([]byte(p))
}

// RoomStream names the JetStream stream that holds a room's events in a deployment with the
// given number of room shards, for tools that relate rooms to stream leaders (the drill).
func RoomStream(roomID string, shards int) string { return shardStreamName(shardOf(roomID, shards)) }

// shardOf maps a room to its shard stream. FNV-1a is stable across versions and processes.
func shardOf(roomID string, shards int) int {
	h := fnv.New32a()
	_, _ = h.Write([]byte(roomID))
	return int(h.Sum32() % uint32(shards))
}
