package drill

import (
	"context"
	"fmt"
	"sync"
	"time"
)

// probeInterval paces each probe's sends; probeTimeout is shorter than a client's send
// timeout, so a cut-off node that holds a send is tried more often.
const (
	probeInterval = 500 * time.Millisecond
	probeTimeout  = 3 * time.Second
)

// probeStats counts what the partition's probes saw through the cut-off nodes.
type probeStats struct {
	Attempts     int64 `json:"attempts"`
	Acknowledged int64 `json:"acknowledged"`
	Failed       int64 `json:"failed"`
}

// prober writes through one cut-off node only, ignoring the load balancer: a client that
// cannot move. Every send it gets acknowledged must survive the partition.
type prober struct {
	user *simUser
	sess session // a second device of user, so its transaction ids are its own
	node *node
	room string
}

// prepareProbes logs a second device in for one user per node, while the cluster is whole.
func (l *load) prepareProbes(ctx context.Context, nodes []*node) ([]*prober, error) {
	var out []*prober
	for i, n := range nodes {
		u := l.users[i%len(l.users)]
		p := &prober{user: u, node: n, room: u.rooms[0]}
		a := api{hc: l.hc}
		err := retry(ctx, l.o.Timeout, "probe login", l.bal.cursorAt(u.idx), func(ctx context.Context, n *node) error {
			var err error
			p.sess, err = a.login(ctx, n.URL(), u.name, u.password)
			return err
		})
		if err != nil {
			return nil, err
		}
		out = append(out, p)
	}
	return out, nil
}

// runProbes sends through each probe's node until ctx ends, then returns.
func (l *load) runProbes(ctx context.Context, probes []*prober) {
	var wg sync.WaitGroup
	for _, p := range probes {
		wg.Add(1)
		go func() { defer wg.Done(); l.probeLoop(ctx, p) }()
	}
	wg.Wait()
}

func (l *load) probeLoop(ctx context.Context, p *prober) {
	a := api{hc: l.hc, token: p.sess.Token}
	for n := 1; sleep(ctx, probeInterval); n++ {
		txn := fmt.Sprintf("probe-%s-%d", p.node.Name, n)
		// The same transaction id is retried through the same node until it is acknowledged
		// or the probe stops; each failure must be an error answer or a timeout.
		for ctx.Err() == nil {
			rctx, cancel := context.WithTimeout(ctx, probeTimeout)
			id, err := a.send(rctx, p.node.URL(), p.room, txn, messageContent(p.user.name, txn))
			cancel()
			if ctx.Err() != nil {
				return
			}
			l.probeMu.Lock()
			l.probe.Attempts++
			if err == nil {
				l.probe.Acknowledged++
				l.probeAcks = append(l.probeAcks, ack{Room: p.room, Sender: p.sess.UserID, Txn: txn, EventID: id,
					Node: p.node.Name, At: time.Now(), Probe: true})
			} else {
				l.probe.Failed++
			}
			l.probeMu.Unlock()
			if err == nil {
				break
			}
			sleep(ctx, retryPause)
		}
	}
}
