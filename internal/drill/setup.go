package drill

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"time"
)

// requestTimeout bounds one setup request; a hung node is left for another.
const requestTimeout = 10 * time.Second

// retry runs fn against the cursor's node until it succeeds, moving to another node after each
// failure, the way a client behind a global load balancer would. It gives up after timeout.
func retry(ctx context.Context, timeout time.Duration, what string, cur *cursor, fn func(ctx context.Context, n *node) error) error {
	deadline := time.Now().Add(timeout)
	for {
		rctx, cancel := context.WithTimeout(ctx, requestTimeout)
		err := fn(rctx, cur.node())
		cancel()
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s: %w", what, err)
		}
		cur.move()
		if !sleep(ctx, 200*time.Millisecond) {
			return ctx.Err()
		}
	}
}

// sleep waits d or until ctx ends; it reports whether the full time passed.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// parallel runs fn for 0..n-1 with at most `workers` at a time and returns the first error.
func parallel(n, workers int, fn func(i int) error) error {
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		first error
	)
	sem := make(chan struct{}, workers)
	for i := 0; i < n; i++ {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			if err := fn(i); err != nil {
				mu.Lock()
				if first == nil {
					first = err
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	return first
}

// setup registers the users, creates the rooms, joins their members and takes every user's
// initial sync, each user talking to its own home node so the work spreads over the nodes.
func (l *load) setup(ctx context.Context) error {
	if err := parallel(len(l.users), 8, func(i int) error { return l.register(ctx, l.users[i]) }); err != nil {
		return err
	}
	if err := parallel(len(l.rooms), 4, func(i int) error { return l.createRoom(ctx, l.rooms[i]) }); err != nil {
		return err
	}
	for _, p := range l.rooms {
		for _, m := range p.Members {
			l.users[m].rooms = append(l.users[m].rooms, p.ID)
		}
	}
	if err := parallel(len(l.rooms), 4, func(i int) error { return l.joinMembers(ctx, l.rooms[i]) }); err != nil {
		return err
	}
	return parallel(len(l.users), 8, func(i int) error { return l.initialSync(ctx, l.users[i]) })
}

// register creates the user's account. A retried registration that finds the name taken has
// already succeeded on an earlier try whose answer was lost, so it logs in instead.
func (l *load) register(ctx context.Context, u *simUser) error {
	a := api{hc: l.hc}
	tried := false
	return retry(ctx, l.o.Timeout, "register "+u.name, l.bal.cursorAt(u.idx), func(ctx context.Context, n *node) error {
		var err error
		var ae *apiError
		if tried {
			if u.sess, err = a.login(ctx, n.URL(), u.name, u.password); err == nil {
				return nil
			}
		}
		tried = true
		u.sess, err = a.register(ctx, n.URL(), u.name, u.password)
		if errors.As(err, &ae) && ae.Code == "M_USER_IN_USE" {
			u.sess, err = a.login(ctx, n.URL(), u.name, u.password)
		}
		return err
	})
}

// createRoom creates the room on the creator's home node: a public group that members join,
// or a direct chat with an invite.
func (l *load) createRoom(ctx context.Context, p *roomPlan) error {
	creator := l.users[p.Creator]
	body := map[string]any{"preset": "public_chat", "name": p.Name}
	if p.Direct {
		body = map[string]any{"preset": "trusted_private_chat", "is_direct": true,
			"invite": []string{l.users[p.Members[1]].sess.UserID}}
	}
	a := api{hc: l.hc, token: creator.sess.Token}
	return retry(ctx, l.o.Timeout, "create "+p.Name, l.bal.cursorAt(creator.idx), func(ctx context.Context, n *node) error {
		id, err := a.createRoom(ctx, n.URL(), body)
		p.ID = id
		return err
	})
}

// joinMembers joins every member but the creator, each through its own home node, which may
// not have seen the room yet: the join is retried until that node has.
func (l *load) joinMembers(ctx context.Context, p *roomPlan) error {
	for _, m := range p.Members {
		if m == p.Creator {
			continue
		}
		u := l.users[m]
		a := api{hc: l.hc, token: u.sess.Token}
		err := retry(ctx, l.o.Timeout, fmt.Sprintf("%s joins %s", u.name, p.Name), l.bal.cursorAt(u.idx), func(ctx context.Context, n *node) error {
			return a.join(ctx, n.URL(), p.ID)
		})
		if err != nil {
			return err
		}
	}
	return nil
}

// initialSync takes the user's first sync and waits until it shows every room the user
// joined, so the load's events all come after the user's starting token.
func (l *load) initialSync(ctx context.Context, u *simUser) error {
	a := api{hc: l.hc, token: u.sess.Token}
	return retry(ctx, l.o.Timeout, "initial sync of "+u.name, l.bal.cursorAt(u.idx), func(ctx context.Context, n *node) error {
		resp, err := a.sync(ctx, n.URL(), "", 0)
		if err != nil {
			return err
		}
		for _, id := range u.rooms {
			if _, ok := resp.Rooms.Join[id]; !ok {
				return &apiError{Status: http.StatusOK, Code: "DRILL_NOT_YET", Msg: "a joined room is missing from the initial sync"}
			}
		}
		u.since = resp.NextBatch
		return nil
	})
}
