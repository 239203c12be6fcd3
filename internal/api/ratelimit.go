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
	held    map[string]int // tokens set aside by hold, per key
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
	return &limiter{rate: rate.Limit(rl.PerSecond), burst: rl.BurstCount, buckets: map[string]*rate.Limiter{}, held: map[string]int{}}
}

// maxBuckets bounds the memory a flood of distinct keys can take; full buckets are dropped
// first since forgetting them changes nothing.
const maxBuckets = 100_000

// allow takes a token from the key's bucket, or answers 429 when it is empty.
func (l *limiter) allow(key string) error {
	now := time.Now()
	l.mu.Lock()
	r := l.bucketLocked(key).ReserveN(now, 1)
	delay := r.DelayFrom(now)
	if delay > 0 {
		r.CancelAt(now)
	}
	l.mu.Unlock()
	if delay > 0 {
		return limitExceeded(delay)
	}
	return nil
}

// check answers 429 when the key's bucket is empty, and takes nothing: for the steps of a
// request that only count once they succeed.
func (l *limiter) check(key string) error {
	l.mu.Lock()
	delay := l.waitLocked(key, time.Now())
	l.mu.Unlock()
	if delay > 0 {
		return limitExceeded(delay)
	}
	return nil
}

// hold sets a token of the key's bucket aside for an attempt that counts only if it fails,
// or answers 429 when none is left; done(failed) then takes the token, or gives it back.
// Tokens set aside are not there for others, so attempts made in parallel cannot all pass a
// bucket that holds one.
func (l *limiter) hold(key string) (done func(failed bool), err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if delay := l.waitLocked(key, time.Now()); delay > 0 {
		return nil, limitExceeded(delay)
	}
	l.held[key]++
	return func(failed bool) {
		l.mu.Lock()
		defer l.mu.Unlock()
		if l.held[key]--; l.held[key] == 0 {
			delete(l.held, key)
		}
		if failed {
			l.bucketLocked(key).ReserveN(time.Now(), 1)
		}
	}, nil
}

// waitLocked is how long until the key's bucket has a token that is not set aside.
func (l *limiter) waitLocked(key string, now time.Time) time.Duration {
	tokens := l.bucketLocked(key).TokensAt(now) - float64(l.held[key])
	if tokens >= 1 {
		return 0
	}
	return time.Duration((1 - tokens) / float64(l.rate) * float64(time.Second))
}

func (l *limiter) bucketLocked(key string) *rate.Limiter {
	b := l.buckets[key]
	if b == nil {
		if len(l.buckets) >= maxBuckets {
			l.dropFullLocked()
		}
		b = rate.NewLimiter(l.rate, l.burst)
		l.buckets[key] = b
	}
	return b
}

func limitExceeded(delay time.Duration) error {
	return &matrixError{Status: http.StatusTooManyRequests, Code: "M_LIMIT_EXCEEDED",
		Msg: "Too many requests", RetryAfterMS: int64(math.Ceil(float64(delay) / float64(time.Millisecond)))}
}

func (l *limiter) dropFullLocked() {
	now := time.Now()
	for k, b := range l.buckets {
		if b.TokensAt(now) >= float64(l.burst) {
			delete(l.buckets, k)
		}
	}
}
