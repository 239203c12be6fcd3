package drill

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"sync"
	"syscall"
	"testing"
	"time"
)

// TestKeyWritesThroughAKill: account data and room tags written through two nodes while the
// third, which leads the bucket that keeps them, is killed. A write in flight to it is never
// answered; it must be tried again on the bucket's new leader, not left waiting for the
// request's whole timeout and then refused. Every write is acknowledged, and every
// acknowledged one is there afterwards.
func TestKeyWritesThroughAKill(t *testing.T) {
	skipShort(t)
	c, l, ctx := testCluster(t, false)
	victimDC := c.streamLeaders(ctx, c.nodes[0])["KV_fb_account_data"]
	if victimDC == "" {
		t.Fatal("no leader of the account data bucket")
	}
	var (
		wg      sync.WaitGroup
		stop    = make(chan struct{})
		mu      sync.Mutex
		failed  []string
		slowest time.Duration            // reported, not asserted: the drill reports timings
		last    = map[written]int{}      // a user's account data type: the last value acknowledged
		tags    = map[written][]string{} // a user's room: the tags acknowledged
	)
	for _, n := range c.outside(victimDC) {
		for _, u := range l.users {
			wg.Go(func() {
				a := api{hc: l.hc, token: u.sess.Token}
				room := u.rooms[0]
				kind := "fb.test." + n.Name
				for i := 1; ; i++ {
					select {
					case <-stop:
						return
					default:
					}
					tag := fmt.Sprintf("u.%s.%d", n.Name, i)
					start := time.Now()
					errData := writeKeyed(ctx, a, n.URL(), "/user/"+url.PathEscape(u.sess.UserID)+"/account_data/"+kind, map[string]int{"n": i})
					errTag := writeKeyed(ctx, a, n.URL(), "/user/"+url.PathEscape(u.sess.UserID)+"/rooms/"+url.PathEscape(room)+"/tags/"+tag, map[string]any{})
					took := time.Since(start)
					mu.Lock()
					slowest = max(slowest, took)
					for what, err := range map[string]error{"account data": errData, "tag": errTag} {
						if err != nil {
							failed = append(failed, fmt.Sprintf("%s through %s after %v: %v", what, n.Name, took, err))
						}
					}
					if errData == nil {
						last[written{u, kind}] = i
					}
					if errTag == nil {
						tags[written{u, room}] = append(tags[written{u, room}], tag)
					}
					mu.Unlock()
				}
			})
		}
	}
	time.Sleep(time.Second)
	for _, victim := range c.in(victimDC) {
		if exited := victim.signal(syscall.SIGKILL); exited != nil {
			<-exited
		}
	}
	time.Sleep(3 * time.Second)
	close(stop)
	wg.Wait()
	t.Logf("longest pair of writes: %v", slowest)
	if len(failed) > 0 {
		t.Errorf("%d writes failed while their bucket's leader was killed, the first: %s", len(failed), failed[0])
	}
	checkKeyedWrites(ctx, t, l, c.outside(victimDC)[0].URL(), last, tags)
}

// writeKeyed PUTs body at a Client-Server path, failing on anything but 200.
func writeKeyed(ctx context.Context, a api, base, path string, body any) error {
	return a.call(ctx, base, http.MethodPut, v3+path, nil, body, nil)
}

// written names what a user wrote: an account data type, or a room's tags.
type written struct {
	user *simUser
	name string
}

// checkKeyedWrites reads back through base what TestKeyWritesThroughAKill wrote: each account
// data type holds its last acknowledged value, each room every acknowledged tag.
func checkKeyedWrites(ctx context.Context, t *testing.T, l *load, base string, last map[written]int, tags map[written][]string) {
	t.Helper()
	for w, want := range last {
		a := api{hc: l.hc, token: w.user.sess.Token}
		var got struct{ N int }
		err := a.call(ctx, base, http.MethodGet, v3+"/user/"+url.PathEscape(w.user.sess.UserID)+"/account_data/"+w.name, nil, nil, &got)
		if err != nil || got.N != want {
			t.Errorf("%s's %s holds %d (%v), want the last acknowledged %d", w.user.name, w.name, got.N, err, want)
		}
	}
	for w, want := range tags {
		a := api{hc: l.hc, token: w.user.sess.Token}
		var got struct{ Tags map[string]any }
		err := a.call(ctx, base, http.MethodGet, v3+"/user/"+url.PathEscape(w.user.sess.UserID)+"/rooms/"+url.PathEscape(w.name)+"/tags", nil, nil, &got)
		if err != nil {
			t.Errorf("tags of %s in %s: %v", w.user.name, w.name, err)
			continue
		}
		if lost := slices.DeleteFunc(slices.Clone(want), func(tag string) bool { _, ok := got.Tags[tag]; return ok }); len(lost) > 0 {
			t.Errorf("%d of %s's %d acknowledged tags in %s are lost, the first %s", len(lost), w.user.name, len(want), w.name, lost[0])
		}
	}
}
