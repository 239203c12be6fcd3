package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/firebreak/firebreak/internal/drill"
)

const drillHelp = `Usage: firebreak drill [flags]

Runs a fire drill on this machine (Linux): starts a whole deployment of 3 data centers x 2
firebreak processes on their own loopback addresses (127.0.1.x, 127.0.2.x, 127.0.3.x), joined
into one JetStream cluster whose links between data centers go through fault-injecting
proxies; drives simulated users through the Client-Server API (sends retried with the same
transaction id on another node, /sync long polls); fails one data center in the middle of
the traffic; and checks from the API that no acknowledged message was lost, stored twice or
ordered differently on two nodes, and that every member received every message by sync.
Exits non-zero when anything was lost, duplicated or forked.

Scenarios:
  burn        SIGKILL every process of one data center at once, keep the load going, check
              the survivors, then restore the data center from its old disks and again from
              wiped disks, measuring how long until /_firebreak/replication is complete
  partition   cut the data center's links while its nodes keep running; probes keep writing
              through the cut-off nodes (they must never acknowledge a write that is lost);
              heal, and check every node. --cut reject (default) closes the links' connections
              and refuses new ones; --cut blackhole passes nothing and closes nothing, so
              the nodes notice only when their route pings go unanswered

Flags:
  --scenario NAME           burn or partition (default burn)
  --cut HOW                 partition: reject or blackhole (default reject)
  --dc NAME                 data center to fail, dc1..dc3 (default: the one leading the most
                            streams)
  --users N                 simulated users (default 30)
  --rooms N                 rooms: about a third direct chats, the rest groups (default 10)
  --rate R                  messages per second per user (default 2)
  --warmup D                load before the fault (default 10s)
  --outage D                load while the data center is down or cut off (default 20s)
  --settle D                load after a partition heals (default 5s)
  --timeout D               bound for each wait: cluster start, restore (default 2m)
  --inter-dc-latency D      one-way latency added between data centers (default 0)
  --nodes-per-dc N          firebreak processes per data center (default 2)
  --work-dir DIR            where the drill makes its directory (default: the temp dir);
                            removed at the end unless --keep or the drill failed
  --keep                    keep configs, data and node logs
  --json                    print the report as JSON on standard output
  --verbose                 log the drill's own debug messages

Report (--json prints it whole): passed (the targets met: the exit status says the same),
scenario, acknowledged_sends, lost_sends, duplicate_events,
forked_rooms, undelivered_events; write_unavailable_ms is, per simulated client, the longest
time between two acknowledged sends while the load ran (a healthy client sends every 1/rate
seconds); read_unavailable_ms the longest time from a sync failing (for one that hung until the client
gave up: from when it was sent) to the next successful sync (a long poll waiting for news is
not a gap); both as
{p50, p99, max} over clients, and delivery_ms the same over (event, member) pairs.
restore_seconds is an object: for burn {"old_disks", "wiped_disks"}, for partition {"heal"}:
seconds until /_firebreak/replication reports complete (ready_seconds: until health is 200,
which may come later: a restored node's JetStream can have caught up before its read model
has started).
All traffic between nodes goes through the drill's proxies, inside a data center too (never
cut there): NATS gossips the addresses it dials, so direct routes could bypass a cut.
`

// drillCmd runs `firebreak drill`.
func drillCmd(args []string) error {
	o := drill.DefaultOptions()
	fs := flag.NewFlagSet("drill", flag.ContinueOnError)
	fs.Usage = func() { fmt.Fprint(fs.Output(), drillHelp) }
	fs.StringVar(&o.Scenario, "scenario", o.Scenario, "")
	fs.StringVar(&o.FailDC, "dc", "", "")
	fs.StringVar(&o.Cut, "cut", o.Cut, "")
	fs.IntVar(&o.Users, "users", o.Users, "")
	fs.IntVar(&o.Rooms, "rooms", o.Rooms, "")
	fs.Float64Var(&o.Rate, "rate", o.Rate, "")
	fs.DurationVar(&o.Warmup, "warmup", o.Warmup, "")
	fs.DurationVar(&o.Outage, "outage", o.Outage, "")
	fs.DurationVar(&o.Settle, "settle", o.Settle, "")
	fs.DurationVar(&o.Timeout, "timeout", o.Timeout, "")
	fs.DurationVar(&o.InterDCLatency, "inter-dc-latency", 0, "")
	fs.IntVar(&o.NodesPerDC, "nodes-per-dc", o.NodesPerDC, "")
	fs.StringVar(&o.WorkDir, "work-dir", "", "")
	fs.BoolVar(&o.Keep, "keep", false, "")
	asJSON := fs.Bool("json", false, "")
	verbose := fs.Bool("verbose", false, "")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("drill: unexpected argument %q", fs.Arg(0))
	}
	bin, err := os.Executable()
	if err != nil {
		return err
	}
	o.Binary = bin
	o.Progress = os.Stderr
	level := slog.LevelInfo
	if *verbose {
		level = slog.LevelDebug
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	rep, err := drill.Run(ctx, o, log)
	if rep != nil {
		if *asJSON {
			enc := json.NewEncoder(os.Stdout)
			enc.SetIndent("", "  ")
			_ = enc.Encode(rep)
		} else {
			rep.Print(os.Stdout)
		}
	}
	switch {
	case err != nil:
		return fmt.Errorf("drill: %w", err)
	case !rep.Passed:
		return errors.New("drill failed: see the problems in the report")
	}
	return nil
}
