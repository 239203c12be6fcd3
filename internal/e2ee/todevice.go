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

// Bounds on to-device messages. A device that stops syncing would otherwise collect whatever
// anyone sends it: past maxInbox undelivered messages, or maxInboxFromOne from one sender,
// further ones to it are dropped (the device is gone or far behind; the older ones stay).
// The spec asks servers to keep messages until delivered, and a client sends one room key to
// each device for each session it starts, so the bounds sit far above what an offline device
// gathers in weeks (at a tenth of them, 30 of 130 messages from one sender were lost).
const (
	maxMessageBytes = 65536 // a message's content, as a room event's
	maxInbox        = 10_000
	maxInboxFromOne = 2_500
)

// ErrTooLarge: a message's content is over maxMessageBytes.
var ErrTooLarge = errors.New("too large")

// toDeviceAt is one undelivered to-device message as the mirror keeps it: its position in
// BucketToDevice, its key there and its sender. The message itself is read from the bucket
// when a sync hands it out, so the mirror's memory does not grow with messages' size.
type toDeviceAt struct {
	rev    uint64
	key    string
	sender string
}

// toDeviceEvent is a message as stored and as sync hands it out.
type toDeviceEvent struct {
	Sender  string          `json:"sender"`
	Type    string          `json:"type"`
	Content json.RawMessage `json:"content"`
}

func (s *Service) applyMessage(c store.Change) {
	parts, err := store.KeyParts(c.Key)
	if err != nil || len(parts) != 3 {
		s.inboxRev.Advance(c.Rev)
		return
	}
	dk := deviceKey{parts[0], parts[1]}
	var ev toDeviceEvent
	if !c.Deleted {
		_ = json.Unmarshal(c.Value, &ev)
	}
	s.mu.Lock()
	inbox := slices.DeleteFunc(s.inboxes[dk], func(m toDeviceAt) bool { return m.key == c.Key })
	if !c.Deleted {
		inbox = append(inbox, toDeviceAt{rev: c.Rev, key: c.Key, sender: ev.Sender})
	}
	if len(inbox) == 0 {
		delete(s.inboxes, dk)
	} else {
		s.inboxes[dk] = inbox
	}
	s.mu.Unlock()
	// Moved on before the wake, so a sync it wakes finds the message within its position.
	s.inboxRev.Advance(c.Rev)
	if !c.Deleted {
		s.onMessage(dk.userID)
	}
}

// SendToDevice stores messages for devices: messages[user][device] is the content, device
// "*" meaning every device of the user (a device also named on its own gets that message).
// Only existing devices get one. Everything is checked and every device looked up before
// anything is stored. A request sent again with the same transaction id by the same device
// stores nothing new, even once the first one's messages were delivered.
func (s *Service) SendToDevice(ctx context.Context, sender, senderDevice, evType, txnID string, messages map[string]map[string]json.RawMessage) error {
	txn := store.Key(sender, senderDevice, evType, txnID)
	if err := store.CheckKey(txn); err != nil {
		return err
	}
	if _, _, err := s.st.Get(ctx, store.BucketToDeviceTxns, txn); err == nil {
		return nil // sent before
	} else if !errors.Is(err, store.ErrNotFound) {
		return err
	}
	planned, err := s.planMessages(ctx, sender, evType, messageID(sender, senderDevice, evType, txnID), messages)
	if err != nil {
		return err
	}
	for key, event := range planned {
		// Stored only where no message ever was (revision 0): a delivered message's key keeps
		// its delete marker, so retrying a request whose first try stored its messages, and had
		// them delivered, but failed before it noted its transaction, delivers nothing twice.
		_, err := s.st.Update(ctx, store.BucketToDevice, key, event, 0)
		if err != nil && !errors.Is(err, store.ErrConflict) {
			return err
		}
	}
	_, err = s.st.Put(ctx, store.BucketToDeviceTxns, txn, []byte("1"))
	return err
}

// planMessages checks a request's messages and turns them into what to store: the message for
// each existing device, by its key in BucketToDevice. A device whose inbox is full is left out.
func (s *Service) planMessages(ctx context.Context, sender, evType, id string, messages map[string]map[string]json.RawMessage) (map[string]json.RawMessage, error) {
	planned := map[string]json.RawMessage{}
	for userID, byDevice := range messages {
		for target, content := range byDevice {
			switch {
			case len(content) == 0 || content[0] != '{':
				return nil, fmt.Errorf("%w: the message for %s %s is not an object", ErrBadRequest, userID, target)
			case len(content) > maxMessageBytes:
				return nil, fmt.Errorf("%w: the message for %s %s is over %d bytes", ErrTooLarge, userID, target, maxMessageBytes)
			}
		}
		devs, err := s.devices.Devices(ctx, userID)
		if err != nil {
			return nil, err
		}
		for _, d := range devs {
			content, ok := byDevice[d.DeviceID]
			if !ok {
				content, ok = byDevice["*"]
			}
			if !ok || s.inboxFull(userID, d.DeviceID, sender) {
				continue
			}
			key := store.Key(userID, d.DeviceID, id)
			if err := store.CheckKey(key); err != nil {
				return nil, err
			}
			planned[key], _ = json.Marshal(toDeviceEvent{sender, evType, content})
		}
	}
	return planned, nil
}

// inboxFull reports whether a device has as many undelivered messages as it may keep, in all
// or from this sender.
func (s *Service) inboxFull(userID, deviceID, sender string) bool {
	s.mu.RLock()
	defer s.mu.RUnlock()
	inbox := s.inboxes[deviceKey{userID, deviceID}]
	fromOne := 0
	for _, m := range inbox {
		if m.sender == sender {
			fromOne++
		}
	}
	return len(inbox) >= maxInbox || fromOne >= maxInboxFromOne
}

// messageID names a message by what sent it, so a retried request finds its messages stored.
func messageID(sender, senderDevice, evType, txnID string) string {
	sum := sha256.Sum256([]byte(sender + "\x00" + senderDevice + "\x00" + evType + "\x00" + txnID))
	return base64.RawURLEncoding.EncodeToString(sum[:16])
}

// Inbox is up to limit of the device's messages stored after position after, up to upTo,
// oldest first, and the position of the last one given (upTo when all were). A message
// deleted meanwhile (acknowledged through another node) is skipped.
func (s *Service) Inbox(ctx context.Context, userID, deviceID string, after, upTo uint64, limit int) (events []json.RawMessage, last uint64, err error) {
	s.mu.RLock()
	var pending []toDeviceAt
	for _, m := range s.inboxes[deviceKey{userID, deviceID}] {
		if m.rev > after && m.rev <= upTo {
			pending = append(pending, m)
		}
	}
	s.mu.RUnlock()
	last = upTo
	if len(pending) > limit {
		pending, last = pending[:limit], pending[limit-1].rev
	}
	for _, m := range pending {
		event, _, err := s.st.Get(ctx, store.BucketToDevice, m.key)
		if errors.Is(err, store.ErrNotFound) {
			continue
		} else if err != nil {
			return nil, 0, err
		}
		events = append(events, event)
	}
	return events, last, nil
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
