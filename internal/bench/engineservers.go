package bench

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	"github.com/firebreak/firebreak/internal/store"
)

const (
	// engineAttempts and engineStartTimeout bound the engine's start: in trials one cluster
	// start in about ten hung in stream creation; a fresh cluster on fresh ports then came up.
	engineAttempts     = 3
	engineStartTimeout = 60 * time.Second
	// engineStopGrace is how long a server whose stdin closed has to stop before it is killed.
	engineStopGrace = 10 * time.Second
	// engineDCs is the data centers a cluster's servers are spread over, as the deployment's
	// nodes are (drill's layout).
	engineDCs = 3
)

// EngineServerCommand is the firebreak subcommand, not for people, that runs one of the
// engine's servers: its one argument is an engineServerSpec in JSON. Each server prints
// engineReady on stdout once its store is open, and stops when its stdin closes. The first
// server, once the bench writes a line to its stdin (when every server is ready), measures
// and prints its EngineResult as one line of JSON.
const EngineServerCommand = "bench-engine-server"

const engineReady = "ready"

// engineMeasureMargin is how much longer than its publishing (EngineOptions.measuring) the
// bench waits for the first server's result: a publish under load may retry for up to 20 s.
const engineMeasureMargin = time.Minute

// engineServerSpec tells one engine server process what to be.
type engineServerSpec struct {
	Dir          string        `json:"dir"`
	Index        int           `json:"index"`
	Addrs        []string      `json:"addrs"` // every server's cluster address; none for a single node
	Streams      int           `json:"streams"`
	Duration     time.Duration `json:"duration"`
	InFlight     int           `json:"in_flight"`
	MessageBytes int           `json:"message_bytes"`
}

// MeasureEngine measures JetStream as the deployment runs it, each server in a process of
// its own as each node is: one server with one replica for a single node; otherwise
// opts.Servers servers (three when fewer are asked for) in one cluster, spread over three
// data center tags, every stream with three replicas (one per data center), publishing
// through the first. With as many servers as the deployment has nodes, the engine pays what
// the deployment's JetStream does for the servers it runs: their Raft groups, routes, idle
// work and a Go runtime each. The servers talk over loopback with no added latency, so this
// is the engine's ceiling, not a WAN figure.
func MeasureEngine(ctx context.Context, opts EngineOptions) (*EngineResult, error) {
	if opts.Streams < 1 {
		return nil, errors.New("engine: no streams to publish to")
	}
	servers := 1
	if opts.Servers > 1 {
		servers = max(opts.Servers, engineDCs)
	}
	var err error
	for attempt := 1; attempt <= engineAttempts; attempt++ {
		var res *EngineResult
		dir := filepath.Join(opts.Dir, fmt.Sprintf("try%d", attempt))
		res, err = runEngineServers(ctx, opts, dir, servers)
		if err == nil {
			opts.log().Info("bench: engine measured", "sync_per_sec", int(res.SyncPerSec), "async_per_sec", int(res.AsyncPerSec))
			return res, nil
		}
		if ctx.Err() != nil {
			return nil, err
		}
		opts.log().Warn("bench: engine did not start or failed; trying again on fresh ports", "attempt", attempt, "err", err)
		_ = os.RemoveAll(dir)
	}
	return nil, err
}

// runEngineServers starts the servers, waits until every one is ready, has the first one
// measure, and stops them all.
func runEngineServers(ctx context.Context, opts EngineOptions, dir string, n int) (*EngineResult, error) {
	spec := engineServerSpec{Dir: dir, Streams: opts.Streams, Duration: opts.Duration, InFlight: opts.InFlight,
		MessageBytes: opts.MessageBytes}
	if n > 1 {
		var err error
		if spec.Addrs, err = distinctLoopbackAddrs(n); err != nil {
			return nil, err
		}
	}
	var servers []*engineServer
	defer func() { stopEngineServers(servers) }()
	for i := range n {
		spec.Index = i
		s, err := startEngineServer(ctx, opts.Binary, spec)
		if err != nil {
			return nil, err
		}
		servers = append(servers, s)
	}
	for _, s := range servers {
		line, err := s.nextLine(ctx, engineStartTimeout)
		if err == nil && line != engineReady {
			err = fmt.Errorf("engine server said %q, not %q", line, engineReady)
		}
		if err != nil {
			return nil, err
		}
	}
	first := servers[0]
	if _, err := io.WriteString(first.stdin, "measure\n"); err != nil {
		return nil, err
	}
	line, err := first.nextLine(ctx, opts.measuring()+engineMeasureMargin)
	if err != nil {
		return nil, err
	}
	var res EngineResult
	if err := json.Unmarshal([]byte(line), &res); err != nil {
		return nil, fmt.Errorf("engine server's result: %w", err)
	}
	return &res, nil
}

// engineServer is one running engine server process.
type engineServer struct {
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	lines  <-chan string // what it prints, closed when it exits
	stderr bytes.Buffer
}

func startEngineServer(ctx context.Context, binary string, spec engineServerSpec) (*engineServer, error) {
	arg, err := json.Marshal(spec)
	if err != nil {
		return nil, err
	}
	s := &engineServer{cmd: exec.CommandContext(ctx, binary, EngineServerCommand, string(arg))}
	s.cmd.Stderr = &s.stderr
	s.cmd.WaitDelay = engineStopGrace
	if s.stdin, err = s.cmd.StdinPipe(); err != nil {
		return nil, err
	}
	stdout, err := s.cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := s.cmd.Start(); err != nil {
		return nil, fmt.Errorf("engine server: %w", err)
	}
	lines := make(chan string, 2) // engineReady and the result: the reader never blocks
	go func() {                   // ends when the process exits and its stdout closes
		defer close(lines)
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			lines <- sc.Text()
		}
	}()
	s.lines = lines
	return s, nil
}

// nextLine is the next line the server prints, waited for at most d.
func (s *engineServer) nextLine(ctx context.Context, d time.Duration) (string, error) {
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case line, ok := <-s.lines:
		if !ok {
			_ = s.cmd.Wait()
			return "", fmt.Errorf("engine server exited: %s", strings.TrimSpace(s.stderr.String()))
		}
		return line, nil
	case <-timer.C:
		return "", fmt.Errorf("engine server: nothing after %v", d)
	case <-ctx.Done():
		return "", ctx.Err()
	}
}

// stopEngineServers closes every server's stdin, which each takes as the end of its work,
// and waits for them; those still running after engineStopGrace are killed.
func stopEngineServers(servers []*engineServer) {
	for _, s := range servers {
		_ = s.stdin.Close()
	}
	kill := time.AfterFunc(engineStopGrace, func() {
		for _, s := range servers {
			_ = s.cmd.Process.Kill() // an error for those that exited already
		}
	})
	defer kill.Stop()
	for _, s := range servers {
		if s.cmd.ProcessState == nil {
			_ = s.cmd.Wait()
		}
	}
}

// RunEngineServer is EngineServerCommand: it runs the server specArg describes until stdin
// closes, and, if it is the first, measures when told to and prints the result on stdout.
func RunEngineServer(ctx context.Context, specArg string, stdin io.Reader, stdout io.Writer) error {
	var spec engineServerSpec
	if err := json.Unmarshal([]byte(specArg), &spec); err != nil {
		return fmt.Errorf("engine server spec: %w", err)
	}
	if procs, ok := store.ProcsForEmbedded(1); ok {
		runtime.GOMAXPROCS(procs) // what a node embedding its server runs with
	}
	ctx, stop := context.WithCancel(ctx)
	defer stop()
	told := make(chan struct{}, 1)
	go func() { // the bench's word to measure; stdin's end (the bench stopping or gone) stops all
		defer stop()
		sc := bufio.NewScanner(stdin)
		for sc.Scan() {
			select {
			case told <- struct{}{}:
			default:
			}
		}
	}()
	openCtx, cancel := context.WithTimeout(ctx, engineStartTimeout)
	st, err := store.Open(openCtx, spec.storeOptions())
	cancel()
	if err != nil {
		return err
	}
	defer st.Close()
	if _, err := fmt.Fprintln(stdout, engineReady); err != nil {
		return err
	}
	if spec.Index > 0 {
		<-ctx.Done()
		return nil
	}
	select {
	case <-told:
	case <-ctx.Done():
		return nil
	}
	res, err := measurePublishes(ctx, st, max(len(spec.Addrs), 1), spec.replicas(), EngineOptions{
		Duration: spec.Duration, InFlight: spec.InFlight, MessageBytes: spec.MessageBytes})
	if err != nil {
		return err
	}
	return json.NewEncoder(stdout).Encode(res)
}

func (spec engineServerSpec) replicas() int {
	if len(spec.Addrs) > 1 {
		return 3
	}
	return 1
}

// storeOptions are a single node's store, or a cluster node's in the data center its index
// puts it in. The engine's servers log nothing: a cluster's start is noisy with expected
// "connection refused" while its nodes find each other.
func (spec engineServerSpec) storeOptions() store.Options {
	name := fmt.Sprintf("engine%d", spec.Index+1)
	opts := store.Options{DataDir: filepath.Join(spec.Dir, name), NodeName: name, Replicas: spec.replicas(),
		RoomShards: spec.Streams, Logger: slog.New(slog.DiscardHandler)}
	if len(spec.Addrs) > 1 {
		var routes []string
		for j, a := range spec.Addrs {
			if j != spec.Index {
				routes = append(routes, a)
			}
		}
		opts.Cluster = &store.ClusterOptions{Name: "bench-engine", DC: fmt.Sprintf("dc%d", spec.Index%engineDCs+1),
			Listen: spec.Addrs[spec.Index], Routes: routes, Size: len(spec.Addrs)}
	}
	return opts
}

// distinctLoopbackAddrs picks n loopback addresses whose ports were free a moment ago and
// differ from each other (the kernel may hand a just-closed port out again).
func distinctLoopbackAddrs(n int) ([]string, error) {
	seen := map[string]bool{}
	var out []string
	for tries := 0; len(out) < n; tries++ {
		if tries > 100 {
			return nil, errors.New("no free loopback ports")
		}
		a, err := freeLoopbackAddr()
		if err != nil {
			return nil, err
		}
		if !seen[a] {
			seen[a] = true
			out = append(out, a)
		}
	}
	return out, nil
}
