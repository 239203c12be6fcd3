package api

import (
	"math"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/firebreak/firebreak/internal/filter"
)

// Bodies that encoding/json would accept but that must not reach an event.
func TestDecodeJSONRefusals(t *testing.T) {
	deep := func(n int) string { return strings.Repeat(`{"a":`, n) + "1" + strings.Repeat("}", n) }
	cases := []struct {
		name, body, code string // code "" means accepted
	}{
		{"plain", `{"body":"hello"}`, ""},
		{"escaped quote and bracket in a string", `{"body":"a \" { [ \\"}`, ""},
		{"invalid UTF-8 in a string", "{\"body\":\"\xff\xfe\"}", "M_NOT_JSON"},
		{"nested to the limit", deep(maxJSONDepth), ""},
		{"nested past the limit", deep(maxJSONDepth + 1), "M_BAD_JSON"},
		{"brackets in strings do not count", `{"body":"` + strings.Repeat("[", 500) + `"}`, ""},
		{"escaped characters", `{"body":"\u00e9 \u2603"}`, ""},
		{"a surrogate pair", `{"body":"\ud83d\ude00"}`, ""},
		{"a surrogate pair in upper case", `{"body":"\uD83D\uDE00"}`, ""},
		{"an escaped backslash before u", `{"body":"\\ud800"}`, ""},
		{"a lone high surrogate", `{"body":"a\ud800b"}`, "M_BAD_JSON"},
		{"a lone low surrogate", `{"body":"\udc00"}`, "M_BAD_JSON"},
		{"a high surrogate before a plain escape", `{"body":"\ud800\u0041"}`, "M_BAD_JSON"},
		{"two high surrogates before a low one", `{"body":"\ud800\ud800\udc00"}`, "M_BAD_JSON"},
		{"a high surrogate at the end of a string", `{"body":"\ud83d"}`, "M_BAD_JSON"},
		{"a lone surrogate after an escaped backslash", `{"body":"\\\ud800"}`, "M_BAD_JSON"},
		{"a lone surrogate in a key", `{"\ud800":1}`, "M_BAD_JSON"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var v map[string]any
			err := decodeJSON([]byte(tc.body), &v)
			if tc.code == "" {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				return
			}
			me, ok := toMatrixError(err)
			if !ok || me.Code != tc.code {
				t.Fatalf("got %v, want %s", err, tc.code)
			}
		})
	}
}

// Event content and other stored objects: kept as sent, compacted, except that a key given
// twice keeps only its last value.
func TestRawObject(t *testing.T) {
	cases := []struct {
		name, body, want, code string // code "" means accepted
	}{
		{"plain", `{"body":"hello","msgtype":"m.text"}`, `{"body":"hello","msgtype":"m.text"}`, ""},
		{"white space", " {\n \"b\" : [1, 2] ,\"a\":\"x y\"}\n", `{"b":[1,2],"a":"x y"}`, ""},
		{"repeated key", `{"a":1,"b":2,"a":3}`, `{"a":3,"b":2}`, ""},
		{"repeated key, once escaped", `{"a":1,"\u0061":2}`, `{"a":2}`, ""},
		{"repeated key inside a value", `{"a":{"b":1,"b":2}}`, `{"a":{"b":1,"b":2}}`, ""},
		{"escaped key", `{"\u0061b":1}`, `{"\u0061b":1}`, ""},
		{"a key with a lone surrogate", `{"\ud800\u0061":1,"\ufffda":2}`, "", "M_BAD_JSON"},
		{"characters HTML escapes", `{"b":"<a&b>"}`, `{"b":"<a&b>"}`, ""},
		{"not an object", `[1]`, "", "M_BAD_JSON"},
		{"empty", ``, "", "M_NOT_JSON"},
		{"not JSON", `{"a":`, "", "M_NOT_JSON"},
		// Stored objects are served as stored, and no client decodes a number past float64.
		{"a number past float64", `{"n":1e400}`, "", "M_BAD_JSON"},
		{"a negative number past float64", `{"a":[1,-1.8e308]}`, "", "M_BAD_JSON"},
		{"a number of 400 digits", `{"n":1` + strings.Repeat("0", 400) + `}`, "", "M_BAD_JSON"},
		{"the largest float64", `{"n":1.7976931348623157e308}`, `{"n":1.7976931348623157e308}`, ""},
		{"a number that rounds to zero", `{"n":1e-400}`, `{"n":1e-400}`, ""},
		{"a huge number in a string", `{"n":"1e400","m":2E+3}`, `{"n":"1e400","m":2E+3}`, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := rawObject(httptest.NewRequest(http.MethodPut, "/", strings.NewReader(tc.body)))
			if tc.code != "" {
				if me, ok := toMatrixError(err); !ok || me.Code != tc.code {
					t.Fatalf("got %s, %v; want %s", got, err, tc.code)
				}
				return
			}
			if err != nil || string(got) != tc.want {
				t.Errorf("got %s, %v; want %s", got, err, tc.want)
			}
		})
	}
}

func TestMillis(t *testing.T) {
	cases := []struct {
		ms   int64
		want time.Duration
	}{
		{0, 0},
		{1500, 1500 * time.Millisecond},
		{math.MaxInt64 / int64(time.Millisecond), time.Duration(math.MaxInt64/int64(time.Millisecond)) * time.Millisecond},
		{math.MaxInt64/int64(time.Millisecond) + 1, math.MaxInt64},
		{math.MaxInt64, math.MaxInt64},
	}
	for _, tc := range cases {
		if got := millis(tc.ms); got != tc.want {
			t.Errorf("millis(%d) = %v, want %v", tc.ms, got, tc.want)
		}
	}
}

// A value of the wrong type is named by its path of JSON keys, without the Go structs that
// hold it.
func TestTypeErrorNamesTheJSONPath(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{`{"room":5}`, "room must be an object"},
		{`{"room":{"timeline":{"limit":"x"}}}`, "room.timeline.limit must be a number"},
		{`{"room":{"timeline":{"types":5}}}`, "room.timeline.types must be an array"},
		{`{"event_format":true}`, "event_format must be a string"},
	} {
		_, err := filter.Parse([]byte(tc.in))
		me, ok := toMatrixError(err)
		if !ok || me.Code != "M_BAD_JSON" || me.Msg != tc.want {
			t.Errorf("filter %s: %+v, want M_BAD_JSON %q", tc.in, me, tc.want)
		}
	}
	var byKey map[string]map[string]any // Go names no key of a map's value
	me, ok := toMatrixError(decodeJSON([]byte(`{"a":5}`), &byKey))
	if want := "A value in the body must be an object"; !ok || me.Msg != want {
		t.Errorf("a map's value: %+v, want %q", me, want)
	}
}
