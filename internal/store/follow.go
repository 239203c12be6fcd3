package store

import (
	"context"
	"errors"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// Shard followers and bucket watches are plain ephemeral consumers, not nats.go's ordered
// consumers, so that recovery stays ours. When an ordered consumer's server dies it recreates
// itself with 10 s requests and a backoff growing to 10 s, and in the first seconds after a
// server is killed outright JetStream's consumer placement may still pick it, so the new
// consumer can land on the dead server and wait out those 10 s again. Here a start gets
// followStartTimeout, a follower whose consumer is lost ends at once, and its caller's restart
// (KeepFollowing) is placed afresh.

// followStartTimeout bounds the creation of a follower's consumer.
const followStartTimeout = 3 * time.Second

// followHeartbeat is how often the server confirms a follower's pull is alive.
const followHeartbeat = time.Second

// followerIdle is how long the server keeps a follower's consumer after its pulls stop: a
// follower that failed leaves its consumer behind, and the server that held it may be gone.
const followerIdle = 15 * time.Second

// errFollowerGap: the consumer skipped a delivery, so what comes next cannot be applied in order.
var errFollowerGap = errors.New("follower: a delivery was skipped")

// followerConfig is a consumer that only delivers, starting after position after: held in
// memory on one server, with no acks to keep.
func followerConfig(after uint64) jetstream.ConsumerConfig {
	return jetstream.ConsumerConfig{
		DeliverPolicy:     jetstream.DeliverByStartSequencePolicy,
		OptStartSeq:       after + 1,
		AckPolicy:         jetstream.AckNonePolicy,
		Replicas:          1,
		MemoryStorage:     true,
		InactiveThreshold: followerIdle,
	}
}

// follow hands every message the consumer cfg delivers from stream to handle, in order, until
// ctx ends or the consumer fails. caughtUp, if set, is called once the messages stored before
// the consumer was created are handled.
//
// After two missed heartbeats it asks for the consumer's info: if no server answers, the
// consumer is lost and follow ends; if one does, the pull was lost (a pull sent just after the
// consumer was created can reach its server before the server listens for it) and it pulls
// again.
func (s *Store) follow(ctx context.Context, stream string, cfg jetstream.ConsumerConfig, caughtUp func(),
	handle func(jetstream.Msg, *jetstream.MsgMetadata)) error {
	cons, err := s.createNearConsumer(ctx, stream, cfg)
	if err != nil {
		return translate(err)
	}
	if caughtUp != nil && cons.CachedInfo().NumPending == 0 {
		caughtUp()
		caughtUp = nil
	}
	it, err := cons.Messages(jetstream.PullHeartbeat(followHeartbeat), jetstream.WithMessagesErrOnMissingHeartbeat(true))
	if err != nil {
		return translate(err)
	}
	defer it.Stop() // also on an error return, or the pull subscription outlives this follower
	stop := context.AfterFunc(ctx, it.Stop)
	defer stop()
	var delivered uint64
	for {
		m, err := it.Next()
		if err != nil {
			if errors.Is(err, jetstream.ErrNoHeartbeat) && consumerAnswers(ctx, cons) {
				continue // the next Next pulls again
			}
			if ctx.Err() != nil {
				s.dropConsumer(stream, cons)
				return ctx.Err()
			}
			return translate(err) // followerIdle cleans up after the consumer
		}
		meta, err := m.Metadata()
		if err != nil {
			return err
		}
		if meta.Sequence.Consumer != delivered+1 {
			return errFollowerGap
		}
		delivered = meta.Sequence.Consumer
		handle(m, meta)
		if caughtUp != nil && meta.NumPending == 0 {
			caughtUp()
			caughtUp = nil
		}
	}
}

// consumerAnswers says whether a follower's consumer still exists on a live server.
func consumerAnswers(ctx context.Context, cons jetstream.Consumer) bool {
	ctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	_, err := cons.Info(ctx)
	return err == nil
}

// dropConsumer deletes a stopped follower's consumer rather than leave it to followerIdle.
func (s *Store) dropConsumer(stream string, cons jetstream.Consumer) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	_ = s.js.DeleteConsumer(ctx, stream, cons.CachedInfo().Name) // best effort: it idles out anyway
}
