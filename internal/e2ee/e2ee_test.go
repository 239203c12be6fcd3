package e2ee

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/firebreak/firebreak/internal/accounts"
	"github.com/firebreak/firebreak/internal/store/storetest"
)

// someDevices answers for a fixed set of devices per user.
type someDevices map[string][]string

func (d someDevices) Devices(_ context.Context, userID string) ([]accounts.Device, error) {
	var out []accounts.Device
	for _, id := range d[userID] {
		out = append(out, accounts.Device{DeviceID: id, DisplayName: "phone " + id})
	}
	return out, nil
}

// start runs a service over a real store until the test ends, its mirrors loaded.
func start(t *testing.T, devices Devices) *Service {
	t.Helper()
	s := New(storetest.Open(t, ""), devices)
	ctx, cancel := context.WithCancel(context.Background())
	ready, done := make(chan struct{}), make(chan struct{})
	var once sync.Once
	go func() {
		defer close(done)
		s.Run(ctx, slog.New(slog.DiscardHandler), func() { once.Do(func() { close(ready) }) })
	}()
	t.Cleanup(func() { cancel(); <-done })
	<-ready
	return s
}

// eventually waits for the mirrors to show what a write did.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); !cond(); {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within 5s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func keys(n int, prefix string) map[string]json.RawMessage {
	out := map[string]json.RawMessage{}
	for i := range n {
		out[fmt.Sprintf("signed_curve25519:%s%02d", prefix, i)] = json.RawMessage(fmt.Sprintf(`{"key":"%s%d"}`, prefix, i))
	}
	return out
}

// TestClaimsTakeDistinctKeys: claims racing for one device's keys each get their own, then the
// fallback key, which is then marked used.
func TestClaimsTakeDistinctKeys(t *testing.T) {
	s := start(t, someDevices{})
	ctx := context.Background()
	counts, err := s.UploadKeys(ctx, "@u:x", "D", keys(5, "k"), map[string]json.RawMessage{"signed_curve25519:fb": json.RawMessage(`{"key":"fb","fallback":true}`)})
	if err != nil || counts["signed_curve25519"] != 5 {
		t.Fatalf("UploadKeys = %v, %v", counts, err)
	}
	var mu sync.Mutex
	var got []string
	var wg sync.WaitGroup
	for range 7 {
		wg.Go(func() {
			res, err := s.Claim(ctx, map[string]map[string]string{"@u:x": {"D": "signed_curve25519"}})
			if err != nil {
				t.Error(err)
				return
			}
			for id := range res["@u:x"]["D"] {
				mu.Lock()
				got = append(got, id)
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	slices.Sort(got)
	want := []string{"signed_curve25519:fb", "signed_curve25519:fb", "signed_curve25519:k00", "signed_curve25519:k01",
		"signed_curve25519:k02", "signed_curve25519:k03", "signed_curve25519:k04"}
	if !slices.Equal(got, want) {
		t.Errorf("7 claims of 5 keys and a fallback took %v, want %v", got, want)
	}
	eventually(t, "the counts", func() bool {
		c := s.Counts("@u:x", "D")
		return c.OneTime["signed_curve25519"] == 0 && len(c.UnusedFallback) == 0
	})
	if res, _ := s.Claim(ctx, map[string]map[string]string{"@u:x": {"NONE": "signed_curve25519"}}); len(res) != 0 {
		t.Errorf("a device without keys gave %v", res)
	}
}

func TestUploadKeysRefuses(t *testing.T) {
	s := start(t, someDevices{})
	ctx := context.Background()
	if _, err := s.UploadKeys(ctx, "@u:x", "D", keys(1, "a"), nil); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name     string
		oneTime  map[string]json.RawMessage
		fallback map[string]json.RawMessage
	}{
		{"a key id again with another key", map[string]json.RawMessage{"signed_curve25519:a00": json.RawMessage(`{"key":"other"}`)}, nil},
		{"a one-time key without an algorithm", map[string]json.RawMessage{"a01": json.RawMessage(`{}`)}, nil},
		{"a fallback key without an algorithm", nil, map[string]json.RawMessage{"fb": json.RawMessage(`{}`)}},
		{"more than a device keeps", keys(maxOneTimeKeys, "b"), nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := s.UploadKeys(ctx, "@u:x", "D", tc.oneTime, tc.fallback); !errors.Is(err, ErrBadRequest) {
				t.Errorf("UploadKeys = %v, want ErrBadRequest", err)
			}
		})
	}
	eventually(t, "the counts", func() bool { return s.Counts("@u:x", "D").OneTime["signed_curve25519"] == 1 })
}

// TestToDevice: messages reach each named device (or every device for "*") once, in order,
// at most limit per sync; a retried request stores nothing new; a token past them deletes
// them; a logged-out device's messages go with it.
func TestToDevice(t *testing.T) {
	s := start(t, someDevices{"@b:x": {"B1", "B2"}})
	ctx := context.Background()
	send := func(txn string, to map[string]json.RawMessage) {
		t.Helper()
		if err := s.SendToDevice(ctx, "@a:x", "A", "m.test", txn, map[string]map[string]json.RawMessage{"@b:x": to}); err != nil {
			t.Fatal(err)
		}
	}
	send("t1", map[string]json.RawMessage{"*": json.RawMessage(`{"n":1}`)})
	send("t2", map[string]json.RawMessage{"B1": json.RawMessage(`{"n":2}`), "GONE": json.RawMessage(`{"n":0}`)})
	send("t2", map[string]json.RawMessage{"B1": json.RawMessage(`{"n":2}`)}) // retried
	head := func() uint64 { return s.Position().ToDevice }
	eventually(t, "three messages", func() bool { ev, _ := s.Inbox("@b:x", "B1", 0, head(), 10); return len(ev) == 2 })
	if ev, _ := s.Inbox("@b:x", "B2", 0, head(), 10); len(ev) != 1 {
		t.Errorf("B2 has %d messages, want the one sent to every device", len(ev))
	}
	first, last := s.Inbox("@b:x", "B1", 0, head(), 1)
	if len(first) != 1 || last >= head() {
		t.Fatalf("a page of one: %d messages, last %d of %d", len(first), last, head())
	}
	var msg struct {
		Sender, Type string
		Content      struct{ N int }
	}
	if err := json.Unmarshal(first[0], &msg); err != nil || msg.Sender != "@a:x" || msg.Type != "m.test" || msg.Content.N != 1 {
		t.Errorf("first message %s: %v", first[0], err)
	}
	if rest, _ := s.Inbox("@b:x", "B1", last, head(), 10); len(rest) != 1 {
		t.Errorf("after the first page: %d messages, want 1", len(rest))
	}
	if err := s.Acknowledge(ctx, "@b:x", "B1", last); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the acknowledged message deleted", func() bool { ev, _ := s.Inbox("@b:x", "B1", 0, head(), 10); return len(ev) == 1 })
	s.ForgetDevice(ctx, "@b:x", "B2")
	eventually(t, "a forgotten device's messages deleted", func() bool { ev, _ := s.Inbox("@b:x", "B2", 0, head(), 10); return len(ev) == 0 })
}

// TestKeyChanges: an upload of new device keys is a change of its user; the same keys again
// are not.
func TestKeyChanges(t *testing.T) {
	s := start(t, someDevices{})
	ctx := context.Background()
	dev := json.RawMessage(`{"user_id":"@u:x","device_id":"D","algorithms":["m.olm.v1.curve25519-aes-sha2"],"keys":{"ed25519:D":"k"},"signatures":{}}`)
	before := s.Position().Keys
	if err := s.UploadDeviceKeys(ctx, "@u:x", "D", dev); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the change", func() bool { return slices.Equal(s.ChangedBetween(before, s.Position().Keys), []string{"@u:x"}) })
	again := s.Position().Keys
	if err := s.UploadDeviceKeys(ctx, "@u:x", "D", dev); err != nil {
		t.Fatal(err)
	}
	if err := s.UploadDeviceKeys(ctx, "@u:x", "OTHER", dev); !errors.Is(err, ErrBadRequest) {
		t.Errorf("keys naming another device: %v, want ErrBadRequest", err)
	}
	time.Sleep(50 * time.Millisecond)
	if got := s.ChangedBetween(again, s.Position().Keys); len(got) != 0 {
		t.Errorf("the same keys again changed %v", got)
	}
}

// TestChangeLog: dropping older entries when they pile up leaves no change out.
func TestChangeLog(t *testing.T) {
	var l changeLog
	rev := uint64(0)
	for round := range 3000 {
		for _, u := range []string{"a", "b", "c"} {
			if u == "c" && round > 0 {
				continue // c changed once, at the start
			}
			rev++
			l.add(rev, u)
		}
	}
	if len(l.entries) > 3*2+1024 {
		t.Errorf("%d entries kept for 3 users", len(l.entries))
	}
	for _, tc := range []struct {
		after, upTo uint64
		want        []string
	}{
		{0, rev, []string{"c", "a", "b"}},
		{3, rev, []string{"a", "b"}},
		{rev - 1, rev, []string{"b"}},
		{rev, rev, nil},
		// A window ending in the past, whose changes of a and b were dropped, names them all
		// the same.
		{0, 5, []string{"a", "b", "c"}},
	} {
		got := l.between(tc.after, tc.upTo)
		slices.Sort(got)
		want := slices.Sorted(slices.Values(tc.want))
		if !slices.Equal(got, want) {
			t.Errorf("between(%d, %d) = %v, want %v", tc.after, tc.upTo, got, want)
		}
	}
}

func backedUp(index, forwarded int, verified bool) json.RawMessage {
	return json.RawMessage(fmt.Sprintf(`{"first_message_index":%d,"forwarded_count":%d,"is_verified":%v,"session_data":{"ciphertext":"c%d%d%v"}}`,
		index, forwarded, verified, index, forwarded, verified))
}

// TestKeyBackup: versions are numbered upwards and the newest is current; only it takes
// keys; a session's key is replaced only by a better one; counts and etags follow.
func TestKeyBackup(t *testing.T) {
	s := start(t, someDevices{})
	ctx := context.Background()
	const user = "@u:x"
	auth := json.RawMessage(`{"public_key":"pk"}`)
	if _, err := s.Backup(ctx, user, ""); !errors.Is(err, ErrNotFound) {
		t.Fatalf("no backup yet: %v", err)
	}
	if _, err := s.CreateBackup(ctx, user, "m.megolm_backup.v0", auth); !errors.Is(err, ErrBadRequest) {
		t.Errorf("an unknown algorithm: %v", err)
	}
	v1, _ := s.CreateBackup(ctx, user, BackupAlgorithm, auth)
	v2, err := s.CreateBackup(ctx, user, BackupAlgorithm, auth)
	if err != nil || v1 != "1" || v2 != "2" {
		t.Fatalf("versions %q, %q (%v)", v1, v2, err)
	}
	if _, err := s.PutBackupKeys(ctx, user, v1, BackupKeys{"!r": {"s": backedUp(5, 0, false)}}); !errors.Is(err, ErrWrongBackupVersion) {
		t.Errorf("keys for an old version: %v", err)
	}
	put := func(data json.RawMessage) BackupVersion {
		t.Helper()
		v, err := s.PutBackupKeys(ctx, user, v2, BackupKeys{"!r": {"s": data}})
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	first := put(backedUp(5, 1, false))
	for _, tc := range []struct {
		name     string
		data     json.RawMessage
		replaces bool
	}{
		{"a later first message", backedUp(6, 0, false), false},
		{"forwarded more", backedUp(5, 2, false), false},
		{"forwarded less", backedUp(5, 0, false), true},
		{"an earlier first message", backedUp(4, 3, false), true},
		{"verified, from a later message", backedUp(9, 9, true), true},
		{"unverified, from the first message", backedUp(0, 0, false), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before, _ := s.BackupKeys(ctx, user, v2, "!r", "s")
			after := put(tc.data)
			got, _ := s.BackupKeys(ctx, user, v2, "!r", "s")
			if replaced := string(got["!r"]["s"]) == string(tc.data); replaced != tc.replaces {
				t.Errorf("replaced %v, want %v (stored %s, was %s)", replaced, tc.replaces, got["!r"]["s"], before["!r"]["s"])
			}
			if after.Count != 1 {
				t.Errorf("count %d, want 1", after.Count)
			}
		})
	}
	current, _ := s.Backup(ctx, user, "")
	if current.Version != v2 || current.Etag == first.Etag {
		t.Errorf("current backup %+v: want version %s with an etag moved on from %s", current, v2, first.Etag)
	}
	if after, err := s.DeleteBackupKeys(ctx, user, v2, "!r", ""); err != nil || after.Count != 0 {
		t.Errorf("after deleting the room's keys: %+v, %v", after, err)
	}
	if err := s.DeleteBackup(ctx, user, v2); err != nil {
		t.Fatal(err)
	}
	if current, err := s.Backup(ctx, user, ""); err != nil || current.Version != v1 {
		t.Errorf("after deleting version 2 the current backup is %+v (%v), want version 1", current, err)
	}
	if v3, _ := s.CreateBackup(ctx, user, BackupAlgorithm, auth); v3 != "3" {
		t.Errorf("a version after a deleted one is %q, want 3: numbers are not reused", v3)
	}
}
