package store

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"
)

func openAt(t *testing.T, dir string, shards int) *Store {
	t.Helper()
	return openWith(t, Options{DataDir: dir, RoomShards: shards})
}

// openWith opens a one-replica embedded store with the options' data dir, shards and group
// commit; the caller closes it.
func openWith(t testing.TB, opts Options) *Store {
	t.Helper()
	opts.NodeName, opts.Replicas, opts.Logger = "test", 1, slog.New(slog.DiscardHandler)
	st, err := Open(context.Background(), opts)
	if err != nil {
		t.Fatalf("open store: %v", err)
	}
	return st
}

func openStore(t *testing.T) *Store {
	t.Helper()
	st := openAt(t, t.TempDir(), 4)
	t.Cleanup(st.Close)
	return st
}

// roomsInShard returns n distinct room ids that live in the given shard.
func roomsInShard(st *Store, shard, n int) []string {
	var out []string
	for i := 0; len(out) < n; i++ {
		id := fmt.Sprintf("!r%d:test", i)
		if st.RoomShard(id) == shard {
			out = append(out, id)
		}
	}
	return out
}

func TestKVCreateGetUpdate(t *testing.T) {
	st := openStore(t)
	ctx := t.Context()
	key := Key("@alice:test", "dev")

	if _, _, err := st.Get(ctx, BucketDevices, key); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Get of a missing key: %v, want ErrNotFound", err)
	}
	rev1, err := st.Create(ctx, BucketDevices, key, []byte("one"))
	if err != nil || rev1 == 0 {
		t.Fatalf("Create = %d, %v", rev1, err)
	}
	if _, err := st.Create(ctx, BucketDevices, key, []byte("two")); !errors.Is(err, ErrExists) {
		t.Fatalf("second Create: %v, want ErrExists", err)
	}
	if v, rev, err := st.Get(ctx, BucketDevices, key); err != nil || string(v) != "one" || rev != rev1 {
		t.Fatalf("Get after a refused Create = %q, %d, %v; want one, %d", v, rev, err, rev1)
	}

	rev2, err := st.Update(ctx, BucketDevices, key, []byte("three"), rev1)
	if err != nil || rev2 <= rev1 {
		t.Fatalf("Update at the current revision = %d, %v", rev2, err)
	}
	for _, stale := range []uint64{rev1, 0, rev2 + 1} {
		if _, err := st.Update(ctx, BucketDevices, key, []byte("four"), stale); !errors.Is(err, ErrConflict) {
			t.Errorf("Update at revision %d (current %d): %v, want ErrConflict", stale, rev2, err)
		}
	}
	if v, rev, _ := st.Get(ctx, BucketDevices, key); string(v) != "three" || rev != rev2 {
		t.Fatalf("Get after refused Updates = %q, %d; want three, %d", v, rev, rev2)
	}

	rev3, err := st.Put(ctx, BucketDevices, key, []byte("five"))
	if err != nil || rev3 <= rev2 {
		t.Fatalf("Put = %d, %v", rev3, err)
	}
	if v, _, _ := st.Get(ctx, BucketDevices, key); string(v) != "five" {
		t.Fatalf("Get after Put = %q", v)
	}

	if err := st.Delete(ctx, BucketDevices, key); err != nil {
		t.Fatalf("Delete: %v", err)
	}
	if _, _, err := st.Get(ctx, BucketDevices, key); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Get after Delete: %v, want ErrNotFound", err)
	}
	if err := st.Delete(ctx, BucketDevices, key); err != nil {
		t.Fatalf("Delete of a deleted key: %v", err)
	}
	if err := st.Delete(ctx, BucketDevices, Key("never")); err != nil {
		t.Fatalf("Delete of a key that never existed: %v", err)
	}
	// A deleted key can be created again.
	if _, err := st.Create(ctx, BucketDevices, key, []byte("six")); err != nil {
		t.Fatalf("Create after Delete: %v", err)
	}
	if v, _, _ := st.Get(ctx, BucketDevices, key); string(v) != "six" {
		t.Fatalf("Get after re-Create = %q", v)
	}

	// Buckets are separate.
	if _, _, err := st.Get(ctx, BucketAccounts, key); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Get from another bucket: %v, want ErrNotFound", err)
	}
}

func TestKeys(t *testing.T) {
	st := openStore(t)
	ctx := t.Context()
	keys := map[string][]string{
		"a.r1.t1": {"@a:x", "!r1:x", "m.t1"},
		"a.r1.t2": {"@a:x", "!r1:x", "m.t2"},
		"a.r2.t":  {"@a:x", "!r2:x", "m.t"},
		"a..t":    {"@a:x", "", "m.t"},
		"b.r1.t":  {"@b:x", "!r1:x", "m.t"},
		"ab.r1":   {"@a:xb", "!r1:x"}, // shares a string prefix with @a:x, not a part
		"a":       {"@a:x"},           // the prefix itself is not under the prefix
		"gone":    {"@a:x", "!gone:x", "m.t"},
	}
	for _, parts := range keys {
		if _, err := st.Put(ctx, BucketAccountData, Key(parts...), []byte("v")); err != nil {
			t.Fatal(err)
		}
	}
	if err := st.Delete(ctx, BucketAccountData, Key(keys["gone"]...)); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		prefix []string
		want   []string
	}{
		{nil, []string{"a.r1.t1", "a.r1.t2", "a.r2.t", "a..t", "b.r1.t", "ab.r1", "a"}},
		{[]string{"@a:x"}, []string{"a.r1.t1", "a.r1.t2", "a.r2.t", "a..t"}},
		{[]string{"@a:x", "!r1:x"}, []string{"a.r1.t1", "a.r1.t2"}},
		{[]string{"@a:x", ""}, []string{"a..t"}},
		{[]string{"@a:x", "!r1:x", "m.t1"}, nil},
		{[]string{"@b:x"}, []string{"b.r1.t"}},
		{[]string{"@nobody:x"}, nil},
	}
	for _, tc := range cases {
		got, err := st.Keys(ctx, BucketAccountData, tc.prefix...)
		if err != nil {
			t.Errorf("Keys(%q): %v", tc.prefix, err)
			continue
		}
		var want []string
		for _, name := range tc.want {
			want = append(want, Key(keys[name]...))
		}
		sort.Strings(got)
		sort.Strings(want)
		if !slices.Equal(got, want) {
			t.Errorf("Keys(%q) = %q, want %q", tc.prefix, got, want)
		}
	}
	// An empty bucket has no keys and that is not an error.
	if got, err := st.Keys(ctx, BucketAliases); err != nil || len(got) != 0 {
		t.Errorf("Keys of an empty bucket = %q, %v", got, err)
	}
}

// A key or room id too long for NATS's protocol line is refused before it is sent, and the
// store's one connection stays open for everything else.
func TestKeyTooLong(t *testing.T) {
	st := openStore(t)
	ctx := t.Context()
	long := Key("@"+strings.Repeat("a", 3000)+":x", "DEVICE")
	ops := map[string]func() error{
		"Get":    func() error { _, _, err := st.Get(ctx, BucketAccountData, long); return err },
		"Put":    func() error { _, err := st.Put(ctx, BucketAccountData, long, []byte("v")); return err },
		"Create": func() error { _, err := st.Create(ctx, BucketAccountData, long, []byte("v")); return err },
		"Update": func() error { _, err := st.Update(ctx, BucketAccountData, long, []byte("v"), 1); return err },
		"Delete": func() error { return st.Delete(ctx, BucketAccountData, long) },
		"Keys":   func() error { _, err := st.Keys(ctx, BucketAccountData, long); return err },
		"Append": func() error {
			_, err := st.AppendRoomEvent(ctx, "!"+strings.Repeat("r", 3000)+":x", 0, NewRoomEvent{JSON: []byte("{}")})
			return err
		},
	}
	for name, op := range ops {
		if err := op(); !errors.Is(err, ErrKeyTooLong) {
			t.Errorf("%s with a %d-byte key = %v, want ErrKeyTooLong", name, len(long), err)
		}
	}
	if _, err := st.Put(ctx, BucketAccountData, Key("@a:x"), []byte("v")); err != nil {
		t.Fatalf("store unusable after refusing long keys: %v", err)
	}
}

func TestAppendRoomEventCompareAndAppend(t *testing.T) {
	st := openStore(t)
	ctx := t.Context()
	rs := roomsInShard(st, 1, 2)
	room, neighbour := rs[0], rs[1]

	if head, err := st.RoomHeadSeq(ctx, room); err != nil || head != 0 {
		t.Fatalf("RoomHeadSeq of an empty room = %d, %v", head, err)
	}
	s1, err := st.AppendRoomEvent(ctx, room, 0, NewRoomEvent{JSON: []byte(`{"n":1}`)})
	if err != nil || s1 == 0 {
		t.Fatalf("append at 0 = %d, %v", s1, err)
	}
	if _, err := st.AppendRoomEvent(ctx, room, 0, NewRoomEvent{JSON: []byte(`{"n":"again"}`)}); !errors.Is(err, ErrConflict) {
		t.Fatalf("second append at 0: %v, want ErrConflict", err)
	}
	s2, err := st.AppendRoomEvent(ctx, room, s1, NewRoomEvent{JSON: []byte(`{"n":2}`)})
	if err != nil || s2 <= s1 {
		t.Fatalf("append at %d = %d, %v", s1, s2, err)
	}
	for _, stale := range []uint64{0, s1, s2 + 1} {
		_, err := st.AppendRoomEvent(ctx, room, stale, NewRoomEvent{JSON: []byte(`{}`)})
		var ce *ConflictError
		if !errors.Is(err, ErrConflict) || !errors.As(err, &ce) || ce.Head != s2 {
			t.Errorf("append at %d with head %d: %v, want a conflict naming head %d", stale, s2, err, s2)
		}
	}
	// Heads are per room: a room in the same shard starts at 0 however long the shard is.
	n1, err := st.AppendRoomEvent(ctx, neighbour, 0, NewRoomEvent{JSON: []byte(`{"other":1}`)})
	if err != nil || n1 <= s2 {
		t.Fatalf("append to a neighbour at 0 = %d, %v", n1, err)
	}
	s3, err := st.AppendRoomEvent(ctx, room, s2, NewRoomEvent{JSON: []byte(`{"n":3}`)})
	if err != nil || s3 <= n1 {
		t.Fatalf("append at %d after the neighbour's append = %d, %v", s2, s3, err)
	}
	if head, err := st.RoomHeadSeq(ctx, room); err != nil || head != s3 {
		t.Errorf("RoomHeadSeq(room) = %d, %v; want %d", head, err, s3)
	}
	if head, err := st.RoomHeadSeq(ctx, neighbour); err != nil || head != n1 {
		t.Errorf("RoomHeadSeq(neighbour) = %d, %v; want %d", head, err, n1)
	}
	if head, err := st.ShardHead(ctx, 1); err != nil || head != s3 {
		t.Errorf("ShardHead(1) = %d, %v; want %d", head, err, s3)
	}
	for _, shard := range []int{0, 2, 3} {
		if head, err := st.ShardHead(ctx, shard); err != nil || head != 0 {
			t.Errorf("ShardHead(%d) = %d, %v; want 0", shard, head, err)
		}
	}
}

func TestAppendRoomEventDedup(t *testing.T) {
	st := openStore(t)
	ctx := t.Context()
	room := "!dedup:test"
	s1, err := st.AppendRoomEvent(ctx, room, 0, NewRoomEvent{JSON: []byte(`{"n":1}`), Device: "D", TxnID: "t1", DedupID: "send-1"})
	if err != nil {
		t.Fatal(err)
	}
	// The retry carries the same dedup id and, as a fresh writer would, the current head.
	again, err := st.AppendRoomEvent(ctx, room, s1, NewRoomEvent{JSON: []byte(`{"n":"retry"}`), Device: "D", TxnID: "t1", DedupID: "send-1"})
	if err != nil {
		t.Fatalf("retried append: %v", err)
	}
	if again != s1 {
		t.Fatalf("retried append stored at %d, want the first append's %d", again, s1)
	}
	if head, _ := st.RoomHeadSeq(ctx, room); head != s1 {
		t.Fatalf("RoomHeadSeq after a deduplicated retry = %d, want %d", head, s1)
	}
	if head, _ := st.ShardHead(ctx, st.RoomShard(room)); head != s1 {
		t.Fatalf("ShardHead after a deduplicated retry = %d, want %d", head, s1)
	}
	// Another dedup id is another event.
	s2, err := st.AppendRoomEvent(ctx, room, s1, NewRoomEvent{JSON: []byte(`{"n":2}`), DedupID: "send-2"})
	if err != nil || s2 == s1 {
		t.Fatalf("append with a new dedup id = %d, %v", s2, err)
	}
	evs := follow(t, st, st.RoomShard(room), 0, 2)
	if string(evs[0].JSON) != `{"n":1}` || string(evs[1].JSON) != `{"n":2}` {
		t.Fatalf("stored events %s, %s; want the first send's and the second", evs[0].JSON, evs[1].JSON)
	}
}

// follow reads n events of the shard after afterSeq with FollowShard.
func follow(t *testing.T, st *Store, shard int, afterSeq uint64, n int) []RoomEvent {
	t.Helper()
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	ch := make(chan []RoomEvent, 64)
	done := make(chan error, 1)
	go func() { done <- st.FollowShard(ctx, shard, afterSeq, func(evs []RoomEvent) { ch <- evs }) }()
	var out []RoomEvent
	for len(out) < n {
		select {
		case evs := <-ch:
			out = append(out, evs...)
		case err := <-done:
			t.Fatalf("FollowShard ended after %d of %d events: %v", len(out), n, err)
		}
	}
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Errorf("FollowShard after cancel returned %v, want context.Canceled", err)
	}
	return out
}

func TestFollowShard(t *testing.T) {
	st := openStore(t)
	ctx := t.Context()
	rs := roomsInShard(st, 2, 2)
	elsewhere := roomsInShard(st, 3, 1)[0]

	type sent struct {
		room, json, device, txn string
		seq                     uint64
	}
	var want []sent
	heads := map[string]uint64{}
	appendTo := func(room, json, device, txn string) uint64 {
		t.Helper()
		seq, err := st.AppendRoomEvent(ctx, room, heads[room], NewRoomEvent{JSON: []byte(json), EventID: eventIDFor(txn), Device: device, TxnID: txn})
		if err != nil {
			t.Fatal(err)
		}
		heads[room] = seq
		if st.RoomShard(room) == 2 {
			want = append(want, sent{room, json, device, txn, seq})
		}
		return seq
	}
	appendTo(rs[0], `{"i":0}`, "", "")
	appendTo(elsewhere, `{"other shard":true}`, "X", "x")
	appendTo(rs[1], `{"i":1}`, "DEV1", "txn-1")
	appendTo(rs[0], `{"i":2}`, "DEV2", "txn/ü 2")
	appendTo(rs[0], `{"i":3}`, "", "")

	check := func(got []RoomEvent, want []sent) {
		t.Helper()
		if len(got) != len(want) {
			t.Fatalf("%d events, want %d: %+v", len(got), len(want), got)
		}
		for i, e := range got {
			w := want[i]
			if e.Shard != 2 || e.Seq != w.seq || string(e.JSON) != w.json || e.Device != w.device || e.TxnID != w.txn ||
				e.EventID != eventIDFor(w.txn) {
				t.Errorf("event %d = {shard %d seq %d %s %q %q %q}, want {shard 2 seq %d %s %q %q %q}",
					i, e.Shard, e.Seq, e.JSON, e.Device, e.TxnID, e.EventID, w.seq, w.json, w.device, w.txn, eventIDFor(w.txn))
			}
		}
	}

	// From the start, then live: the follower keeps delivering what is appended after it began.
	fctx, cancel := context.WithCancel(ctx)
	ch := make(chan RoomEvent, 64)
	done := make(chan error, 1)
	go func() { done <- st.FollowShard(fctx, 2, 0, func(evs []RoomEvent) { ch <- evs[0] }) }()
	var got []RoomEvent
	for len(got) < len(want) {
		got = append(got, <-ch)
	}
	check(got, want)
	appendTo(elsewhere, `{"other shard":2}`, "", "")
	appendTo(rs[1], `{"i":4}`, "DEV3", "txn-4")
	got = append(got, <-ch)
	check(got, want)
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Errorf("FollowShard after cancel returned %v, want context.Canceled", err)
	}

	// From a position: only what comes after it.
	check(follow(t, st, 2, want[1].seq, len(want)-2), want[2:])
	// One event by its position, as a gap fill reads it.
	at, err := st.RoomEventsAt(ctx, 2, want[2].seq)
	if err != nil {
		t.Fatalf("RoomEventsAt: %v", err)
	}
	check(at, want[2:3])
	// Nothing of another shard leaks in: shard 3 holds exactly its two events.
	other := follow(t, st, 3, 0, 2)
	if string(other[0].JSON) != `{"other shard":true}` || other[0].Device != "X" || other[0].TxnID != "x" ||
		string(other[1].JSON) != `{"other shard":2}` || other[1].Device != "" {
		t.Errorf("shard 3 events = %+v", other)
	}
}

// eventIDFor gives the test events sent with a transaction id an event id too, so some
// records carry one and some do not.
func eventIDFor(txn string) string {
	if txn == "" {
		return ""
	}
	return "$" + txn
}

func TestWatch(t *testing.T) {
	st := openStore(t)
	ctx := t.Context()
	if _, err := st.Put(ctx, BucketReceipts, "k1", []byte("v0")); err != nil { // replaced below: not delivered
		t.Fatal(err)
	}
	r2, _ := st.Put(ctx, BucketReceipts, "k2", []byte("v2"))
	r1, _ := st.Put(ctx, BucketReceipts, "k1", []byte("v1"))

	type item struct {
		ready bool
		c     Change
	}
	wctx, cancel := context.WithCancel(ctx)
	ch := make(chan item, 64)
	done := make(chan error, 1)
	go func() {
		done <- st.Watch(wctx, BucketReceipts, 0, func() { ch <- item{ready: true} }, func(c Change) { ch <- item{c: c} })
	}()
	next := func() item {
		t.Helper()
		select {
		case it := <-ch:
			return it
		case err := <-done:
			t.Fatalf("Watch ended early: %v", err)
		}
		return item{}
	}
	for _, w := range []Change{{Key: "k2", Value: []byte("v2"), Rev: r2}, {Key: "k1", Value: []byte("v1"), Rev: r1}} {
		it := next()
		if it.ready || it.c.Key != w.Key || string(it.c.Value) != string(w.Value) || it.c.Rev != w.Rev || it.c.Deleted {
			t.Fatalf("existing value: got %+v, want %+v", it, w)
		}
	}
	if it := next(); !it.ready {
		t.Fatalf("after the existing values: got %+v, want ready", it)
	}
	r3, _ := st.Put(ctx, BucketReceipts, "k3", []byte("v3"))
	r4, _ := st.Put(ctx, BucketReceipts, "k1", []byte("v1b"))
	if err := st.Delete(ctx, BucketReceipts, "k2"); err != nil {
		t.Fatal(err)
	}
	if it := next(); it.ready || it.c.Key != "k3" || string(it.c.Value) != "v3" || it.c.Rev != r3 || it.c.Deleted {
		t.Fatalf("new key: got %+v", it)
	}
	if it := next(); it.ready || it.c.Key != "k1" || string(it.c.Value) != "v1b" || it.c.Rev != r4 || it.c.Deleted {
		t.Fatalf("changed key: got %+v", it)
	}
	if it := next(); it.ready || it.c.Key != "k2" || !it.c.Deleted || it.c.Rev <= r4 {
		t.Fatalf("deleted key: got %+v", it)
	}
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Errorf("Watch after cancel returned %v, want context.Canceled", err)
	}

	// Started again after r3, as a restart goes on: only what came after it, then ready.
	wctx, cancel = context.WithCancel(ctx)
	defer cancel()
	go func() {
		done <- st.Watch(wctx, BucketReceipts, r3, func() { ch <- item{ready: true} }, func(c Change) { ch <- item{c: c} })
	}()
	if it := next(); it.ready || it.c.Key != "k1" || string(it.c.Value) != "v1b" || it.c.Rev != r4 {
		t.Fatalf("resumed watch, first: got %+v, want k1 v1b at %d", it, r4)
	}
	if it := next(); it.ready || it.c.Key != "k2" || !it.c.Deleted {
		t.Fatalf("resumed watch, second: got %+v, want k2 deleted", it)
	}
	if it := next(); !it.ready {
		t.Fatalf("resumed watch after the changes: got %+v, want ready", it)
	}
}

func TestWatchEmptyBucket(t *testing.T) {
	st := openStore(t)
	ctx, cancel := context.WithCancel(t.Context())
	ch := make(chan string, 8)
	done := make(chan error, 1)
	go func() {
		done <- st.Watch(ctx, BucketAliases, 0, func() { ch <- "ready" }, func(c Change) { ch <- "change " + c.Key })
	}()
	select {
	case s := <-ch:
		if s != "ready" {
			t.Fatalf("first call on an empty bucket: %s, want ready", s)
		}
	case err := <-done:
		t.Fatalf("Watch ended: %v", err)
	}
	if _, err := st.Put(t.Context(), BucketAliases, "a", []byte("x")); err != nil {
		t.Fatal(err)
	}
	if s := <-ch; s != "change a" {
		t.Fatalf("after a Put: %s", s)
	}
	cancel()
	<-done
}

func TestEphemeral(t *testing.T) {
	st := openStore(t)
	ch := make(chan string, 4)
	stop, err := st.SubscribeEphemeral("typing", func(b []byte) { ch <- string(b) })
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	other, err := st.SubscribeEphemeral("other.topic", func(b []byte) { ch <- "other " + string(b) })
	if err != nil {
		t.Fatal(err)
	}
	defer other()
	if err := st.PublishEphemeral("typing", []byte("one")); err != nil {
		t.Fatal(err)
	}
	if err := st.PublishEphemeral("other.topic", []byte("two")); err != nil {
		t.Fatal(err)
	}
	got := []string{<-ch, <-ch}
	sort.Strings(got)
	if !slices.Equal(got, []string{"one", "other two"}) {
		t.Fatalf("received %q", got)
	}
}

func TestReopenKeepsData(t *testing.T) {
	dir := t.TempDir()
	ctx := t.Context()
	room := "!persist:test"

	st := openAt(t, dir, 4)
	rev, err := st.Create(ctx, BucketAccounts, Key("@alice:test"), []byte("account"))
	if err != nil {
		st.Close()
		t.Fatal(err)
	}
	s1, err1 := st.AppendRoomEvent(ctx, room, 0, NewRoomEvent{JSON: []byte(`{"n":1}`), Device: "D", TxnID: "T"})
	s2, err2 := st.AppendRoomEvent(ctx, room, s1, NewRoomEvent{JSON: []byte(`{"n":2}`)})
	st.Close()
	if err1 != nil || err2 != nil {
		t.Fatal(err1, err2)
	}

	// Reopened with another shard count: the deployment's count wins, so rooms stay put.
	st = openAt(t, dir, 8)
	t.Cleanup(st.Close)
	if st.Shards() != 4 {
		t.Fatalf("Shards() after reopening with 8 = %d, want the deployment's 4", st.Shards())
	}
	if v, r, err := st.Get(ctx, BucketAccounts, Key("@alice:test")); err != nil || string(v) != "account" || r != rev {
		t.Fatalf("Get after reopen = %q, %d, %v", v, r, err)
	}
	if _, err := st.Create(ctx, BucketAccounts, Key("@alice:test"), []byte("x")); !errors.Is(err, ErrExists) {
		t.Fatalf("Create of a key stored before the restart: %v, want ErrExists", err)
	}
	if head, err := st.RoomHeadSeq(ctx, room); err != nil || head != s2 {
		t.Fatalf("RoomHeadSeq after reopen = %d, %v; want %d", head, err, s2)
	}
	if _, err := st.AppendRoomEvent(ctx, room, s1, NewRoomEvent{JSON: []byte(`{}`)}); !errors.Is(err, ErrConflict) {
		t.Fatalf("append at a stale head after reopen: %v, want ErrConflict", err)
	}
	evs := follow(t, st, st.RoomShard(room), 0, 2)
	if evs[0].Seq != s1 || string(evs[0].JSON) != `{"n":1}` || evs[0].Device != "D" || evs[0].TxnID != "T" ||
		evs[1].Seq != s2 || string(evs[1].JSON) != `{"n":2}` {
		t.Fatalf("events after reopen = %+v", evs)
	}
	if _, err := st.AppendRoomEvent(ctx, room, s2, NewRoomEvent{JSON: []byte(`{"n":3}`)}); err != nil {
		t.Fatalf("append at the head after reopen: %v", err)
	}
}

func TestAppendRoomEventsBatch(t *testing.T) {
	st := openStore(t)
	ctx := t.Context()
	rs := roomsInShard(st, 0, 2)
	room, neighbour := rs[0], rs[1]
	batch := func(tag string, n int) []NewRoomEvent {
		var evs []NewRoomEvent
		for i := 0; i < n; i++ {
			evs = append(evs, NewRoomEvent{JSON: []byte(fmt.Sprintf(`{"%s":%d}`, tag, i))})
		}
		return evs
	}

	if _, err := st.AppendRoomEvents(ctx, room, 0, nil); err == nil {
		t.Errorf("an empty batch was accepted")
	}
	last, err := st.AppendRoomEvents(ctx, room, 0, batch("a", 3))
	if err != nil {
		t.Fatalf("batch at 0: %v", err)
	}
	if head, _ := st.RoomHeadSeq(ctx, room); head != last {
		t.Fatalf("RoomHeadSeq after a batch = %d, want its last sequence %d", head, last)
	}
	evs := follow(t, st, 0, 0, 3)
	for i, e := range evs {
		if want := fmt.Sprintf(`{"a":%d}`, i); string(e.JSON) != want || e.Seq != last-2+uint64(i) {
			t.Errorf("batch event %d = seq %d %s, want seq %d %s", i, e.Seq, e.JSON, last-2+uint64(i), want)
		}
	}

	// A batch at a stale head stores none of its events.
	for _, stale := range []uint64{0, last - 1, last + 1} {
		if _, err := st.AppendRoomEvents(ctx, room, stale, batch("stale", 4)); !errors.Is(err, ErrConflict) {
			t.Errorf("batch at %d with head %d: %v, want ErrConflict", stale, last, err)
		}
	}
	if head, _ := st.ShardHead(ctx, 0); head != last {
		t.Fatalf("refused batches moved the shard head from %d to %d", last, head)
	}

	// Batches and single appends continue from each other; other rooms are not in the way.
	n1, err := st.AppendRoomEvents(ctx, neighbour, 0, batch("n", 1))
	if err != nil || n1 != last+1 {
		t.Fatalf("a one-event batch in a neighbouring room = %d, %v; want %d", n1, err, last+1)
	}
	s4, err := st.AppendRoomEvent(ctx, room, last, NewRoomEvent{JSON: []byte(`{"single":1}`)})
	if err != nil {
		t.Fatalf("single append after a batch: %v", err)
	}
	last2, err := st.AppendRoomEvents(ctx, room, s4, batch("b", 2))
	if err != nil || last2 != s4+2 {
		t.Fatalf("batch after a single append = %d, %v; want %d", last2, err, s4+2)
	}
	all := follow(t, st, 0, 0, int(last2))
	var got []string
	for _, e := range all {
		got = append(got, string(e.JSON))
	}
	want := []string{`{"a":0}`, `{"a":1}`, `{"a":2}`, `{"n":0}`, `{"single":1}`, `{"b":0}`, `{"b":1}`}
	if !slices.Equal(got, want) {
		t.Errorf("shard 0 holds %q, want %q", got, want)
	}
}

// A connection that closes under an open store is reported, so the node can stop; closing the
// store itself is not such a loss.
func TestLostConnection(t *testing.T) {
	st := openStore(t)
	st.nc.Close() // as NATS does after a protocol error
	select {
	case <-st.Lost():
	case <-time.After(10 * time.Second):
		t.Fatal("Lost() not closed after the connection closed")
	}

	other := openStore(t)
	other.Close()
	select {
	case <-other.Lost():
		t.Fatal("Lost() closed by Close")
	case <-time.After(100 * time.Millisecond):
	}
}

// TestDeleteAt: a delete conditional on the revision read removes nothing newer.
func TestDeleteAt(t *testing.T) {
	st := openStore(t)
	ctx := t.Context()
	key := Key("#alias:test")
	first, err := st.Create(ctx, BucketAliases, key, []byte("!old:test"))
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Delete(ctx, BucketAliases, key); err != nil {
		t.Fatal(err)
	}
	second, err := st.Create(ctx, BucketAliases, key, []byte("!new:test"))
	if err != nil {
		t.Fatal(err)
	}
	if err := st.DeleteAt(ctx, BucketAliases, key, first); !errors.Is(err, ErrConflict) {
		t.Fatalf("DeleteAt an old revision: %v, want ErrConflict", err)
	}
	if v, _, err := st.Get(ctx, BucketAliases, key); err != nil || string(v) != "!new:test" {
		t.Fatalf("after a refused DeleteAt: %q, %v", v, err)
	}
	if err := st.DeleteAt(ctx, BucketAliases, key, second); err != nil {
		t.Fatalf("DeleteAt the current revision: %v", err)
	}
	if _, _, err := st.Get(ctx, BucketAliases, key); !errors.Is(err, ErrNotFound) {
		t.Errorf("after DeleteAt: %v, want ErrNotFound", err)
	}
}

// A node whose cluster port another process holds, or whose data dir cannot be made, fails
// to open at once with the reason, instead of waiting out the embedded server's start.
func TestOpenFailsAtOnce(t *testing.T) {
	held := clusterOptions(t, 1)[0]
	ln, err := net.Listen("tcp", held.Cluster.Listen)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	file := filepath.Join(t.TempDir(), "a-file")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	noDir := Options{DataDir: filepath.Join(file, "data"), NodeName: "test", Replicas: 1, Logger: slog.New(slog.DiscardHandler)}
	for _, tc := range []struct {
		name string
		opts Options
		want string
	}{
		{"cluster port held", held, "cluster listen"},
		{"data dir under a file", noDir, "data_dir"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
			defer cancel()
			st, err := Open(ctx, tc.opts)
			if err == nil {
				st.Close()
				t.Fatal("opened")
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Open = %v, want an error about %s", err, tc.want)
			}
		})
	}
}
