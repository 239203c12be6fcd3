package accounts

import (
	"context"
	"encoding/json"
	"errors"

	"github.com/firebreak/firebreak/internal/store"
)

// Device loads one device of a user.
func (s *Service) Device(ctx context.Context, userID, deviceID string) (Device, error) {
	var dev Device
	b, _, err := s.st.Get(ctx, store.BucketDevices, store.Key(userID, deviceID))
	if errors.Is(err, store.ErrNotFound) {
		return dev, ErrNotFound
	} else if err != nil {
		return dev, err
	}
	return dev, json.Unmarshal(b, &dev)
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

func (s *Service) putDevice(ctx context.Context, userID string, dev Device) error {
	b, _ := json.Marshal(dev)
	_, err := s.st.Put(ctx, store.BucketDevices, store.Key(userID, dev.DeviceID), b)
	return err
}

// RenameDevice sets a device's display name.
func (s *Service) RenameDevice(ctx context.Context, userID, deviceID, name string) error {
	dev, err := s.Device(ctx, userID, deviceID)
	if err != nil {
		return err
	}
	dev.DisplayName = name
	return s.putDevice(ctx, userID, dev)
}

// DeleteDevice logs a device out: its token stops working at once.
func (s *Service) DeleteDevice(ctx context.Context, userID, deviceID string) error {
	err := s.deleteDevice(ctx, userID, deviceID)
	s.announceSessionsEnded(userID)
	return err
}

func (s *Service) deleteDevice(ctx context.Context, userID, deviceID string) error {
	dev, err := s.Device(ctx, userID, deviceID)
	if err != nil {
		return err
	}
	if err := s.revokeToken(ctx, dev.TokenHash); err != nil {
		return err
	}
	return s.st.Delete(ctx, store.BucketDevices, store.Key(userID, deviceID))
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
		if err := s.deleteDevice(ctx, userID, d.DeviceID); err != nil {
			return err
		}
	}
	return nil
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
