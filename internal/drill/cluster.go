package drill

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"
)

// stopGrace is how long a node gets to exit on SIGTERM before it is killed.
const stopGrace = 15 * time.Second

// node is one firebreak process and where it lives.
type node struct {
	nodeSpec
	mu     sync.Mutex
	cmd    *exec.Cmd
	exited chan struct{} // closed when the current process has exited
}

// cluster is the deployment the drill runs: its nodes and the proxies between them (none with
// Options.DirectRoutes).
type cluster struct {
	topo    topology
	nodes   []*node
	proxies []*proxy
	bin     string
	log     *slog.Logger
	http    *http.Client
}

// launch plans the deployment under dir, opens the proxies and starts every node. The nodes
// need each other to bootstrap, so all start at once; waitHealthy tells when they are up.
func launch(dir string, o Options, log *slog.Logger) (*cluster, error) {
	ports := newPortPicker()
	topo, err := planTopology(dir, o.DCs, o.NodesPerDC, ports)
	if err != nil {
		return nil, err
	}
	c := &cluster{topo: topo, bin: o.Binary, log: log, http: &http.Client{Timeout: 2 * time.Second}}
	// linkAddr is where a node of one data center dials another node: that node's proxy for
	// the link, or the node itself with direct routes.
	linkAddr := map[string]string{}
	for _, l := range topo.Links {
		if o.DirectRoutes {
			linkAddr[l.FromDC+"->"+l.ToNode] = l.Target
			continue
		}
		dc, _ := dcIndex(l.FromDC, o.DCs)
		ln, err := ports.listen(proxyHost(dc))
		if err != nil {
			c.shutdown()
			return nil, err
		}
		latency := o.InterDCLatency
		if l.Local {
			latency = 0
		}
		p := startProxy(ln, l, latency, log)
		c.proxies = append(c.proxies, p)
		linkAddr[l.FromDC+"->"+l.ToNode] = p.Addr()
	}
	for _, spec := range topo.Nodes {
		routes := topo.routes(spec, func(from, to string) string { return linkAddr[from+"->"+to] })
		if err := writeConfig(spec, len(topo.Nodes), o.RoomShards, routes); err != nil {
			c.shutdown()
			return nil, err
		}
		c.nodes = append(c.nodes, &node{nodeSpec: spec})
	}
	for _, n := range c.nodes {
		if err := n.start(c.bin); err != nil {
			c.shutdown()
			return nil, err
		}
	}
	return c, nil
}

// start runs `firebreak serve` for the node, appending its output to the node's log.
func (n *node) start(bin string) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.cmd != nil {
		return fmt.Errorf("%s is already running", n.Name)
	}
	if err := os.MkdirAll(n.Dir, 0o700); err != nil {
		return err
	}
	logf, err := os.OpenFile(n.LogPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	fmt.Fprintf(logf, "==== drill: starting %s at %s\n", n.Name, time.Now().Format(time.RFC3339Nano))
	cmd := exec.Command(bin, "serve", "--config", n.ConfigPath)
	cmd.Stdout, cmd.Stderr = logf, logf
	isolate(cmd)
	if err := cmd.Start(); err != nil {
		logf.Close()
		return fmt.Errorf("start %s: %w", n.Name, err)
	}
	exited := make(chan struct{})
	n.cmd, n.exited = cmd, exited
	go func() {
		_ = cmd.Wait()
		logf.Close()
		close(exited)
		n.mu.Lock()
		if n.cmd == cmd {
			n.cmd = nil
		}
		n.mu.Unlock()
	}()
	return nil
}

func (n *node) running() bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.cmd != nil
}

// signal sends sig to the node's process group and returns a channel closed at its exit
// (nil when it was not running).
func (n *node) signal(sig syscall.Signal) <-chan struct{} {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.cmd == nil {
		return nil
	}
	_ = signalGroup(n.cmd, sig)
	return n.exited
}

// stop asks the node to exit and kills it if it has not within stopGrace.
func (n *node) stop() {
	exited := n.signal(syscall.SIGTERM)
	if exited == nil {
		return
	}
	select {
	case <-exited:
	case <-time.After(stopGrace):
		if e := n.signal(syscall.SIGKILL); e != nil {
			<-e
		}
	}
}

// killDC SIGKILLs every process of the data center at once, then waits for them to be gone.
func (c *cluster) killDC(dc string) {
	var exits []<-chan struct{}
	for _, n := range c.in(dc) {
		if e := n.signal(syscall.SIGKILL); e != nil {
			exits = append(exits, e)
		}
	}
	for _, e := range exits {
		<-e
	}
}

// startDC starts the data center's nodes again on whatever is in their data dirs.
func (c *cluster) startDC(dc string) error {
	for _, n := range c.in(dc) {
		if err := n.start(c.bin); err != nil {
			return err
		}
	}
	return nil
}

// wipeDC deletes the data center's data dirs: a restore onto new disks.
func (c *cluster) wipeDC(dc string) error {
	for _, n := range c.in(dc) {
		if n.running() {
			return fmt.Errorf("%s is still running", n.Name)
		}
		if err := os.RemoveAll(n.DataDir); err != nil {
			return err
		}
	}
	return nil
}

// cutDC cuts every link into and out of the data center (how: CutReject or CutBlackhole); its
// nodes keep running.
func (c *cluster) cutDC(dc, how string) {
	if how == CutBlackhole {
		c.eachLinkOf(dc, (*proxy).Blackhole)
	} else {
		c.eachLinkOf(dc, (*proxy).Cut)
	}
}

// healDC lets the data center's links carry traffic again.
func (c *cluster) healDC(dc string) { c.eachLinkOf(dc, (*proxy).Heal) }

func (c *cluster) eachLinkOf(dc string, fn func(*proxy)) {
	inDC := map[string]bool{}
	for _, n := range c.in(dc) {
		inDC[n.Name] = true
	}
	for _, p := range c.proxies {
		if !p.spec.Local && (p.spec.FromDC == dc || inDC[p.spec.ToNode]) {
			fn(p)
		}
	}
}

// shutdown stops every node (SIGTERM, then SIGKILL after stopGrace) and closes the proxies.
func (c *cluster) shutdown() {
	var wg sync.WaitGroup
	for _, n := range c.nodes {
		wg.Add(1)
		go func() { defer wg.Done(); n.stop() }()
	}
	wg.Wait()
	for _, p := range c.proxies {
		p.close()
	}
}

func (c *cluster) in(dc string) []*node {
	var out []*node
	for _, n := range c.nodes {
		if n.DC == dc {
			out = append(out, n)
		}
	}
	return out
}

func (c *cluster) outside(dc string) []*node {
	var out []*node
	for _, n := range c.nodes {
		if n.DC != dc {
			out = append(out, n)
		}
	}
	return out
}

// lastLogLine is the last line a node wrote, usually why it exited.
func lastLogLine(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	return lines[len(lines)-1]
}

func (c *cluster) linkStats() []LinkStats {
	out := make([]LinkStats, len(c.proxies))
	for i, p := range c.proxies {
		out[i] = p.stats()
	}
	return out
}

// healthOf asks a node whether it can take writes: true on 200, false on anything else.
func (c *cluster) healthOf(ctx context.Context, n *node) bool {
	h, err := c.healthReportOf(ctx, n)
	return err == nil && h.Writable
}

// healthReport is the body of /_firebreak/health (200 when writable, 503 otherwise).
type healthReport struct {
	Writable bool `json:"writable"`
	Fenced   bool `json:"fenced"`
}

func (c *cluster) healthReportOf(ctx context.Context, n *node) (healthReport, error) {
	var h healthReport
	err := c.getJSON(ctx, n, "/_firebreak/health", &h, http.StatusOK, http.StatusServiceUnavailable)
	return h, err
}

// replication is the body of /_firebreak/replication.
type replication struct {
	Complete bool `json:"complete"`
	Streams  []struct {
		Name     string `json:"name"`
		Leader   string `json:"leader"`
		Replicas int    `json:"replicas"`
		Current  int    `json:"current"`
	} `json:"streams"`
}

func (c *cluster) replicationOf(ctx context.Context, n *node) (replication, error) {
	var r replication
	return r, c.getJSON(ctx, n, "/_firebreak/replication", &r, http.StatusOK)
}

// getJSON GETs one of the node's operations endpoints and decodes its body when the status is
// one of those listed.
func (c *cluster) getJSON(ctx context.Context, n *node, path string, into any, statuses ...int) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, n.URL()+path, nil)
	if err != nil {
		return err
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if !slices.Contains(statuses, resp.StatusCode) {
		return fmt.Errorf("%s: %s: HTTP %d", n.Name, path, resp.StatusCode)
	}
	return json.NewDecoder(resp.Body).Decode(into)
}

// waitUntil polls cond every interval until it holds, ctx ends or timeout passes.
func waitUntil(ctx context.Context, timeout, interval time.Duration, what string, cond func(context.Context) bool) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	for {
		if cond(ctx) {
			return nil
		}
		select {
		case <-ctx.Done():
			if errors.Is(ctx.Err(), context.DeadlineExceeded) {
				return fmt.Errorf("%s: not within %s", what, timeout)
			}
			return ctx.Err()
		case <-time.After(interval):
		}
	}
}

// allHealthy reports whether every listed node runs and answers its health check with 200.
func (c *cluster) allHealthy(ctx context.Context, nodes []*node) bool {
	for _, n := range nodes {
		if !n.running() || !c.healthOf(ctx, n) {
			return false
		}
	}
	return true
}

// waitHealthy waits until every listed node is healthy.
func (c *cluster) waitHealthy(ctx context.Context, nodes []*node, timeout time.Duration) error {
	return waitUntil(ctx, timeout, 250*time.Millisecond, "nodes healthy", func(ctx context.Context) bool {
		return c.allHealthy(ctx, nodes)
	})
}

// waitReplicated waits until the node reports every stream with all its replicas current.
func (c *cluster) waitReplicated(ctx context.Context, via *node, timeout time.Duration) error {
	return waitUntil(ctx, timeout, 250*time.Millisecond, "replication complete", func(ctx context.Context) bool {
		r, err := c.replicationOf(ctx, via)
		return err == nil && r.Complete
	})
}

// streamLeaders maps every stream to the data center of its leader, as one node reports it.
func (c *cluster) streamLeaders(ctx context.Context, via *node) map[string]string {
	dcOf := map[string]string{}
	for _, n := range c.nodes {
		dcOf[n.Name] = n.DC
	}
	out := map[string]string{}
	if r, err := c.replicationOf(ctx, via); err == nil {
		for _, s := range r.Streams {
			out[s.Name] = dcOf[s.Leader]
		}
	}
	return out
}

// busiestDC is the data center whose nodes lead the most streams: losing it forces the most
// elections.
func (c *cluster) busiestDC(ctx context.Context) string {
	count := map[string]int{}
	for _, dc := range c.streamLeaders(ctx, c.nodes[0]) {
		count[dc]++
	}
	best := c.nodes[len(c.nodes)-1].DC
	for dc, n := range count {
		if dc != "" && (n > count[best] || n == count[best] && dc < best) {
			best = dc
		}
	}
	return best
}
