package bench

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/firebreak/firebreak/internal/config"
	"github.com/firebreak/firebreak/internal/server"
)

// serveEnv makes this test binary act as `firebreak serve` when --local starts it: the bench
// runs os.Executable(), which in a test is the test binary, so the end-to-end tests need no
// separate build. It acts as the engine's servers (EngineServerCommand) the same way.
const serveEnv = "FIREBREAK_BENCH_TEST_SERVE"

func TestMain(m *testing.M) {
	if os.Getenv(serveEnv) == "1" && len(os.Args) > 1 && os.Args[1] == "serve" {
		os.Exit(serveForTest(os.Args[2:]))
	}
	if len(os.Args) == 3 && os.Args[1] == EngineServerCommand {
		if err := RunEngineServer(context.Background(), os.Args[2], os.Stdin, os.Stdout); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

func serveForTest(args []string) int {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	path := fs.String("config", "", "")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	cfg, err := config.Load(*path)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	if err := server.Run(ctx, cfg, log); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return 0
}

// localConfig is a few seconds of load on a local single node started from this binary.
func localConfig(t *testing.T, workload string) Config {
	if testing.Short() {
		t.Skip("starts a homeserver")
	}
	t.Setenv(serveEnv, "1")
	cfg := Defaults(workload)
	cfg.Local = LocalSingle
	cfg.Users, cfg.Rooms = 8, 5
	cfg.RoomSizes = []RoomSize{{2, 2}, {4, 2}, {8, 1}}
	cfg.Duration, cfg.WarmUp, cfg.Drain = 3*time.Second, time.Second, 5*time.Second
	cfg.Log = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	return cfg
}

func runLocal(t *testing.T, cfg Config) *Result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	res, err := Run(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if res.Errors != 0 {
		t.Errorf("errors: %v", res.ErrorsByCode)
	}
	return res
}

func TestMixAgainstLocalSingle(t *testing.T) {
	cfg := localConfig(t, WorkloadMix)
	cfg.Rate = 30
	cfg.RoomShards = 4
	cfg.Engine, cfg.EngineDuration = true, 500*time.Millisecond
	res := runLocal(t, cfg)
	if res.Sends == 0 || res.SendsPerSec <= 0 {
		t.Errorf("no acknowledged sends: %+v", res)
	}
	if res.DeliveriesExpected == 0 || res.Deliveries != res.DeliveriesExpected {
		t.Errorf("delivered %d of %d", res.Deliveries, res.DeliveriesExpected)
	}
	if res.DeliveryP50Ms <= 0 || res.DeliveryP99Ms < res.DeliveryP50Ms {
		t.Errorf("delivery latencies p50 %v p99 %v", res.DeliveryP50Ms, res.DeliveryP99Ms)
	}
	if res.Server == nil || res.Server.RSSKB == 0 {
		t.Errorf("server usage not measured: %+v", res.Server)
	}
	if e := res.Engine; e == nil || e.SyncPerSec <= 0 || e.AsyncPerSec <= 0 || res.FractionOfEngine <= 0 ||
		!strings.Contains(e.Method, " 16 shard streams") || res.RoomShards != 4 || e.MessageBytes != signedMessageBytes(cfg.BodyBytes) {
		t.Errorf("engine not measured over 16 streams with messages as large as the sends' events beside a deployment of 4 shards (%d): %+v",
			res.RoomShards, e)
	}
}

func TestMaxAgainstLocalSingle(t *testing.T) {
	cfg := localConfig(t, WorkloadMax)
	cfg.Concurrency = 4
	res := runLocal(t, cfg)
	if res.Sends == 0 {
		t.Errorf("no acknowledged sends")
	}
	if res.Deliveries != 0 || res.DeliveriesExpected != 0 {
		t.Errorf("max runs no syncs by default, yet delivered %d of %d", res.Deliveries, res.DeliveriesExpected)
	}
}

func TestIdleAgainstLocalSingle(t *testing.T) {
	cfg := localConfig(t, WorkloadIdle)
	cfg.Connections = 40
	cfg.Duration = 2 * time.Second
	res := runLocal(t, cfg)
	i := res.Idle
	if i == nil || i.Opened != 40 || i.RSSBeforeKB == 0 || i.RSSWithKB == 0 {
		t.Errorf("idle result: %+v", i)
	}
}

// A run interrupted while it measures reports no figures: its sends were counted over less
// than its duration.
func TestInterruptedRunHasNoFigures(t *testing.T) {
	cfg := localConfig(t, WorkloadMax)
	cfg.Concurrency, cfg.Duration = 4, time.Minute
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cfg.Progress = cancelWhenMeasuring{cancel}
	res, err := Run(ctx, cfg)
	if res != nil || !errors.Is(err, context.Canceled) {
		t.Fatalf("interrupted run = %+v, %v; want no result and the interruption", res, err)
	}
}

// cancelWhenMeasuring cancels the run once its progress line says it measures.
type cancelWhenMeasuring struct{ cancel context.CancelFunc }

func (c cancelWhenMeasuring) Write(p []byte) (int, error) {
	if strings.Contains(string(p), "measuring") {
		c.cancel()
	}
	return len(p), nil
}
