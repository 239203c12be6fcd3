package accounts

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"testing"

	"github.com/firebreak/firebreak/internal/store"
	"github.com/firebreak/firebreak/internal/store/storetest"
)

func newService(t *testing.T) *Service {
	t.Helper()
	return New(storetest.Open(t, ""), "test")
}

func register(t *testing.T, s *Service, name, password string) string {
	t.Helper()
	user, err := s.Register(context.Background(), name, password, false)
	if err != nil {
		t.Fatal(err)
	}
	return user
}

func login(t *testing.T, s *Service, user, device string) Session {
	t.Helper()
	sess, err := s.NewSession(context.Background(), user, device, "")
	if err != nil {
		t.Fatal(err)
	}
	return sess
}

// liveTokens is how many of the tokens still authenticate.
func liveTokens(t *testing.T, s *Service, tokens []string) int {
	t.Helper()
	live := 0
	for _, tok := range tokens {
		if _, _, err := s.Authenticate(context.Background(), tok); err == nil {
			live++
		} else if !errors.Is(err, ErrUnknownToken) {
			t.Fatalf("Authenticate: %v", err)
		}
	}
	return live
}

// TestConcurrentLoginsOnOneDevice: logins racing on one device id leave one working token,
// the device's, which a logout then revokes. Before the device was written with
// compare-and-set, the losers' tokens outlived every logout.
func TestConcurrentLoginsOnOneDevice(t *testing.T) {
	s := newService(t)
	ctx := context.Background()
	user := register(t, s, "gus", "pw")
	for round := range 5 {
		const logins = 6
		tokens := make([]string, logins)
		var wg sync.WaitGroup
		start := make(chan struct{})
		for i := range logins {
			wg.Go(func() {
				<-start
				sess, err := s.NewSession(ctx, user, "SAME", "")
				if err != nil {
					t.Errorf("round %d: NewSession: %v", round, err)
					return
				}
				tokens[i] = sess.AccessToken
			})
		}
		close(start)
		wg.Wait()
		// This node's cache holds every token it issued; a fresh node reads the buckets.
		fresh := New(s.st, "test")
		if live := liveTokens(t, fresh, tokens); live != 1 {
			t.Fatalf("round %d: %d of %d racing logins' tokens work, want 1", round, live, logins)
		}
		if err := s.DeleteDevice(ctx, user, "SAME"); err != nil {
			t.Fatal(err)
		}
		if live := liveTokens(t, New(s.st, "test"), tokens); live != 0 {
			t.Fatalf("round %d: %d tokens work after the device's logout", round, live)
		}
	}
}

// TestTokenNeedsItsDevice: a token its device does not name (a node stopped between a login's
// two writes) does not authenticate.
func TestTokenNeedsItsDevice(t *testing.T) {
	s := newService(t)
	ctx := context.Background()
	user := register(t, s, "hal", "pw")
	sess := login(t, s, user, "DEV")
	stray := "fb_stray"
	rec, _ := json.Marshal(tokenRecord{UserID: user, DeviceID: "DEV"})
	orphan, _ := json.Marshal(tokenRecord{UserID: user, DeviceID: "GONE"})
	for _, c := range []struct {
		name   string
		record []byte
	}{{"another token of a device", rec}, {"a device that is gone", orphan}} {
		t.Run(c.name, func(t *testing.T) {
			if _, err := s.st.Put(ctx, store.BucketTokens, hashToken(stray), c.record); err != nil {
				t.Fatal(err)
			}
			if _, _, err := s.Authenticate(ctx, stray); !errors.Is(err, ErrUnknownToken) {
				t.Errorf("Authenticate(stray) = %v, want ErrUnknownToken", err)
			}
		})
	}
	if got, _, err := s.Authenticate(ctx, sess.AccessToken); err != nil || got != user {
		t.Errorf("the device's own token: %q, %v", got, err)
	}
}

// TestLastSeen: a device's record follows its use, written again only when its address
// changes or after lastSeenEvery, and a logged-out device is not written back.
func TestLastSeen(t *testing.T) {
	s := newService(t)
	ctx := context.Background()
	user := register(t, s, "ida", "pw")
	login(t, s, user, "DEV")
	revision := func() uint64 {
		_, rev, err := s.device(ctx, user, "DEV")
		if err != nil {
			t.Fatal(err)
		}
		return rev
	}
	steps := []struct {
		name    string
		ip      string
		written bool
	}{
		{"first use", "192.0.2.1", true},
		{"again from the same address", "192.0.2.1", false},
		{"from another address", "192.0.2.2", true},
	}
	for _, step := range steps {
		before := revision()
		s.Saw(user, "DEV", step.ip)
		if err := s.flushActivity(ctx); err != nil {
			t.Fatalf("%s: %v", step.name, err)
		}
		dev, _ := s.Device(ctx, user, "DEV")
		if got := revision() != before; got != step.written || dev.LastSeenIP != step.ip {
			t.Errorf("%s: written %v (want %v), last_seen_ip %q", step.name, got, step.written, dev.LastSeenIP)
		}
	}
	if err := s.DeleteDevice(ctx, user, "DEV"); err != nil {
		t.Fatal(err)
	}
	s.Saw(user, "DEV", "192.0.2.3")
	if err := s.flushActivity(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Device(ctx, user, "DEV"); !errors.Is(err, ErrNotFound) {
		t.Errorf("a logged-out device came back: %v", err)
	}
}

// TestPasswordChangeEndsRacingLogins: logins with the old password, before or racing a
// password change (which logs the other devices out), leave no working token, whichever wins.
func TestPasswordChangeEndsRacingLogins(t *testing.T) {
	s := newService(t)
	ctx := context.Background()
	user := register(t, s, "jo", "old")
	for round := range 4 {
		password := fmt.Sprintf("pw%d", round)
		if round == 0 {
			password = "old"
		}
		// One login finishes first, so that every round has a token the change must end
		// however the racing ones fall.
		first, err := s.Login(ctx, user, password, "", "")
		if err != nil {
			t.Fatalf("round %d: login before the race: %v", round, err)
		}
		var mu sync.Mutex
		tokens := []string{first.AccessToken}
		var wg sync.WaitGroup
		start := make(chan struct{})
		for range 8 {
			wg.Go(func() {
				<-start
				if sess, err := s.Login(ctx, user, password, "", ""); err == nil {
					mu.Lock()
					tokens = append(tokens, sess.AccessToken)
					mu.Unlock()
				}
			})
		}
		wg.Go(func() {
			<-start
			if err := s.ChangePassword(ctx, user, fmt.Sprintf("pw%d", round+1), "", true); err != nil {
				t.Errorf("ChangePassword: %v", err)
			}
		})
		close(start)
		wg.Wait()
		if live := liveTokens(t, New(s.st, "test"), tokens); live != 0 {
			t.Fatalf("round %d: %d of %d logins with the old password outlived its change", round, live, len(tokens))
		}
	}
}

// TestClosedAccountsTokensFail: a token of an account marked closed fails even if its device
// was never logged out (a deactivation cut short), and the account cannot log in.
func TestClosedAccountsTokensFail(t *testing.T) {
	s := newService(t)
	ctx := context.Background()
	user := register(t, s, "kim", "pw")
	sess := login(t, s, user, "DEV")
	if err := s.updateAccount(ctx, user, func(a *Account) { a.Deactivated = true }); err != nil {
		t.Fatal(err)
	}
	if live := liveTokens(t, New(s.st, "test"), []string{sess.AccessToken}); live != 0 {
		t.Error("a closed account's token works")
	}
	if _, err := s.Login(ctx, user, "pw", "", ""); !errors.Is(err, ErrDeactivated) {
		t.Errorf("Login = %v, want ErrDeactivated", err)
	}
	if _, err := s.Login(ctx, user, "wrong", "", ""); !errors.Is(err, ErrBadLogin) {
		t.Errorf("Login with a wrong password = %v, want ErrBadLogin", err)
	}
}
