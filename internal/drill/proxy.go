package drill

import (
	"errors"
	"io"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// proxy is one directed link: a listener that forwards every connection to one node's
// cluster port, adding one-way latency and obeying a cut switch. All traffic between data
// centers goes through proxies, so cutting them is a network partition that needs no root.
type proxy struct {
	spec    linkSpec
	ln      net.Listener
	latency time.Duration
	log     *slog.Logger

	cut      atomic.Bool
	bytes    atomic.Int64 // forwarded, both directions
	accepted atomic.Int64
	refused  atomic.Int64

	mu     sync.Mutex
	pipes  map[*pipe]struct{}
	closed bool
	quit   chan struct{} // closed by close
	// open is closed while traffic flows; a silent cut replaces it with one that Heal closes,
	// and every connection waits on it before forwarding anything.
	open chan struct{}
	wg   sync.WaitGroup
}

// startProxy serves ln until close.
func startProxy(ln net.Listener, spec linkSpec, latency time.Duration, log *slog.Logger) *proxy {
	p := &proxy{spec: spec, ln: ln, latency: latency, log: log, pipes: map[*pipe]struct{}{},
		quit: make(chan struct{}), open: make(chan struct{})}
	close(p.open)
	p.wg.Add(1)
	go p.acceptLoop()
	return p
}

func (p *proxy) Addr() string { return p.ln.Addr().String() }

// Cut closes every open connection and refuses new ones until Heal, as a firewall that
// rejects does: both ends learn of it at once.
func (p *proxy) Cut() {
	p.cut.Store(true)
	p.mu.Lock()
	defer p.mu.Unlock()
	for pp := range p.pipes {
		pp.close()
	}
}

// Blackhole stops every byte until Heal, as a dead switch or a dropping firewall does:
// connections stay open and new ones are accepted, and nothing reaches the other side, so
// the nodes notice only when their pings go unanswered.
func (p *proxy) Blackhole() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.passing() {
		p.open = make(chan struct{})
	}
}

// Heal lets connections through again.
func (p *proxy) Heal() {
	p.cut.Store(false)
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.passing() {
		close(p.open)
	}
}

// passing reports whether traffic flows (no silent cut). Called with mu held.
func (p *proxy) passing() bool {
	select {
	case <-p.open:
		return true
	default:
		return false
	}
}

// waitOpen blocks while the link is silently cut; false when done closes first.
func (p *proxy) waitOpen(done <-chan struct{}) bool {
	p.mu.Lock()
	open := p.open
	p.mu.Unlock()
	select {
	case <-open:
		return true
	case <-done:
		return false
	}
}

// close stops the listener and every connection and waits for their goroutines.
func (p *proxy) close() {
	p.mu.Lock()
	if !p.closed {
		close(p.quit)
	}
	p.closed = true
	for pp := range p.pipes {
		pp.close()
	}
	p.mu.Unlock()
	p.ln.Close()
	p.wg.Wait()
}

func (p *proxy) acceptLoop() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			if !errors.Is(err, net.ErrClosed) {
				p.log.Warn("proxy accept failed", "link", p.name(), "err", err)
			}
			return
		}
		if p.cut.Load() {
			// Refused: the dialing node sees its connection closed at once, as with a
			// firewall that rejects.
			p.refused.Add(1)
			c.Close()
			continue
		}
		p.accepted.Add(1)
		p.wg.Add(1)
		go func() {
			defer p.wg.Done()
			p.forward(c)
		}()
	}
}

func (p *proxy) name() string { return p.spec.FromDC + "->" + p.spec.ToNode }

// forward connects the accepted connection to the target and copies both ways until either
// side closes or the link is cut.
func (p *proxy) forward(client net.Conn) {
	// A connection made during a silent cut reaches nobody until the link heals.
	if !p.waitOpen(p.quit) {
		client.Close()
		return
	}
	server, err := net.DialTimeout("tcp", p.spec.Target, 2*time.Second)
	if err != nil {
		client.Close()
		return
	}
	pp := &pipe{a: client, b: server, done: make(chan struct{})}
	if !p.register(pp) {
		pp.close()
		return
	}
	defer p.unregister(pp)
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); p.copy(pp, server, client) }()
	go func() { defer wg.Done(); p.copy(pp, client, server) }()
	wg.Wait()
}

// register adds a connection unless the link was cut or closed while it was being dialed.
func (p *proxy) register(pp *pipe) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed || p.cut.Load() {
		return false
	}
	p.pipes[pp] = struct{}{}
	return true
}

func (p *proxy) unregister(pp *pipe) {
	p.mu.Lock()
	delete(p.pipes, pp)
	p.mu.Unlock()
}

// copy moves bytes from src to dst, each chunk delayed by the link's latency, in order.
// Either side failing closes the pair, which ends the other direction too.
func (p *proxy) copy(pp *pipe, dst, src net.Conn) {
	defer pp.close()
	if p.latency <= 0 {
		_, _ = io.Copy(heldWriter{p, pp, countingWriter{dst, &p.bytes}}, src)
		return
	}
	type chunk struct {
		data []byte
		due  time.Time
	}
	// The reader stamps each chunk with when it may leave and the writer holds it until then,
	// so the link adds latency without cutting throughput to one chunk per latency.
	queue := make(chan chunk, 256)
	var reader sync.WaitGroup
	reader.Add(1)
	defer func() { pp.close(); reader.Wait() }() // closing src ends the reader's Read
	go func() {
		defer reader.Done()
		defer close(queue)
		for {
			buf := make([]byte, 32<<10)
			n, err := src.Read(buf)
			if n > 0 {
				select {
				case queue <- chunk{buf[:n], time.Now().Add(p.latency)}:
				case <-pp.done:
					return
				}
			}
			if err != nil {
				return
			}
		}
	}()
	for c := range queue {
		select {
		case <-time.After(time.Until(c.due)):
		case <-pp.done:
			return
		}
		if !p.waitOpen(pp.done) {
			return
		}
		if _, err := dst.Write(c.data); err != nil {
			return
		}
		p.bytes.Add(int64(len(c.data)))
	}
}

// pipe is one proxied connection: the accepted side and the dialed side.
type pipe struct {
	a, b net.Conn
	once sync.Once
	done chan struct{}
}

func (pp *pipe) close() {
	pp.once.Do(func() {
		close(pp.done)
		pp.a.Close()
		pp.b.Close()
	})
}

// heldWriter holds each write while the link is silently cut.
type heldWriter struct {
	p  *proxy
	pp *pipe
	w  io.Writer
}

func (h heldWriter) Write(b []byte) (int, error) {
	if !h.p.waitOpen(h.pp.done) {
		return 0, net.ErrClosed
	}
	return h.w.Write(b)
}

type countingWriter struct {
	w io.Writer
	n *atomic.Int64
}

func (c countingWriter) Write(b []byte) (int, error) {
	n, err := c.w.Write(b)
	c.n.Add(int64(n))
	return n, err
}

// LinkStats is what one link carried during the drill.
type LinkStats struct {
	Link     string `json:"link"`
	Bytes    int64  `json:"bytes"`
	Accepted int64  `json:"connections"`
	Refused  int64  `json:"refused"`
}

func (p *proxy) stats() LinkStats {
	return LinkStats{Link: p.name(), Bytes: p.bytes.Load(), Accepted: p.accepted.Load(), Refused: p.refused.Load()}
}

// dialedFrom lists the local addresses of the connections the proxy made to its target, so
// the bypass check can tell a proxied route from a direct one.
func (p *proxy) dialedFrom() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make([]string, 0, len(p.pipes))
	for pp := range p.pipes {
		out = append(out, pp.b.LocalAddr().String())
	}
	return out
}
