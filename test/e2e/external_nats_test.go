package e2e

import (
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	natsserver "github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"maunium.net/go/mautrix"
)

// TestExternalNATS runs firebreak against an operator's own NATS (nats_url) instead of its
// embedded server: a stand-alone NATS with JetStream on a free port, reached over TCP only.
func TestExternalNATS(t *testing.T) {
	t.Parallel()
	natsURL := startExternalNATS(t)
	srv := startServer(t, serverOpts{NATSURL: natsURL})
	testThreeUsersChat(t, srv)

	// The rooms live in the external NATS, not in anything of firebreak's own.
	nc, err := nats.Connect(natsURL)
	if err != nil {
		t.Fatalf("connect to the external NATS: %v", err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	info, err := js.AccountInfo(testCtx(t))
	if err != nil {
		t.Fatalf("account info: %v", err)
	}
	if info.Streams < 16 || info.Store == 0 {
		t.Errorf("external NATS holds %d streams and %d bytes, want firebreak's streams with data", info.Streams, info.Store)
	}
}

// startExternalNATS starts a stand-alone NATS with JetStream on a free port and returns its URL.
func startExternalNATS(t *testing.T) string {
	t.Helper()
	ns, err := natsserver.NewServer(&natsserver.Options{Host: "127.0.0.1", Port: -1, JetStream: true,
		StoreDir: t.TempDir(), NoSigs: true, NoLog: true})
	if err != nil {
		t.Fatalf("external NATS: %v", err)
	}
	ns.Start()
	t.Cleanup(func() { ns.Shutdown(); ns.WaitForShutdown() })
	if !ns.ReadyForConnections(10 * time.Second) {
		t.Fatal("external NATS did not start")
	}
	return ns.ClientURL()
}

// twoNodesSharingNATS starts two nodes on one external NATS: one JetStream, two read models.
func twoNodesSharingNATS(t *testing.T) (a, b *server) {
	natsURL := startExternalNATS(t)
	return startServer(t, serverOpts{NATSURL: natsURL}), startServer(t, serverOpts{NATSURL: natsURL})
}

// TestLogoutReachesOtherNodes: two nodes share one JetStream. A token that one node has just
// accepted (and holds in its token cache) stops working there soon after it is logged out
// through the other node, and a long poll holding it on that node ends with 401.
func TestLogoutReachesOtherNodes(t *testing.T) {
	t.Parallel()
	nodeA, nodeB := twoNodesSharingNATS(t)
	alice := registerUser(t, nodeA, "alice")
	onB := &user{Client: newClient(t, nodeB, alice.UserID, alice.AccessToken)}
	for range 2 { // the first answer puts the token in node B's cache, the second comes from it
		_, err := onB.Whoami(testCtx(t))
		mustOK(t, err, "whoami on the other node")
	}
	expectLongPollEnds(t, onB, func() { logout(t, alice) })
	// Well inside the token cache's lifetime: the revocation, not the cache's expiry, ends it.
	deadline := time.Now().Add(3 * time.Second)
	for {
		_, err := onB.Whoami(testCtx(t))
		if err != nil {
			expectMatrixError(t, err, http.StatusUnauthorized, "M_UNKNOWN_TOKEN")
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("node B still accepts a token logged out through node A 3 s ago")
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestEncryptionAcrossNodes: two nodes share one JetStream. Keys uploaded through one are
// queried and claimed through the other; a to-device message sent through one reaches a
// long poll waiting on the other; the claim shows in the count a sync on the first reports;
// and the key upload reaches a room-mate's sync on the other as a device list change.
func TestEncryptionAcrossNodes(t *testing.T) {
	t.Parallel()
	nodeA, nodeB := twoNodesSharingNATS(t)
	alice := registerUser(t, nodeA, "alice")
	bob := registerUser(t, nodeA, "bob")
	sharedRoom(t, alice, bob)
	bobOnB := &user{Client: newClient(t, nodeB, bob.UserID, bob.AccessToken)}
	bobOnB.DeviceID = bob.DeviceID
	since := bobOnB.syncToken(t)

	dev := alice.DeviceID.String()
	upload := `{"device_keys":{"user_id":"` + alice.UserID.String() + `","device_id":"` + dev + `","algorithms":["m.olm.v1.curve25519-aes-sha2"],"keys":{"ed25519:` + dev + `":"k","curve25519:` + dev + `":"c"}},` +
		`"one_time_keys":{"signed_curve25519:AAAAAQ":{"key":"o1"},"signed_curve25519:AAAAAg":{"key":"o2"}}}`
	rawRequest(t, "POST", clientURL(nodeA, "v3/keys/upload"), alice.AccessToken, []byte(upload)).expectOK(t)

	resp, err := bobOnB.FullSyncRequest(testCtx(t), mautrix.ReqSync{Since: since, Timeout: 10000})
	mustOK(t, err, "bob's sync on node B")
	if !slices.Contains(resp.DeviceLists.Changed, alice.UserID) {
		t.Errorf("bob's sync on B after alice uploaded keys on A: device_lists.changed %v", resp.DeviceLists.Changed)
	}
	query := rawRequest(t, "POST", clientURL(nodeB, "v3/keys/query"), bob.AccessToken, []byte(`{"device_keys":{"`+alice.UserID.String()+`":[]}}`))
	query.expectOK(t)
	if !strings.Contains(string(query.Raw), `"ed25519:`+dev+`":"k"`) {
		t.Errorf("node B's query of alice's keys: %s", query.Raw)
	}
	claim := rawRequest(t, "POST", clientURL(nodeB, "v3/keys/claim"), bob.AccessToken,
		[]byte(`{"one_time_keys":{"`+alice.UserID.String()+`":{"`+dev+`":"signed_curve25519"}}}`))
	claim.expectOK(t)
	if !strings.Contains(string(claim.Raw), "signed_curve25519:AAAAAQ") {
		t.Errorf("node B's claim: %s, want alice's oldest key", claim.Raw)
	}
	waitFor(t, "alice's sync on A to count the claim", func() (bool, string) {
		r, err := alice.FullSyncRequest(testCtx(t), mautrix.ReqSync{})
		mustOK(t, err, "alice's sync")
		return r.DeviceOTKCount.SignedCurve25519 == 1, fmt.Sprintf("count %d", r.DeviceOTKCount.SignedCurve25519)
	})

	// A long poll on B ends when a message for its device is sent through A.
	since = resp.NextBatch
	done := make(chan *mautrix.RespSync, 1)
	go func() {
		// Far longer than the test waits: only the message can end it in time.
		r, err := bobOnB.FullSyncRequest(testCtx(t), mautrix.ReqSync{Since: since, Timeout: 120000})
		if err != nil {
			t.Error(err)
		}
		done <- r
	}()
	// The poll must be waiting when the message is sent, or the test would not test the wake:
	// one that has not answered after a second is waiting (a sync with nothing new answers at
	// once otherwise).
	select {
	case r := <-done:
		t.Fatalf("bob's long poll answered before anything was sent: %+v", r)
	case <-time.After(time.Second):
	}
	msg := `{"messages":{"` + bob.UserID.String() + `":{"` + bob.DeviceID.String() + `":{"hello":"bob"}}}}`
	rawRequest(t, "PUT", clientURL(nodeA, "v3/sendToDevice/m.test/t1"), alice.AccessToken, []byte(msg)).expectOK(t)
	select {
	case r := <-done:
		if r == nil || len(r.ToDevice.Events) != 1 || r.ToDevice.Events[0].Sender != alice.UserID {
			t.Fatalf("bob's long poll on B: %+v", r)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the message sent through A did not end bob's long poll on B")
	}
}
