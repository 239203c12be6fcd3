package api

import (
	"strings"
	"testing"
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
