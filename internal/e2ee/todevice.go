package e2ee

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"slices"

	"github.com/firebreak/firebreak/internal/store"
)

// toDeviceAt is one undelivered to-device message: its position in BucketToDevice, its key
// there, and the event as sync hands it out ({"sender", "type", "content"}).
type toDeviceAt struct {
	rev   uint64
	key   string
	event json.RawMessage
}

func (s *Service) applyMessage(c store.Change) {
	defer s.inboxRev.Advance(c.Rev)
	parts, err := store.KeyParts(c.Key)
	if err != nil || len(parts) != 3 {
		return
	}
	dk := deviceKey{parts[0], parts[1]}
	s.mu.Lock()
	inbox := slices.DeleteFunc(s.inboxes[dk], func(m toDeviceAt) bool { return m.key == c.Key })
	if !c.Deleted {
		inbox = append(inbox, toDeviceAt{rev: c.Rev, key: c.Key, event: c.Value})
	}
	if len(inbox) == 0 {
		delete(s.inboxes, dk)
	} else {
		s.inboxes[dk] = inbox
	}
	s.mu.Unlock()
	if !c.Deleted {
		s.onMessage(dk.userID)
	}
}

// SendToDevice stores messages for devices: messages[user][device] is the content, device
// "*" meaning every device of the user. Only existing devices get one. A request sent again
// with the same transaction id by the same device stores nothing new.
func (s *Service) SendToDevice(ctx context.Context, sender, senderDevice, evType, txnID string, messages map[string]map[string]json.RawMessage) error {
	for userID, byDevice := range messages {
		devs, err := s.devices.Devices(ctx, userID)
		if err != nil {
			return err
		}
		for target, content := range byDevice {
			if len(content) == 0 || content[0] != '{' {
				return fmt.Errorf("%w: the message for %s %s is not an object", ErrBadRequest, userID, target)
			}
			event, _ := json.Marshal(struct {
				Sender  string          `json:"sender"`
				Type    string          `json:"type"`
				Content json.RawMessage `json:"content"`
			}{sender, evType, content})
			for _, d := range devs {
				if target != "*" && d.DeviceID != target {
					continue
				}
				id := messageID(sender, senderDevice, evType, txnID)
				_, err := s.st.Create(ctx, store.BucketToDevice, store.Key(userID, d.DeviceID, id), event)
				if err != nil && !errors.Is(err, store.ErrExists) {
					return err
				}
			}
		}
	}
	return nil
}

// messageID names a message by what sent it, so a retried request finds its messages stored.
func messageID(sender, senderDevice, evType, txnID string) string {
	sum := sha256.Sum256([]byte(sender + "\x00" + senderDevice + "\x00" + evType + "\x00" + txnID))
	return base64.RawURLEncoding.EncodeToString(sum[:16])
}

// Inbox is up to limit of the device's messages stored after position after, up to upTo,
// oldest first, and the position of the last one given (upTo when all were).
func (s *Service) Inbox(userID, deviceID string, after, upTo uint64, limit int) (events []json.RawMessage, last uint64) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	last = upTo
	for _, m := range s.inboxes[deviceKey{userID, deviceID}] {
		if m.rev <= after || m.rev > upTo {
			continue
		}
		if len(events) == limit {
			return events, last
		}
		events = append(events, m.event)
		last = m.rev
	}
	return events, upTo
}

// Acknowledge deletes the device's messages up to position upTo: its client has a sync
// token past them, so it got them. Until then a sync from an older token gets them again.
func (s *Service) Acknowledge(ctx context.Context, userID, deviceID string, upTo uint64) error {
	s.mu.RLock()
	var done []string
	for _, m := range s.inboxes[deviceKey{userID, deviceID}] {
		if m.rev <= upTo {
			done = append(done, m.key)
		}
	}
	s.mu.RUnlock()
	for _, key := range done {
		if err := s.st.Delete(ctx, store.BucketToDevice, key); err != nil {
			return err
		}
	}
	return nil
}
