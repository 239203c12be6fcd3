package accounts

import (
	"strconv"
	"testing"
	"time"
)

func TestTokenCache(t *testing.T) {
	cases := []struct {
		name     string
		steps    func(c *tokenCache)
		wantHit  bool
		wantUser string // of the hit
	}{
		{"seen while the watch runs", func(c *tokenCache) { c.setLive(true); c.put("h", "@a:x", "D") }, true, "@a:x"},
		{"seen before the watch caught up", func(c *tokenCache) { c.put("h", "@a:x", "D"); c.setLive(true) }, false, ""},
		{"the watch stopped", func(c *tokenCache) { c.setLive(true); c.put("h", "@a:x", "D"); c.setLive(false); c.setLive(true) }, false, ""},
		{"revoked", func(c *tokenCache) { c.setLive(true); c.put("h", "@a:x", "D"); c.revoke("h") }, false, ""},
		{"read before a revocation, cached after it", func(c *tokenCache) { c.setLive(true); c.revoke("h"); c.put("h", "@a:x", "D") }, false, ""},
		{"another token revoked", func(c *tokenCache) { c.setLive(true); c.put("h", "@a:x", "D"); c.revoke("other") }, true, "@a:x"},
		{"expired", func(c *tokenCache) {
			c.setLive(true)
			c.put("h", "@a:x", "D")
			e := c.entries["h"]
			e.expires = time.Now().Add(-time.Millisecond)
			c.entries["h"] = e
		}, false, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := newTokenCache()
			tc.steps(c)
			got, hit := c.get("h")
			if hit != tc.wantHit || got.userID != tc.wantUser {
				t.Errorf("get = %+v, %v; want user %q, hit %v", got, hit, tc.wantUser, tc.wantHit)
			}
		})
	}
}

func TestTokenCacheRevokeNamesTheUser(t *testing.T) {
	c := newTokenCache()
	c.setLive(true)
	c.put("h", "@a:x", "D")
	if user := c.revoke("h"); user != "@a:x" {
		t.Errorf("revoke of a cached token = %q, want @a:x", user)
	}
	if user := c.revoke("never-seen"); user != "" {
		t.Errorf("revoke of a token never cached = %q, want none", user)
	}
}

func TestTokenCacheSweepsExpired(t *testing.T) {
	c := newTokenCache()
	c.setLive(true)
	for i := range minSweep - 1 {
		c.revoke(strconv.Itoa(i))
	}
	for hash := range c.revoked {
		c.revoked[hash] = time.Now().Add(-time.Second) // all expired
	}
	c.put("h", "@a:x", "D") // the next insert past the threshold sweeps
	if len(c.revoked) != 0 || len(c.entries) != 1 {
		t.Errorf("after a sweep: %d revoked, %d entries; want 0 and 1", len(c.revoked), len(c.entries))
	}
}
