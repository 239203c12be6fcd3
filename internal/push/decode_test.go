package push

import (
	"reflect"
	"testing"
	"unicode/utf8"
)

var decodeInputs = []string{
	string(benchMessage),
	`{}`,
	` {"a" : [ ] , "b":{ } } ` + "\n",
	`{"type":"m.room.message","content":{"body":"hi","m.mentions":{"room":true,"user_ids":["@a:x"]}}}`,
	`{"n":[0,-0,1.5e3,-12.25E-2,9007199254740993,123456789012345678901234567890]}`,
	`{"a":1,"a":"again","A":true}`,
	`{"s":"\u00e9\ud83d\ude00\n\t\"\\\/ \u0000"}`,
	`{"lone":"\ud800 and \udc00"}`,
	`{"":"\ud800\u0000"}`,
	`{"":"\uD800\u0000"}`,
	`{"nested":{"x":{"y":{"z":[[[]],[{}],null,false,true]}}}}`,
	`{"dotted.key":{"with\\back":"slash"}}`,
	`{"a":1} trailing`,
	`{"a":1}{"b":2}`,
	`[{"a":1}]`,
	`null`,
	`"text"`,
	`{"a":}`,
	`{"a":1,}`,
	`{"a":"unterminated}`,
	"{\"raw\":\"control\x01char\"}",
	`{"a":01}`,
	`{"a":tru}`,
	``,
}

func TestDecodeAgreesWithEncodingJSON(t *testing.T) {
	for _, in := range decodeInputs {
		checkDecodeAgrees(t, []byte(in))
	}
}

// FuzzDecodeEvent holds decodeEvent to encoding/json (decodeWithEncodingJSON) on valid UTF-8, the only text an event
// can hold. `go test` runs the seeds; `go test -fuzz FuzzDecodeEvent ./internal/push` explores.
func FuzzDecodeEvent(f *testing.F) {
	for _, in := range decodeInputs {
		f.Add([]byte(in))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		if utf8.Valid(data) {
			checkDecodeAgrees(t, data)
		}
	})
}

func checkDecodeAgrees(t *testing.T, data []byte) {
	t.Helper()
	got, gotOK := decodeEvent(data)
	want, wantOK := decodeWithEncodingJSON(data)
	if gotOK != wantOK || !reflect.DeepEqual(got, want) {
		t.Errorf("decodeEvent(%q) = %#v, %v; encoding/json gives %#v, %v", data, got, gotOK, want, wantOK)
	}
}
