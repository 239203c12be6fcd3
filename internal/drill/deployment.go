package drill

import (
	"context"
	"log/slog"
	"os"
)

// Deployment is a running copy of the drill's layout (data centers of firebreak processes
// joined through the drill's proxies, or directly with Options.DirectRoutes) for other tools,
// such as the bench, to put load on.
type Deployment struct{ c *cluster }

// Launch starts the layout the options describe under dir and returns once every node is
// healthy and every stream has all its replicas.
func Launch(ctx context.Context, dir string, o Options, log *slog.Logger) (*Deployment, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	c, err := launch(dir, o, log)
	if err != nil {
		return nil, err
	}
	if err := c.waitHealthy(ctx, c.nodes, o.Timeout); err != nil {
		c.shutdown()
		return nil, err
	}
	if err := c.waitReplicated(ctx, c.nodes[0], o.Timeout); err != nil {
		c.shutdown()
		return nil, err
	}
	return &Deployment{c: c}, nil
}

// URLs are the nodes' Client-Server API base URLs.
func (d *Deployment) URLs() []string {
	urls := make([]string, len(d.c.nodes))
	for i, n := range d.c.nodes {
		urls[i] = n.URL()
	}
	return urls
}

// PIDs are the nodes' process ids.
func (d *Deployment) PIDs() []int {
	var pids []int
	for _, n := range d.c.nodes {
		n.mu.Lock()
		if n.cmd != nil && n.cmd.Process != nil {
			pids = append(pids, n.cmd.Process.Pid)
		}
		n.mu.Unlock()
	}
	return pids
}

// Close stops every node and proxy.
func (d *Deployment) Close() { d.c.shutdown() }
