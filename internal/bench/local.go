package bench

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/firebreak/firebreak/internal/accounts"
	"github.com/firebreak/firebreak/internal/config"
)

const (
	localReadyTimeout = 60 * time.Second
	localStopTimeout  = 30 * time.Second
)

// localServer is one `firebreak serve` process the bench started.
type localServer struct {
	cmd     *exec.Cmd
	exited  chan struct{}
	waitErr error
	logPath string
	log     *slog.Logger
}

// unlimited is a rate limit the bench never reaches: it measures the server, not its limits.
var unlimited = config.RateLimit{PerSecond: 1e6, BurstCount: 1_000_000}

// startLocalSingle runs `BINARY serve --config` on a fresh data directory under dir with the
// production defaults (fsync on every write) except for rate limits, and waits until it
// answers.
func startLocalSingle(ctx context.Context, binary, dir string, roomShards int, log *slog.Logger) (*deployment, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	addr, err := freeLoopbackAddr()
	if err != nil {
		return nil, err
	}
	cfg := config.Default()
	cfg.Listen = addr
	cfg.DataDir = filepath.Join(dir, "data")
	cfg.RoomShards = roomShards
	cfg.EnableRegistration = true
	cfg.RegistrationSharedSecret = accounts.RandomString(24)
	cfg.RCMessage, cfg.RCLogin, cfg.RCRegistration = unlimited, unlimited, unlimited
	cfg.LogLevel = "warn"
	raw, err := yaml.Marshal(cfg)
	if err != nil {
		return nil, err
	}
	cfgPath := filepath.Join(dir, "firebreak.yaml")
	if err := os.WriteFile(cfgPath, raw, 0o600); err != nil {
		return nil, err
	}
	ls, err := startProcess(binary, filepath.Join(dir, "firebreak.log"), log, "serve", "--config", cfgPath)
	if err != nil {
		return nil, err
	}
	url := "http://" + addr
	if err := ls.waitReady(ctx, url); err != nil {
		_ = ls.stop()
		return nil, err
	}
	log.Info("bench: local firebreak ready", "url", url, "pid", ls.cmd.Process.Pid, "log", ls.logPath)
	return &deployment{urls: []string{url}, procs: procs{ls.cmd.Process.Pid}, secret: cfg.RegistrationSharedSecret, stop: ls.stop}, nil
}

func startProcess(binary, logPath string, log *slog.Logger, args ...string) (*localServer, error) {
	logFile, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(binary, args...)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	isolate(cmd)
	if err := cmd.Start(); err != nil {
		logFile.Close()
		return nil, fmt.Errorf("start %s: %w", binary, err)
	}
	ls := &localServer{cmd: cmd, exited: make(chan struct{}), logPath: logPath, log: log}
	go func() {
		ls.waitErr = cmd.Wait()
		logFile.Close()
		close(ls.exited)
	}()
	return ls, nil
}

// waitReady polls /versions until the server answers, dies or time runs out.
func (ls *localServer) waitReady(ctx context.Context, url string) error {
	ctx, cancel := context.WithTimeout(ctx, localReadyTimeout)
	defer cancel()
	hc := &http.Client{Timeout: 2 * time.Second}
	for {
		if versions(ctx, hc, url) == nil {
			return nil
		}
		select {
		case <-ls.exited:
			return fmt.Errorf("local firebreak exited before it was ready (%v); see %s", ls.waitErr, ls.logPath)
		case <-ctx.Done():
			return fmt.Errorf("local firebreak did not answer within %s; see %s", localReadyTimeout, ls.logPath)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// stop asks the server to shut down cleanly (JetStream's files must be closed properly) and
// kills it only if it does not.
func (ls *localServer) stop() error {
	select {
	case <-ls.exited:
		return ls.waitErr
	default:
	}
	_ = ls.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-ls.exited:
		return ls.waitErr
	case <-time.After(localStopTimeout):
		_ = ls.cmd.Process.Kill()
		<-ls.exited
		return errors.New("local firebreak did not stop on SIGTERM; killed")
	}
}

// freeLoopbackAddr is a loopback address with a port that was free a moment ago.
func freeLoopbackAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	return l.Addr().String(), nil
}
