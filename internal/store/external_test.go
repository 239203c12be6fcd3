package store

import (
	"errors"
	"log/slog"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// startExternalNATS runs a stand-alone NATS server with JetStream on a free loopback port, as
// an operator's own NATS would be: Firebreak reaches it over TCP only.
func startExternalNATS(t *testing.T) *server.Server {
	t.Helper()
	ns, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: -1, JetStream: true,
		StoreDir: t.TempDir(), NoSigs: true, NoLog: true})
	if err != nil {
		t.Fatalf("external NATS: %v", err)
	}
	ns.Start()
	if !ns.ReadyForConnections(10 * time.Second) {
		t.Fatal("external NATS did not start")
	}
	t.Cleanup(func() { ns.Shutdown(); ns.WaitForShutdown() })
	return ns
}

// TestExternalNATS: with nats_url the store embeds no server, creates its streams and buckets
// on the operator's NATS, and appends, reads and keeps keys there; a second store on the same
// NATS (another node) sees the same data.
func TestExternalNATS(t *testing.T) {
	ns := startExternalNATS(t)
	ctx := t.Context()
	open := func() *Store {
		st, err := Open(ctx, Options{DataDir: t.TempDir(), NodeName: "ext", NATSURL: ns.ClientURL(),
			Replicas: 1, RoomShards: 4, Logger: slog.New(slog.DiscardHandler)})
		if err != nil {
			t.Fatalf("open on external NATS: %v", err)
		}
		t.Cleanup(st.Close)
		return st
	}
	a, b := open(), open()
	if a.ns != nil {
		t.Fatal("a store with a NATS URL started an embedded server")
	}
	room := "!external:test"
	seq, err := a.AppendRoomEvent(ctx, room, 0, NewRoomEvent{JSON: []byte(`{"n":1}`), EventID: "$one"})
	if err != nil {
		t.Fatalf("append: %v", err)
	}
	got, err := b.RoomEventsAt(ctx, b.RoomShard(room), seq)
	if err != nil || len(got) != 1 || string(got[0].JSON) != `{"n":1}` || got[0].EventID != "$one" {
		t.Fatalf("the other store reads %+v, %v", got, err)
	}
	if _, err := b.AppendRoomEvent(ctx, room, 0, NewRoomEvent{JSON: []byte(`{}`)}); !errors.Is(err, ErrConflict) {
		t.Errorf("a stale append through the other store: %v, want ErrConflict", err)
	}
	if _, err := a.Put(ctx, BucketFilters, "k", []byte("v")); err != nil {
		t.Fatalf("put: %v", err)
	}
	if v, _, err := b.Get(ctx, BucketFilters, "k"); err != nil || string(v) != "v" {
		t.Errorf("the other store gets %q, %v", v, err)
	}
	if h := a.Health(); !h.Writable {
		t.Errorf("health on external NATS = %+v, want writable", h)
	}
}
