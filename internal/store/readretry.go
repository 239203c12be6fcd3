package store

import (
	"context"
	"errors"
	"time"
)

// How long one read may go unanswered, and how long a read keeps trying. A read from the
// replicas is answered by whichever one the request reaches; one in a data center that just
// burned never answers, and until the routes to it time out a request can still be sent
// there. A short deadline and another try reach a live replica instead. A read that needs a
// stream's leader likewise goes unanswered while the stream elects one.
const (
	readAttempt = time.Second
	readBudget  = 15 * time.Second
)

// readWithRetry runs read with a short deadline, again while it finds storage unavailable,
// until it succeeds, fails otherwise, ctx ends or the budget is spent. Failures that come back
// at once (nobody answering) are spaced out so a read does not spin.
func readWithRetry[T any](ctx context.Context, read func(context.Context) (T, error)) (T, error) {
	giveUp := time.Now().Add(readBudget)
	pause := 50 * time.Millisecond
	for {
		actx, cancel := context.WithTimeout(ctx, readAttempt)
		v, err := read(actx)
		cancel()
		err = translate(err)
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
