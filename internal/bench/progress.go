package bench

import (
	"fmt"
	"io"
	"os"
	"sync"
	"time"
)

// progress prints one status line a second while a run goes on. On a terminal it rewrites
// the line in place; into a file or pipe it writes a line every few seconds instead.
type progress struct {
	w      io.Writer
	st     *stats
	phase  func() string
	tty    bool
	stop   chan struct{}
	done   sync.WaitGroup
	last   uint64
	lastAt time.Time
}

func startProgress(w io.Writer, st *stats, phase func() string) *progress {
	p := &progress{w: w, st: st, phase: phase, tty: isTerminal(w), stop: make(chan struct{}), lastAt: time.Now()}
	if w == nil {
		return p
	}
	p.done.Add(1)
	go p.loop()
	return p
}

func (p *progress) loop() {
	defer p.done.Done()
	every := time.Second
	if !p.tty {
		every = 5 * time.Second
	}
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-p.stop:
			if p.tty {
				fmt.Fprintln(p.w)
			}
			return
		case <-t.C:
			p.print()
		}
	}
}

func (p *progress) print() {
	now := time.Now()
	acked := p.st.acked.Load()
	rate := float64(acked-p.last) / now.Sub(p.lastAt).Seconds()
	p.last, p.lastAt = acked, now
	_, errs := p.st.errorCounts()
	_, delivered, _, _ := p.st.msgs.counts()
	line := fmt.Sprintf("%-22s acked %d (%.0f/s now), ack p99 %.1fms | delivered %d, p50 %.1fms p99 %.1fms | in flight %d | errors %d",
		p.phase(), acked, rate, Ms(p.st.ack.Quantile(0.99)), delivered,
		Ms(p.st.delivery.Quantile(0.5)), Ms(p.st.delivery.Quantile(0.99)), p.st.inFlight.Load(), errs)
	if p.tty {
		fmt.Fprintf(p.w, "\r%-150s", line)
	} else {
		fmt.Fprintln(p.w, line)
	}
}

// Stop ends the progress line; the caller's final report follows on a clean line.
func (p *progress) Stop() {
	select {
	case <-p.stop:
		return
	default:
		close(p.stop)
	}
	p.done.Wait()
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}
