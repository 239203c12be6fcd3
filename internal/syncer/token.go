package syncer

import (
	"errors"
	"strconv"
	"strings"
)

// Token is a position in everything a sync covers: one sequence per room shard stream, the
// receipts, account data, device keys and to-device buckets' positions, and this node's
// typing serial. The stream and bucket positions are JetStream's own, the same on every node,
// so any node can answer a sync from a token another node issued. The typing serial is a
// clock time, which another node compares with its own (rooms.typingModel).
type Token struct {
	Rooms       []uint64
	Receipts    uint64
	AccountData uint64
	Typing      uint64
	Keys        uint64 // the device keys bucket: whose keys changed since
	ToDevice    uint64 // the to-device bucket: the messages the client has
}

var errBadToken = errors.New("invalid token")

// Token versions: fb2 added the key and to-device positions. An fb1 token, from a server
// before end-to-end encryption, reads as having none of them.
const (
	tokenPrefix   = "fb2"
	tokenPrefixV1 = "fb1"
)

// String renders the token; it is opaque to clients. Every sync renders one per joined room
// with new events (their prev_batch), so it appends to one buffer rather than formatting.
func (t Token) String() string {
	b := make([]byte, 0, len(tokenPrefix)+len(t.Rooms)*6+36)
	b = append(append(b, tokenPrefix...), '_')
	for i, r := range t.Rooms {
		if i > 0 {
			b = append(b, '.')
		}
		b = strconv.AppendUint(b, r, 36)
	}
	for _, n := range t.counters() {
		b = strconv.AppendUint(append(b, '_'), *n, 36)
	}
	return string(b)
}

// counters are the token's parts after the rooms', in the order it writes them.
func (t *Token) counters() []*uint64 {
	return []*uint64{&t.Receipts, &t.AccountData, &t.Typing, &t.Keys, &t.ToDevice}
}

// ParseToken reads a token made by String. shards is the deployment's shard count.
func ParseToken(s string, shards int) (Token, error) {
	parts := strings.Split(s, "_")
	var t Token
	counters := t.counters()
	switch {
	case len(parts) == 2+len(counters) && parts[0] == tokenPrefix:
	case len(parts) == 5 && parts[0] == tokenPrefixV1:
		counters = counters[:3]
	default:
		return Token{}, errBadToken
	}
	rooms := strings.Split(parts[1], ".")
	if len(rooms) != shards {
		return Token{}, errBadToken
	}
	t.Rooms = make([]uint64, shards)
	for i, r := range rooms {
		v, err := strconv.ParseUint(r, 36, 64)
		if err != nil {
			return Token{}, errBadToken
		}
		t.Rooms[i] = v
	}
	for i, dst := range counters {
		v, err := strconv.ParseUint(parts[2+i], 36, 64)
		if err != nil {
			return Token{}, errBadToken
		}
		*dst = v
	}
	return t, nil
}

// roomToken is a position in one room's history, for /messages and prev_batch: "between
// events", after every event with a sequence at or below it.
type roomToken uint64

func (t roomToken) String() string { return "r" + strconv.FormatUint(uint64(t), 36) }

// parseRoomPosition accepts a room token or a sync token (whose component for the room's shard
// is the position), as the spec allows /messages to start from a sync's next_batch.
func parseRoomPosition(s string, shard, shards int) (uint64, error) {
	if rest, ok := strings.CutPrefix(s, "r"); ok {
		v, err := strconv.ParseUint(rest, 36, 64)
		if err != nil {
			return 0, errBadToken
		}
		return v, nil
	}
	t, err := ParseToken(s, shards)
	if err != nil {
		return 0, err
	}
	return t.Rooms[shard], nil
}
