package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func writeConfig(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "firebreak.yaml")
	if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestDefaultIsValid(t *testing.T) {
	if err := Default().Validate(); err != nil {
		t.Fatalf("Default().Validate() = %v", err)
	}
}

func TestLoadFull(t *testing.T) {
	p := writeConfig(t, `
server_name: example.org
listen: 0.0.0.0:8448
data_dir: /var/lib/firebreak
enable_registration: true
registration_shared_secret: "s3cret"
max_request_body_size: 10485760
room_shards: 32
default_room_version: "11"
rc_message:
  per_second: 2.5
  burst_count: 20
rc_login:
  per_second: 1
  burst_count: 5
rc_registration:
  per_second: 0.5
  burst_count: 2
x_forwarded: true
log_level: debug
`)
	got, err := Load(p)
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	want := Default()
	want.ServerName = "example.org"
	want.Listen = "0.0.0.0:8448"
	want.DataDir = "/var/lib/firebreak"
	want.EnableRegistration = true
	want.RegistrationSharedSecret = "s3cret"
	want.MaxRequestBodySize = 10485760
	want.RoomShards = 32
	want.DefaultRoomVersion = "11"
	want.RCMessage = RateLimit{PerSecond: 2.5, BurstCount: 20}
	want.RCLogin = RateLimit{PerSecond: 1, BurstCount: 5}
	want.RCRegistration = RateLimit{PerSecond: 0.5, BurstCount: 2}
	want.XForwarded = true
	want.LogLevel = "debug"
	checkEqual(t, got, want)
}

// checkEqual compares the settings this test file knows about, field by field.
func checkEqual(t *testing.T, got, want Config) {
	t.Helper()
	type field struct {
		name      string
		got, want any
	}
	for _, f := range []field{
		{"server_name", got.ServerName, want.ServerName},
		{"listen", got.Listen, want.Listen},
		{"data_dir", got.DataDir, want.DataDir},
		{"enable_registration", got.EnableRegistration, want.EnableRegistration},
		{"registration_shared_secret", got.RegistrationSharedSecret, want.RegistrationSharedSecret},
		{"max_request_body_size", got.MaxRequestBodySize, want.MaxRequestBodySize},
		{"room_shards", got.RoomShards, want.RoomShards},
		{"default_room_version", got.DefaultRoomVersion, want.DefaultRoomVersion},
		{"rc_message", got.RCMessage, want.RCMessage},
		{"rc_login", got.RCLogin, want.RCLogin},
		{"rc_registration", got.RCRegistration, want.RCRegistration},
		{"x_forwarded", got.XForwarded, want.XForwarded},
		{"log_level", got.LogLevel, want.LogLevel},
	} {
		if f.got != f.want {
			t.Errorf("%s = %v, want %v", f.name, f.got, f.want)
		}
	}
}

func TestLoadKeepsDefaults(t *testing.T) {
	cases := []struct {
		name   string
		body   string
		change func(*Config)
	}{
		{"empty file", "", func(*Config) {}},
		{"only comments", "# nothing set\n", func(*Config) {}},
		{"explicit empty document", "---\n", func(*Config) {}},
		{"one setting", "server_name: matrix.example.com\n", func(c *Config) { c.ServerName = "matrix.example.com" }},
		{"two settings", "listen: \"[::1]:9000\"\nlog_level: warn\n", func(c *Config) { c.Listen = "[::1]:9000"; c.LogLevel = "warn" }},
		{"one rate limit", "rc_login: {per_second: 3, burst_count: 9}\n", func(c *Config) { c.RCLogin = RateLimit{PerSecond: 3, BurstCount: 9} }},
		{"half a rate limit keeps the other half", "rc_message:\n  per_second: 4\n", func(c *Config) { c.RCMessage.PerSecond = 4 }},
		{"a boolean setting", "enable_registration: true\nx_forwarded: true\n", func(c *Config) { c.EnableRegistration, c.XForwarded = true, true }},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Load(writeConfig(t, tc.body))
			if err != nil {
				t.Fatalf("Load: %v", err)
			}
			want := Default()
			tc.change(&want)
			checkEqual(t, got, want)
		})
	}
}

func TestLoadRejects(t *testing.T) {
	cases := []struct {
		name string
		body string
		want string // a piece of the error
	}{
		{"unknown key", "server_name: x.org\nserver_nmae: y.org\n", "server_nmae"},
		{"unknown nested key", "rc_message:\n  per_second: 1\n  burst: 5\n", "burst"},
		{"wrong type", "room_shards: many\n", "many"},
		{"list for a string", "server_name: [a, b]\n", ""},
		{"not a mapping", "- a\n- b\n", ""},
		{"bad yaml", "server_name: \"unterminated\n", ""},
		{"invalid after loading", "server_name: \"bad name\"\n", "server_name"},
		{"small body size", "max_request_body_size: 1024\n", "max_request_body_size"},
		{"negative shards", "room_shards: -1\n", "room_shards"},
		{"zero rate", "rc_message: {per_second: 0, burst_count: 5}\n", "rc_message"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := Load(writeConfig(t, tc.body))
			if err == nil {
				t.Fatalf("Load accepted %q: %+v", tc.body, cfg)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Load error %q does not mention %q", err, tc.want)
			}
		})
	}
}

func TestLoadMissingFile(t *testing.T) {
	if _, err := Load(filepath.Join(t.TempDir(), "absent.yaml")); !os.IsNotExist(err) {
		t.Fatalf("Load of a missing file: %v, want a not-exist error", err)
	}
}

func validCluster() *Cluster {
	return &Cluster{Name: "fb", Node: "n1", DC: "dc1", Listen: "0.0.0.0:6222", Routes: []string{"n2:6222", "n3:6222"}}
}

const clusterYAML = "cluster:\n  name: fb\n  node: n1\n  dc: dc1\n  listen: 0.0.0.0:6222\n  routes: [n2:6222, n3:6222]\n"

func TestReplicaCount(t *testing.T) {
	cases := []struct {
		name string
		body string
		want int
	}{
		{"single node", "", 1},
		{"single node, explicit", "replicas: 1\n", 1},
		{"single node, zero means default", "replicas: 0\n", 1},
		{"single node, more", "replicas: 3\n", 3},
		{"cluster", clusterYAML, 3},
		{"cluster, explicit", clusterYAML + "replicas: 5\n", 5},
		{"cluster, zero means default", clusterYAML + "replicas: 0\n", 3},
		{"external nats", "nats_url: nats://n:4222\n", 3},
		{"external nats, explicit", "nats_url: nats://n:4222\nreplicas: 1\n", 1},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Load(writeConfig(t, tc.body))
			if err != nil {
				t.Fatalf("Load: %v", err)
			}
			if n := got.ReplicaCount(); n != tc.want {
				t.Errorf("ReplicaCount() = %d, want %d", n, tc.want)
			}
		})
	}
	got, err := Load(writeConfig(t, clusterYAML))
	if err != nil {
		t.Fatal(err)
	}
	if c := got.Cluster; c == nil || c.Name != "fb" || c.Node != "n1" || c.DC != "dc1" || c.Listen != "0.0.0.0:6222" ||
		len(c.Routes) != 2 || c.Routes[1] != "n3:6222" {
		t.Errorf("cluster = %+v", got.Cluster)
	}
	if n := Default().ReplicaCount(); n != 1 {
		t.Errorf("Default().ReplicaCount() = %d, want 1", n)
	}
}

func TestValidate(t *testing.T) {
	cases := []struct {
		name    string
		change  func(*Config)
		wantErr string // "" for valid
	}{
		{"default", func(*Config) {}, ""},
		{"domain", func(c *Config) { c.ServerName = "example.org" }, ""},
		{"domain with port", func(c *Config) { c.ServerName = "example.org:8448" }, ""},
		{"ipv4", func(c *Config) { c.ServerName = "192.0.2.1" }, ""},
		{"ipv6 literal", func(c *Config) { c.ServerName = "[2001:db8::1]:8448" }, ""},
		{"empty server_name", func(c *Config) { c.ServerName = "" }, "server_name"},
		{"server_name with a space", func(c *Config) { c.ServerName = "exa mple.org" }, "server_name"},
		{"server_name with a slash", func(c *Config) { c.ServerName = "example.org/matrix" }, "server_name"},
		{"server_name with @", func(c *Config) { c.ServerName = "user@example.org" }, "server_name"},
		{"server_name with !", func(c *Config) { c.ServerName = "ex!ample.org" }, "server_name"},
		{"server_name with #", func(c *Config) { c.ServerName = "example.org#x" }, "server_name"},
		{"server_name with _", func(c *Config) { c.ServerName = "my_server" }, "server_name"},
		{"server_name not ASCII", func(c *Config) { c.ServerName = "exämple.org" }, "server_name"},
		{"server_name with $", func(c *Config) { c.ServerName = "a$b" }, "server_name"},
		{"port out of range", func(c *Config) { c.ServerName = "example.org:99999" }, "server_name"},
		{"port not a number", func(c *Config) { c.ServerName = "example.org:http" }, "server_name"},
		{"empty port", func(c *Config) { c.ServerName = "example.org:" }, "server_name"},
		{"unclosed ipv6", func(c *Config) { c.ServerName = "[2001:db8::1" }, "server_name"},
		{"empty listen", func(c *Config) { c.Listen = "" }, "listen"},
		{"empty data_dir", func(c *Config) { c.DataDir = "" }, "data_dir"},
		{"body size at the minimum", func(c *Config) { c.MaxRequestBodySize = 65536 }, ""},
		{"body size below the minimum", func(c *Config) { c.MaxRequestBodySize = 65535 }, "max_request_body_size"},
		{"body size zero", func(c *Config) { c.MaxRequestBodySize = 0 }, "max_request_body_size"},
		{"body size negative", func(c *Config) { c.MaxRequestBodySize = -1 }, "max_request_body_size"},
		{"one shard", func(c *Config) { c.RoomShards = 1 }, ""},
		{"shards by layout", func(c *Config) { c.RoomShards = 0 }, ""},
		{"1024 shards", func(c *Config) { c.RoomShards = 1024 }, ""},
		{"1025 shards", func(c *Config) { c.RoomShards = 1025 }, "room_shards"},
		{"negative shards", func(c *Config) { c.RoomShards = -4 }, "room_shards"},
		{"message rate zero", func(c *Config) { c.RCMessage.PerSecond = 0 }, "rc_message"},
		{"message rate negative", func(c *Config) { c.RCMessage.PerSecond = -1 }, "rc_message"},
		{"message burst zero", func(c *Config) { c.RCMessage.BurstCount = 0 }, "rc_message"},
		{"login burst negative", func(c *Config) { c.RCLogin.BurstCount = -3 }, "rc_login"},
		{"login rate zero", func(c *Config) { c.RCLogin.PerSecond = 0 }, "rc_login"},
		{"registration rate zero", func(c *Config) { c.RCRegistration.PerSecond = 0 }, "rc_registration"},
		{"registration burst zero", func(c *Config) { c.RCRegistration.BurstCount = 0 }, "rc_registration"},
		{"small positive rate", func(c *Config) { c.RCLogin = RateLimit{PerSecond: 0.001, BurstCount: 1} }, ""},
		{"replicas 3", func(c *Config) { c.Replicas = 3 }, ""},
		{"replicas 0 (the default)", func(c *Config) { c.Replicas = 0 }, ""},
		{"replicas negative", func(c *Config) { c.Replicas = -1 }, "replicas"},
		{"replicas 5", func(c *Config) { c.Replicas = 5 }, ""},
		{"replicas 6", func(c *Config) { c.Replicas = 6 }, "replicas"},
		{"cluster", func(c *Config) { c.Cluster = validCluster() }, ""},
		{"cluster and nats_url", func(c *Config) { c.Cluster = validCluster(); c.NATSURL = "nats://n:4222" }, "nats_url"},
		{"nats_url", func(c *Config) { c.NATSURL = "nats://n:4222" }, ""},
		{"cluster without name", func(c *Config) { c.Cluster = validCluster(); c.Cluster.Name = "" }, "name is missing"},
		{"cluster without node", func(c *Config) { c.Cluster = validCluster(); c.Cluster.Node = "" }, "node is missing"},
		{"cluster without dc", func(c *Config) { c.Cluster = validCluster(); c.Cluster.DC = "" }, "dc is missing"},
		{"cluster without listen", func(c *Config) { c.Cluster = validCluster(); c.Cluster.Listen = "" }, "listen is missing"},
		{"cluster without routes", func(c *Config) { c.Cluster = validCluster(); c.Cluster.Routes = nil }, "routes is missing"},
		{"log level warn", func(c *Config) { c.LogLevel = "warn" }, ""},
		{"log level unknown", func(c *Config) { c.LogLevel = "verbose" }, "log_level"},
		{"log level in capitals, as slog reads it", func(c *Config) { c.LogLevel = "INFO" }, ""},
		{"log level with an offset", func(c *Config) { c.LogLevel = "debug-4" }, ""},
		{"cluster node with a dot", func(c *Config) { c.Cluster = validCluster(); c.Cluster.Node = "n1.dc1" }, "cluster"},
		{"cluster dc with a space", func(c *Config) { c.Cluster = validCluster(); c.Cluster.DC = "dc 1" }, "cluster"},
		{"cluster name with a wildcard", func(c *Config) { c.Cluster = validCluster(); c.Cluster.Name = "fb*" }, "cluster"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := Default()
			tc.change(&c)
			err := c.Validate()
			switch {
			case tc.wantErr == "" && err != nil:
				t.Fatalf("Validate() = %v, want nil", err)
			case tc.wantErr != "" && err == nil:
				t.Fatalf("Validate() accepted %+v", c)
			case tc.wantErr != "" && !strings.Contains(err.Error(), tc.wantErr):
				t.Fatalf("Validate() = %q, want an error about %s", err, tc.wantErr)
			}
		})
	}
}

func TestRoomShardCount(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  Config
		want int
	}{
		{"single node", Config{}, SingleNodeRoomShards},
		{"cluster", Config{Cluster: validCluster()}, ClusterRoomShards},
		{"external NATS", Config{NATSURL: "nats://127.0.0.1:4222"}, ExternalNATSRoomShards},
		{"configured", Config{RoomShards: 8, Cluster: validCluster()}, 8},
	} {
		if got := tc.cfg.RoomShardCount(); got != tc.want {
			t.Errorf("%s: %d room shards, want %d", tc.name, got, tc.want)
		}
	}
}
