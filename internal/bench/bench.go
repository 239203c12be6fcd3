// Package bench is Firebreak's load generator. It speaks only the public Client-Server API,
// so it measures any homeserver: acknowledged sends per second, delivery latency from a send
// to its appearance in every other member's /sync, errors by errcode and the memory held
// long polls cost. It can start a local Firebreak itself, and measures the raw JetStream
// publish rate of the same configuration beside it, so the server's figure can be read as a
// fraction of what its storage engine allows.
package bench

import (
	"cmp"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"syscall"
	"time"
)

// Run performs one bench run as cfg says and returns what it measured. Every phase is
// bounded: the run ends by itself after setup, warm-up, duration and drain.
func Run(ctx context.Context, cfg Config) (*Result, error) {
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	for i, u := range cfg.Homeservers {
		cfg.Homeservers[i] = trimBase(u)
	}
	raiseFileLimit(cfg, cfg.Log)
	dir, err := os.MkdirTemp("", "firebreak-bench-")
	if err != nil {
		return nil, err
	}
	defer cleanup(cfg, dir)
	// The engine goes first, on a quiet machine: after a load run the disk is still writing
	// the server's data back, which slowed fsyncs by up to 4x in trials.
	var engine *EngineResult
	if cfg.Engine || cfg.EngineOnly {
		if engine, err = measureEngineFor(ctx, cfg, filepath.Join(dir, "engine")); err != nil || ctx.Err() != nil {
			return nil, fmt.Errorf("engine: %w", cmp.Or(err, ctx.Err()))
		}
		if cfg.EngineOnly {
			return engineOnlyResult(cfg, engine), nil
		}
	}
	// A run cut short (an interrupt) has counted its sends over less than its duration: its
	// figures would be wrong, so it has none.
	res, err := deployAndRun(ctx, cfg, dir)
	if err != nil || ctx.Err() != nil {
		return nil, cmp.Or(err, ctx.Err())
	}
	res.Engine = engine
	res.compareWithEngine()
	return res, nil
}

// deployAndRun starts the deployment (if local), runs the workload on it and stops it.
func deployAndRun(ctx context.Context, cfg Config, dir string) (*Result, error) {
	dep, err := deploy(ctx, cfg, dir)
	if err != nil {
		return nil, err
	}
	defer func() {
		if err := dep.stop(); err != nil {
			cfg.Log.Warn("bench: stopping the local deployment", "err", err)
		}
	}()
	cfg.Homeservers = dep.urls
	if cfg.SharedSecret == "" {
		cfg.SharedSecret = dep.secret
	}
	return runWorkload(ctx, cfg, dep.procs)
}

// versionsTimeout bounds the first question to each homeserver, which any server answers at
// once: one that takes the connection and says nothing ends the run here.
const versionsTimeout = 10 * time.Second

func runWorkload(ctx context.Context, cfg Config, p procs) (*Result, error) {
	conns := cfg.Users // one sync loop each; sends have their own client (newSendClient)
	if cfg.Workload == WorkloadIdle {
		conns = cfg.Connections + cfg.Users
	}
	transport := newTransport(conns)
	defer transport.CloseIdleConnections()
	hc := &http.Client{Transport: transport}
	for _, u := range cfg.Homeservers {
		vctx, cancel := context.WithTimeout(ctx, versionsTimeout)
		err := versions(vctx, hc, u)
		cancel()
		if err != nil {
			return nil, fmt.Errorf("%s does not answer the Client-Server API: %w", u, err)
		}
	}
	run := runID()
	cfg.Log.Info("bench: starting", "workload", cfg.Workload, "run", run, "homeservers", cfg.Homeservers)
	if cfg.Workload == WorkloadIdle {
		return runIdle(ctx, cfg, hc, run, p)
	}
	return runLoad(ctx, cfg, hc, run, p)
}

// measureEngineFor measures the engine the way the deployment runs it: for the
// three-data-center layout, three replicas on as many servers as it has nodes; one replica
// otherwise.
func measureEngineFor(ctx context.Context, cfg Config, dir string) (*EngineResult, error) {
	bin, err := serverBinary(cfg)
	if err != nil {
		return nil, err
	}
	opts := EngineOptions{Binary: bin, Dir: dir, Duration: cfg.EngineDuration, InFlight: 256,
		MessageBytes: signedMessageBytes(cfg.BodyBytes), Streams: cfg.engineStreams(), Servers: 1, Log: cfg.Log}
	if cfg.Local == Local3DC || cfg.EngineOnly && cfg.EngineReplicas == 3 {
		opts.Servers = 3 * cfg.NodesPerDC
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	return MeasureEngine(ctx, opts)
}

// signedMessageBytes is the size of the message event a send with a body of the given length
// makes: 740 bytes with the default 100-byte body, built, hashed and signed as a --local
// node does (server name "localhost", the bench's user names and room ids). The engine
// publishes messages of this size, so both sides store the same bytes per send.
func signedMessageBytes(bodyBytes int) int {
	const besideTheBody = 640 // ids, hashes, signature, references
	return besideTheBody + bodyBytes
}

// engineOnlyResult reports an engine measurement made with no homeserver.
func engineOnlyResult(cfg Config, engine *EngineResult) *Result {
	return &Result{Workload: "engine", Engine: engine, Machine: thisMachine(), ErrorsByCode: map[string]uint64{},
		DurationS: cfg.EngineDuration.Seconds()}
}

func cleanup(cfg Config, dir string) {
	if cfg.KeepData {
		cfg.Log.Info("bench: data kept", "dir", dir)
		return
	}
	_ = os.RemoveAll(dir)
}

// runID tags this run's user names, transaction ids and messages, so runs against the same
// server never mix.
func runID() string {
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// raiseFileLimit lifts the soft limit on open files to the hard limit: every open sync is a
// socket in the bench and in a local server, which inherits the limit.
func raiseFileLimit(cfg Config, log *slog.Logger) {
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
		return
	}
	if rl.Cur < rl.Max {
		raised := rl
		raised.Cur = rl.Max
		if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &raised); err == nil {
			rl = raised
		} else {
			log.Warn("bench: could not raise the open file limit", "err", err, "limit", rl.Cur)
		}
	}
	if need := uint64(cfg.Connections + cfg.Users + 256); cfg.Workload == WorkloadIdle && rl.Cur < need {
		log.Warn("bench: open file limit may be too low for the connections asked", "limit", rl.Cur, "need", need)
	}
}
