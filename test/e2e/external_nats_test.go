package e2e

import (
	"net/http"
	"testing"
	"time"

	natsserver "github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
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

// TestLogoutReachesOtherNodes: two nodes share one JetStream. A token that one node has just
// accepted (and holds in its token cache) stops working there soon after it is logged out
// through the other node, and a long poll holding it on that node ends with 401.
func TestLogoutReachesOtherNodes(t *testing.T) {
	t.Parallel()
	natsURL := startExternalNATS(t)
	nodeA := startServer(t, serverOpts{NATSURL: natsURL})
	nodeB := startServer(t, serverOpts{NATSURL: natsURL})
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
