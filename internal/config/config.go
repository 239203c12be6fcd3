// Package config reads Firebreak's YAML configuration and fills in safe defaults.
// Setting names follow Synapse's where Synapse has the same setting.
package config

import (
	"fmt"
	"log/slog"
	"os"
	"strings"

	"github.com/matrix-org/gomatrixserverlib/spec"
	"gopkg.in/yaml.v3"
)

// RateLimit is a token bucket: a steady rate with a burst allowance.
type RateLimit struct {
	PerSecond  float64 `yaml:"per_second"`
	BurstCount int     `yaml:"burst_count"`
}

// Config is the whole configuration of one node.
type Config struct {
	ServerName               string `yaml:"server_name"`
	Listen                   string `yaml:"listen"`
	DataDir                  string `yaml:"data_dir"`
	EnableRegistration       bool   `yaml:"enable_registration"`
	RegistrationSharedSecret string `yaml:"registration_shared_secret"`
	MaxRequestBodySize       int64  `yaml:"max_request_body_size"`
	// MaxUploadSize bounds a media upload, which max_request_body_size does not.
	MaxUploadSize int64 `yaml:"max_upload_size"`
	// RoomShards is how many room shard streams a new deployment gets; 0 picks the default
	// for its layout (see RoomShardCount).
	RoomShards         int       `yaml:"room_shards"`
	DefaultRoomVersion string    `yaml:"default_room_version"`
	RCMessage          RateLimit `yaml:"rc_message"`
	RCLogin            RateLimit `yaml:"rc_login"`
	RCRegistration     RateLimit `yaml:"rc_registration"`
	// XForwarded takes a client's address from the last entry of X-Forwarded-For, which the
	// reverse proxy in front of the node appends (Synapse's x_forwarded): the per-address
	// rate limits then count each client, not the proxy. Only for a node every request
	// reaches through such a proxy: a client talking to it directly could pick its address.
	XForwarded bool   `yaml:"x_forwarded"`
	LogLevel   string `yaml:"log_level"`
	// Cluster joins this node to a deployment spanning data centers; nil runs a single node.
	Cluster *Cluster `yaml:"cluster"`
	// NATSURL uses an operator's external NATS cluster instead of the embedded server.
	NATSURL string `yaml:"nats_url"`
	// Replicas is how many copies JetStream keeps of every stream and bucket; 0 picks the
	// default (see ReplicaCount).
	Replicas int `yaml:"replicas"`
	// PprofListen, when set, serves Go's profiler (net/http/pprof) on this address for
	// measuring the server; keep it on loopback, it is unauthenticated.
	PprofListen string `yaml:"pprof_listen"`
}

// SingleEmbeddedNode reports whether this node runs alone on its own embedded JetStream: no
// cluster, no external NATS.
func (c Config) SingleEmbeddedNode() bool { return c.Cluster == nil && c.NATSURL == "" }

// ReplicaCount is the number of copies of every stream and bucket: as configured, else 3 (one
// per data center) in a cluster or on an external NATS, and 1 on a single node.
func (c Config) ReplicaCount() int {
	switch {
	case c.Replicas > 0:
		return c.Replicas
	case !c.SingleEmbeddedNode():
		return 3
	}
	return 1
}

// Room shard streams when room_shards is not set. Each shard's queued events are written as
// one message (group commit), and fewer shards gather more (docs/PERFORMANCE.md, "Group
// commit"). A single node has one. A cluster has a few, so that their stream leaders, which
// write them, spread over its data centers, and a fire pauses the writes of only some rooms.
// An external NATS stores one message per event, and more shards append in parallel there.
const (
	ClusterRoomShards      = 4
	SingleNodeRoomShards   = 1
	ExternalNATSRoomShards = 16
)

// RoomShardCount is the number of room shard streams a new deployment gets: as configured,
// else by its layout.
func (c Config) RoomShardCount() int {
	switch {
	case c.RoomShards > 0:
		return c.RoomShards
	case c.NATSURL != "":
		return ExternalNATSRoomShards
	case c.Cluster != nil:
		return ClusterRoomShards
	}
	return SingleNodeRoomShards
}

// Cluster is the cluster: block of a node's configuration.
type Cluster struct {
	Name   string   `yaml:"name"`   // the cluster's name, the same on every node
	Node   string   `yaml:"node"`   // this node's unique name
	DC     string   `yaml:"dc"`     // this node's data center
	Listen string   `yaml:"listen"` // host:port for cluster traffic
	Routes []string `yaml:"routes"` // the other nodes' cluster addresses
	Size   int      `yaml:"size"`   // nodes in the deployment; default len(routes)+1
}

// Default returns the configuration `firebreak serve` uses with no --config.
func Default() Config {
	return Config{
		ServerName:         "localhost",
		Listen:             "127.0.0.1:8008",
		DataDir:            "./firebreak-data",
		MaxRequestBodySize: 1 << 20,
		MaxUploadSize:      50 << 20,
		DefaultRoomVersion: "10",
		RCMessage:          RateLimit{PerSecond: 10, BurstCount: 50},
		RCLogin:            RateLimit{PerSecond: 0.17, BurstCount: 3},
		RCRegistration:     RateLimit{PerSecond: 0.17, BurstCount: 3},
		LogLevel:           "info",
	}
}

// Load reads a YAML file over the defaults. Unknown keys are an error, so a typo
// in a setting name is caught at start instead of being silently ignored.
func Load(path string) (Config, error) {
	cfg := Default()
	f, err := os.Open(path)
	if err != nil {
		return cfg, err
	}
	defer f.Close()
	dec := yaml.NewDecoder(f)
	dec.KnownFields(true)
	if err := dec.Decode(&cfg); err != nil && err.Error() != "EOF" {
		return cfg, fmt.Errorf("%s: %w", path, err)
	}
	return cfg, cfg.Validate()
}

// MaxRoomShards bounds room_shards: each shard is a stream, with its own Raft group in a
// cluster.
const MaxRoomShards = 1024

// ValidRoomShards reports whether n room shard streams is a count a deployment may have.
func ValidRoomShards(n int) bool { return n >= 1 && n <= MaxRoomShards }

// validServerName holds server_name to the spec's grammar, as gomatrixserverlib reads it: a
// name it refuses would make every room and user id this server mints unreadable to it.
func validServerName(name string) bool {
	_, _, ok := spec.ParseAndValidateServerName(spec.ServerName(name))
	return ok
}

// ParseLogLevel reads log_level as log/slog does (debug, info, warn or error, in any case,
// with an optional offset such as debug-4).
func ParseLogLevel(level string) (slog.Level, error) {
	var l slog.Level
	err := l.UnmarshalText([]byte(level))
	return l, err
}

func logLevelInvalid(level string) bool {
	_, err := ParseLogLevel(level)
	return err != nil
}

// Validate reports the first setting that cannot work.
func (c Config) Validate() error {
	switch {
	case !validServerName(c.ServerName):
		return fmt.Errorf("server_name %q is not a valid server name (a DNS name, IPv4 address or [IPv6] address, and an optional :port)", c.ServerName)
	case c.Listen == "":
		return fmt.Errorf("listen must be host:port")
	case c.DataDir == "":
		return fmt.Errorf("data_dir must be set")
	case c.MaxRequestBodySize < 65536:
		return fmt.Errorf("max_request_body_size must be at least 65536 (the largest event)")
	case c.MaxUploadSize < 1:
		return fmt.Errorf("max_upload_size must be at least 1")
	case c.RoomShards != 0 && !ValidRoomShards(c.RoomShards):
		return fmt.Errorf("room_shards must be between 1 and %d", MaxRoomShards)
	case c.Replicas < 0 || c.Replicas > 5:
		return fmt.Errorf("replicas must be between 1 and 5")
	case c.Cluster != nil && c.NATSURL != "":
		return fmt.Errorf("set either cluster or nats_url, not both")
	case logLevelInvalid(c.LogLevel):
		return fmt.Errorf("log_level %q: want debug, info, warn or error", c.LogLevel)
	}
	if cl := c.Cluster; cl != nil {
		for _, f := range []struct {
			name    string
			missing bool
		}{{"name", cl.Name == ""}, {"node", cl.Node == ""}, {"dc", cl.DC == ""}, {"listen", cl.Listen == ""}, {"routes", len(cl.Routes) == 0}} {
			if f.missing {
				return fmt.Errorf("cluster needs name, node, dc, listen and routes; %s is missing", f.name)
			}
		}
		if strings.ContainsAny(cl.Node+cl.DC+cl.Name, " .*>") {
			return fmt.Errorf("cluster name, node and dc may not contain spaces, '.', '*' or '>'")
		}
	}
	for name, rl := range map[string]RateLimit{"rc_message": c.RCMessage, "rc_login": c.RCLogin, "rc_registration": c.RCRegistration} {
		if rl.PerSecond <= 0 || rl.BurstCount < 1 {
			return fmt.Errorf("%s needs per_second > 0 and burst_count >= 1", name)
		}
	}
	return nil
}
