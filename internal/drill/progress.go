package drill

import (
	"context"
	"fmt"
	"io"
	"sync"
	"time"
)

// progress prints one status line per second while the drill runs.
type progress struct {
	w       io.Writer
	started time.Time

	mu    sync.Mutex
	phase string
	c     *cluster
	bal   *balancer
	l     *load
}

func (p *progress) set(phase string) {
	p.mu.Lock()
	p.phase = phase
	p.mu.Unlock()
}

// watch makes the cluster, balancer and load part of the status line as they come to exist.
func (p *progress) watch(c *cluster, bal *balancer, l *load) {
	p.mu.Lock()
	p.c, p.bal, p.l = c, bal, l
	p.mu.Unlock()
}

// run prints until ctx ends.
func (p *progress) run(ctx context.Context) {
	if p.w == nil {
		return
	}
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			fmt.Fprintln(p.w, p.line())
		}
	}
}

func (p *progress) line() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	s := fmt.Sprintf("[%5.1fs] %-26s", time.Since(p.started).Seconds(), p.phase)
	if p.l != nil {
		s += fmt.Sprintf(" sends ok=%-6d failed=%-5d syncs ok=%-6d failed=%-5d", p.l.sendsOK.Load(), p.l.sendsFailed.Load(),
			p.l.syncsOK.Load(), p.l.syncsFailed.Load())
	}
	if p.c != nil {
		up := 0
		for _, n := range p.c.nodes {
			if n.running() {
				up++
			}
		}
		s += fmt.Sprintf(" nodes up=%d/%d", up, len(p.c.nodes))
	}
	if p.bal != nil {
		s += fmt.Sprintf(" healthy=%d", p.bal.healthyCount())
	}
	return s
}
