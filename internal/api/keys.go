package api

import (
	"encoding/json"
	"errors"
	"net/http"

	"github.com/firebreak/firebreak/internal/e2ee"
)

// keysUpload answers POST /keys/upload: the device's identity keys, one-time keys and
// fallback keys, each optional (an empty body asks for the counts).
func (srv *Server) keysUpload(r *http.Request, s *session) (any, error) {
	var req struct {
		DeviceKeys   json.RawMessage            `json:"device_keys"`
		OneTimeKeys  map[string]json.RawMessage `json:"one_time_keys"`
		FallbackKeys map[string]json.RawMessage `json:"fallback_keys"`
	}
	if err := decodeBody(r, &req); err != nil {
		return nil, err
	}
	if len(req.DeviceKeys) > 0 && string(req.DeviceKeys) != "null" {
		if err := srv.Keys.UploadDeviceKeys(r.Context(), s.UserID, s.DeviceID, req.DeviceKeys); err != nil {
			return nil, err
		}
	}
	counts, err := srv.Keys.UploadKeys(r.Context(), s.UserID, s.DeviceID, req.OneTimeKeys, req.FallbackKeys)
	if err != nil {
		return nil, err
	}
	return map[string]any{"one_time_key_counts": counts}, nil
}

// keysQuery answers POST /keys/query.
func (srv *Server) keysQuery(r *http.Request, s *session) (any, error) {
	var req struct {
		DeviceKeys map[string][]string `json:"device_keys"`
	}
	if err := decodeBody(r, &req); err != nil {
		return nil, err
	}
	if req.DeviceKeys == nil {
		return nil, missingParam("device_keys")
	}
	return srv.Keys.Query(r.Context(), s.UserID, req.DeviceKeys)
}

// keysClaim answers POST /keys/claim.
func (srv *Server) keysClaim(r *http.Request, _ *session) (any, error) {
	var req struct {
		OneTimeKeys map[string]map[string]string `json:"one_time_keys"`
	}
	if err := decodeBody(r, &req); err != nil {
		return nil, err
	}
	if req.OneTimeKeys == nil {
		return nil, missingParam("one_time_keys")
	}
	keys, err := srv.Keys.Claim(r.Context(), req.OneTimeKeys)
	if err != nil {
		return nil, err
	}
	return map[string]any{"one_time_keys": keys, "failures": map[string]any{}}, nil
}

// keysChanges answers GET /keys/changes?from=&to=: whose devices changed between two sync
// tokens.
func (srv *Server) keysChanges(r *http.Request, s *session) (any, error) {
	q := r.URL.Query()
	if q.Get("from") == "" {
		return nil, missingParam("from")
	}
	lists, err := srv.Sync.DeviceListChanges(r.Context(), s.UserID, q.Get("from"), q.Get("to"))
	if err != nil {
		return nil, err
	}
	return map[string][]string{"changed": nonNil(lists.Changed), "left": nonNil(lists.Left)}, nil
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

// sendToDevice answers PUT /sendToDevice/{eventType}/{txnId}.
func (srv *Server) sendToDevice(r *http.Request, s *session) (any, error) {
	var req struct {
		Messages map[string]map[string]json.RawMessage `json:"messages"`
	}
	if err := decodeBody(r, &req); err != nil {
		return nil, err
	}
	if req.Messages == nil {
		return nil, missingParam("messages")
	}
	err := srv.Keys.SendToDevice(r.Context(), s.UserID, s.DeviceID, r.PathValue("eventType"), r.PathValue("txnId"), req.Messages)
	return struct{}{}, err
}

// crossSigningUpload answers POST /keys/device_signing/upload. Replacing a master key needs
// the user's password; setting up the first one does not (as the spec has it since v1.11):
// a new client sets it up right after registering.
func (srv *Server) crossSigningUpload(r *http.Request, s *session) (any, error) {
	var req struct {
		e2ee.CrossSigningKeys
		Auth *credentials `json:"auth"`
	}
	if err := decodeBody(r, &req); err != nil {
		return nil, err
	}
	old, err := srv.Keys.MasterKey(r.Context(), s.UserID)
	switch {
	case errors.Is(err, e2ee.ErrNotFound):
	case err != nil:
		return nil, err
	case len(req.Master) == 0 || !sameJSON(old, req.Master):
		if err := srv.requirePassword(r.Context(), s, req.Auth); err != nil {
			return nil, err
		}
	}
	return struct{}{}, srv.Keys.UploadCrossSigning(r.Context(), s.UserID, req.CrossSigningKeys)
}

// sameJSON compares two JSON values as values, not as bytes.
func sameJSON(a, b json.RawMessage) bool {
	var va, vb any
	if json.Unmarshal(a, &va) != nil || json.Unmarshal(b, &vb) != nil {
		return false
	}
	ca, _ := json.Marshal(va)
	cb, _ := json.Marshal(vb)
	return string(ca) == string(cb)
}

// signaturesUpload answers POST /keys/signatures/upload.
func (srv *Server) signaturesUpload(r *http.Request, s *session) (any, error) {
	var req map[string]map[string]json.RawMessage
	if err := decodeBody(r, &req); err != nil {
		return nil, err
	}
	failures, err := srv.Keys.UploadSignatures(r.Context(), s.UserID, req)
	if err != nil {
		return nil, err
	}
	return map[string]any{"failures": failures}, nil
}

// roomKeysVersion answers GET /room_keys/version: this server keeps no key backups.
func (srv *Server) roomKeysVersion(*http.Request, *session) (any, error) {
	return nil, notFound("No current backup version")
}
