// Package server assembles one Firebreak node from its parts (store, accounts, rooms, account
// data, syncer, API) and runs it until its context ends.
package server

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/firebreak/firebreak/internal/accountdata"
	"github.com/firebreak/firebreak/internal/accounts"
	"github.com/firebreak/firebreak/internal/api"
	"github.com/firebreak/firebreak/internal/config"
	"github.com/firebreak/firebreak/internal/e2ee"
	"github.com/firebreak/firebreak/internal/media"
	"github.com/firebreak/firebreak/internal/push"
	"github.com/firebreak/firebreak/internal/rooms"
	"github.com/firebreak/firebreak/internal/store"
	"github.com/firebreak/firebreak/internal/syncer"
)

// SecretFile is where a node leaves the deployment's registration shared secret for local
// admin tools such as `firebreak register` when none is configured. It is a copy of what is
// kept in JetStream, rewritten at every start.
const SecretFile = "registration_shared_secret"

// Run starts the node, serves until ctx ends, then shuts down cleanly.
func Run(ctx context.Context, cfg config.Config, log *slog.Logger) error {
	started := time.Now()
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return err
	}
	st, err := store.Open(ctx, storeOptions(cfg, log))
	if err != nil {
		return err
	}
	defer st.Close()
	ctx, stopNode := stopWhenLost(ctx, st, log)
	defer stopNode()
	storeReady := time.Now()
	if cfg.RegistrationSharedSecret, err = sharedSecret(ctx, st, cfg); err != nil {
		return err
	}

	roomsSvc, err := rooms.New(ctx, st, cfg.ServerName, cfg.DefaultRoomVersion, log)
	if err != nil {
		return err
	}
	// The followers (read model, mirrors) outlive ctx: requests still in flight when the node
	// is told to stop wait on them, so they stop only after the HTTP server has drained, and
	// the store closes after them. Until the node is ready, ctx ending stops them at once.
	runCtx, stop := context.WithCancel(context.WithoutCancel(ctx))
	stopWithCtx := context.AfterFunc(ctx, stop)
	var wg sync.WaitGroup
	defer func() { stop(); roomsSvc.Wait(); wg.Wait() }()
	data := accountdata.New(st)
	roomsSvc.SetPushRules(push.NewCache(data).Rules)
	accountsSvc := accounts.New(st, cfg.ServerName)
	keysSvc := e2ee.New(st, accountsSvc)
	accountsSvc.OnDeviceDeleted(keysSvc.ForgetDevice)
	syncSvc := syncer.New(ctx, roomsSvc, data, keysSvc, st.Fencing)
	loaded := store.StartMirrors(&wg,
		func(loaded func()) { data.Run(runCtx, log, loaded) },
		func(loaded func()) { keysSvc.Run(runCtx, log, loaded) })
	if err := roomsSvc.Start(runCtx); err != nil {
		return fmt.Errorf("load rooms: %w", err)
	}
	select {
	case <-loaded:
	case <-runCtx.Done():
		return ctx.Err()
	}
	stopWithCtx()

	if cfg.PprofListen != "" {
		if err := startProfiler(runCtx, cfg.PprofListen, &wg, log); err != nil {
			return fmt.Errorf("pprof_listen: %w", err)
		}
	}
	if err := accountsSvc.WatchSessionEnds(runCtx, syncSvc.Wake); err != nil {
		return err
	}
	wg.Add(2)
	go func() {
		defer wg.Done()
		accountsSvc.Run(runCtx, log, syncSvc.Wake)
	}()
	go func() {
		defer wg.Done()
		accountsSvc.RecordActivity(runCtx, log)
	}()
	l, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return err
	}
	srv := api.New(api.Deps{Config: cfg, Store: st, Accounts: accountsSvc, AccountData: data,
		Keys: keysSvc, Media: media.New(st, cfg.ServerName), Rooms: roomsSvc, Sync: syncSvc, Log: log})
	wg.Add(1)
	go func() {
		defer wg.Done()
		srv.RunProfileSweeps(runCtx) // after the read model's start: it reads the user's rooms
	}()
	log.Info("firebreak ready", "server_name", cfg.ServerName, "listen", l.Addr().String(),
		"data_dir", cfg.DataDir, "startup_ms", time.Since(started).Milliseconds(),
		"store_ms", storeReady.Sub(started).Milliseconds(), "read_model_ms", time.Since(storeReady).Milliseconds())
	err = srv.Serve(ctx, l)
	log.Info("firebreak stopping")
	if cause := context.Cause(ctx); errors.Is(cause, errStorageLost) {
		return cause
	}
	return err
}

var errStorageLost = errors.New("the connection to JetStream closed; restart the node")

// stopWhenLost returns a context that also ends when the store's connection is lost for good:
// a node that can no longer read or write stops (and exits non-zero, for its supervisor to
// restart it) rather than answer every request with an error.
func stopWhenLost(ctx context.Context, st *store.Store, log *slog.Logger) (context.Context, func()) {
	ctx, cancel := context.WithCancelCause(ctx)
	go func() {
		select {
		case <-st.Lost():
			log.Error("stopping: storage connection lost")
			cancel(errStorageLost)
		case <-ctx.Done():
		}
	}()
	return ctx, func() { cancel(nil) }
}

// sharedSecret returns the configured registration secret, or the deployment's generated one
// (created once, kept in JetStream) so that a fresh server can create its first account. Only
// a generated secret is copied to the data directory, for local tools: a configured one is
// where the operator put it, and a copy left from before it was configured is removed.
func sharedSecret(ctx context.Context, st *store.Store, cfg config.Config) (string, error) {
	path := filepath.Join(cfg.DataDir, SecretFile)
	if secret := cfg.RegistrationSharedSecret; secret != "" {
		if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return "", err
		}
		return secret, nil
	}
	b, err := st.CreateOrGet(ctx, store.BucketServer, SecretFile, []byte(accounts.RandomString(32)))
	if err != nil {
		return "", err
	}
	return string(b), os.WriteFile(path, b, 0o600)
}

func storeOptions(cfg config.Config, log *slog.Logger) store.Options {
	opts := store.Options{DataDir: cfg.DataDir, NodeName: "firebreak", NATSURL: cfg.NATSURL,
		Replicas: cfg.ReplicaCount(), RoomShards: cfg.RoomShardCount(), Logger: log,
		// Group commit needs the embedded server: in a cluster it asks it which shard
		// streams this node leads (store/forward.go).
		GroupCommit: cfg.NATSURL == "" && (cfg.Cluster != nil || cfg.ReplicaCount() == 1)}
	if c := cfg.Cluster; c != nil {
		opts.NodeName = c.Node
		opts.Cluster = &store.ClusterOptions{Name: c.Name, DC: c.DC, Listen: c.Listen, Routes: c.Routes, Size: c.Size}
	}
	return opts
}
