package drill

import (
	"context"
	"sync"
	"sync/atomic"
	"time"
)

// healthPollInterval is how often the simulated global load balancer checks every node.
const healthPollInterval = 500 * time.Millisecond

// balancer plays the global load balancer in front of the deployment: it polls every node's
// /_firebreak/health and steers clients away from nodes that fail it, the way DNS or an
// anycast front end drains a lost or cut-off data center.
type balancer struct {
	c       *cluster
	healthy []atomic.Bool
}

func newBalancer(c *cluster) *balancer {
	b := &balancer{c: c, healthy: make([]atomic.Bool, len(c.nodes))}
	for i := range b.healthy {
		b.healthy[i].Store(true)
	}
	return b
}

// run polls until ctx ends.
func (b *balancer) run(ctx context.Context) {
	for {
		var wg sync.WaitGroup
		for i, n := range b.c.nodes {
			wg.Add(1)
			go func() {
				defer wg.Done()
				pctx, cancel := context.WithTimeout(ctx, time.Second)
				defer cancel()
				b.healthy[i].Store(b.c.healthOf(pctx, n))
			}()
		}
		wg.Wait()
		select {
		case <-ctx.Done():
			return
		case <-time.After(healthPollInterval):
		}
	}
}

func (b *balancer) healthyCount() int {
	n := 0
	for i := range b.healthy {
		if b.healthy[i].Load() {
			n++
		}
	}
	return n
}

// cursor is one client connection's current node. It stays on a node while requests succeed
// and the balancer finds it healthy, and moves to the next healthy node otherwise.
type cursor struct {
	b      *balancer
	i      int
	pinned bool // always the same node, whatever its health (the partition's probes)
}

func (b *balancer) cursorAt(i int) *cursor { return &cursor{b: b, i: i % len(b.c.nodes)} }

// node is where the next request goes.
func (c *cursor) node() *node {
	if !c.pinned && !c.b.healthy[c.i].Load() {
		c.move()
	}
	return c.b.c.nodes[c.i]
}

// move steps to the next node the balancer finds healthy; with none healthy, to the next one.
func (c *cursor) move() {
	if c.pinned {
		return
	}
	n := len(c.b.c.nodes)
	for k := 1; k <= n; k++ {
		if j := (c.i + k) % n; c.b.healthy[j].Load() {
			c.i = j
			return
		}
	}
	c.i = (c.i + 1) % n
}
