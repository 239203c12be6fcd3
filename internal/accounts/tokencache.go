package accounts

import (
	"context"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/firebreak/firebreak/internal/store"
)

// tokenCacheTTL bounds how long a node trusts a token it has seen without reading the tokens
// bucket again. Revocations reach every node's cache through its watch of the bucket within
// milliseconds; the bound is for a watch that stops delivering without failing.
const tokenCacheTTL = 15 * time.Second

// tokenCache holds the tokens this node has recently seen, so that most requests do not read
// the tokens bucket (that read was a twentieth of the server's CPU per message sent). It is
// used only while the watch of the bucket runs; revoked tokens leave it as soon as this node
// revokes them or the watch delivers their deletion.
type tokenCache struct {
	mu      sync.Mutex
	live    bool
	entries map[string]cachedToken // by token hash
	// revoked are hashes revoked within the TTL: a read of the bucket that started before the
	// revocation and ends after it must not put the token back.
	revoked   map[string]time.Time
	nextSweep int
}

type cachedToken struct {
	userID, deviceID string
	expires          time.Time
}

const minSweep = 1024

func newTokenCache() *tokenCache {
	return &tokenCache{entries: map[string]cachedToken{}, revoked: map[string]time.Time{}, nextSweep: minSweep}
}

func (c *tokenCache) get(hash string) (cachedToken, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	t, ok := c.entries[hash]
	if !ok || !c.live || time.Now().After(t.expires) {
		return cachedToken{}, false
	}
	return t, true
}

func (c *tokenCache) put(hash, userID, deviceID string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, revoked := c.revoked[hash]; revoked || !c.live {
		return
	}
	c.entries[hash] = cachedToken{userID: userID, deviceID: deviceID, expires: time.Now().Add(tokenCacheTTL)}
	c.sweepIfLarge()
}

// revoke drops a token and keeps it out for the TTL. It returns the user the token was cached
// for ("" if it was not).
func (c *tokenCache) revoke(hash string) (userID string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	userID = c.entries[hash].userID
	delete(c.entries, hash)
	c.revoked[hash] = time.Now().Add(tokenCacheTTL)
	c.sweepIfLarge()
	return userID
}

// setLive turns the cache on (the watch caught up) or off and empty (the watch stopped: until
// it runs again, revocations made through other nodes would not reach the cache).
func (c *tokenCache) setLive(live bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.live = live
	if !live {
		clear(c.entries)
	}
}

// sweepIfLarge drops expired entries once the maps have doubled since the last sweep, which
// keeps them to about twice the tokens and revocations seen within a TTL.
func (c *tokenCache) sweepIfLarge() {
	if len(c.entries)+len(c.revoked) < c.nextSweep {
		return
	}
	now := time.Now()
	for hash, t := range c.entries {
		if now.After(t.expires) {
			delete(c.entries, hash)
		}
	}
	for hash, until := range c.revoked {
		if now.After(until) {
			delete(c.revoked, hash)
		}
	}
	c.nextSweep = max(minSweep, 2*(len(c.entries)+len(c.revoked)))
}

// Run keeps this node's token cache in step with the tokens bucket until ctx ends, starting
// its watch again whenever it fails. onRevoked hears each user one of whose cached tokens was
// revoked through another node, so that their long polls can end.
func (s *Service) Run(ctx context.Context, log *slog.Logger, onRevoked func(userID string)) {
	var after atomic.Uint64 // the last revision applied: a restarted watch goes on from there
	store.KeepFollowing(ctx, log, "access tokens", func() error {
		defer s.tokens.setLive(false)
		if after.Load() == 0 {
			// Only later changes matter: the cache starts empty.
			head, err := s.st.BucketHead(ctx, store.BucketTokens)
			if err != nil {
				return err
			}
			after.Store(head)
		}
		return s.st.Watch(ctx, store.BucketTokens, after.Load(), func() { s.tokens.setLive(true) }, func(c store.Change) {
			after.Store(c.Rev)
			if !c.Deleted {
				return
			}
			if userID := s.tokens.revoke(c.Key); userID != "" {
				onRevoked(userID)
			}
		})
	})
}
