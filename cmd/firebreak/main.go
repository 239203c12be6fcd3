// Command firebreak is a Matrix homeserver that keeps running through the loss of a data
// center. This file only parses flags and hands over to the internal packages.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"slices"
	"syscall"

	"github.com/firebreak/firebreak/internal/bench"
	"github.com/firebreak/firebreak/internal/config"
	"github.com/firebreak/firebreak/internal/server"
)

const usage = `firebreak: a Matrix homeserver that survives the loss of a data center.

Usage:
  firebreak serve [--config FILE]     run a homeserver (defaults: 127.0.0.1:8008, server
                                      name "localhost", data in ./firebreak-data)
  firebreak register [flags]          create an account on a running homeserver
  firebreak drill [flags]             fire drill: burn or cut off one of three data centers
                                      of a local 6-process cluster under load, and report
  firebreak bench [flags]             load generator and benchmarks (any homeserver, or a
                                      local single node or three-data-center cluster)
  firebreak help [COMMAND]            explain a command and its options

Run "firebreak COMMAND --help" for a command's options.
`

func main() {
	if len(os.Args) < 2 {
		fmt.Fprint(os.Stderr, usage)
		os.Exit(2)
	}
	var err error
	cmd, args := os.Args[1], os.Args[2:]
	if help, ok := commandHelp[cmd]; ok && asksForHelp(args) {
		fmt.Print(help) // asked for, so on standard output; a bad flag's usage goes to standard error
		return
	}
	switch cmd {
	case "serve":
		err = serveCmd(args)
	case "register":
		err = registerCmd(args)
	case "drill":
		err = drillCmd(args)
	case "bench":
		err = benchCmd(args)
	case bench.EngineServerCommand: // started by bench itself, one process per engine server
		err = engineServerCmd(args)
	case "help", "-h", "--help", "-help":
		if len(args) > 0 {
			err = runHelp(args[0])
		} else {
			fmt.Print(usage)
		}
	default:
		fmt.Fprintf(os.Stderr, "firebreak: unknown command %q\n\n%s", cmd, usage)
		os.Exit(2)
	}
	if errors.Is(err, flag.ErrHelp) {
		return
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "firebreak:", err)
		os.Exit(1)
	}
}

// commandHelp is each command's help text.
var commandHelp = map[string]string{"serve": serveHelp, "register": registerHelp, "drill": drillHelp, "bench": benchHelp}

func runHelp(cmd string) error {
	help, ok := commandHelp[cmd]
	if !ok {
		return fmt.Errorf("no help for %q", cmd)
	}
	fmt.Print(help)
	return nil
}

// asksForHelp reports whether a command's arguments ask for its help.
func asksForHelp(args []string) bool {
	return slices.ContainsFunc(args, func(a string) bool { return a == "-h" || a == "-help" || a == "--help" })
}

const serveHelp = `Usage: firebreak serve [--config FILE]

Runs a homeserver with JetStream embedded in the process: no other service is needed.
Without --config it serves server name "localhost" on 127.0.0.1:8008 with data in
./firebreak-data and registration off (use "firebreak register" for the first account).

Configuration file (YAML; every key optional; names follow Synapse where it has them):
  server_name: localhost            the domain in user ids (@alice:localhost); never change it
  listen: 127.0.0.1:8008            address of the Client-Server API (HTTP)
  data_dir: ./firebreak-data        where JetStream keeps all state (fsynced on every write)
  enable_registration: false        let anyone create an account through /register
  registration_shared_secret: ""    secret for /_synapse/admin/v1/register; if empty one is
                                    generated, kept in JetStream and copied to
                                    DATA_DIR/registration_shared_secret for local tools
  max_request_body_size: 1048576    largest request body in bytes (413 M_TOO_LARGE above it)
  max_upload_size: 52428800         largest media upload in bytes (its own cap)
  default_room_version: "10"        room version of new rooms
  room_shards: 0                    room shard streams, fixed when the deployment is created;
                                    0: 1 on a single node, 4 in a cluster, 16 with nats_url
  rc_message:      {per_second: 10,   burst_count: 50}   sends and other writes per user
  rc_login:        {per_second: 0.17, burst_count: 3}    logins per client address
  rc_registration: {per_second: 0.17, burst_count: 3}    registrations per client address
  x_forwarded: false                behind a reverse proxy: a client's address is the last
                                    X-Forwarded-For entry (never on a node clients reach directly)
  log_level: info                   debug, info, warn or error
  pprof_listen: ""                  serve Go's profiler here (e.g. 127.0.0.1:6060); off by
                                    default and unauthenticated: keep it on loopback

Cluster (one JetStream cluster over three or more data centers; every node serves everyone):
  cluster:
    name: firebreak                 the cluster's name, the same on every node
    node: dc1-a                     this node's unique name
    dc: dc1                         this node's data center (one replica per data center)
    listen: 10.1.0.1:6222           address for cluster traffic between nodes
    routes: [10.2.0.1:6222, ...]    the other nodes' cluster addresses
    size: 6                         nodes in the deployment (default: routes + 1), as
                                    /_firebreak/health reports it; a node that cannot
                                    reach nodes in a majority of the data centers (its
                                    own included) reports 503
  replicas: 3                       copies of every stream and bucket (default 3 with
                                    cluster or nats_url, else 1)
  nats_url: ""                      use an existing external NATS cluster instead of the
                                    embedded server (not with cluster:)

Environment: a node gives Go's garbage collector a soft memory limit of 75% of the machine's
memory or of its cgroups' smallest limit; Go's GOMEMLIMIT overrides it (off: none), and GOGC
works as in any Go program.
`

func serveCmd(args []string) error {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	fs.Usage = func() { fmt.Fprint(fs.Output(), serveHelp) }
	configPath := fs.String("config", "", "YAML configuration file")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("serve: unexpected argument %q (a configuration file is given with --config)", fs.Arg(0))
	}
	cfg := config.Default()
	if *configPath != "" {
		var err error
		if cfg, err = config.Load(*configPath); err != nil {
			return err
		}
	}
	log := newLogger(cfg.LogLevel)
	server.LimitMemory(log)
	server.AddProcsForFsync(cfg, log)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	return server.Run(ctx, cfg, log)
}

func newLogger(level string) *slog.Logger {
	l, err := config.ParseLogLevel(level)
	if err != nil {
		l = slog.LevelInfo // the bench's --log-level; a config's is checked when it loads
	}
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: l}))
}
