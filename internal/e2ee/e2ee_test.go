package e2ee

import (
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/matrix-org/gomatrixserverlib"

	"github.com/firebreak/firebreak/internal/accounts"
	"github.com/firebreak/firebreak/internal/store"
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
	s := start(t, someDevices{"@u:x": {"D"}})
	ctx := context.Background()
	counts, err := s.Upload(ctx, "@u:x", "D", KeyUpload{OneTimeKeys: keys(5, "k"),
		FallbackKeys: map[string]json.RawMessage{"signed_curve25519:fb": json.RawMessage(`{"key":"fb","fallback":true}`)}})
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
	// A device logged out (no longer among the user's devices) gives none of the keys it left.
	if _, err := s.Upload(ctx, "@u:x", "GONE", KeyUpload{OneTimeKeys: keys(1, "g")}); err != nil {
		t.Fatal(err)
	}
	if res, _ := s.Claim(ctx, map[string]map[string]string{"@u:x": {"GONE": "signed_curve25519"}}); len(res) != 0 {
		t.Errorf("a logged-out device's keys were handed out: %v", res)
	}
}

// TestUploadKeysRefuses: each bad upload is refused whole. D is logged in, so device keys a
// refused upload stored would show in a query.
func TestUploadKeysRefuses(t *testing.T) {
	s := start(t, someDevices{"@u:x": {"D"}})
	ctx := context.Background()
	if _, err := s.Upload(ctx, "@u:x", "D", KeyUpload{OneTimeKeys: keys(1, "a")}); err != nil {
		t.Fatal(err)
	}
	// The same key again, spaced otherwise, is the same key: a client's retry succeeds.
	if _, err := s.Upload(ctx, "@u:x", "D", KeyUpload{OneTimeKeys: map[string]json.RawMessage{"signed_curve25519:a00": json.RawMessage(`{ "key" : "a0" }`)}}); err != nil {
		t.Errorf("the same key again: %v", err)
	}
	dev := json.RawMessage(`{"user_id":"@u:x","device_id":"D","algorithms":["a"],"keys":{"ed25519:D":"k"}}`)
	for _, tc := range []struct {
		name string
		up   KeyUpload
	}{
		{"a key id again with another key", KeyUpload{OneTimeKeys: map[string]json.RawMessage{"signed_curve25519:a00": json.RawMessage(`{"key":"other"}`)}}},
		{"a one-time key without an algorithm", KeyUpload{OneTimeKeys: map[string]json.RawMessage{"a01": json.RawMessage(`{}`)}}},
		{"a null one-time key", KeyUpload{OneTimeKeys: map[string]json.RawMessage{"signed_curve25519:n": json.RawMessage(`null`)}}},
		{"a long algorithm", KeyUpload{OneTimeKeys: map[string]json.RawMessage{strings.Repeat("x", 65) + ":k": json.RawMessage(`{}`)}}},
		{"a fallback key without an algorithm", KeyUpload{FallbackKeys: map[string]json.RawMessage{"fb": json.RawMessage(`{}`)}}},
		{"two fallback keys of one algorithm", KeyUpload{FallbackKeys: map[string]json.RawMessage{"signed_curve25519:f1": json.RawMessage(`{}`), "signed_curve25519:f2": json.RawMessage(`{}`)}}},
		{"more than a device keeps", KeyUpload{OneTimeKeys: keys(maxOneTimeKeys, "b")}},
		// Good device keys with a bad one-time key: none of it is stored.
		{"device keys with a bad one-time key", KeyUpload{DeviceKeys: dev, OneTimeKeys: map[string]json.RawMessage{"bad": json.RawMessage(`{}`)}}},
		// The device keys are stored before the one-time keys, once those are known to fit.
		{"device keys with a key id again with another key", KeyUpload{DeviceKeys: dev, OneTimeKeys: map[string]json.RawMessage{"signed_curve25519:a00": json.RawMessage(`{"key":"other"}`)}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := s.Upload(ctx, "@u:x", "D", tc.up); !errors.Is(err, ErrBadRequest) {
				t.Errorf("Upload = %v, want ErrBadRequest", err)
			}
		})
	}
	s.caughtUp(t, store.BucketDeviceKeys, s.keysRev)
	s.caughtUp(t, store.BucketOneTimeKeys, s.countsRev)
	res, err := s.Query(ctx, "@u:x", map[string][]string{"@u:x": nil})
	if err != nil || len(res.DeviceKeys["@u:x"]) != 0 {
		t.Errorf("a refused upload stored device keys: %v, %v", res.DeviceKeys, err)
	}
	if c := s.Counts("@u:x", "D"); len(c.OneTime) != 1 || c.OneTime["signed_curve25519"] != 1 || len(c.UnusedFallback) != 0 {
		t.Errorf("after refused uploads the counts are %+v, want the first upload's one key", c)
	}
}

// TestClaimsTakeTheOldest: keys are claimed in the order they were uploaded, which for one
// upload is the order of the counters clients name them by, not of their base64 names.
func TestClaimsTakeTheOldest(t *testing.T) {
	s := start(t, someDevices{"@u:x": {"D"}})
	ctx := context.Background()
	name := func(n byte) string {
		return "signed_curve25519:" + base64.RawStdEncoding.EncodeToString([]byte{0, 0, 0, n})
	}
	batch := map[string]json.RawMessage{}
	for _, n := range []byte{207, 208, 209} { // AAAAzw, AAAA0A, AAAA0Q: '0' sorts before 'z'
		batch[name(n)] = json.RawMessage(`{}`)
	}
	if _, err := s.Upload(ctx, "@u:x", "D", KeyUpload{OneTimeKeys: batch}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Upload(ctx, "@u:x", "D", KeyUpload{OneTimeKeys: map[string]json.RawMessage{name(1): json.RawMessage(`{}`)}}); err != nil {
		t.Fatal(err)
	}
	for _, want := range []byte{207, 208, 209, 1} {
		res, err := s.Claim(ctx, map[string]map[string]string{"@u:x": {"D": "signed_curve25519"}})
		if err != nil {
			t.Fatal(err)
		}
		if _, ok := res["@u:x"]["D"][name(want)]; !ok {
			t.Errorf("claimed %v, want key %d", res["@u:x"]["D"], want)
		}
	}
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
	eventually(t, "three messages", func() bool { ev, _ := s.inbox(t, "@b:x", "B1", 0, head(), 10); return len(ev) == 2 })
	if ev, _ := s.inbox(t, "@b:x", "B2", 0, head(), 10); len(ev) != 1 {
		t.Errorf("B2 has %d messages, want the one sent to every device", len(ev))
	}
	first, last := s.inbox(t, "@b:x", "B1", 0, head(), 1)
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
	if rest, _ := s.inbox(t, "@b:x", "B1", last, head(), 10); len(rest) != 1 {
		t.Errorf("after the first page: %d messages, want 1", len(rest))
	}
	if err := s.Acknowledge(ctx, "@b:x", "B1", last); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the acknowledged message deleted", func() bool { ev, _ := s.inbox(t, "@b:x", "B1", 0, head(), 10); return len(ev) == 1 })
	// The first request, retried after its message was delivered and deleted, sends nothing:
	// also when its transaction was never noted (the first try failed after storing).
	send("t1", map[string]json.RawMessage{"*": json.RawMessage(`{"n":1}`)})
	if err := s.st.Delete(ctx, store.BucketToDeviceTxns, store.Key("@a:x", "A", "m.test", "t1")); err != nil {
		t.Fatal(err)
	}
	send("t1", map[string]json.RawMessage{"*": json.RawMessage(`{"n":1}`)})
	s.caughtUp(t, store.BucketToDevice, s.inboxRev)
	if ev, _ := s.inbox(t, "@b:x", "B1", 0, head(), 10); len(ev) != 1 {
		t.Errorf("a retried request delivered again: %d messages", len(ev))
	}
	// One bad message fails the whole request, and nothing of it is stored.
	bad := map[string]map[string]json.RawMessage{"@b:x": {"B1": json.RawMessage(`{"n":3}`), "B2": json.RawMessage(`"not an object"`)}}
	if err := s.SendToDevice(ctx, "@a:x", "A", "m.test", "t3", bad); !errors.Is(err, ErrBadRequest) {
		t.Errorf("a request with a bad message: %v", err)
	}
	big := map[string]map[string]json.RawMessage{"@b:x": {"B1": json.RawMessage(`{"x":"` + strings.Repeat("x", maxMessageBytes) + `"}`)}}
	if err := s.SendToDevice(ctx, "@a:x", "A", "m.test", "t4", big); !errors.Is(err, ErrTooLarge) {
		t.Errorf("a message over %d bytes: %v", maxMessageBytes, err)
	}
	s.caughtUp(t, store.BucketToDevice, s.inboxRev)
	if ev, _ := s.inbox(t, "@b:x", "B1", 0, head(), 10); len(ev) != 1 {
		t.Errorf("refused requests stored messages: B1 has %d", len(ev))
	}
	s.ForgetDevice(ctx, "@b:x", "B2")
	eventually(t, "a forgotten device's messages deleted", func() bool { ev, _ := s.inbox(t, "@b:x", "B2", 0, head(), 10); return len(ev) == 0 })
}

// TestInboxBounds: a device that does not sync keeps at most maxInboxFromOne messages from
// one sender; further ones are dropped, and another sender's still arrive.
func TestInboxBounds(t *testing.T) {
	s := start(t, someDevices{"@b:x": {"B"}})
	ctx := context.Background()
	for i := range maxInboxFromOne + 5 {
		msg := map[string]map[string]json.RawMessage{"@b:x": {"B": json.RawMessage(`{}`)}}
		if err := s.SendToDevice(ctx, "@a:x", "A", "m.test", fmt.Sprint(i), msg); err != nil {
			t.Fatal(err)
		}
		if i%500 == 0 || i >= maxInboxFromOne-1 { // the mirror, which counts, in step near the bound
			eventually(t, "the mirror", func() bool {
				ev, _ := s.inbox(t, "@b:x", "B", 0, s.Position().ToDevice, maxInbox)
				return len(ev) >= min(i+1, maxInboxFromOne)
			})
		}
	}
	if err := s.SendToDevice(ctx, "@c:x", "C", "m.test", "c", map[string]map[string]json.RawMessage{"@b:x": {"B": json.RawMessage(`{}`)}}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the other sender's message", func() bool {
		ev, _ := s.inbox(t, "@b:x", "B", 0, s.Position().ToDevice, maxInbox)
		return len(ev) == maxInboxFromOne+1
	})
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
	eventually(t, "the change", func() bool {
		return slices.Equal(s.ChangedBetween(before, s.Position().Keys), []KeyChange{{UserID: "@u:x"}})
	})
	again := s.Position().Keys
	if err := s.UploadDeviceKeys(ctx, "@u:x", "D", dev); err != nil {
		t.Fatal(err)
	}
	if err := s.UploadDeviceKeys(ctx, "@u:x", "OTHER", dev); !errors.Is(err, ErrBadRequest) {
		t.Errorf("keys naming another device: %v, want ErrBadRequest", err)
	}
	s.caughtUp(t, store.BucketDeviceKeys, s.keysRev)
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
			l.add(rev, KeyChange{UserID: u})
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
		var got []string
		for _, c := range l.between(tc.after, tc.upTo) {
			got = append(got, c.UserID)
		}
		slices.Sort(got)
		want := slices.Sorted(slices.Values(tc.want))
		if !slices.Equal(got, want) {
			t.Errorf("between(%d, %d) = %v, want %v", tc.after, tc.upTo, got, want)
		}
	}
}

// inbox is Inbox for a test, failing it on an error.
func (s *Service) inbox(t *testing.T, userID, deviceID string, after, upTo uint64, limit int) ([]json.RawMessage, uint64) {
	t.Helper()
	events, last, err := s.Inbox(context.Background(), userID, deviceID, after, upTo, limit)
	if err != nil {
		t.Fatal(err)
	}
	return events, last
}

// signer is a test's ed25519 key, named as cross-signing names its keys.
type signer struct {
	user string
	id   string
	priv ed25519.PrivateKey
	pub  string
}

func newSigner(t *testing.T, user string) signer {
	t.Helper()
	pub, priv, err := ed25519.GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	b64 := base64.RawStdEncoding.EncodeToString(pub)
	return signer{user: user, id: "ed25519:" + b64, priv: priv, pub: b64}
}

func (k signer) sign(t *testing.T, object string) json.RawMessage {
	t.Helper()
	signed, err := gomatrixserverlib.SignJSON(k.user, gomatrixserverlib.KeyID(k.id), k.priv, []byte(object))
	if err != nil {
		t.Fatal(err)
	}
	return signed
}

// object is a cross-signing key object of usage for k's public key.
func (k signer) object(usage string) string {
	return fmt.Sprintf(`{"user_id":%q,"usage":[%q],"keys":{%q:%q}}`, k.user, usage, k.id, k.pub)
}

// TestSignatures: a device's signature by the self-signing key survives the device's keys
// uploaded again unchanged; an entry that was not checked is not stored; a new self-signing
// key drops the signatures the old one made.
func TestSignatures(t *testing.T) {
	s := start(t, someDevices{"@u:x": {"D"}})
	ctx := context.Background()
	master, self := newSigner(t, "@u:x"), newSigner(t, "@u:x")
	err := s.UploadCrossSigning(ctx, "@u:x", CrossSigningKeys{Master: json.RawMessage(master.object("master")),
		SelfSigning: master.sign(t, self.object("self_signing"))})
	if err != nil {
		t.Fatal(err)
	}
	device := `{"user_id":"@u:x","device_id":"D","algorithms":["a"],"keys":{"ed25519:D":"k"}}`
	if err := s.UploadDeviceKeys(ctx, "@u:x", "D", json.RawMessage(device)); err != nil {
		t.Fatal(err)
	}
	signed := self.sign(t, device)
	var withForged map[string]any
	_ = json.Unmarshal(signed, &withForged)
	withForged["signatures"].(map[string]any)["@u:x"].(map[string]any)["ed25519:FORGED"] = "BBBB"
	upload, _ := json.Marshal(withForged)
	failures, err := s.UploadSignatures(ctx, "@u:x", map[string]map[string]json.RawMessage{"@u:x": {"D": upload}})
	if err != nil || len(failures) != 0 {
		t.Fatalf("UploadSignatures = %v, %v", failures, err)
	}
	sigsOfD := func() map[string]string {
		t.Helper()
		res, err := s.Query(ctx, "@u:x", map[string][]string{"@u:x": {"D"}})
		if err != nil {
			t.Fatal(err)
		}
		var d signedObject
		_ = json.Unmarshal(res.DeviceKeys["@u:x"]["D"], &d)
		return d.Signatures["@u:x"]
	}
	if sigs := sigsOfD(); sigs[self.id] == "" || sigs["ed25519:FORGED"] != "" {
		t.Errorf("signatures of D: %v, want the self-signing key's and not the forged one", sigs)
	}
	if err := s.UploadDeviceKeys(ctx, "@u:x", "D", json.RawMessage(device)); err != nil {
		t.Fatal(err)
	}
	if sigs := sigsOfD(); sigs[self.id] == "" {
		t.Errorf("the same device keys again dropped the self-signing key's signature: %v", sigs)
	}
	newSelf := newSigner(t, "@u:x")
	if err := s.UploadCrossSigning(ctx, "@u:x", CrossSigningKeys{SelfSigning: master.sign(t, newSelf.object("self_signing"))}); err != nil {
		t.Fatal(err)
	}
	if sigs := sigsOfD(); sigs[self.id] != "" {
		t.Errorf("a replaced self-signing key's signature is still served: %v", sigs)
	}
	// A self-signing key not signed by the master key is refused.
	stranger := newSigner(t, "@u:x")
	if err := s.UploadCrossSigning(ctx, "@u:x", CrossSigningKeys{SelfSigning: stranger.sign(t, newSigner(t, "@u:x").object("self_signing"))}); !errors.Is(err, ErrInvalidSignature) {
		t.Errorf("a self-signing key signed by another key: %v", err)
	}
}

// TestCrossSigningKeysAreNoDevices: no cross-signing key may have a device's id as its public
// key, the master key or another; and IsCrossSigningKey names the ids a login may not take.
func TestCrossSigningKeysAreNoDevices(t *testing.T) {
	master, self, valid := newSigner(t, "@u:x"), newSigner(t, "@u:x"), newSigner(t, "@u:x")
	s := start(t, someDevices{"@u:x": {"D", master.pub, self.pub}})
	ctx := context.Background()
	for name, keys := range map[string]CrossSigningKeys{
		"master":       {Master: json.RawMessage(master.object("master"))},
		"self-signing": {Master: json.RawMessage(valid.object("master")), SelfSigning: valid.sign(t, self.object("self_signing"))},
	} {
		if err := s.UploadCrossSigning(ctx, "@u:x", keys); !errors.Is(err, ErrForbidden) {
			t.Errorf("a %s key named as a device: %v, want ErrForbidden", name, err)
		}
	}
	other := newSigner(t, "@u:x")
	if err := s.UploadCrossSigning(ctx, "@u:x", CrossSigningKeys{Master: json.RawMessage(other.object("master"))}); err != nil {
		t.Fatal(err)
	}
	for id, want := range map[string]bool{other.pub: true, "D": false, master.pub: false} {
		if got, err := s.IsCrossSigningKey(ctx, "@u:x", id); err != nil || got != want {
			t.Errorf("IsCrossSigningKey(%s) = %v, %v; want %v", id, got, err, want)
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
			etagBefore, _ := s.Backup(ctx, user, v2)
			after := put(tc.data)
			got, _ := s.BackupKeys(ctx, user, v2, "!r", "s")
			if replaced := string(got["!r"]["s"]) == string(tc.data); replaced != tc.replaces {
				t.Errorf("replaced %v, want %v (stored %s, was %s)", replaced, tc.replaces, got["!r"]["s"], before["!r"]["s"])
			}
			if after.Count != 1 {
				t.Errorf("count %d, want 1", after.Count)
			}
			if moved := after.Etag != etagBefore.Etag; moved != tc.replaces {
				t.Errorf("the etag moved: %v, want %v (a key replaced)", moved, tc.replaces)
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

// caughtUp waits until a mirror has applied everything its bucket holds, so that a test can
// tell a write that did not happen from one the mirror has not shown yet.
func (s *Service) caughtUp(t *testing.T, b store.Bucket, rev *store.Cursor) {
	t.Helper()
	head, err := s.st.BucketHead(context.Background(), b)
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, "the mirror to reach the bucket's head", func() bool { return rev.Load() >= head })
}
