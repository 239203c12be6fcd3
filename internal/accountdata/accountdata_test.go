package accountdata

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/firebreak/firebreak/internal/store"
	"github.com/firebreak/firebreak/internal/store/storetest"
)

func openStore(t *testing.T, dir string) *store.Store { return storetest.Open(t, dir) }

// start runs the service's mirror until the test ends and waits until it has loaded the bucket.
func start(t *testing.T, st *store.Store) *Service {
	t.Helper()
	s := New(st)
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan struct{})
	done := make(chan struct{})
	var once sync.Once
	go func() {
		defer close(done)
		s.Run(ctx, slog.New(slog.DiscardHandler), func() { once.Do(func() { close(ready) }) })
	}()
	// Cleanups run last-in first-out: the mirror stops before the store closes.
	t.Cleanup(func() { cancel(); <-done })
	select {
	case <-ready:
	case <-time.After(30 * time.Second):
		t.Fatal("the account data mirror never loaded the bucket")
	}
	return s
}

func TestSetGet(t *testing.T) {
	st := openStore(t, t.TempDir())
	s := start(t, st)
	ctx := t.Context()

	if _, err := s.Get("@a:x", "", "m.direct"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Get before Set: %v, want ErrNotFound", err)
	}
	if s.Position() != 0 {
		t.Fatalf("Position of an empty mirror = %d", s.Position())
	}
	cases := []struct {
		user, room, typ, content string
	}{
		{"@a:x", "", "m.direct", `{"@b:x":["!r:x"]}`},
		{"@a:x", "!r:x", "m.fully_read", `{"event_id":"$e"}`},
		{"@a:x", "!s:x", "m.fully_read", `{"event_id":"$f"}`},
		{"@b:x", "", "m.direct", `{}`},
		{"@a.b:x", "", "org.example.*>", `{"odd":"names"}`},
		{"@a:x", "", "", `{"empty":"type"}`},
	}
	for _, c := range cases {
		if err := s.Set(ctx, c.user, c.room, c.typ, json.RawMessage(c.content)); err != nil {
			t.Fatalf("Set(%s, %q, %s): %v", c.user, c.room, c.typ, err)
		}
		// Set returns once this node's mirror shows the value: no waiting needed.
		got, err := s.Get(c.user, c.room, c.typ)
		if err != nil || string(got) != c.content {
			t.Fatalf("Get(%s, %q, %s) right after Set = %s, %v; want %s", c.user, c.room, c.typ, got, err, c.content)
		}
	}
	// Each value is kept apart from the others.
	for _, c := range cases {
		if got, err := s.Get(c.user, c.room, c.typ); err != nil || string(got) != c.content {
			t.Errorf("Get(%s, %q, %s) = %s, %v; want %s", c.user, c.room, c.typ, got, err, c.content)
		}
	}
	for _, miss := range [][3]string{{"@c:x", "", "m.direct"}, {"@a:x", "!other:x", "m.fully_read"}, {"@a:x", "!r:x", "m.direct"}} {
		if _, err := s.Get(miss[0], miss[1], miss[2]); !errors.Is(err, ErrNotFound) {
			t.Errorf("Get(%q): %v, want ErrNotFound", miss, err)
		}
	}
	// Overwrite.
	if err := s.Set(ctx, "@a:x", "", "m.direct", json.RawMessage(`{"new":1}`)); err != nil {
		t.Fatal(err)
	}
	if got, _ := s.Get("@a:x", "", "m.direct"); string(got) != `{"new":1}` {
		t.Errorf("Get after overwrite = %s", got)
	}
}

func TestSinceAndPosition(t *testing.T) {
	st := openStore(t, t.TempDir())
	s := start(t, st)
	ctx := t.Context()
	var changed []string
	var mu sync.Mutex
	s.OnChange(func(u string) { mu.Lock(); changed = append(changed, u); mu.Unlock() })

	set := func(user, room, typ, content string) uint64 {
		t.Helper()
		if err := s.Set(ctx, user, room, typ, json.RawMessage(content)); err != nil {
			t.Fatal(err)
		}
		return s.Position()
	}
	p1 := set("@a:x", "", "t1", `1`)
	p2 := set("@a:x", "!r:x", "t2", `2`)
	p3 := set("@b:x", "", "t1", `3`)
	p4 := set("@a:x", "", "t3", `4`)
	if !(0 < p1 && p1 < p2 && p2 < p3 && p3 < p4) {
		t.Fatalf("positions after each Set: %d %d %d %d, want increasing", p1, p2, p3, p4)
	}

	types := func(items []Item) []string {
		var out []string
		for _, it := range items {
			out = append(out, it.RoomID+"/"+it.Type+"="+string(it.Content))
		}
		return out
	}
	cases := []struct {
		user  string
		since uint64
		want  []string
	}{
		{"@a:x", 0, []string{"/t1=1", "!r:x/t2=2", "/t3=4"}},
		{"@a:x", p1, []string{"!r:x/t2=2", "/t3=4"}},
		{"@a:x", p2, []string{"/t3=4"}},
		{"@a:x", p3, []string{"/t3=4"}},
		{"@a:x", p4, nil},
		{"@b:x", 0, []string{"/t1=3"}},
		{"@b:x", p3, nil},
		{"@nobody:x", 0, nil},
	}
	for _, tc := range cases {
		got := s.Since(tc.user, tc.since)
		if g := types(got); !equal(g, tc.want) {
			t.Errorf("Since(%s, %d) = %q, want %q", tc.user, tc.since, g, tc.want)
		}
		for _, it := range got {
			if it.UserID != tc.user || it.Rev <= tc.since {
				t.Errorf("Since(%s, %d) returned %+v", tc.user, tc.since, it)
			}
		}
	}

	// Rewriting a value moves it to the newest position.
	p5 := set("@a:x", "", "t1", `5`)
	if g := types(s.Since("@a:x", p2)); !equal(g, []string{"/t3=4", "/t1=5"}) {
		t.Errorf("Since after a rewrite = %q", g)
	}
	if items := s.Since("@a:x", p4); len(items) != 1 || items[0].Rev != p5 {
		t.Errorf("Since(p4) = %+v, want the rewrite at %d", items, p5)
	}
	if err := s.WaitPosition(ctx, p5); err != nil {
		t.Errorf("WaitPosition at the current position: %v", err)
	}
	wctx, cancel := context.WithCancel(ctx)
	cancel()
	if err := s.WaitPosition(wctx, p5+1); !errors.Is(err, context.Canceled) {
		t.Errorf("WaitPosition past the end with an ended ctx: %v", err)
	}
	mu.Lock()
	defer mu.Unlock()
	if !equal(changed, []string{"@a:x", "@a:x", "@b:x", "@a:x", "@a:x"}) {
		t.Errorf("OnChange heard %q", changed)
	}
}

func equal(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// TestMirrorFollowsOtherWriters: a value written to the bucket by someone else (another node)
// shows up in the mirror, and a fresh service on a reopened store loads what was stored.
func TestMirrorFollowsOtherWriters(t *testing.T) {
	dir := t.TempDir()
	st := openStore(t, dir)
	s := start(t, st)
	ctx := t.Context()

	rev, err := st.Put(ctx, store.BucketAccountData, store.Key("@a:x", "", "m.other"), []byte(`{"from":"elsewhere"}`))
	if err != nil {
		t.Fatal(err)
	}
	if err := s.WaitPosition(ctx, rev); err != nil {
		t.Fatal(err)
	}
	if got, err := s.Get("@a:x", "", "m.other"); err != nil || string(got) != `{"from":"elsewhere"}` {
		t.Fatalf("Get of another writer's value = %s, %v", got, err)
	}
	// A key that is not three parts is not account data and is ignored.
	bad, err := st.Put(ctx, store.BucketAccountData, store.Key("@a:x", "m.two_parts"), []byte(`{}`))
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Set(ctx, "@a:x", "", "m.after", json.RawMessage(`{}`)); err != nil {
		t.Fatal(err)
	}
	for _, it := range s.Since("@a:x", 0) {
		if it.Rev == bad {
			t.Errorf("a two-part key was mirrored as %+v", it)
		}
	}

	// A second service on the same store loads everything before it is ready.
	s2 := start(t, st)
	if got, err := s2.Get("@a:x", "", "m.other"); err != nil || string(got) != `{"from":"elsewhere"}` {
		t.Errorf("a new service's Get = %s, %v", got, err)
	}
	if s2.Position() != s.Position() {
		t.Errorf("a new service's Position = %d, want %d", s2.Position(), s.Position())
	}
}

// Changes made at once through two nodes' services all stay: each is a compare-and-set.
func TestModifyConcurrent(t *testing.T) {
	st := openStore(t, t.TempDir())
	nodes := []*Service{start(t, st), start(t, st)}
	const writers = 12
	errs := make(chan error, writers)
	for i := range writers {
		go func() {
			errs <- nodes[i%2].Modify(t.Context(), "@a:x", "!r:x", "m.tag", func(old json.RawMessage) (json.RawMessage, error) {
				tags := map[string]int{}
				if old != nil {
					if err := json.Unmarshal(old, &tags); err != nil {
						return nil, err
					}
				}
				tags[fmt.Sprintf("t%d", i)] = i
				return json.Marshal(tags)
			})
		}()
	}
	for range writers {
		if err := <-errs; err != nil {
			t.Fatalf("Modify: %v", err)
		}
	}
	// Each Modify returned once its own node showed it; node 0 may still trail node 1.
	if err := nodes[0].WaitPosition(t.Context(), nodes[1].Position()); err != nil {
		t.Fatal(err)
	}
	raw, err := nodes[0].Get("@a:x", "!r:x", "m.tag")
	if err != nil {
		t.Fatal(err)
	}
	var tags map[string]int
	if err := json.Unmarshal(raw, &tags); err != nil || len(tags) != writers {
		t.Errorf("after %d concurrent changes: %s (%v), want every one", writers, raw, err)
	}

	// A change that fails writes nothing.
	refuse := errors.New("no")
	if err := nodes[1].Modify(t.Context(), "@a:x", "!r:x", "m.tag", func(json.RawMessage) (json.RawMessage, error) {
		return nil, refuse
	}); !errors.Is(err, refuse) {
		t.Errorf("Modify with a failing change = %v, want its error", err)
	}
	// Node 0 reads its mirror: it must have reached the bucket's head, whatever that is now.
	head, err := st.BucketHead(t.Context(), store.BucketAccountData)
	if err != nil {
		t.Fatal(err)
	}
	if err := nodes[0].WaitPosition(t.Context(), head); err != nil {
		t.Fatal(err)
	}
	if again, _ := nodes[0].Get("@a:x", "!r:x", "m.tag"); string(again) != string(raw) {
		t.Errorf("a failed change altered the data: %s", again)
	}
}

// TestQuota: a user's account data stops at MaxUserBytes, counted as this node holds it, for
// new values and for Modify alike; replacing a value counts only the new one, and another
// user is not affected.
func TestQuota(t *testing.T) {
	s := start(t, openStore(t, t.TempDir()))
	ctx := t.Context()
	big := json.RawMessage(`{"x":"` + strings.Repeat("0", 1_000_000) + `"}`)
	fits := MaxUserBytes / (len(big) + itemOverhead + len("x.big.0"))
	for i := range fits {
		if err := s.Set(ctx, "@a:x", "", fmt.Sprintf("x.big.%d", i), big); err != nil {
			t.Fatalf("write %d of %d within the quota: %v", i+1, fits, err)
		}
	}
	if err := s.Set(ctx, "@a:x", "", "x.big.over", big); !errors.Is(err, ErrQuota) {
		t.Fatalf("a write past the quota: %v, want ErrQuota", err)
	}
	grow := func(old json.RawMessage) (json.RawMessage, error) { return big, nil }
	if err := s.Modify(ctx, "@a:x", "!r:x", "x.grown", grow); !errors.Is(err, ErrQuota) {
		t.Fatalf("a modification past the quota: %v, want ErrQuota", err)
	}
	if err := s.Set(ctx, "@a:x", "", "x.big.0", big); err != nil {
		t.Errorf("replacing a value with one of the same size: %v", err)
	}
	if err := s.Set(ctx, "@b:x", "", "x.big.0", big); err != nil {
		t.Errorf("another user's write: %v", err)
	}
}
