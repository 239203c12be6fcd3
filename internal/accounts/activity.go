package accounts

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"time"
)

// A device's last_seen_ts and last_seen_ip follow its use, not only its login: clients warn
// about sessions unseen for months (Element after 90 days). Every authenticated request notes
// its device in memory; the record is written at most once per lastSeenEvery for a device
// seen from the same address, since each write is a replicated KV write.
const (
	lastSeenEvery = 5 * time.Minute
	lastSeenFlush = time.Minute
)

type deviceKey struct{ userID, deviceID string }

type sighting struct {
	at time.Time
	ip string
}

// activity is what this node has seen of devices since its last write of them.
type activity struct {
	mu      sync.Mutex
	seen    map[deviceKey]sighting // since the last flush
	written map[deviceKey]sighting // the last write of each device, to space writes out
}

// Saw notes that a device made a request from ip.
func (s *Service) Saw(userID, deviceID, ip string) {
	a := &s.activity
	a.mu.Lock()
	if a.seen == nil {
		a.seen = map[deviceKey]sighting{}
	}
	a.seen[deviceKey{userID, deviceID}] = sighting{time.Now(), ip}
	a.mu.Unlock()
}

// RecordActivity writes what Saw noted to the devices' records every lastSeenFlush until ctx
// ends.
func (s *Service) RecordActivity(ctx context.Context, log *slog.Logger) {
	tick := time.NewTicker(lastSeenFlush)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
			if err := s.flushActivity(ctx); err != nil && ctx.Err() == nil {
				log.Warn("recording devices' last use", "err", err)
			}
		}
	}
}

// flushActivity writes the devices seen since the last flush whose record is older than
// lastSeenEvery or names another address. A device logged out meanwhile is not written back.
func (s *Service) flushActivity(ctx context.Context) error {
	a := &s.activity
	a.mu.Lock()
	seen := a.seen
	a.seen = nil
	if a.written == nil {
		a.written = map[deviceKey]sighting{}
	}
	written := a.written
	a.mu.Unlock()
	var firstErr error
	for k, sg := range seen {
		if last, ok := written[k]; ok && last.ip == sg.ip && sg.at.Sub(last.at) < lastSeenEvery {
			continue
		}
		err := s.changeDevice(ctx, k.userID, k.deviceID, func(d *Device) { d.LastSeenTS, d.LastSeenIP = sg.at.UnixMilli(), sg.ip })
		switch {
		case err == nil:
			written[k] = sg
		case errors.Is(err, ErrNotFound):
			delete(written, k)
		case firstErr == nil:
			firstErr = err
		}
	}
	// Only this flush touches written (RecordActivity's one goroutine); forget devices idle
	// long enough that their next sighting is written anyway.
	for k, sg := range written {
		if time.Since(sg.at) > lastSeenEvery {
			delete(written, k)
		}
	}
	return firstErr
}
