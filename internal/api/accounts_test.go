package api

import (
	"crypto/hmac"
	"crypto/sha1"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"regexp"
	"strings"
	"testing"

	"github.com/firebreak/firebreak/internal/accounts"
)

// hmacHex is an independent computation of the shared-secret MAC, message given whole.
func hmacHex(secret, msg string) string {
	m := hmac.New(sha1.New, []byte(secret))
	m.Write([]byte(msg))
	return hex.EncodeToString(m.Sum(nil))
}

func TestRegistrationMAC(t *testing.T) {
	cases := []struct {
		name   string
		secret string
		req    adminRegisterRequest
		want   string
	}{
		// Fixed vectors, computed with `printf ... | openssl dgst -sha1 -hmac`.
		{"openssl notadmin", "s3cret", adminRegisterRequest{Nonce: "abc123", Username: "alice", Password: "wonderland"},
			"ee801c5d148ae1bcbd99ddb68ecbfa1cbb98c541"},
		{"openssl admin with user type", "key", adminRegisterRequest{Nonce: "abc123", Username: "bob", Password: "pw", Admin: true, UserType: "bot"},
			"92a942bd0c40ab8917ffbbbf5a5ab8a131fd055f"},
		{"admin", "s3cret", adminRegisterRequest{Nonce: "n", Username: "op", Password: "pw", Admin: true},
			hmacHex("s3cret", "n\x00op\x00pw\x00admin")},
		{"empty fields", "s", adminRegisterRequest{},
			hmacHex("s", "\x00\x00\x00notadmin")},
		{"unicode", "sécret", adminRegisterRequest{Nonce: "ñ", Username: "ü", Password: "パス"},
			hmacHex("sécret", "ñ\x00ü\x00パス\x00notadmin")},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := hex.EncodeToString(registrationMAC(tc.secret, tc.req)); got != tc.want {
				t.Fatalf("registrationMAC = %s, want %s", got, tc.want)
			}
			req := tc.req
			req.MAC = tc.want
			if !validRegistrationMAC(tc.secret, req) {
				t.Errorf("the right MAC was refused")
			}
			req.MAC = strings.ToUpper(tc.want)
			if !validRegistrationMAC(tc.secret, req) {
				t.Errorf("the right MAC in upper case was refused")
			}
			for _, bad := range []string{"", "zz", tc.want[:len(tc.want)-2], tc.want + "00", hmacHex(tc.secret+"x", "")} {
				req.MAC = bad
				if validRegistrationMAC(tc.secret, req) {
					t.Errorf("MAC %q was accepted", bad)
				}
			}
			req.MAC, req.Admin = tc.want, !req.Admin
			if validRegistrationMAC(tc.secret, req) {
				t.Errorf("the MAC still matched with the admin flag flipped")
			}
		})
	}
}

func TestCredentialsUserName(t *testing.T) {
	cases := []struct {
		name     string
		body     string
		want     string
		wantCode string
	}{
		{"identifier", `{"identifier":{"type":"m.id.user","user":"alice"}}`, "alice", ""},
		{"deprecated user", `{"user":"@alice:example.org"}`, "@alice:example.org", ""},
		{"identifier wins", `{"identifier":{"type":"m.id.user","user":"alice"},"user":"bob"}`, "alice", ""},
		{"none", `{}`, "", ""},
		{"third party", `{"identifier":{"type":"m.id.thirdparty","medium":"email"}}`, "", "M_UNKNOWN"},
		{"identifier without type", `{"identifier":{"user":"alice"}}`, "", "M_UNKNOWN"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var c credentials
			if err := json.Unmarshal([]byte(tc.body), &c); err != nil {
				t.Fatal(err)
			}
			got, err := c.userName()
			if tc.wantCode != "" {
				me, ok := toMatrixError(err)
				if !ok || me.Code != tc.wantCode || me.Status != http.StatusBadRequest {
					t.Fatalf("userName error = %v, want 400 %s", err, tc.wantCode)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("userName = %q, %v; want %q", got, err, tc.want)
			}
		})
	}
}

// TestCredentialsTypeError: a field of the wrong type is named as the client wrote it.
func TestCredentialsTypeError(t *testing.T) {
	var c credentials
	err := decodeJSON([]byte(`{"type":"m.login.password","user":"a","password":5}`), &c)
	me, ok := toMatrixError(err)
	if !ok || me.Code != "M_BAD_JSON" || !strings.HasPrefix(me.Msg, "password ") {
		t.Errorf("decode error = %v, want M_BAD_JSON about password", err)
	}
}

func TestUIAChallenge(t *testing.T) {
	cases := []struct {
		name, session, failure string
		wantSession            bool // the given session must come back
		wantCode               string
	}{
		{"first request", "", "", false, ""},
		{"echoes session", "abc", "", true, ""},
		{"failed stage", "abc", "Invalid password", true, "M_FORBIDDEN"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := uiaChallenge(stagePassword, tc.session, tc.failure)
			if e.StatusCode() != http.StatusUnauthorized {
				t.Errorf("status %d, want 401", e.StatusCode())
			}
			raw, _ := json.Marshal(e)
			var got map[string]any
			_ = json.Unmarshal(raw, &got)
			flows, _ := got["flows"].([]any)
			if len(flows) != 1 || !strings.Contains(string(raw), `"stages":["m.login.password"]`) {
				t.Errorf("flows in %s", raw)
			}
			if params, ok := got["params"].(map[string]any); !ok || len(params) != 0 {
				t.Errorf("params must be {} in %s", raw)
			}
			session, _ := got["session"].(string)
			if session == "" || (tc.wantSession && session != tc.session) {
				t.Errorf("session %q in %s", session, raw)
			}
			// A first challenge must carry no errcode: clients read errcode as a failed attempt.
			if code, _ := got["errcode"].(string); code != tc.wantCode {
				t.Errorf("errcode %q, want %q in %s", code, tc.wantCode, raw)
			}
		})
	}
	if a, b := uiaChallenge(stageDummy, "", ""), uiaChallenge(stageDummy, "", ""); a.Session == b.Session {
		t.Errorf("two challenges share session %q", a.Session)
	}
	var nilAuth *credentials
	if nilAuth.session() != "" {
		t.Errorf("a missing auth dict has a session")
	}
}

func TestRandomLocalpart(t *testing.T) {
	re := regexp.MustCompile(`^[0-9]{10}$`)
	seen := map[string]bool{}
	for range 50 {
		l := randomLocalpart()
		if !re.MatchString(l) {
			t.Fatalf("randomLocalpart = %q, want ten digits", l)
		}
		seen[l] = true
	}
	if len(seen) < 49 {
		t.Errorf("only %d distinct localparts in 50", len(seen))
	}
}

func TestCheckLen(t *testing.T) {
	cases := []struct {
		value string
		max   int
		ok    bool
	}{
		{"", 0, true},
		{"abc", 3, true},
		{"abcd", 3, false},
		{"ééé", 3, true}, // characters, not bytes
		{strings.Repeat("名", 256), 256, true},
		{strings.Repeat("名", 257), 256, false},
	}
	for _, tc := range cases {
		err := checkLen("f", tc.value, tc.max)
		if tc.ok != (err == nil) {
			t.Errorf("checkLen(%q, %d) = %v", tc.value, tc.max, err)
		}
		if me, ok := toMatrixError(err); err != nil && (!ok || me.Code != "M_INVALID_PARAM" || me.Status != http.StatusBadRequest) {
			t.Errorf("checkLen error %v, want 400 M_INVALID_PARAM", err)
		}
	}
}

func TestProfile(t *testing.T) {
	name, url := "Alice", "mxc://example.org/abc"
	full := profileOf(accounts.Account{DisplayName: name, AvatarURL: url})
	cases := []struct {
		field    string
		want     string
		notFound bool
	}{
		{"displayname", `{"displayname":"Alice"}`, false},
		{"avatar_url", `{"avatar_url":"mxc://example.org/abc"}`, false},
		{"blurhash", "", true},
		{"", "", true},
	}
	for _, tc := range cases {
		p, err := full.only(tc.field)
		if tc.notFound {
			if me, ok := toMatrixError(err); !ok || me.Code != "M_NOT_FOUND" {
				t.Errorf("only(%q) error = %v, want M_NOT_FOUND", tc.field, err)
			}
			continue
		}
		if raw, _ := json.Marshal(p); err != nil || string(raw) != tc.want {
			t.Errorf("only(%q) = %s, %v; want %s", tc.field, raw, err, tc.want)
		}
	}
	if raw, _ := json.Marshal(profileOf(accounts.Account{})); string(raw) != "{}" {
		t.Errorf("an empty profile renders as %s, want {}", raw)
	}
	long := strings.Repeat("x", maxNameLen+1)
	longURL := strings.Repeat("x", maxAvatarURLLen+1)
	for _, p := range []profile{{DisplayName: &long}, {AvatarURL: &longURL}} {
		if p.validate() == nil {
			t.Errorf("over-long profile %+v passed validate", p)
		}
	}
	if err := full.validate(); err != nil {
		t.Errorf("validate(%+v) = %v", full, err)
	}
}

// TestDeviceViewHidesToken: the stored token hash must never reach a client.
func TestDeviceViewHidesToken(t *testing.T) {
	raw, _ := json.Marshal(viewDevice(accounts.Device{DeviceID: "D", DisplayName: "phone", TokenHash: "secret-hash", LastSeenTS: 5}))
	if strings.Contains(string(raw), "secret-hash") || string(raw) != `{"device_id":"D","display_name":"phone","last_seen_ts":5}` {
		t.Errorf("device renders as %s", raw)
	}
}
