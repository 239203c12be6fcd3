package drill

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"

	"gopkg.in/yaml.v3"

	"github.com/firebreak/firebreak/internal/config"
)

// Every data center gets its own slice of the loopback range (Linux routes all of 127/8 to lo):
// node j of data center i listens on 127.0.<i+1>.<j+1>, and the proxies that carry traffic out
// of data center i listen on 127.0.<i+1>.100.
//
// Every route goes through a proxy, even inside a data center (never cut, no added latency),
// unless the deployment is one the drill never cuts (Options.DirectRoutes, the bench's).
// NATS gossips to its other routes the address it dialed a new route at, and a node that has
// no route to that server yet dials it directly (server/route.go, processImplicitRoute). With
// direct routes inside a data center, a node would gossip its neighbour's real address to the
// other data centers, which could then reach it around the proxies and so around a cut.
// (cluster.no_advertise does not help: it only hides client URLs.) Through proxies, every
// gossiped address is a proxy host or 127.0.0.1 with a node's port, where nothing listens.
const proxyHostOctet = 100

// nodeSpec is where one node lives: its addresses and its files.
type nodeSpec struct {
	Name        string // n1, n2, ... unique in the deployment
	DC          string // dc1, dc2, ...
	APIAddr     string // host:port of the Client-Server API
	ClusterAddr string // host:port of the JetStream route listener
	Dir         string // the node's directory: config, log and data
	DataDir     string // wiped to simulate a lost disk
	ConfigPath  string
	LogPath     string
}

func (n nodeSpec) URL() string { return "http://" + n.APIAddr }

// linkSpec is one directed link: nodes of FromDC reach node ToNode through a proxy.
type linkSpec struct {
	FromDC string
	ToNode string
	Target string // the node's real cluster address
	Local  bool   // inside one data center: never cut, no added latency
}

// topology is the whole deployment the drill starts.
type topology struct {
	Nodes []nodeSpec
	Links []linkSpec
}

// dcHost is the loopback address of node j of data center i.
func dcHost(dc, j int) string { return fmt.Sprintf("127.0.%d.%d", dc+1, j+1) }

// proxyHost is the address the proxies out of data center i listen on.
func proxyHost(dc int) string { return fmt.Sprintf("127.0.%d.%d", dc+1, proxyHostOctet) }

// planTopology picks free ports for every node and lists the links between data centers.
func planTopology(dir string, dcs, perDC int, ports *portPicker) (topology, error) {
	var t topology
	for dc := 0; dc < dcs; dc++ {
		for j := 0; j < perDC; j++ {
			host := dcHost(dc, j)
			api, err := ports.pick(host)
			if err != nil {
				return t, err
			}
			cluster, err := ports.pick(host)
			if err != nil {
				return t, err
			}
			name := fmt.Sprintf("n%d", len(t.Nodes)+1)
			nd := filepath.Join(dir, name)
			t.Nodes = append(t.Nodes, nodeSpec{
				Name: name, DC: dcName(dc), APIAddr: api, ClusterAddr: cluster, Dir: nd,
				DataDir: filepath.Join(nd, "data"), ConfigPath: filepath.Join(nd, "firebreak.yaml"),
				LogPath: filepath.Join(nd, "firebreak.log"),
			})
		}
	}
	for dc := 0; dc < dcs; dc++ {
		for _, n := range t.Nodes {
			t.Links = append(t.Links, linkSpec{FromDC: dcName(dc), ToNode: n.Name, Target: n.ClusterAddr, Local: n.DC == dcName(dc)})
		}
	}
	return t, nil
}

// routes lists the cluster addresses node n dials: every other node through the link from
// n's data center to it.
func (t topology) routes(n nodeSpec, linkAddr func(fromDC, toNode string) string) []string {
	var out []string
	for _, m := range t.Nodes {
		if m.Name != n.Name {
			out = append(out, linkAddr(n.DC, m.Name))
		}
	}
	return out
}

// writeConfig writes the node's firebreak.yaml. It starts from the server's own defaults so
// every setting the drill does not care about is the one a real deployment gets; only the
// rate limits are lifted, since the drill's users all come from one address.
func writeConfig(n nodeSpec, clusterSize, roomShards int, routes []string) error {
	cfg := config.Default()
	cfg.RoomShards = roomShards
	cfg.ServerName = "localhost"
	cfg.Listen = n.APIAddr
	cfg.DataDir = n.DataDir
	cfg.EnableRegistration = true
	generous := config.RateLimit{PerSecond: 10000, BurstCount: 10000}
	cfg.RCMessage, cfg.RCLogin, cfg.RCRegistration = generous, generous, generous
	cfg.Replicas = 3
	cfg.Cluster = &config.Cluster{Name: "firebreak-drill", Node: n.Name, DC: n.DC, Listen: n.ClusterAddr,
		Routes: routes, Size: clusterSize}
	raw, err := yaml.Marshal(cfg)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(n.Dir, 0o700); err != nil {
		return err
	}
	return os.WriteFile(n.ConfigPath, raw, 0o600)
}

// portPicker hands out ports that were free a moment ago and never the same number twice,
// whatever the address: NATS gossips a route's port together with the address the connection
// came from (127.0.0.1 on loopback), so no port of ours may be reachable that way by accident.
type portPicker struct{ used map[int]bool }

func newPortPicker() *portPicker { return &portPicker{used: map[int]bool{}} }

// pick returns host:port with a port free on host now and unused by the drill so far.
func (p *portPicker) pick(host string) (string, error) {
	for range 100 {
		l, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
		if err != nil {
			return "", fmt.Errorf("find a free port on %s: %w", host, err)
		}
		addr := l.Addr().String()
		l.Close()
		if p.claim(addr) {
			return addr, nil
		}
	}
	return "", fmt.Errorf("no unused port on %s after 100 tries", host)
}

// listen opens a listener on host with a port no other part of the drill uses.
func (p *portPicker) listen(host string) (net.Listener, error) {
	for range 100 {
		l, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
		if err != nil {
			return nil, fmt.Errorf("listen on %s: %w", host, err)
		}
		if p.claim(l.Addr().String()) {
			return l, nil
		}
		l.Close()
	}
	return nil, fmt.Errorf("no unused port on %s after 100 tries", host)
}

func (p *portPicker) claim(addr string) bool {
	_, portStr, _ := net.SplitHostPort(addr)
	port, _ := strconv.Atoi(portStr)
	if p.used[port] {
		return false
	}
	p.used[port] = true
	return true
}
