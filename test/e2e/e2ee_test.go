//go:build goolm

// The encryption tests drive mautrix-go's OlmMachine, the crypto of its bots and bridges, in
// its pure-Go build (goolm): the README's test command passes -tags goolm.

package e2e

import (
	"context"
	"errors"
	"net/http"
	"slices"
	"sync"
	"testing"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/crypto"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"
)

// encryptedRooms is the OlmMachine's view of which rooms are encrypted and who is in them,
// which a real client keeps from sync.
type encryptedRooms struct {
	mu      sync.Mutex
	members map[id.RoomID][]id.UserID
}

func (e *encryptedRooms) IsEncrypted(_ context.Context, room id.RoomID) (bool, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	_, ok := e.members[room]
	return ok, nil
}

func (e *encryptedRooms) GetEncryptionEvent(context.Context, id.RoomID) (*event.EncryptionEventContent, error) {
	return &event.EncryptionEventContent{Algorithm: id.AlgorithmMegolmV1}, nil
}

func (e *encryptedRooms) GetHistoryVisibility(context.Context, id.RoomID) (*event.HistoryVisibilityEventContent, error) {
	return &event.HistoryVisibilityEventContent{HistoryVisibility: event.HistoryVisibilityShared}, nil
}

func (e *encryptedRooms) FindSharedRooms(_ context.Context, user id.UserID) ([]id.RoomID, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	var out []id.RoomID
	for room, members := range e.members {
		if slices.Contains(members, user) {
			out = append(out, room)
		}
	}
	return out, nil
}

// cryptoUser is a user whose client encrypts: an OlmMachine over its own memory store.
type cryptoUser struct {
	*user
	mach  *crypto.OlmMachine
	since string
}

func newCryptoUser(t *testing.T, srv *server, name string, rooms *encryptedRooms) *cryptoUser {
	t.Helper()
	u := registerUser(t, srv, name)
	mach := crypto.NewOlmMachine(u.Client, nil, crypto.NewMemoryStore(nil), rooms)
	mustOK(t, mach.Load(testCtx(t)), "load the olm account")
	mustOK(t, mach.ShareKeys(testCtx(t), 0), "upload device and one-time keys")
	return &cryptoUser{user: u, mach: mach}
}

// sync runs one sync from the last and hands it to the OlmMachine, as a client's loop does.
func (c *cryptoUser) sync(t *testing.T) *mautrix.RespSync {
	t.Helper()
	resp, err := c.FullSyncRequest(testCtx(t), mautrix.ReqSync{Since: c.since})
	mustOK(t, err, "sync")
	c.mach.ProcessSyncResponse(testCtx(t), resp, c.since)
	c.since = resp.NextBatch
	return resp
}

// TestEndToEndEncryption: two clients with real Olm and Megolm crypto set up an encrypted
// room through the server (key upload, query and claim, to-device messages, device lists in
// sync) and read each other's messages; cross-signing keys and signatures round-trip.
func TestEndToEndEncryption(t *testing.T) {
	t.Parallel()
	srv := startServer(t, serverOpts{})
	rooms := &encryptedRooms{members: map[id.RoomID][]id.UserID{}}
	alice := newCryptoUser(t, srv, "alice", rooms)
	bob := newCryptoUser(t, srv, "bob", rooms)
	ctx := testCtx(t)

	room := alice.createRoom(t, &mautrix.ReqCreateRoom{Preset: "private_chat", Invite: []id.UserID{bob.UserID},
		InitialState: []*event.Event{{Type: event.StateEncryption, Content: event.Content{
			Parsed: &event.EncryptionEventContent{Algorithm: id.AlgorithmMegolmV1}}}}})
	alice.sync(t)
	bob.sync(t)
	bob.join(t, room.String(), room)
	rooms.mu.Lock()
	rooms.members[room] = []id.UserID{alice.UserID, bob.UserID}
	rooms.mu.Unlock()

	t.Run("DeviceListsNameTheNewMember", func(t *testing.T) {
		resp := alice.sync(t)
		if !slices.Contains(resp.DeviceLists.Changed, bob.UserID) {
			t.Errorf("alice's sync after bob joined: device_lists.changed %v lacks bob", resp.DeviceLists.Changed)
		}
	})
	bobCount := bob.sync(t).DeviceOTKCount.SignedCurve25519
	secret := "meet me at the old mill"
	mustOK(t, alice.mach.ShareGroupSession(ctx, room, []id.UserID{alice.UserID, bob.UserID}), "share the room key")
	encrypted, err := alice.mach.EncryptMegolmEvent(ctx, room, event.EventMessage, &event.MessageEventContent{MsgType: event.MsgText, Body: secret})
	mustOK(t, err, "encrypt")
	sent, err := alice.SendMessageEvent(ctx, room, event.EventEncrypted, encrypted)
	mustOK(t, err, "send the encrypted message")

	t.Run("DecryptedByTheOtherClient", func(t *testing.T) {
		var got *event.Event
		leastKeys := bobCount
		for range 5 {
			resp := bob.sync(t)
			leastKeys = min(leastKeys, resp.DeviceOTKCount.SignedCurve25519)
			if jr := joinedRoom(resp, room); jr != nil {
				if i := slices.IndexFunc(jr.Timeline.Events, func(e *event.Event) bool { return e.ID == sent.EventID }); i >= 0 {
					got = jr.Timeline.Events[i]
					break
				}
			}
		}
		if got == nil {
			t.Fatal("the encrypted message never reached bob's sync")
		}
		if leastKeys != bobCount-1 {
			t.Errorf("bob's sync counted %d one-time keys after alice claimed one of his %d", leastKeys, bobCount)
		}
		got.RoomID = room // sync's per-room timelines leave it out; mautrix's syncer fills it in
		mustOK(t, got.Content.ParseRaw(got.Type), "parse the encrypted event")
		decrypted, err := bob.mach.DecryptMegolmEvent(ctx, got)
		mustOK(t, err, "decrypt")
		if body := decrypted.Content.AsMessage().Body; body != secret {
			t.Errorf("bob decrypted %q, want %q", body, secret)
		}
	})
	t.Run("ToDeviceDeliveredOnce", func(t *testing.T) {
		resp := bob.sync(t)
		if len(resp.ToDevice.Events) != 0 {
			t.Errorf("to-device messages delivered again after the token moved past them: %d", len(resp.ToDevice.Events))
		}
	})
	t.Run("CrossSigning", func(t *testing.T) {
		uia := func(*mautrix.RespUserInteractive) any {
			return map[string]any{"type": mautrix.AuthTypePassword, "password": alice.Password,
				"identifier": map[string]any{"type": mautrix.IdentifierTypeUser, "user": alice.Localpart}}
		}
		_, keys, err := alice.mach.GenerateAndUploadCrossSigningKeys(ctx, uia, "")
		mustOK(t, err, "set up alice's cross-signing")
		_, bobKeys, err := bob.mach.GenerateAndUploadCrossSigningKeys(ctx, nil, "")
		mustOK(t, err, "set up bob's cross-signing without a password: his first keys")
		bob.mach.CrossSigningKeys = bobKeys
		mustOK(t, bob.mach.SignUser(ctx, alice.UserID, keys.MasterKey.PublicKey()), "bob signs alice's master key")

		query := func(u *cryptoUser) *mautrix.RespQueryKeys {
			resp, err := u.QueryKeys(ctx, &mautrix.ReqQueryKeys{DeviceKeys: mautrix.DeviceKeysRequest{alice.UserID: nil}})
			mustOK(t, err, "query alice's keys")
			return resp
		}
		byBob, byAlice := query(bob), query(alice)
		master := byBob.MasterKeys[alice.UserID]
		if master.Keys[id.NewKeyID(id.KeyAlgorithmEd25519, keys.MasterKey.PublicKey().String())] == "" {
			t.Fatalf("bob's query lacks alice's master key: %+v", byBob.MasterKeys)
		}
		if _, ok := master.Signatures[bob.UserID]; !ok {
			t.Errorf("bob's own signature of alice's master key is missing from his query")
		}
		if _, ok := byAlice.MasterKeys[alice.UserID].Signatures[bob.UserID]; ok {
			t.Errorf("alice sees bob's signature of her master key: it is bob's to see")
		}
		if _, ok := byBob.UserSigningKeys[alice.UserID]; ok {
			t.Errorf("bob sees alice's user-signing key")
		}
		if _, ok := byAlice.UserSigningKeys[alice.UserID]; !ok {
			t.Errorf("alice does not see her own user-signing key")
		}
		if _, ok := byBob.SelfSigningKeys[alice.UserID]; !ok {
			t.Errorf("bob does not see alice's self-signing key")
		}
		// Replacing a master key needs the password.
		_, _, err = alice.mach.GenerateAndUploadCrossSigningKeys(ctx, nil, "")
		var httpErr mautrix.HTTPError
		if err == nil || !errors.As(err, &httpErr) || !httpErr.IsStatus(http.StatusUnauthorized) {
			t.Errorf("replacing the master key without the password: %v, want 401", err)
		}
	})
}
