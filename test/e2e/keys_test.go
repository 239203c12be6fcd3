package e2e

import (
	"net/http"
	"strings"
	"testing"
)

// testKeysErrors: the encryption endpoints refuse what a client must not send with the
// spec's errors, and store nothing for it.
func testKeysErrors(t *testing.T, srv *server) {
	alice := registerUser(t, srv, "alice")
	dev := alice.DeviceID.String()
	ownKeys := `{"user_id":"` + alice.UserID.String() + `","device_id":"` + dev + `","algorithms":["m.olm.v1.curve25519-aes-sha2"],"keys":{"ed25519:` + dev + `":"x"}}`
	masterKey := `{"user_id":"` + alice.UserID.String() + `","usage":["master"],"keys":{"ed25519:` + strings.Repeat("A", 43) + `":"` + strings.Repeat("A", 43) + `"}}`
	cases := []struct {
		name, method, path, body string
		status                   int
		errcode                  string
	}{
		{"keys of another device", "POST", "v3/keys/upload", `{"device_keys":` + strings.Replace(ownKeys, dev, "OTHER", 1) + `}`, http.StatusBadRequest, "M_INVALID_PARAM"},
		{"keys of another user", "POST", "v3/keys/upload", `{"device_keys":` + strings.Replace(ownKeys, alice.UserID.String(), "@mallory:localhost", 1) + `}`, http.StatusBadRequest, "M_INVALID_PARAM"},
		{"a one-time key without its algorithm", "POST", "v3/keys/upload", `{"one_time_keys":{"AAAA":"k"}}`, http.StatusBadRequest, "M_INVALID_PARAM"},
		{"keys not an object", "POST", "v3/keys/upload", `{"one_time_keys":[1]}`, http.StatusBadRequest, "M_BAD_JSON"},
		{"query without device_keys", "POST", "v3/keys/query", `{}`, http.StatusBadRequest, "M_MISSING_PARAM"},
		{"claim without one_time_keys", "POST", "v3/keys/claim", `{}`, http.StatusBadRequest, "M_MISSING_PARAM"},
		{"changes without from", "GET", "v3/keys/changes", ``, http.StatusBadRequest, "M_MISSING_PARAM"},
		{"changes from a made-up token", "GET", "v3/keys/changes?from=nope", ``, http.StatusBadRequest, "M_INVALID_PARAM"},
		{"to-device without messages", "PUT", "v3/sendToDevice/m.test/t1", `{}`, http.StatusBadRequest, "M_MISSING_PARAM"},
		{"to-device content not an object", "PUT", "v3/sendToDevice/m.test/t2", `{"messages":{"` + alice.UserID.String() + `":{"*":"hi"}}}`, http.StatusBadRequest, "M_INVALID_PARAM"},
		{"a master key of another user", "POST", "v3/keys/device_signing/upload", `{"master_key":` + strings.Replace(masterKey, alice.UserID.String(), "@mallory:localhost", 1) + `}`, http.StatusBadRequest, "M_INVALID_PARAM"},
		{"a self-signing key its master did not sign", "POST", "v3/keys/device_signing/upload", `{"master_key":` + masterKey + `,"self_signing_key":` + strings.Replace(masterKey, "master", "self_signing", 1) + `}`, http.StatusBadRequest, "M_INVALID_SIGNATURE"},
		{"no key backup yet", "GET", "v3/room_keys/version", ``, http.StatusNotFound, "M_NOT_FOUND"},
		{"a backup of an unknown algorithm", "POST", "v3/room_keys/version", `{"algorithm":"m.other","auth_data":{}}`, http.StatusBadRequest, "M_INVALID_PARAM"},
		{"an unknown backup version", "GET", "v3/room_keys/version/99", ``, http.StatusNotFound, "M_NOT_FOUND"},
		{"backup keys without a version", "PUT", "v3/room_keys/keys", `{"rooms":{}}`, http.StatusBadRequest, "M_MISSING_PARAM"},
		{"no token", "POST", "v3/keys/query", `{"device_keys":{}}`, http.StatusUnauthorized, "M_MISSING_TOKEN"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var body []byte
			if c.body != "" {
				body = []byte(c.body)
			}
			token := alice.AccessToken
			if c.errcode == "M_MISSING_TOKEN" {
				token = ""
			}
			rawRequest(t, c.method, clientURL(srv, c.path), token, body).expectError(t, c.status, c.errcode)
		})
	}
	// Nothing refused was stored: alice's own query shows no device keys and no master key.
	resp := rawRequest(t, "POST", clientURL(srv, "v3/keys/query"), alice.AccessToken, []byte(`{"device_keys":{"`+alice.UserID.String()+`":[]}}`))
	resp.expectOK(t)
	if devs, _ := resp.Body["device_keys"].(map[string]any)[alice.UserID.String()].(map[string]any); len(devs) != 0 {
		t.Errorf("refused uploads stored device keys: %s", resp.Raw)
	}
	if masters, _ := resp.Body["master_keys"].(map[string]any); len(masters) != 0 {
		t.Errorf("a refused upload stored a master key: %s", resp.Raw)
	}
	t.Run("KeyBackupVersions", func(t *testing.T) { testKeyBackupVersions(t, srv, alice) })
	// A cross-signing key may not take a device's name, nor a device a cross-signing key's.
	login := func(device string) rawResponse {
		body := `{"type":"m.login.password","identifier":{"type":"m.id.user","user":"` + alice.Localpart + `"},"password":"` + alice.Password + `","device_id":"` + device + `"}`
		return rawRequest(t, "POST", clientURL(srv, "v3/login"), "", []byte(body))
	}
	named := strings.Repeat("B", 43) // a device whose id reads as an ed25519 public key
	login(named).expectOK(t)
	rawRequest(t, "POST", clientURL(srv, "v3/keys/device_signing/upload"), alice.AccessToken,
		[]byte(`{"master_key":`+strings.ReplaceAll(masterKey, strings.Repeat("A", 43), named)+`}`)).expectError(t, http.StatusForbidden, "M_FORBIDDEN")
	rawRequest(t, "POST", clientURL(srv, "v3/keys/device_signing/upload"), alice.AccessToken, []byte(`{"master_key":`+masterKey+`}`)).expectOK(t)
	login(strings.Repeat("A", 43)).expectError(t, http.StatusForbidden, "M_FORBIDDEN")
	// Signatures of keys that do not exist come back as failures, not as an error.
	sigs := rawRequest(t, "POST", clientURL(srv, "v3/keys/signatures/upload"), alice.AccessToken,
		[]byte(`{"`+alice.UserID.String()+`":{"NOPE":{"signatures":{"`+alice.UserID.String()+`":{"ed25519:x":"sig"}}}}}`))
	sigs.expectOK(t)
	if f, _ := sigs.Body["failures"].(map[string]any)[alice.UserID.String()].(map[string]any); f["NOPE"] == nil {
		t.Errorf("a signature of an unknown key: %s, want a failure for it", sigs.Raw)
	}
}

// testKeyBackupVersions: keys go only to the current (newest) backup; the others are refused
// with the current version named; a key that is not there is 404.
func testKeyBackupVersions(t *testing.T, srv *server, u *user) {
	create := func() string {
		resp := rawRequest(t, "POST", clientURL(srv, "v3/room_keys/version"), u.AccessToken,
			[]byte(`{"algorithm":"m.megolm_backup.v1.curve25519-aes-sha2","auth_data":{"public_key":"pk"}}`))
		resp.expectOK(t)
		version, _ := resp.Body["version"].(string)
		return version
	}
	old, current := create(), create()
	key := []byte(`{"first_message_index":0,"forwarded_count":0,"is_verified":false,"session_data":{"ciphertext":"c"}}`)
	wrong := rawRequest(t, "PUT", clientURL(srv, "v3/room_keys/keys/!r:localhost/s1?version="+old), u.AccessToken, key)
	wrong.expectError(t, http.StatusForbidden, "M_WRONG_ROOM_KEYS_VERSION")
	if wrong.Body["current_version"] != current {
		t.Errorf("refusal names current_version %v, want %s", wrong.Body["current_version"], current)
	}
	put := rawRequest(t, "PUT", clientURL(srv, "v3/room_keys/keys/!r:localhost/s1?version="+current), u.AccessToken, key)
	put.expectOK(t)
	if put.Body["count"] != 1.0 || put.Body["etag"] == "" {
		t.Errorf("after one key: %s", put.Raw)
	}
	rawRequest(t, "GET", clientURL(srv, "v3/room_keys/keys/!r:localhost/s2?version="+current), u.AccessToken, nil).
		expectError(t, http.StatusNotFound, "M_NOT_FOUND")
	rawRequest(t, "PUT", clientURL(srv, "v3/room_keys/version/"+current), u.AccessToken,
		[]byte(`{"algorithm":"m.megolm_backup.v1.curve25519-aes-sha2","auth_data":{},"version":"`+old+`"}`)).
		expectError(t, http.StatusBadRequest, "M_INVALID_PARAM")
	// Deleting a version: 200, and again 200 (deleted before); one never made: 404.
	for range 2 {
		rawRequest(t, "DELETE", clientURL(srv, "v3/room_keys/version/"+old), u.AccessToken, nil).expectOK(t)
	}
	rawRequest(t, "DELETE", clientURL(srv, "v3/room_keys/version/99"), u.AccessToken, nil).expectError(t, http.StatusNotFound, "M_NOT_FOUND")
	got := rawRequest(t, "GET", clientURL(srv, "v3/room_keys/keys?version="+current), u.AccessToken, nil)
	got.expectOK(t)
	if !strings.Contains(string(got.Raw), `"s1"`) {
		t.Errorf("the backup's keys: %s", got.Raw)
	}
}
