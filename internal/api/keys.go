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
	counts, err := srv.Keys.Upload(r.Context(), s.UserID, s.DeviceID,
		e2ee.KeyUpload{DeviceKeys: req.DeviceKeys, OneTimeKeys: req.OneTimeKeys, FallbackKeys: req.FallbackKeys})
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

// crossSigningUpload answers POST /keys/device_signing/upload. Replacing a key needs the
// user's password; setting up the first ones, or sending the same again, does not (as the
// spec has it since v1.11): a new client sets them up right after registering.
func (srv *Server) crossSigningUpload(r *http.Request, s *session) (any, error) {
	var req struct {
		e2ee.CrossSigningKeys
		Auth *credentials `json:"auth"`
	}
	if err := decodeBody(r, &req); err != nil {
		return nil, err
	}
	needs, err := srv.Keys.NeedsPassword(r.Context(), s.UserID, req.CrossSigningKeys)
	if err != nil {
		return nil, err
	}
	if needs {
		if err := srv.requirePassword(r.Context(), s, req.Auth); err != nil {
			return nil, err
		}
	}
	return struct{}{}, srv.Keys.UploadCrossSigning(r.Context(), s.UserID, req.CrossSigningKeys)
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

// ---- Server-side key backup (room_keys) ----

type backupRequest struct {
	Algorithm string          `json:"algorithm"`
	AuthData  json.RawMessage `json:"auth_data"`
	Version   string          `json:"version"`
}

// createBackup answers POST /room_keys/version.
func (srv *Server) createBackup(r *http.Request, s *session) (any, error) {
	var req backupRequest
	if err := decodeBody(r, &req); err != nil {
		return nil, err
	}
	version, err := srv.Keys.CreateBackup(r.Context(), s.UserID, req.Algorithm, req.AuthData)
	if err != nil {
		return nil, err
	}
	return map[string]string{"version": version}, nil
}

// getBackup answers GET /room_keys/version[/{version}]: without one, the current backup.
func (srv *Server) getBackup(r *http.Request, s *session) (any, error) {
	return srv.Keys.Backup(r.Context(), s.UserID, r.PathValue("version"))
}

// updateBackup answers PUT /room_keys/version/{version}.
func (srv *Server) updateBackup(r *http.Request, s *session) (any, error) {
	var req backupRequest
	if err := decodeBody(r, &req); err != nil {
		return nil, err
	}
	version := r.PathValue("version")
	if req.Version != "" && req.Version != version {
		return nil, errorf(http.StatusBadRequest, "M_INVALID_PARAM", "The version in the body must be the one in the path")
	}
	return struct{}{}, srv.Keys.UpdateBackup(r.Context(), s.UserID, version, req.Algorithm, req.AuthData)
}

// deleteBackup answers DELETE /room_keys/version/{version}.
func (srv *Server) deleteBackup(r *http.Request, s *session) (any, error) {
	return struct{}{}, srv.Keys.DeleteBackup(r.Context(), s.UserID, r.PathValue("version"))
}

// backupVersionParam is the version query parameter the keys endpoints require.
func backupVersionParam(r *http.Request) (string, error) {
	version := r.URL.Query().Get("version")
	if version == "" {
		return "", missingParam("version")
	}
	return version, nil
}

// putBackupKeys answers PUT /room_keys/keys[/{roomId}[/{sessionId}]]: the body is every
// room's sessions, one room's, or one session's key.
func (srv *Server) putBackupKeys(r *http.Request, s *session) (any, error) {
	version, err := backupVersionParam(r)
	if err != nil {
		return nil, err
	}
	roomID, sessionID := r.PathValue("roomId"), r.PathValue("sessionId")
	keys := e2ee.BackupKeys{}
	switch {
	case sessionID != "":
		var data json.RawMessage
		if err := decodeBody(r, &data); err != nil {
			return nil, err
		}
		keys[roomID] = map[string]json.RawMessage{sessionID: data}
	case roomID != "":
		var room struct {
			Sessions map[string]json.RawMessage `json:"sessions"`
		}
		if err := decodeBody(r, &room); err != nil {
			return nil, err
		}
		keys[roomID] = room.Sessions
	default:
		var all struct {
			Rooms map[string]struct {
				Sessions map[string]json.RawMessage `json:"sessions"`
			} `json:"rooms"`
		}
		if err := decodeBody(r, &all); err != nil {
			return nil, err
		}
		for id, room := range all.Rooms {
			keys[id] = room.Sessions
		}
	}
	after, err := srv.Keys.PutBackupKeys(r.Context(), s.UserID, version, keys)
	if errors.Is(err, e2ee.ErrWrongBackupVersion) {
		return nil, &matrixError{Status: http.StatusForbidden, Code: "M_WRONG_ROOM_KEYS_VERSION", Msg: "Wrong backup version", CurrentVersion: after.Version}
	}
	return backupCount(after), err
}

func backupCount(v e2ee.BackupVersion) map[string]any {
	return map[string]any{"etag": v.Etag, "count": v.Count}
}

// getBackupKeys answers GET /room_keys/keys[/{roomId}[/{sessionId}]].
func (srv *Server) getBackupKeys(r *http.Request, s *session) (any, error) {
	version, err := backupVersionParam(r)
	if err != nil {
		return nil, err
	}
	roomID, sessionID := r.PathValue("roomId"), r.PathValue("sessionId")
	keys, err := srv.Keys.BackupKeys(r.Context(), s.UserID, version, roomID, sessionID)
	if err != nil {
		return nil, err
	}
	sessionsOf := func(room string) map[string]any {
		sessions := map[string]any{}
		for id, data := range keys[room] {
			sessions[id] = data
		}
		return map[string]any{"sessions": sessions}
	}
	switch {
	case sessionID != "":
		data, ok := keys[roomID][sessionID]
		if !ok {
			return nil, notFound("No key for session %s", sessionID)
		}
		return data, nil
	case roomID != "":
		return sessionsOf(roomID), nil
	}
	rooms := map[string]any{}
	for room := range keys {
		rooms[room] = sessionsOf(room)
	}
	return map[string]any{"rooms": rooms}, nil
}

// deleteBackupKeys answers DELETE /room_keys/keys[/{roomId}[/{sessionId}]].
func (srv *Server) deleteBackupKeys(r *http.Request, s *session) (any, error) {
	version, err := backupVersionParam(r)
	if err != nil {
		return nil, err
	}
	after, err := srv.Keys.DeleteBackupKeys(r.Context(), s.UserID, version, r.PathValue("roomId"), r.PathValue("sessionId"))
	if err != nil {
		return nil, err
	}
	return backupCount(after), nil
}
