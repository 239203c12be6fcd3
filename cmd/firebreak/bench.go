package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/firebreak/firebreak/internal/bench"
)

const benchHelp = `Usage: firebreak bench (--homeserver URL | --local single|3dc) [flags]

Puts load on a Matrix homeserver through the public Client-Server API only, so it measures
any homeserver, and reports acknowledged sends per second, delivery latency (from the send
to the message's appearance in every other member's /sync: p50, p99, p99.9), errors by
errcode and, for held syncs, the server's memory per open request. Every run stops by itself.

Where:
  --homeserver URL[,URL]  homeserver(s) to load; users are spread over the URLs in turn
  --shared-secret S       register users with Synapse-style shared-secret registration
                          (/_synapse/admin/v1/register); without it, /register with
                          m.login.dummy (needs open registration)
  --local single          start a Firebreak node (this executable, "serve") on a temporary
                          data dir, with rate limits lifted, and stop it afterwards
  --local 3dc             start the drill's three-data-center deployment instead (6 nodes
                          by default, every stream 3 replicas, one per data center; the
                          nodes route to each other directly, as the engine's baseline does)
  --inter-dc-latency D    with --local 3dc: one-way latency added between data centers (the
                          routes then go through the drill's proxies, which add it)
  --room-shards N         with --local: the deployment's room shard streams (room_shards;
                          default 1 for single, 4 for 3dc); the engine's baseline uses
                          as many, and at least 16
  --nodes-per-dc N        with --local 3dc (or --engine-only --engine-replicas 3): nodes in
                          each data center (default 2); the engine baseline runs as many
                          JetStream servers as the deployment has nodes
  --server-pid PID        read memory and CPU of this homeserver process (with --homeserver)
  --binary PATH           the firebreak binary --local and the engine run (default: this one)
  --keep                  keep the local deployment's data directory

Workload:
  --workload mix          mostly DMs and small groups, a few large groups; every member runs
                          a /sync long-poll loop; sends offered at --rate (open loop) (default)
  --workload max          closed loop: --concurrency senders each send, wait, send again
  --workload idle         hold --connections long-polling syncs open; weigh the server
  --users N               accounts (default 100)
  --rooms N               rooms (default 100)
  --room-sizes SPEC       MEMBERS:WEIGHT,... (default 2:70,6:25,50:5: 70% DMs, 25% groups
                          of 6, 5% groups of 50)
  --rate R                mix: sends per second offered; 0 makes it closed loop (default 200)
  --concurrency N         closed loop senders (default 64)
  --max-inflight N        open loop: sends outstanding beyond which new ones are skipped and
                          counted as overload (default 2000)
  --sync true|false       members run /sync loops (default: true for mix, false for max)
  --connections N         idle: syncs to hold open (default 1000)
  --sync-timeout D        long-poll timeout of each /sync (default 30s; idle 90s)
  --duration D            measured time (default 30s)
  --warmup D              load before measuring starts (default 5s)
  --drain D               after the sends stop, how long to wait for late deliveries (10s)
  --body-bytes N          length of each message body (default 100, at least 16)
  --seed N                seed of the room plan (default 1)

Engine and output:
  --engine true|false     also measure raw JetStream publishes with the same replicas,
                          servers and fsync, each server in a process of its own with the Go
                          processors a node has, messages as large as the sends' events;
                          pipelined over 1, 4 and all the engine's streams (16, or the
                          deployment's shards if more), and the best is the baseline
                          (default: true with --local)
  --engine-duration D     per publish mode and spread (default 5s)
  --engine-only           measure only the engine, no homeserver needed
  --engine-replicas N     with --engine-only: 1 (one node) or 3 (3 x --nodes-per-dc servers
                          in one cluster over three data center tags, on loopback)
                          (default 1)
  --json                  print the result as JSON (sends_per_sec, delivery_p50_ms,
                          delivery_p99_ms, delivery_p999_ms, errors, ...) instead of a table
  --quiet                 no progress line on stderr
  --log-level L           debug, info, warn or error (default info)

Examples:
  firebreak bench --local single --workload mix --duration 30s
  firebreak bench --local single --workload max --concurrency 64 --json
  firebreak bench --local single --workload idle --connections 1000
  firebreak bench --homeserver http://127.0.0.1:8008 --shared-secret S --server-pid 1234
  firebreak bench --engine-only --engine-replicas 3
`

// benchCmd runs `firebreak bench`.
func benchCmd(args []string) error {
	cfg, opts, err := parseBenchFlags(args, os.Stderr)
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	res, err := bench.Run(ctx, cfg)
	if err != nil && ctx.Err() != nil {
		return fmt.Errorf("bench: interrupted before the run ended, so it reports no figures: %w", err)
	}
	if err != nil {
		return err
	}
	if opts.json {
		return res.WriteJSON(os.Stdout)
	}
	return res.WriteTable(os.Stdout)
}

type benchOutput struct{ json bool }

// parseBenchFlags reads the flags twice: first for --workload, whose defaults the other
// flags then start from. A bad flag fails the first pass, so errors print once.
func parseBenchFlags(args []string, stderr io.Writer) (bench.Config, benchOutput, error) {
	probe := bench.Defaults(bench.WorkloadMix)
	if _, _, err := bindBenchFlags(&probe, stderr).parse(args); err != nil {
		return probe, benchOutput{}, err
	}
	cfg := bench.Defaults(probe.Workload)
	out, logLevel, err := bindBenchFlags(&cfg, stderr).parse(args)
	if err != nil {
		return cfg, out, err
	}
	cfg.Log = newLogger(logLevel)
	return cfg, out, nil
}

type benchFlags struct {
	fs                        *flag.FlagSet
	cfg                       *bench.Config
	homeservers, sync, engine string
	json, quiet               bool
	logLevel                  string
}

func bindBenchFlags(cfg *bench.Config, output io.Writer) *benchFlags {
	b := &benchFlags{fs: flag.NewFlagSet("bench", flag.ContinueOnError), cfg: cfg}
	fs := b.fs
	fs.SetOutput(output)
	fs.Usage = func() { fmt.Fprint(fs.Output(), benchHelp) }
	fs.StringVar(&b.homeservers, "homeserver", "", "")
	fs.StringVar(&cfg.SharedSecret, "shared-secret", "", "")
	fs.StringVar(&cfg.Local, "local", "", "")
	fs.IntVar(&cfg.ServerPID, "server-pid", 0, "")
	fs.DurationVar(&cfg.InterDCLatency, "inter-dc-latency", 0, "")
	fs.IntVar(&cfg.RoomShards, "room-shards", cfg.RoomShards, "")
	fs.IntVar(&cfg.NodesPerDC, "nodes-per-dc", cfg.NodesPerDC, "")
	fs.StringVar(&cfg.ServerBinary, "binary", "", "")
	fs.BoolVar(&cfg.KeepData, "keep", false, "")
	fs.StringVar(&cfg.Workload, "workload", cfg.Workload, "")
	fs.IntVar(&cfg.Users, "users", cfg.Users, "")
	fs.IntVar(&cfg.Rooms, "rooms", cfg.Rooms, "")
	fs.Func("room-sizes", "", func(s string) (err error) { cfg.RoomSizes, err = bench.ParseRoomSizes(s); return err })
	fs.Float64Var(&cfg.Rate, "rate", cfg.Rate, "")
	fs.IntVar(&cfg.Concurrency, "concurrency", cfg.Concurrency, "")
	fs.IntVar(&cfg.MaxInFlight, "max-inflight", cfg.MaxInFlight, "")
	fs.StringVar(&b.sync, "sync", "", "")
	fs.IntVar(&cfg.Connections, "connections", cfg.Connections, "")
	fs.DurationVar(&cfg.SyncTimeout, "sync-timeout", cfg.SyncTimeout, "")
	fs.DurationVar(&cfg.Duration, "duration", cfg.Duration, "")
	fs.DurationVar(&cfg.WarmUp, "warmup", cfg.WarmUp, "")
	fs.DurationVar(&cfg.Drain, "drain", cfg.Drain, "")
	fs.IntVar(&cfg.BodyBytes, "body-bytes", cfg.BodyBytes, "")
	fs.Int64Var(&cfg.Seed, "seed", cfg.Seed, "")
	fs.StringVar(&b.engine, "engine", "", "")
	fs.DurationVar(&cfg.EngineDuration, "engine-duration", cfg.EngineDuration, "")
	fs.BoolVar(&cfg.EngineOnly, "engine-only", false, "")
	fs.IntVar(&cfg.EngineReplicas, "engine-replicas", cfg.EngineReplicas, "")
	fs.BoolVar(&b.json, "json", false, "")
	fs.BoolVar(&b.quiet, "quiet", false, "")
	fs.StringVar(&b.logLevel, "log-level", "info", "")
	return b
}

// parse reads args into the bound config and settles the flags whose default depends on
// others.
func (b *benchFlags) parse(args []string) (benchOutput, string, error) {
	if err := b.fs.Parse(args); err != nil {
		return benchOutput{}, "", err
	}
	if b.fs.NArg() > 0 {
		return benchOutput{}, "", fmt.Errorf("bench: unexpected argument %q", b.fs.Arg(0))
	}
	cfg := b.cfg
	if b.homeservers != "" {
		cfg.Homeservers = strings.Split(b.homeservers, ",")
	}
	var err error
	if cfg.Sync, err = boolOr(b.sync, cfg.Sync, "--sync"); err != nil {
		return benchOutput{}, "", err
	}
	if cfg.Engine, err = boolOr(b.engine, cfg.Local != "", "--engine"); err != nil {
		return benchOutput{}, "", err
	}
	if !b.quiet {
		cfg.Progress = os.Stderr
	}
	return benchOutput{json: b.json}, b.logLevel, nil
}

// boolOr reads an optional true/false flag, def when it was not given.
func boolOr(v string, def bool, name string) (bool, error) {
	switch v {
	case "":
		return def, nil
	case "true", "1", "yes":
		return true, nil
	case "false", "0", "no":
		return false, nil
	}
	return false, fmt.Errorf("%s %q: want true or false", name, v)
}

// engineServerCmd runs one of the engine's servers for a bench that started it. It does not
// catch signals: an interrupted bench's engine has nothing to save.
func engineServerCmd(args []string) error {
	if len(args) != 1 {
		return fmt.Errorf("%s takes one argument, from the bench that starts it", bench.EngineServerCommand)
	}
	return bench.RunEngineServer(context.Background(), args[0], os.Stdin, os.Stdout)
}
