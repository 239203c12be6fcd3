package drill

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// These tests start real firebreak processes (built once by TestMain) in real clusters and
// fail on any lost, duplicated or reordered event. They assert no timings: the drill reports
// them. They are skipped with -short.

var binPath string

func TestMain(m *testing.M) {
	flag.Parse()
	if testing.Short() {
		os.Exit(m.Run())
	}
	dir, err := os.MkdirTemp("", "firebreak-drill-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "drill tests:", err)
		os.Exit(1)
	}
	binPath = filepath.Join(dir, "firebreak")
	if err := buildBinary(binPath); err != nil {
		fmt.Fprintln(os.Stderr, "drill tests: building firebreak:", err)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// buildBinary compiles ./cmd/firebreak from the module root.
func buildBinary(out string) error {
	gomod, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		return fmt.Errorf("go env GOMOD: %w", err)
	}
	cmd := exec.Command("go", "build", "-o", out, "./cmd/firebreak")
	cmd.Dir = filepath.Dir(strings.TrimSpace(string(gomod)))
	if output, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("%w\n%s", err, output)
	}
	return nil
}

func skipShort(t *testing.T) {
	t.Helper()
	if testing.Short() {
		t.Skip("starts a cluster of firebreak processes; skipped with -short")
	}
}

func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelInfo}))
}

// smallOptions is a drill small enough for a 2-core machine to run two of in a few minutes.
func smallOptions(t *testing.T, scenario string) Options {
	o := DefaultOptions()
	o.Scenario = scenario
	o.Binary = binPath
	o.WorkDir = t.TempDir()
	o.Users, o.Rooms, o.Rate = 8, 4, 2
	o.Warmup, o.Outage, o.Settle = 3*time.Second, 10*time.Second, 2*time.Second
	return o
}

// checkReport fails the test on anything lost, duplicated, forked or undelivered.
func checkReport(t *testing.T, rep *Report, err error) {
	t.Helper()
	if err != nil {
		t.Fatalf("drill did not run: %v", err)
	}
	var b strings.Builder
	rep.Print(&b)
	t.Log(b.String())
	if rep.AcknowledgedSends == 0 {
		t.Errorf("no send was acknowledged")
	}
	if rep.LostSends != 0 || rep.DuplicateEvents != 0 || rep.ForkedRooms != 0 || rep.MismatchedAcks != 0 {
		t.Errorf("lost %d, duplicates %d, forked rooms %d, mismatched acks %d",
			rep.LostSends, rep.DuplicateEvents, rep.ForkedRooms, rep.MismatchedAcks)
	}
	if !rep.Passed {
		t.Errorf("drill failed: %v", rep.Problems)
		logTails(t, rep.WorkDir)
	}
}

func TestBurnDrill(t *testing.T) {
	skipShort(t)
	rep, err := Run(context.Background(), smallOptions(t, ScenarioBurn), testLogger(t))
	checkReport(t, rep, err)
	for _, key := range []string{"old_disks", "wiped_disks"} {
		if _, ok := rep.RestoreSeconds[key]; !ok {
			t.Errorf("no restore time for %s", key)
		}
	}
	if len(rep.Stages) != 3 {
		t.Errorf("want 3 verification stages (after burn, both restores), got %d", len(rep.Stages))
	}
}

// TestPartitionDrill cuts a data center off both ways a network fails: links that reject
// (both ends learn at once) and links that silently drop everything (nodes learn only from
// missing heartbeats and pings).
func TestPartitionDrill(t *testing.T) {
	skipShort(t)
	for _, cut := range []string{CutReject, CutBlackhole} {
		t.Run(cut, func(t *testing.T) {
			o := smallOptions(t, ScenarioPartition)
			o.Cut = cut
			rep, err := Run(context.Background(), o, testLogger(t))
			checkReport(t, rep, err)
			if rep.Partition == nil || rep.Partition.Probes.Attempts == 0 {
				t.Fatalf("the probes wrote nothing through the cut-off nodes: %+v", rep.Partition)
			}
			// The cut-off nodes fenced themselves (checkReport fails the drill otherwise), so
			// their return must not have made any of the majority's leaders step down.
			if n := rep.Partition.LeadersLostOnHeal; n != 0 {
				t.Errorf("%d streams lost their leader when the link healed", n)
			}
			for _, l := range rep.Links {
				if l.Bytes == 0 {
					t.Errorf("link %s carried nothing: routes do not all go through the proxies", l.Link)
				}
			}
		})
	}
}

// testCluster starts one node per data center and a balancer, and stops both at cleanup.
func testCluster(t *testing.T, directRoutes bool) (*cluster, *load, context.Context) {
	t.Helper()
	o := DefaultOptions()
	o.Binary, o.NodesPerDC, o.Users, o.Rooms, o.DirectRoutes = binPath, 1, 2, 1, directRoutes
	c, err := launch(t.TempDir(), o, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	if directRoutes && len(c.proxies) > 0 {
		t.Fatalf("%d proxies between nodes that route directly", len(c.proxies))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	bal := newBalancer(c)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); bal.run(ctx) }()
	t.Cleanup(func() {
		if t.Failed() {
			logTails(t, filepath.Dir(c.nodes[0].Dir))
		}
		cancel()
		wg.Wait()
		c.shutdown()
	})
	if err := c.waitHealthy(ctx, c.nodes, o.Timeout); err != nil {
		t.Fatal(err)
	}
	if err := c.waitReplicated(ctx, c.nodes[0], o.Timeout); err != nil {
		t.Fatal(err)
	}
	l := newLoad(o, bal, testLogger(t))
	if err := l.setup(ctx); err != nil {
		t.Fatal(err)
	}
	return c, l, ctx
}

// sendPinned sends count messages as user u through node n only, each retried with its
// transaction id until acknowledged, and returns the acknowledgements.
func sendPinned(ctx context.Context, l *load, u *simUser, n int, prefix string, count int) []ack {
	cur := &cursor{b: l.bal, i: n, pinned: true}
	a := api{hc: l.hc, token: u.sess.Token}
	room := u.rooms[0]
	var acks []ack
	for i := 1; i <= count; i++ {
		txn := fmt.Sprintf("%s-%d", prefix, i)
		id, node, ok := l.sendUntilAcked(ctx, a, cur, room, u.name, txn)
		if !ok {
			break
		}
		acks = append(acks, ack{Room: room, Sender: u.sess.UserID, Txn: txn, EventID: id, Node: node, At: time.Now()})
	}
	return acks
}

// TestNodeRestart kills one node with SIGKILL, writes while it is down, starts it again on
// its data dir, and reads the whole history back from it.
func TestNodeRestart(t *testing.T) {
	skipShort(t)
	c, l, ctx := testCluster(t, false)
	u := l.users[0]
	acks := sendPinned(ctx, l, u, 0, "before", 20)
	victim := c.nodes[1]
	if e := victim.signal(syscall.SIGKILL); e != nil {
		<-e
	}
	acks = append(acks, sendPinned(ctx, l, u, 0, "while-down", 10)...)
	if err := victim.start(c.bin); err != nil {
		t.Fatal(err)
	}
	if err := c.waitHealthy(ctx, []*node{victim}, 2*time.Minute); err != nil {
		t.Fatal(err)
	}
	if err := c.waitReplicated(ctx, c.nodes[0], 2*time.Minute); err != nil {
		t.Fatal(err)
	}
	if len(acks) != 30 {
		t.Fatalf("only %d of 30 sends acknowledged", len(acks))
	}
	res := verifier{l: l, settle: settleTimeout}.verify(ctx, "after restart", []*node{victim, c.nodes[0]}, acks)
	if problems := res.problems(maxLostNamed); len(problems) > 0 {
		t.Errorf("restarted node: %v", problems)
	}
}

// TestConcurrentWritesOneRoom races many writers into one room through nodes in two data
// centers: every acknowledged event must be stored once, in one order on every node. The
// nodes route to each other directly, as the bench's do.
func TestConcurrentWritesOneRoom(t *testing.T) {
	skipShort(t)
	c, l, ctx := testCluster(t, true)
	const writersPerUser, perWriter = 6, 10
	var (
		mu   sync.Mutex
		acks []ack
		wg   sync.WaitGroup
	)
	for ui, u := range l.users {
		for w := 0; w < writersPerUser; w++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				// User 0 writes through dc1, user 1 through dc2.
				got := sendPinned(ctx, l, u, ui, fmt.Sprintf("w%d", w), perWriter)
				mu.Lock()
				acks = append(acks, got...)
				mu.Unlock()
			}()
		}
	}
	wg.Wait()
	if want := len(l.users) * writersPerUser * perWriter; len(acks) != want {
		t.Fatalf("%d of %d sends acknowledged", len(acks), want)
	}
	res := verifier{l: l, settle: settleTimeout}.verify(ctx, "after race", c.nodes, acks)
	if problems := res.problems(maxLostNamed); len(problems) > 0 {
		t.Errorf("race: %v", problems)
	}
}

// logTails prints the end of every node log under dir, for a failed test.
func logTails(t *testing.T, dir string) {
	if dir == "" {
		return
	}
	logs, _ := filepath.Glob(filepath.Join(dir, "*", "firebreak.log"))
	logs2, _ := filepath.Glob(filepath.Join(dir, "*", "*", "firebreak.log"))
	for _, p := range append(logs, logs2...) {
		b, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		if len(b) > 4000 {
			b = b[len(b)-4000:]
		}
		t.Logf("---- %s (tail)\n%s", p, b)
	}
}
