package push

import "testing"

// benchMessage is a text message as a client sends it, with the fields a stored event has.
var benchMessage = []byte(`{"auth_events":["$a","$b","$c"],"content":{"body":"hello there, how is everyone doing today? the quick brown fox jumps over the lazy dog","msgtype":"m.text"},"depth":42,"hashes":{"sha256":"5Zr9pJq2x0n0mQK1c8Ff3o2m7bq5mU0s8vS0H3J1k2Q"},"origin_server_ts":1764200000000,"prev_events":["$p"],"room_id":"!r:localhost","sender":"@alice:localhost","signatures":{"localhost":{"ed25519:a":"c2lnbmF0dXJlc2lnbmF0dXJlc2lnbmF0dXJlc2lnbmF0dXJlc2lnbmF0dXJlc2lnbmF0dXJlc2lnbmF0dXJl"}},"type":"m.room.message"}`)

var benchContext = Context{UserID: "@bob:localhost", DisplayName: "Bob", MemberCount: 6,
	SenderCanNotify: func(string) bool { return false }}

// BenchmarkDefaultRules is one member's evaluation of a decoded message, as every member's
// sync does for every new event; BenchmarkDecode is the decoding the members of a room share.
func BenchmarkDefaultRules(b *testing.B) {
	ev, ok := Decode(benchMessage)
	if !ok {
		b.Fatal("benchMessage does not decode")
	}
	rules := defaultsToEvaluate(benchContext.UserID) // as Cache.Rules keeps them
	b.ReportAllocs()
	for b.Loop() {
		if a := EvaluateDecoded(rules, ev, benchContext); !a.Notify {
			b.Fatal("a group message should notify")
		}
	}
}

func BenchmarkDecode(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		if _, ok := Decode(benchMessage); !ok {
			b.Fatal("benchMessage does not decode")
		}
	}
}
