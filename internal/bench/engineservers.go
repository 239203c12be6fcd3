package bench

import (
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
// engine's servers: its one argument is an engineServerSpec in JSON. The first server
// measures and prints its EngineResult as JSON; the others serve until their stdin closes.
const EngineServerCommand = "bench-engine-server"

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

// runEngineServers starts the servers, waits for the first one's result and stops the rest.
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
	defer func() {
		for _, s := range servers {
			s.stop()
		}
	}()
	for i := range n {
		spec.Index = i
		s, err := startEngineServer(ctx, opts.Binary, spec)
		if err != nil {
			return nil, err
		}
		servers = append(servers, s)
	}
	return servers[0].result()
}

// engineServer is one running engine server process.
type engineServer struct {
	cmd    *exec.Cmd
	stdin  io.Closer
	stdout bytes.Buffer
	stderr bytes.Buffer
}

func startEngineServer(ctx context.Context, binary string, spec engineServerSpec) (*engineServer, error) {
	arg, err := json.Marshal(spec)
	if err != nil {
		return nil, err
	}
	s := &engineServer{cmd: exec.CommandContext(ctx, binary, EngineServerCommand, string(arg))}
	s.cmd.Stdout, s.cmd.Stderr = &s.stdout, &s.stderr
	s.cmd.WaitDelay = engineStopGrace
	if s.stdin, err = s.cmd.StdinPipe(); err != nil {
		return nil, err
	}
	if err := s.cmd.Start(); err != nil {
		return nil, fmt.Errorf("engine server: %w", err)
	}
	return s, nil
}

// result waits for the measuring server to finish and reads what it printed.
func (s *engineServer) result() (*EngineResult, error) {
	if err := s.cmd.Wait(); err != nil {
		return nil, fmt.Errorf("engine server: %w: %s", err, strings.TrimSpace(s.stderr.String()))
	}
	var res EngineResult
	if err := json.Unmarshal(s.stdout.Bytes(), &res); err != nil {
		return nil, fmt.Errorf("engine server's result: %w", err)
	}
	return &res, nil
}

// stop closes the server's stdin, which it takes as the end of its work, and waits for it;
// one that has not stopped after engineStopGrace is killed.
func (s *engineServer) stop() {
	_ = s.stdin.Close()
	if s.cmd.ProcessState != nil {
		return
	}
	timer := time.AfterFunc(engineStopGrace, func() { _ = s.cmd.Process.Kill() })
	defer timer.Stop()
	_ = s.cmd.Wait()
}

// RunEngineServer is EngineServerCommand: it runs the server specArg describes, measures
// if it is the first and prints the result on stdout, or else serves until stdin closes.
func RunEngineServer(ctx context.Context, specArg string, stdin io.Reader, stdout io.Writer) error {
	var spec engineServerSpec
	if err := json.Unmarshal([]byte(specArg), &spec); err != nil {
		return fmt.Errorf("engine server spec: %w", err)
	}
	if procs, ok := store.ProcsForEmbedded(1); ok {
		runtime.GOMAXPROCS(procs) // what a node embedding its server runs with
	}
	openCtx, cancel := context.WithTimeout(ctx, engineStartTimeout)
	st, err := store.Open(openCtx, spec.storeOptions())
	cancel()
	if err != nil {
		return err
	}
	defer st.Close()
	if spec.Index > 0 {
		_, err := io.Copy(io.Discard, stdin)
		return err
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
