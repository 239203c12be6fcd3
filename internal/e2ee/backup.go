package e2ee

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"

	"github.com/firebreak/firebreak/internal/store"
)

// Server-side key backup: a user's clients store their Megolm session keys, encrypted to a key
// the server never sees, in versioned backups. Each version's record holds its algorithm, its
// auth_data, how many keys it holds and a counter its etag is made from; each key is a value
// of its own. The user's newest version is the current one, the only one that takes keys.

// BackupAlgorithm is the one backup algorithm the spec defines.
const BackupAlgorithm = "m.megolm_backup.v1.curve25519-aes-sha2"

// Parts of BucketKeyBackup's keys: user, versionsPart, version -> the version's record; user,
// lastVersionPart -> the last version number handed out; user, keysPart, version, room,
// session -> a session's key.
const (
	versionsPart    = "v"
	lastVersionPart = "last"
	keysPart        = "k"
)

// ErrWrongBackupVersion: keys were sent to a backup that is not the current one.
var ErrWrongBackupVersion = errors.New("wrong backup version")

// BackupVersion is a backup's description, as GET /room_keys/version answers it.
type BackupVersion struct {
	Algorithm string          `json:"algorithm"`
	AuthData  json.RawMessage `json:"auth_data"`
	Count     int             `json:"count"`
	Etag      string          `json:"etag"`
	Version   string          `json:"version"`
}

// versionRecord is a backup version as stored.
type versionRecord struct {
	Algorithm string          `json:"algorithm"`
	AuthData  json.RawMessage `json:"auth_data"`
	Count     int             `json:"count"`
	Changes   uint64          `json:"changes"` // every change of its keys, for the etag
}

func (r versionRecord) view(version string) BackupVersion {
	return BackupVersion{Algorithm: r.Algorithm, AuthData: r.AuthData, Count: r.Count, Etag: strconv.FormatUint(r.Changes, 10), Version: version}
}

func checkBackup(algorithm string, authData json.RawMessage) error {
	if algorithm != BackupAlgorithm {
		return fmt.Errorf("%w: algorithm must be %s", ErrBadRequest, BackupAlgorithm)
	}
	if len(authData) == 0 || authData[0] != '{' {
		return fmt.Errorf("%w: auth_data must be an object", ErrBadRequest)
	}
	return nil
}

// CreateBackup makes a new backup version, which becomes the current one.
func (s *Service) CreateBackup(ctx context.Context, userID, algorithm string, authData json.RawMessage) (string, error) {
	if err := checkBackup(algorithm, authData); err != nil {
		return "", err
	}
	var version string
	_, err := s.st.Modify(ctx, store.BucketKeyBackup, store.Key(userID, lastVersionPart), func(old []byte) ([]byte, error) {
		n, _ := strconv.ParseUint(string(old), 10, 64)
		version = strconv.FormatUint(n+1, 10)
		return []byte(version), nil
	})
	if err != nil {
		return "", err
	}
	rec, _ := json.Marshal(versionRecord{Algorithm: algorithm, AuthData: authData})
	_, err = s.st.Put(ctx, store.BucketKeyBackup, store.Key(userID, versionsPart, version), rec)
	return version, err
}

// Backup describes one version, or the current one when version is ""; ErrNotFound without it.
func (s *Service) Backup(ctx context.Context, userID, version string) (BackupVersion, error) {
	if version == "" {
		current, err := s.currentBackup(ctx, userID)
		if err != nil {
			return BackupVersion{}, err
		}
		version = current
	}
	rec, _, err := s.backupRecord(ctx, userID, version)
	return rec.view(version), err
}

// currentBackup is the user's newest backup version; ErrNotFound when they have none.
func (s *Service) currentBackup(ctx context.Context, userID string) (string, error) {
	keys, err := s.st.Keys(ctx, store.BucketKeyBackup, userID, versionsPart)
	if err != nil {
		return "", err
	}
	var newest uint64
	for _, k := range keys {
		if parts, err := store.KeyParts(k); err == nil && len(parts) == 3 {
			if n, err := strconv.ParseUint(parts[2], 10, 64); err == nil {
				newest = max(newest, n)
			}
		}
	}
	if newest == 0 {
		return "", fmt.Errorf("%w: no current backup version", ErrNotFound)
	}
	return strconv.FormatUint(newest, 10), nil
}

func (s *Service) backupRecord(ctx context.Context, userID, version string) (versionRecord, uint64, error) {
	var rec versionRecord
	raw, rev, err := s.st.Get(ctx, store.BucketKeyBackup, store.Key(userID, versionsPart, version))
	if errors.Is(err, store.ErrNotFound) {
		return rec, 0, fmt.Errorf("%w: unknown backup version %q", ErrNotFound, version)
	} else if err != nil {
		return rec, 0, err
	}
	return rec, rev, json.Unmarshal(raw, &rec)
}

// UpdateBackup replaces a version's auth_data; its algorithm cannot change.
func (s *Service) UpdateBackup(ctx context.Context, userID, version, algorithm string, authData json.RawMessage) error {
	if err := checkBackup(algorithm, authData); err != nil {
		return err
	}
	return s.changeBackup(ctx, userID, version, func(r *versionRecord) error {
		if r.Algorithm != algorithm {
			return fmt.Errorf("%w: the algorithm of a backup cannot change", ErrBadRequest)
		}
		r.AuthData = authData
		return nil
	})
}

// changeBackup changes a version's record with compare-and-set, again after a lost race.
func (s *Service) changeBackup(ctx context.Context, userID, version string, change func(*versionRecord) error) error {
	_, err := s.st.Modify(ctx, store.BucketKeyBackup, store.Key(userID, versionsPart, version), func(old []byte) ([]byte, error) {
		var rec versionRecord
		if old == nil {
			return nil, fmt.Errorf("%w: unknown backup version %q", ErrNotFound, version)
		}
		if err := json.Unmarshal(old, &rec); err != nil {
			return nil, err
		}
		if err := change(&rec); err != nil {
			return nil, err
		}
		return json.Marshal(rec)
	})
	return err
}

// DeleteBackup removes a version and its keys. A version deleted before is no error; one
// never made is ErrNotFound.
func (s *Service) DeleteBackup(ctx context.Context, userID, version string) error {
	if _, err := s.DeleteBackupKeys(ctx, userID, version, "", ""); errors.Is(err, ErrNotFound) {
		last, _, lerr := s.st.Get(ctx, store.BucketKeyBackup, store.Key(userID, lastVersionPart))
		n, perr := strconv.ParseUint(version, 10, 64)
		if l, _ := strconv.ParseUint(string(last), 10, 64); lerr != nil || perr != nil || n == 0 || n > l {
			return err
		}
		return nil
	} else if err != nil {
		return err
	}
	return s.st.Delete(ctx, store.BucketKeyBackup, store.Key(userID, versionsPart, version))
}

// BackupKeys is the keys of a backup: by room, then by session.
type BackupKeys map[string]map[string]json.RawMessage

// betterKey applies the spec's rule for two backups of one session's key: a verified one
// wins, then the one that decrypts from an earlier message, then the one forwarded fewer
// times. Ties keep the stored one.
func betterKey(new, old json.RawMessage) bool {
	var n, o struct {
		FirstMessageIndex int  `json:"first_message_index"`
		ForwardedCount    int  `json:"forwarded_count"`
		IsVerified        bool `json:"is_verified"`
	}
	if json.Unmarshal(old, &o) != nil {
		return true
	}
	_ = json.Unmarshal(new, &n)
	switch {
	case n.IsVerified != o.IsVerified:
		return n.IsVerified
	case n.FirstMessageIndex != o.FirstMessageIndex:
		return n.FirstMessageIndex < o.FirstMessageIndex
	}
	return n.ForwardedCount < o.ForwardedCount
}

// PutBackupKeys stores keys in the current backup, each unless the one stored is better, and
// returns the backup's description after. Keys for another version are refused with
// ErrWrongBackupVersion and the current one; every key is checked before any is stored.
func (s *Service) PutBackupKeys(ctx context.Context, userID, version string, keys BackupKeys) (BackupVersion, error) {
	for _, sessions := range keys {
		for _, data := range sessions {
			if err := checkKeyBackupData(data); err != nil {
				return BackupVersion{}, err
			}
		}
	}
	if _, _, err := s.backupRecord(ctx, userID, version); err != nil {
		return BackupVersion{}, err
	}
	current, err := s.currentBackup(ctx, userID)
	if err != nil {
		return BackupVersion{}, err
	}
	if current != version {
		return BackupVersion{Version: current}, fmt.Errorf("%w: the current backup is %s", ErrWrongBackupVersion, current)
	}
	added, changed := 0, 0
	for roomID, sessions := range keys {
		for sessionID, data := range sessions {
			isNew, stored := false, false
			_, err := s.st.Modify(ctx, store.BucketKeyBackup, store.Key(userID, keysPart, version, roomID, sessionID), func(old []byte) ([]byte, error) {
				isNew, stored = old == nil, false
				if !isNew && !betterKey(data, old) {
					return nil, nil
				}
				stored = !bytes.Equal(data, old) // the same key again changes nothing
				return data, nil
			})
			if err != nil {
				return BackupVersion{}, err
			}
			if isNew {
				added++
			}
			if stored {
				changed++ // the etag moves only when a stored key did
			}
		}
	}
	return s.countChange(ctx, userID, version, added, changed)
}

func checkKeyBackupData(data json.RawMessage) error {
	var d struct {
		FirstMessageIndex *int            `json:"first_message_index"`
		ForwardedCount    *int            `json:"forwarded_count"`
		IsVerified        *bool           `json:"is_verified"`
		SessionData       json.RawMessage `json:"session_data"`
	}
	if err := json.Unmarshal(data, &d); err != nil {
		return fmt.Errorf("%w: %v", ErrBadRequest, err)
	}
	if d.FirstMessageIndex == nil || d.ForwardedCount == nil || d.IsVerified == nil || len(d.SessionData) == 0 || d.SessionData[0] != '{' {
		return fmt.Errorf("%w: a key needs first_message_index, forwarded_count, is_verified and session_data", ErrBadRequest)
	}
	return nil
}

// countChange records keys added (or, negative, removed) and changed in a version.
func (s *Service) countChange(ctx context.Context, userID, version string, added, changed int) (BackupVersion, error) {
	var after versionRecord
	err := s.changeBackup(ctx, userID, version, func(r *versionRecord) error {
		r.Count = max(r.Count+added, 0)
		if changed > 0 {
			r.Changes++
		}
		after = *r
		return nil
	})
	return after.view(version), err
}

// BackupKeys reads a version's keys: all of them, a room's (roomID set) or one session's
// (both set).
func (s *Service) BackupKeys(ctx context.Context, userID, version, roomID, sessionID string) (BackupKeys, error) {
	if _, _, err := s.backupRecord(ctx, userID, version); err != nil {
		return nil, err
	}
	out := BackupKeys{}
	err := s.eachBackupKey(ctx, userID, version, roomID, sessionID, func(key, room, session string, data json.RawMessage) error {
		if out[room] == nil {
			out[room] = map[string]json.RawMessage{}
		}
		out[room][session] = data
		return nil
	})
	return out, err
}

// DeleteBackupKeys deletes a version's keys: all, a room's or one session's.
func (s *Service) DeleteBackupKeys(ctx context.Context, userID, version, roomID, sessionID string) (BackupVersion, error) {
	if _, _, err := s.backupRecord(ctx, userID, version); err != nil {
		return BackupVersion{}, err
	}
	removed := 0
	err := s.eachBackupKey(ctx, userID, version, roomID, sessionID, func(key, _, _ string, _ json.RawMessage) error {
		removed++
		return s.st.Delete(ctx, store.BucketKeyBackup, key)
	})
	if err != nil {
		return BackupVersion{}, err
	}
	return s.countChange(ctx, userID, version, -removed, removed)
}

// eachBackupKey calls fn with each stored key of a version, narrowed to a room and a session
// when they are set.
func (s *Service) eachBackupKey(ctx context.Context, userID, version, roomID, sessionID string, fn func(key, room, session string, data json.RawMessage) error) error {
	prefix := []string{userID, keysPart, version}
	if roomID != "" {
		prefix = append(prefix, roomID)
	}
	keys, err := s.st.Keys(ctx, store.BucketKeyBackup, prefix...)
	if err != nil {
		return err
	}
	for _, k := range keys {
		parts, err := store.KeyParts(k)
		if err != nil || len(parts) != 5 || (sessionID != "" && parts[4] != sessionID) {
			continue
		}
		data, _, err := s.st.Get(ctx, store.BucketKeyBackup, k)
		if errors.Is(err, store.ErrNotFound) {
			continue
		} else if err != nil {
			return err
		}
		if err := fn(k, parts[3], parts[4], data); err != nil {
			return err
		}
	}
	return nil
}
