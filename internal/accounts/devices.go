package accounts

import (
	"context"
	"encoding/json"
	"errors"
	"time"

	"github.com/firebreak/firebreak/internal/store"
)

// Device loads one device of a user.
func (s *Service) Device(ctx context.Context, userID, deviceID string) (Device, error) {
	dev, _, err := s.device(ctx, userID, deviceID)
	return dev, err
}

// device loads a device with its revision (0 when there is none), for a change that must not
// undo another made meanwhile.
func (s *Service) device(ctx context.Context, userID, deviceID string) (Device, uint64, error) {
	var dev Device
	b, rev, err := s.st.Get(ctx, store.BucketDevices, store.Key(userID, deviceID))
	if errors.Is(err, store.ErrNotFound) {
		return dev, 0, ErrNotFound
	} else if err != nil {
		return dev, 0, err
	}
	return dev, rev, json.Unmarshal(b, &dev)
}

// Devices lists a user's devices.
func (s *Service) Devices(ctx context.Context, userID string) ([]Device, error) {
	keys, err := s.st.Keys(ctx, store.BucketDevices, userID)
	if err != nil {
		return nil, err
	}
	devs := make([]Device, 0, len(keys))
	for _, k := range keys {
		parts, err := store.KeyParts(k)
		if err != nil || len(parts) != 2 {
			continue
		}
		if d, err := s.Device(ctx, userID, parts[1]); err == nil {
			devs = append(devs, d)
		}
	}
	return devs, nil
}

// writeDevice stores dev only if the stored device is still at revision rev (0: there was
// none). A device's record names its one live token: two logins with one device id, or a
// rename beside a login, must not both write it, or a token would outlive the record that
// could revoke it. errRaced when another write came first.
func (s *Service) writeDevice(ctx context.Context, userID string, dev Device, rev uint64) error {
	b, _ := json.Marshal(dev)
	key := store.Key(userID, dev.DeviceID)
	var err error
	if rev == 0 {
		_, err = s.st.Create(ctx, store.BucketDevices, key, b)
	} else {
		_, err = s.st.Update(ctx, store.BucketDevices, key, b, rev)
	}
	return raced(err)
}

// errRaced: another node or request changed the record between the read and the write.
var errRaced = errors.New("changed meanwhile")

func raced(err error) error {
	if errors.Is(err, store.ErrExists) || errors.Is(err, store.ErrConflict) {
		return errRaced
	}
	return err
}

// changeDevice applies change to a stored device, reading it again after a lost race.
func (s *Service) changeDevice(ctx context.Context, userID, deviceID string, change func(*Device)) error {
	_, err := s.st.Modify(ctx, store.BucketDevices, store.Key(userID, deviceID), changeJSON(change))
	return err
}

// changeJSON is a store.Modify change of a stored JSON record: none stored is ErrNotFound.
func changeJSON[T any](change func(*T)) func(old []byte) ([]byte, error) {
	return func(old []byte) ([]byte, error) {
		if old == nil {
			return nil, ErrNotFound
		}
		var v T
		if err := json.Unmarshal(old, &v); err != nil {
			return nil, err
		}
		change(&v)
		return json.Marshal(v)
	}
}

// RenameDevice sets a device's display name.
func (s *Service) RenameDevice(ctx context.Context, userID, deviceID, name string) error {
	return s.changeDevice(ctx, userID, deviceID, func(d *Device) { d.DisplayName = name })
}

// DeleteDevice logs a device out: its token stops working at once. A device that is already
// gone is no error.
func (s *Service) DeleteDevice(ctx context.Context, userID, deviceID string) error {
	err := s.deleteDevice(ctx, userID, deviceID)
	s.announceSessionsEnded(userID)
	if errors.Is(err, ErrNotFound) {
		return nil
	}
	return err
}

// deleteDevice revokes the device's token and removes it, again if a login gave the device a
// new token in between.
func (s *Service) deleteDevice(ctx context.Context, userID, deviceID string) error {
	for {
		dev, rev, err := s.device(ctx, userID, deviceID)
		if err != nil {
			return err
		}
		if err := s.revokeToken(ctx, dev.TokenHash); err != nil {
			return err
		}
		err = raced(s.st.DeleteAt(ctx, store.BucketDevices, store.Key(userID, deviceID), rev))
		if err == nil {
			s.deviceDeleted(ctx, userID, deviceID)
		}
		if !errors.Is(err, errRaced) {
			return err
		}
	}
}

// announceSessionsEnded tells every node that some of the user's tokens were revoked. Best
// effort: a node that misses it notices the revoked token when its poll ends.
func (s *Service) announceSessionsEnded(userID string) {
	_ = s.st.PublishEphemeral(sessionsEndedTopic, []byte(userID))
}

// sessionsEndedTopic carries, to every node, the user ids whose access tokens were revoked.
const sessionsEndedTopic = "sessions-ended"

// WatchSessionEnds calls fn, until ctx ends, with each user one of whose devices is logged out
// on any node: their long polls (which hold a token checked when they began) can then end.
func (s *Service) WatchSessionEnds(ctx context.Context, fn func(userID string)) error {
	stop, err := s.st.SubscribeEphemeral(sessionsEndedTopic, func(b []byte) { fn(string(b)) })
	if err != nil {
		return err
	}
	context.AfterFunc(ctx, stop)
	return nil
}

// DeleteAllDevices logs out every device of the user except keep (may be "").
func (s *Service) DeleteAllDevices(ctx context.Context, userID, keep string) error {
	devs, err := s.Devices(ctx, userID)
	if err != nil {
		return err
	}
	defer s.announceSessionsEnded(userID) // once, however many devices
	for _, d := range devs {
		if d.DeviceID == keep {
			continue
		}
		// A device gone since the listing (logged out meanwhile) is what was wanted.
		if err := s.deleteDevice(ctx, userID, d.DeviceID); err != nil && !errors.Is(err, ErrNotFound) {
			return err
		}
	}
	return nil
}

// Deactivate closes the account: it can no longer log in (its name stays taken), its tokens
// stop working, and every device is logged out. Leaving the user's rooms is the caller's
// part. Once the account is marked closed the rest goes on even if the caller gives up: the
// client, logged out, could not ask again.
func (s *Service) Deactivate(ctx context.Context, userID string) error {
	if err := s.updateAccount(ctx, userID, func(a *Account) { a.Deactivated = true }); err != nil {
		return err
	}
	ctx, cancel := Detached(ctx)
	defer cancel()
	return s.DeleteAllDevices(ctx, userID, "")
}

// finishWithin bounds the work a request goes on with after its client has gone.
const finishWithin = time.Minute

// Detached is ctx without its cancellation, for work a request must finish once begun
// (logging out every device once the password has changed), bounded by finishWithin.
func Detached(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.WithoutCancel(ctx), finishWithin)
}

// ChangePassword sets a new password and, when logoutOthers, ends every other session.
func (s *Service) ChangePassword(ctx context.Context, userID, newPassword, currentDevice string, logoutOthers bool) error {
	if len(newPassword) == 0 || len(newPassword) > 512 {
		return ErrWeakPassword
	}
	hash, err := hashPassword(newPassword)
	if err != nil {
		return err
	}
	if err := s.updateAccount(ctx, userID, func(a *Account) { a.PasswordHash = hash }); err != nil {
		return err
	}
	if logoutOthers {
		ctx, cancel := Detached(ctx)
		defer cancel()
		return s.DeleteAllDevices(ctx, userID, currentDevice)
	}
	return nil
}

// SetProfile changes the display name and avatar; a nil argument leaves that field alone.
func (s *Service) SetProfile(ctx context.Context, userID string, displayName, avatarURL *string) error {
	return s.updateAccount(ctx, userID, func(a *Account) {
		if displayName != nil {
			a.DisplayName = *displayName
		}
		if avatarURL != nil {
			a.AvatarURL = *avatarURL
		}
	})
}

// unannouncedPart keys the notes of profile changes not yet announced to every room of their
// user; its two parts keep them apart from accounts, keyed by a user id alone.
const unannouncedPart = "unannounced"

// NoteUnannounced notes, before a change of the user's profile, that their rooms are yet to
// hear of it, and returns the note's revision; ProfileAnnounced clears the note once they
// have. A node that dies while announcing it leaves the note for a sweep (UnannouncedProfiles).
func (s *Service) NoteUnannounced(ctx context.Context, userID string) (uint64, error) {
	return s.st.Put(ctx, store.BucketAccounts, store.Key(unannouncedPart, userID), []byte{1})
}

// ProfileAnnounced clears the user's note of a profile change not yet announced, if it is still
// at revision rev: a note made since is another change's, which its own announcement clears.
func (s *Service) ProfileAnnounced(ctx context.Context, userID string, rev uint64) error {
	err := s.st.DeleteAt(ctx, store.BucketAccounts, store.Key(unannouncedPart, userID), rev)
	if errors.Is(err, store.ErrConflict) {
		return nil
	}
	return err
}

// UnannouncedProfiles maps the users whose last profile change may not have reached all their
// rooms to the revisions of their notes.
func (s *Service) UnannouncedProfiles(ctx context.Context) (map[string]uint64, error) {
	keys, err := s.st.Keys(ctx, store.BucketAccounts, unannouncedPart)
	if err != nil {
		return nil, err
	}
	users := map[string]uint64{}
	for _, k := range keys {
		parts, err := store.KeyParts(k)
		if err != nil || len(parts) != 2 {
			continue
		}
		if _, rev, err := s.st.Get(ctx, store.BucketAccounts, k); err == nil {
			users[parts[1]] = rev
		} else if !errors.Is(err, store.ErrNotFound) {
			return nil, err
		}
	}
	return users, nil
}
