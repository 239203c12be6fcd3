package e2e

import (
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
	srv := startServer(t, serverOpts{NATSURL: ns.ClientURL()})
	testThreeUsersChat(t, srv)

	// The rooms live in the external NATS, not in anything of firebreak's own.
	nc, err := nats.Connect(ns.ClientURL())
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
