package store

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"path/filepath"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"golang.org/x/crypto/bcrypt"
)

// ClusterOptions place a node in the deployment's one JetStream cluster. Every node carries the
// tag dc:<DC> and JetStream places each replica of a stream in a different data center, so an
// R3 stream keeps a quorum when any one data center is lost.
type ClusterOptions struct {
	Name   string   // the cluster's name, the same on every node
	DC     string   // this node's data center
	Listen string   // host:port for cluster (route) traffic
	Routes []string // host:port of the other nodes' cluster listeners
	Size   int      // number of nodes in the deployment, as health reports it
}

// renderConfig writes the embedded server's configuration in NATS's own format, the path the
// NATS maintainers test, rather than filling Options by hand.
func renderConfig(opts Options) string {
	var b strings.Builder
	fmt.Fprintf(&b, "server_name: %q\nmax_payload: 1MB\n", opts.NodeName)
	fmt.Fprintf(&b, "jetstream {\n  store_dir: %q\n  sync_interval: always\n", filepath.Join(opts.DataDir, "jetstream"))
	if c := opts.Cluster; c != nil {
		b.WriteString("  unique_tag: \"dc:\"\n}\n")
		// The NATS server only starts routing once its client port listens, so in a cluster
		// the client port opens on loopback, on a random port, behind random passwords that
		// only this process knows.
		fmt.Fprintf(&b, "host: \"127.0.0.1\"\nport: -1\n")
		fmt.Fprintf(&b, "authorization { users: [{user: %q, password: %q}] }\n", clientUser, opts.clientPasswordHash)
		// The system user may do only what the fence needs of it (stepDownMetaLeader).
		fmt.Fprintf(&b, "accounts { $SYS { users: [{user: %q, password: %q, permissions: {publish: [%q], subscribe: [%q]}}] } }\n",
			systemUser, opts.systemPasswordHash, metaStepDownSubject, "_INBOX.>")
		fmt.Fprintf(&b, "server_tags: [%q]\n", "dc:"+c.DC)
		routes := make([]string, len(c.Routes))
		for i, r := range c.Routes {
			routes[i] = fmt.Sprintf("%q", "nats-route://"+strings.TrimPrefix(r, "nats-route://"))
		}
		// A route whose pings go unanswered for 2 s (four pings, half a second apart) is closed.
		// Until then NATS still sends requests over it, and when the other end is a data center
		// that silently died (a dead switch, a power cut) those go unanswered: a read given to
		// one of its replicas, a consumer placed there.
		fmt.Fprintf(&b, "cluster {\n  name: %q\n  listen: %q\n  routes: [%s]\n  ping_interval: \"500ms\"\n  ping_max: 3\n}\n",
			c.Name, c.Listen, strings.Join(routes, ", "))
	} else {
		b.WriteString("}\n")
	}
	return b.String()
}

// waitForMetaLeader waits until the embedded server follows a JetStream meta leader, so the
// first requests do not sit out a long timeout while the cluster forms.
func (s *Store) waitForMetaLeader(ctx context.Context) {
	if s.ns == nil || s.opts.Cluster == nil {
		return
	}
	for !s.ns.JetStreamIsCurrent() {
		select {
		case <-ctx.Done():
			return
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// Health says whether this node can take writes and serve reads.
type Health struct {
	Writable    bool `json:"writable"`
	Peers       int  `json:"connected_peers"`
	ClusterSize int  `json:"cluster_size"`
	DCs         int  `json:"reached_dcs"` // this node's included
	KnownDCs    int  `json:"known_dcs"`
	MetaCurrent bool `json:"meta_current"`
	Fenced      bool `json:"fenced"` // JetStream stopped while cut off (fence.go)
}

// Health reports whether this node can take writes. In a cluster that is whether it reaches
// nodes in a majority of the data centers (fence.go says how it counts them) and is not
// fenced, not whether the JetStream meta group has a leader: when a data center is lost every
// survivor spends seconds electing one, yet writes to every stream whose leader survived go
// on, and a load balancer must not drain the healthy data centers then.
func (s *Store) Health() Health {
	h := Health{Writable: s.nc != nil && s.nc.IsConnected(), ClusterSize: 1, DCs: 1, KnownDCs: 1}
	if s.ns == nil {
		return h
	}
	h.MetaCurrent = s.ns.JetStreamIsCurrent()
	if c := s.opts.Cluster; c != nil {
		r := s.current()
		h.Peers, h.ClusterSize, h.DCs, h.KnownDCs = r.peers, max(c.Size, len(c.Routes)+1), r.dcs, r.known
		h.Fenced = s.isFenced()
		h.Writable = h.Writable && r.majority && !h.Fenced
	} else {
		h.Writable = h.Writable && h.MetaCurrent
	}
	return h
}

// ErrCutOff (an ErrUnavailable) is why a node that reaches too few of the cluster refuses
// writes at once, and a fenced one reads too: a publish from it could not reach a quorum, and
// the client does better trying another node now than after the publish times out. Waiting
// cannot help either until the link heals.
var ErrCutOff = fmt.Errorf("%w: this node reaches too few of the cluster's data centers", ErrUnavailable)

// checkWritable fails fast on a clustered node cut off from its quorum, or fenced since.
func (s *Store) checkWritable() error {
	if !s.current().majority {
		return ErrCutOff
	}
	return s.checkFenced()
}

// checkFenced fails fast while this node's JetStream is stopped (fence.go).
func (s *Store) checkFenced() error {
	if s.isFenced() {
		return ErrCutOff
	}
	return nil
}

// The users of the embedded server's client port (renderConfig).
const (
	clientUser = "firebreak"
	systemUser = "firebreak-system"

	metaStepDownSubject = "$JS.API.META.LEADER.STEPDOWN"
)

func (o Options) clientUser() nats.Option { return nats.UserInfo(clientUser, o.clientPassword) }
func (o Options) systemUser() nats.Option { return nats.UserInfo(systemUser, o.systemPassword) }

// setPasswords draws the two users' passwords and hashes them for the server's
// configuration: NATS warns at every start about plaintext passwords there. The passwords are
// random, so bcrypt's lowest cost is enough, and a connection's check stays cheap.
func (o *Options) setPasswords() (err error) {
	if o.clientPassword, o.clientPasswordHash, err = newPassword(); err != nil {
		return err
	}
	o.systemPassword, o.systemPasswordHash, err = newPassword()
	return err
}

// newPassword is a random password and its bcrypt hash.
func newPassword() (password, hash string, err error) {
	password = randomToken()
	h, err := bcrypt.GenerateFromPassword([]byte(password), bcrypt.MinCost)
	return password, string(h), err
}

func randomToken() string {
	b := make([]byte, 24)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// StreamReplication is how many current copies one stream or bucket has.
type StreamReplication struct {
	Name     string `json:"name"`
	Leader   string `json:"leader"`
	Replicas int    `json:"replicas"` // wanted
	Current  int    `json:"current"`  // leader plus followers that are caught up and online
}

// Replication lists every stream and bucket with its current replica count, so operators and
// the drill can tell when a restored data center has caught up.
func (s *Store) Replication(ctx context.Context) ([]StreamReplication, error) {
	var out []StreamReplication
	lister := s.js.ListStreams(ctx)
	for info := range lister.Info() {
		r := StreamReplication{Name: info.Config.Name, Replicas: info.Config.Replicas}
		if c := info.Cluster; c != nil {
			r.Leader = c.Leader
			if c.Leader != "" {
				r.Current = 1
			}
			for _, p := range c.Replicas {
				if p.Current && !p.Offline {
					r.Current++
				}
			}
		} else {
			r.Current = 1 // a single node's stream is its own only copy
		}
		out = append(out, r)
	}
	return out, translate(lister.Err())
}
