package bench

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"sync"
	"time"

	"github.com/firebreak/firebreak/internal/accounts"
	"github.com/firebreak/firebreak/internal/matrixclient"
)

// user is one bench account with its own sync position.
type user struct {
	c        *client
	filterID string
	since    string
	rooms    []*room
}

// room is one bench room and its joined members.
type room struct {
	id      string
	members []*user
}

// population is the accounts and rooms a run sends between.
type population struct {
	users []*user
	rooms []*room
}

// setupWorkers bounds the setup requests in flight: registration hashes a password on the
// server, so more only queues up there.
const setupWorkers = 8

// registrationWorkers is how many accounts are registered at once. The idle workload weighs
// the server's memory, so it registers one at a time: each registration hashes a password
// with argon2 (19 MiB), and eight at once leave ~150 MiB of freed heap resident that later
// allocations reuse unseen.
func registrationWorkers(cfg Config) int {
	if cfg.Workload == WorkloadIdle {
		return 1
	}
	return setupWorkers
}

// setup registers the users, creates the rooms and joins their members, then gives every
// user a filter and an initial sync, so the load phase starts from a settled state.
func setup(ctx context.Context, cfg Config, hc *http.Client, runID string) (*population, error) {
	p := &population{users: make([]*user, cfg.Users)}
	t0 := time.Now()
	err := parallel(ctx, cfg.Users, registrationWorkers(cfg), func(ctx context.Context, i int) error {
		c := &client{base: cfg.Homeservers[i%len(cfg.Homeservers)], hc: hc}
		name := fmt.Sprintf("bench-%s-%d", runID, i)
		if err := retry(ctx, func(ctx context.Context) error {
			return register(ctx, c, cfg.SharedSecret, name, accounts.RandomString(12))
		}); err != nil {
			return fmt.Errorf("register %s: %w", name, err)
		}
		p.users[i] = &user{c: c}
		return nil
	})
	if err != nil {
		return nil, err
	}
	cfg.Log.Info("bench: users registered", "users", cfg.Users, "took", time.Since(t0).Round(time.Millisecond))
	if cfg.Rooms > 0 {
		if err := p.createRooms(ctx, cfg); err != nil {
			return nil, err
		}
	}
	t0 = time.Now()
	err = parallel(ctx, len(p.users), setupWorkers, func(ctx context.Context, i int) error {
		return p.users[i].initialSync(ctx)
	})
	if err != nil {
		return nil, err
	}
	cfg.Log.Info("bench: initial syncs done", "took", time.Since(t0).Round(time.Millisecond))
	return p, nil
}

// createRooms makes the rooms the plan asks for, each by its first member.
func (p *population) createRooms(ctx context.Context, cfg Config) error {
	t0 := time.Now()
	plan := planRooms(cfg.Rooms, cfg.Users, cfg.RoomSizes, cfg.Seed)
	p.rooms = make([]*room, len(plan))
	var mu sync.Mutex // guards each user's room list
	err := parallel(ctx, len(plan), setupWorkers, func(ctx context.Context, i int) error {
		r := &room{}
		for _, ui := range plan[i] {
			r.members = append(r.members, p.users[ui])
		}
		if err := r.create(ctx, i); err != nil {
			return err
		}
		p.rooms[i] = r
		mu.Lock()
		for _, u := range r.members {
			u.rooms = append(u.rooms, r)
		}
		mu.Unlock()
		return nil
	})
	if err == nil {
		cfg.Log.Info("bench: rooms created", "rooms", len(plan), "took", time.Since(t0).Round(time.Millisecond))
	}
	return err
}

func (r *room) create(ctx context.Context, i int) error {
	creator := r.members[0]
	err := retry(ctx, func(ctx context.Context) (err error) {
		r.id, err = creator.c.createRoom(ctx, fmt.Sprintf("bench room %d", i))
		return err
	})
	if err != nil {
		return fmt.Errorf("create room %d: %w", i, err)
	}
	for _, m := range r.members[1:] {
		// On another node of a cluster the room may not have arrived yet: retry covers that.
		if err := retry(ctx, func(ctx context.Context) error { return m.c.join(ctx, r.id) }); err != nil {
			return fmt.Errorf("%s join %s: %w", m.c.userID, r.id, err)
		}
	}
	return nil
}

func (u *user) initialSync(ctx context.Context) error {
	err := retry(ctx, func(ctx context.Context) (err error) {
		u.filterID, err = u.c.uploadFilter(ctx)
		return err
	})
	if err != nil {
		return fmt.Errorf("upload filter for %s: %w", u.c.userID, err)
	}
	return retry(ctx, func(ctx context.Context) error {
		resp, err := u.c.sync(ctx, "", u.filterID, 0)
		if err == nil {
			u.since = resp.NextBatch
		}
		return err
	})
}

// planRooms assigns room sizes in proportion to their weights (largest remainder first) and
// fills each room from a shuffled ring of users, so every user is in about as many rooms.
func planRooms(rooms, users int, sizes []RoomSize, seed int64) [][]int {
	counts := apportion(rooms, sizes)
	rng := rand.New(rand.NewPCG(uint64(seed), 0x6265_6e63))
	ring := rng.Perm(users)
	next := 0
	var plan [][]int
	for si, n := range counts {
		for range n {
			members := make([]int, sizes[si].Members)
			for j := range members {
				members[j] = ring[next%users]
				next++
			}
			plan = append(plan, members)
		}
	}
	rng.Shuffle(len(plan), func(i, j int) { plan[i], plan[j] = plan[j], plan[i] })
	return plan
}

// apportion splits n rooms over the sizes by weight, giving leftovers to the largest
// fractional shares.
func apportion(n int, sizes []RoomSize) []int {
	total := 0
	for _, s := range sizes {
		total += s.Weight
	}
	counts := make([]int, len(sizes))
	rem := make([]float64, len(sizes))
	given := 0
	for i, s := range sizes {
		exact := float64(n) * float64(s.Weight) / float64(total)
		counts[i] = int(exact)
		rem[i] = exact - float64(counts[i])
		given += counts[i]
	}
	for ; given < n; given++ {
		best := 0
		for i := range rem {
			if rem[i] > rem[best] {
				best = i
			}
		}
		counts[best]++
		rem[best] = -1
	}
	return counts
}

// retry repeats a setup step that failed for a passing reason: a rate limit, a room not yet
// replicated to this node, a node busy. Setup must succeed for the numbers to mean anything,
// so other errors end the run. Each attempt has setupRequestTimeout, so a server that takes a
// request and never answers ends the run instead of holding it. A rate limit's attempt waits
// as long as the server asks (up to maxRateLimitWait) and counts against a larger budget of
// its own: a server left at its default limits registers a few accounts a minute, and the
// run then takes long but gets there.
func retry(ctx context.Context, step func(ctx context.Context) error) error {
	const attempts, limitedAttempts = 20, 200
	var err error
	for failed, limited := 0, 0; failed < attempts && limited < limitedAttempts; {
		if err = attempt(ctx, step); err == nil || !transient(err) {
			return err
		}
		if errors.Is(err, context.DeadlineExceeded) && ctx.Err() == nil {
			// This attempt's own deadline: the server took the request and never answered.
			return fmt.Errorf("no answer within %v: %w", setupRequestTimeout, err)
		}
		pause := time.Duration(100*(failed+1)) * time.Millisecond
		if after, ok := rateLimited(err); ok {
			limited++
			pause = min(max(after, pause), maxRateLimitWait)
		} else {
			failed++
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(pause):
		}
	}
	return err
}

// setupRequestTimeout bounds one setup request; registration hashes a password and may queue
// behind others on a busy server, but nothing takes a minute.
const setupRequestTimeout = time.Minute

// maxRateLimitWait caps how long one rate-limited attempt waits, whatever the server asks.
const maxRateLimitWait = 10 * time.Second

func attempt(ctx context.Context, step func(ctx context.Context) error) error {
	ctx, cancel := context.WithTimeout(ctx, setupRequestTimeout)
	defer cancel()
	return step(ctx)
}

// rateLimited reports whether err is a 429 and how long the server asked to wait (0: unsaid).
func rateLimited(err error) (time.Duration, bool) {
	var ae *matrixclient.Error
	if errors.As(err, &ae) && ae.Status == http.StatusTooManyRequests {
		return ae.RetryAfter, true
	}
	return 0, false
}

func transient(err error) bool {
	var ae *matrixclient.Error
	if !errors.As(err, &ae) {
		return !errors.Is(err, context.Canceled)
	}
	return ae.Status == http.StatusTooManyRequests || ae.Status >= 500 || ae.Code == "M_NOT_FOUND"
}

// parallel runs fn for 0..n-1 on at most workers goroutines and returns the first error,
// which also cancels the steps not yet started.
func parallel(ctx context.Context, n, workers int, fn func(ctx context.Context, i int) error) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	idx := make(chan int)
	var wg sync.WaitGroup
	var once sync.Once
	var first error
	for range min(workers, n) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range idx {
				if err := fn(ctx, i); err != nil {
					once.Do(func() { first = err; cancel() })
				}
			}
		}()
	}
feed:
	for i := 0; i < n; i++ {
		select {
		case idx <- i:
		case <-ctx.Done():
			break feed
		}
	}
	close(idx)
	wg.Wait()
	if first == nil && ctx.Err() != nil {
		return ctx.Err()
	}
	return first
}
