// Package e2e runs the firebreak binary as a real process and drives it over
// HTTP with a Matrix client library, the way a user's client would.
package e2e

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"gopkg.in/yaml.v3"
)

const (
	serverName   = "localhost"
	sharedSecret = "s3cret"
	maxBodySize  = 1 << 20
	readyTimeout = 30 * time.Second
	stopTimeout  = 20 * time.Second
	logTailBytes = 64 << 10
)

// binPath is the firebreak binary built once by TestMain.
var binPath string

// probeClient is used for readiness polling; its timeout only keeps a hung
// accept from blocking the poll loop.
var probeClient = &http.Client{Timeout: 2 * time.Second}

func TestMain(m *testing.M) {
	os.Exit(runTests(m))
}

func runTests(m *testing.M) int {
	dir, err := os.MkdirTemp("", "firebreak-e2e-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e: temp dir:", err)
		return 1
	}
	defer os.RemoveAll(dir)
	binPath = filepath.Join(dir, "firebreak")
	if err := buildBinary(binPath); err != nil {
		fmt.Fprintln(os.Stderr, "e2e: building firebreak:", err)
		return 1
	}
	return m.Run()
}

// moduleRoot is the repository's root directory.
func moduleRoot() (string, error) {
	gomod, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOMOD: %w", err)
	}
	return filepath.Dir(strings.TrimSpace(string(gomod))), nil
}

// buildBinary compiles ./cmd/firebreak from the module root.
func buildBinary(out string) error {
	root, err := moduleRoot()
	if err != nil {
		return err
	}
	cmd := exec.Command("go", "build", "-o", out, "./cmd/firebreak")
	cmd.Dir = root
	if output, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("%w\n%s", err, output)
	}
	return nil
}

// rateLimit mirrors the rc_* settings of the config file.
type rateLimit struct {
	PerSecond  float64 `yaml:"per_second"`
	BurstCount int     `yaml:"burst_count"`
}

// generous is a limit no test should ever reach.
var generous = rateLimit{PerSecond: 1000, BurstCount: 1000}

// serverConfig is the YAML config file handed to `firebreak serve`.
type serverConfig struct {
	ServerName               string    `yaml:"server_name"`
	Listen                   string    `yaml:"listen"`
	DataDir                  string    `yaml:"data_dir"`
	EnableRegistration       bool      `yaml:"enable_registration"`
	RegistrationSharedSecret string    `yaml:"registration_shared_secret"`
	MaxRequestBodySize       int64     `yaml:"max_request_body_size"`
	MaxUploadSize            int64     `yaml:"max_upload_size,omitempty"`
	RCMessage                rateLimit `yaml:"rc_message"`
	RCLogin                  rateLimit `yaml:"rc_login"`
	RCRegistration           rateLimit `yaml:"rc_registration"`
	XForwarded               bool      `yaml:"x_forwarded,omitempty"`
	NATSURL                  string    `yaml:"nats_url,omitempty"`
	Replicas                 int       `yaml:"replicas,omitempty"`
}

// serverOpts are the knobs tests turn; everything else has a test default.
type serverOpts struct {
	DisableRegistration bool
	RCMessage           *rateLimit
	RCRegistration      *rateLimit
	RCLogin             *rateLimit
	XForwarded          bool   // client addresses from X-Forwarded-For
	MaxUploadSize       int64  // 0: the default
	NATSURL             string // an external NATS to use instead of the embedded one (R1)
	GeneratedSecret     bool   // no registration_shared_secret: the server makes one
}

// server is one running firebreak process.
type server struct {
	t          testing.TB
	URL        string
	ConfigPath string
	DataDir    string
	logs       *syncBuffer
	cmd        *exec.Cmd
	exited     chan struct{}
	waitErr    error
}

// startServer writes a config, starts firebreak and waits until it answers.
// The process is stopped, and its log printed if the test failed, in t.Cleanup.
func startServer(t testing.TB, opts serverOpts) *server {
	t.Helper()
	dir := t.TempDir()
	cfg := serverConfig{
		ServerName:               serverName,
		Listen:                   freeAddr(t),
		DataDir:                  filepath.Join(dir, "data"),
		EnableRegistration:       !opts.DisableRegistration,
		RegistrationSharedSecret: sharedSecret,
		MaxRequestBodySize:       maxBodySize,
		RCMessage:                generous,
		RCLogin:                  generous,
		RCRegistration:           generous,
	}
	if opts.RCMessage != nil {
		cfg.RCMessage = *opts.RCMessage
	}
	if opts.RCRegistration != nil {
		cfg.RCRegistration = *opts.RCRegistration
	}
	if opts.RCLogin != nil {
		cfg.RCLogin = *opts.RCLogin
	}
	if opts.GeneratedSecret {
		cfg.RegistrationSharedSecret = ""
	}
	cfg.XForwarded = opts.XForwarded
	cfg.MaxUploadSize = opts.MaxUploadSize
	if opts.NATSURL != "" {
		cfg.NATSURL, cfg.Replicas = opts.NATSURL, 1
	}
	raw, err := yaml.Marshal(cfg)
	if err != nil {
		t.Fatalf("marshal config: %v", err)
	}
	s := &server{
		t:          t,
		URL:        "http://" + cfg.Listen,
		ConfigPath: filepath.Join(dir, "firebreak.yaml"),
		DataDir:    cfg.DataDir,
		logs:       &syncBuffer{},
	}
	if err := os.WriteFile(s.ConfigPath, raw, 0o600); err != nil {
		t.Fatalf("write config: %v", err)
	}
	t.Cleanup(func() {
		s.Stop()
		if t.Failed() {
			t.Logf("firebreak log (last %d bytes):\n%s", logTailBytes, s.logs.Tail(logTailBytes))
		}
	})
	s.start()
	return s
}

func (s *server) start() {
	s.t.Helper()
	fmt.Fprintf(s.logs, "==== e2e: starting firebreak serve --config %s\n", s.ConfigPath)
	s.cmd = exec.Command(binPath, "serve", "--config", s.ConfigPath)
	s.cmd.Stdout = s.logs
	s.cmd.Stderr = s.logs
	if err := s.cmd.Start(); err != nil {
		s.t.Fatalf("start firebreak: %v", err)
	}
	exited := make(chan struct{})
	s.exited = exited
	go func(cmd *exec.Cmd) {
		s.waitErr = cmd.Wait()
		close(exited)
	}(s.cmd)
	s.waitReady()
}

// waitReady polls /versions until it answers 200, the process dies or time runs out.
func (s *server) waitReady() {
	s.t.Helper()
	deadline := time.Now().Add(readyTimeout)
	for time.Now().Before(deadline) {
		select {
		case <-s.exited:
			s.t.Fatalf("firebreak exited before it was ready: %v", s.waitErr)
		default:
		}
		resp, err := probeClient.Get(s.URL + "/_matrix/client/versions")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	s.t.Fatalf("firebreak did not answer /versions within %s", readyTimeout)
}

// Stop sends SIGTERM and waits for exit, killing after stopTimeout.
// It reports whether the process exited on its own with status 0.
func (s *server) Stop() (clean bool) {
	if s.cmd == nil {
		return true
	}
	defer func() { s.cmd = nil }()
	select {
	case <-s.exited:
		return s.waitErr == nil
	default:
	}
	_ = s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.exited:
		return s.waitErr == nil
	case <-time.After(stopTimeout):
		_ = s.cmd.Process.Kill()
		<-s.exited
		fmt.Fprintf(s.logs, "==== e2e: killed firebreak after %s without exit on SIGTERM\n", stopTimeout)
		return false
	}
}

// Crash kills the server with SIGKILL, as a power cut would, and starts it again on the same
// data dir and port.
func (s *server) Crash() {
	s.t.Helper()
	_ = s.cmd.Process.Kill()
	<-s.exited
	s.cmd = nil
	s.start()
}

// Restart stops the server gracefully and starts it again on the same data
// dir and port. A shutdown that is not clean is a test error.
func (s *server) Restart() {
	s.t.Helper()
	if !s.Stop() {
		s.t.Errorf("firebreak did not exit cleanly on SIGTERM: %v", s.waitErr)
	}
	s.start()
}

// freeAddr returns a loopback address with a port that was free a moment ago.
func freeAddr(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("find free port: %v", err)
	}
	defer l.Close()
	return l.Addr().String()
}

// syncBuffer is a bytes.Buffer safe for the process's two output streams.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

// Contains reports whether the output so far has s in it.
func (b *syncBuffer) Contains(s string) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return bytes.Contains(b.buf.Bytes(), []byte(s))
}

func (b *syncBuffer) Tail(n int) string {
	b.mu.Lock()
	defer b.mu.Unlock()
	data := b.buf.Bytes()
	if len(data) > n {
		data = data[len(data)-n:]
	}
	return string(data)
}

// testCtx is a context that bounds one step so a hung server fails the test
// instead of hanging it. It is not a performance threshold.
func testCtx(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// waitFor polls cond until it reports true or the deadline passes.
// It is for state that settles asynchronously (counts, ephemeral data).
func waitFor(t testing.TB, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	last := ""
	for time.Now().Before(deadline) {
		ok, state := cond()
		if ok {
			return
		}
		last = state
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("gave up waiting for %s; last state: %s", what, last)
}
