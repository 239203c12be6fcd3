package store

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// retryPolicy is how an operation on JetStream is retried while storage is unavailable (a
// stream electing a leader, a request sent to a replica in a data center that just burned):
// each attempt gets a short deadline, and the operation keeps trying for a budget.
type retryPolicy struct {
	attempt, budget time.Duration
	// precheck runs before each attempt and ends the retries when it fails: a node cut off
	// from its quorum refuses writes (a fenced one, reads too) at once instead of trying for the whole budget.
	precheck func() error
	// abortOn, when set, gives a context whose end also ends the attempt in flight.
	abortOn func() context.Context
}

// How long one read may go unanswered, and how long a read keeps trying. A read from the
// replicas is answered by whichever one the request reaches; one in a data center that just
// died silently never answers, and until the routes to it time out (2 s) a request can still
// be sent there. A short deadline (reads take milliseconds, 100 times less even under load)
// and another try reach a live replica instead; shorter still while some route leads to a
// node that stopped sending heartbeats, the very moment such requests get lost. A read that
// needs a stream's leader likewise goes unanswered while the stream elects one. A fenced node
// has no JetStream to read from, so its reads fail at once.
func (s *Store) readPolicy() retryPolicy {
	attempt := 500 * time.Millisecond
	if s.current().silent {
		attempt = 150 * time.Millisecond
	}
	return retryPolicy{attempt: attempt, budget: 15 * time.Second, precheck: s.checkFenced}
}

// How long one publish may go unanswered, and how long a send keeps trying through an
// election (JetStream's take 4-9 s) before it reports the storage unavailable.
func (s *Store) writePolicy() retryPolicy {
	return retryPolicy{attempt: writeAttempt, budget: 20 * time.Second, precheck: s.checkWritable,
		abortOn: s.reachingMajority}
}

// writeAttempt is how long one publish, or one forward to a shard's writer, may go unanswered.
const writeAttempt = 3 * time.Second

// readWithRetry runs a read under the store's readPolicy.
func readWithRetry[T any](ctx context.Context, s *Store, read func(context.Context) (T, error)) (T, error) {
	return retry(ctx, s.readPolicy(), read)
}

// retry runs op under the policy until it succeeds, fails with anything but ErrUnavailable,
// ctx ends or the budget is spent. Failures that come back at once (nobody answering) are
// spaced out so that the retries do not spin.
func retry[T any](ctx context.Context, p retryPolicy, op func(context.Context) (T, error)) (T, error) {
	giveUp := time.Now().Add(p.budget)
	pause := 50 * time.Millisecond
	for {
		if p.precheck != nil {
			if err := p.precheck(); err != nil {
				var none T
				return none, err
			}
		}
		v, err := attempt(ctx, p, op)
		if err == nil || !errors.Is(err, ErrUnavailable) || ctx.Err() != nil || time.Now().After(giveUp) {
			return v, err
		}
		select {
		case <-ctx.Done():
			return v, err
		case <-time.After(pause):
		}
		pause = min(2*pause, 250*time.Millisecond)
	}
}

// attempt runs op once with the policy's deadline, ended early by abortOn.
func attempt[T any](ctx context.Context, p retryPolicy, op func(context.Context) (T, error)) (T, error) {
	actx, cancel := context.WithTimeout(ctx, p.attempt)
	defer cancel()
	if p.abortOn != nil {
		if abort := p.abortOn(); abort != nil {
			stop := context.AfterFunc(abort, cancel)
			defer stop()
		}
	}
	v, err := op(actx)
	if errors.Is(err, context.Canceled) && actx.Err() == context.Canceled && ctx.Err() == nil {
		// Aborted, not failed: the next precheck says why.
		err = fmt.Errorf("%w: attempt aborted", ErrUnavailable)
	}
	return v, translate(err)
}
