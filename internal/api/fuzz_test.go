package api

import (
	"net/http"
	"testing"
)

// FuzzDecodeJSON: whatever a client sends as a login body, decodeJSON must not panic, and a
// refusal must be a 400 M_NOT_JSON or M_BAD_JSON, never an internal error.
func FuzzDecodeJSON(f *testing.F) {
	for _, seed := range []string{
		`{"type":"m.login.password","identifier":{"type":"m.id.user","user":"alice"},"password":"pw"}`,
		`{"type":"m.login.password","user":"alice","password":"pw","device_id":"D","initial_device_display_name":"n"}`,
		`{"password":5}`,
		`{"identifier":"alice"}`,
		`{"identifier":{"user":["a"]}}`,
		`{"identifier":null,"user":null}`,
		`{"type":"\u0000\ud800"}`,
		`["not","an","object"]`,
		`"string"`,
		`null`,
		`  {}  `,
		`{}{}`,
		`{"a":`,
		"\xff\xfe{}",
		"",
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		var req credentials
		err := decodeJSON(body, &req)
		if err == nil {
			return
		}
		me, ok := toMatrixError(err)
		if !ok {
			t.Fatalf("decodeJSON(%q) = %v, which is not a Matrix error", body, err)
		}
		if me.Status != http.StatusBadRequest || (me.Code != "M_NOT_JSON" && me.Code != "M_BAD_JSON") {
			t.Fatalf("decodeJSON(%q) = %d %s, want 400 M_NOT_JSON or M_BAD_JSON", body, me.Status, me.Code)
		}
	})
}
