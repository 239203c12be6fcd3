package api

import (
	"math"
	"net/http"
	"sync"
	"time"

	"golang.org/x/time/rate"

	"github.com/firebreak/firebreak/internal/config"
)

type limitedBy int

const (
	byAddress limitedBy = iota
	byUser
)

// limiter is a token bucket per key (a user or a client address), set with Synapse's
// rc_* settings. Buckets are per node: in a cluster each node grants the full rate.
type limiter struct {
	rate  rate.Limit
	burst int

	mu      sync.Mutex
	buckets map[string]*rate.Limiter
}

// limiters holds one limiter per use of an rc_* setting.
type limiters struct {
	message, login, registration *limiter
	// failedLogin counts wrong passwords per account, at rc_login's rate.
	failedLogin *limiter
	// availability counts /register/available per address, at rc_registration's rate but
	// apart from it: a client checking names as its user types must not use up the turn
	// its registration then needs.
	availability *limiter
}

func newLimiters(c config.Config) limiters {
	return limiters{message: newLimiter(c.RCMessage), login: newLimiter(c.RCLogin), registration: newLimiter(c.RCRegistration),
		failedLogin: newLimiter(c.RCLogin), availability: newLimiter(c.RCRegistration)}
}

func newLimiter(rl config.RateLimit) *limiter {
	return &limiter{rate: rate.Limit(rl.PerSecond), burst: rl.BurstCount, buckets: map[string]*rate.Limiter{}}
}

// maxBuckets bounds the memory a flood of distinct keys can take; full buckets are dropped
// first since forgetting them changes nothing.
const maxBuckets = 100_000

// allow takes a token from the key's bucket, or answers 429 when it is empty.
func (l *limiter) allow(key string) error { return l.take(key, true) }

// check answers 429 when the key's bucket is empty, and takes nothing: for the steps of a
// request that only count once they succeed.
func (l *limiter) check(key string) error { return l.take(key, false) }

func (l *limiter) take(key string, consume bool) error {
	now := time.Now()
	l.mu.Lock()
	b := l.buckets[key]
	if b == nil {
		if len(l.buckets) >= maxBuckets {
			l.dropFullLocked()
		}
		b = rate.NewLimiter(l.rate, l.burst)
		l.buckets[key] = b
	}
	var delay time.Duration
	if consume {
		r := b.ReserveN(now, 1)
		if delay = r.DelayFrom(now); delay > 0 {
			r.CancelAt(now)
		}
	} else if tokens := b.TokensAt(now); tokens < 1 {
		delay = time.Duration((1 - tokens) / float64(l.rate) * float64(time.Second))
	}
	l.mu.Unlock()
	if delay > 0 {
		return &matrixError{Status: http.StatusTooManyRequests, Code: "M_LIMIT_EXCEEDED",
			Msg: "Too many requests", RetryAfterMS: int64(math.Ceil(float64(delay) / float64(time.Millisecond)))}
	}
	return nil
}

func (l *limiter) dropFullLocked() {
	now := time.Now()
	for k, b := range l.buckets {
		if b.TokensAt(now) >= float64(l.burst) {
			delete(l.buckets, k)
		}
	}
}
