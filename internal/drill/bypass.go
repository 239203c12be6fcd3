package drill

import (
	"bufio"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"time"
)

// bypasses lists established connections into a node's cluster port that none of the proxies
// made: routes around the proxies, which a cut would not stop. It reads the kernel's socket
// table (Linux); where there is none it finds nothing. A connection must show up in two reads
// to count, so one opened or closed during a read is not mistaken for a bypass.
func (c *cluster) bypasses() []string {
	first := c.bypassesOnce()
	if len(first) == 0 {
		return nil
	}
	time.Sleep(500 * time.Millisecond)
	again := map[string]bool{}
	for _, b := range c.bypassesOnce() {
		again[b] = true
	}
	var out []string
	for _, b := range first {
		if again[b] {
			out = append(out, b)
		}
	}
	return out
}

func (c *cluster) bypassesOnce() []string {
	conns, err := establishedTCP("/proc/net/tcp")
	if err != nil {
		return nil
	}
	clusterAddr := map[string]string{}
	for _, n := range c.nodes {
		clusterAddr[n.ClusterAddr] = n.Name
	}
	// Read the proxies' connections after the socket table: every proxied connection in the
	// table was dialed before it, and is registered a moment after its dial returns.
	proxied := map[string]bool{}
	for _, p := range c.proxies {
		for _, a := range p.dialedFrom() {
			proxied[a] = true
		}
	}
	var out []string
	for _, tc := range conns {
		if name, ok := clusterAddr[tc.local]; ok && !proxied[tc.remote] {
			out = append(out, fmt.Sprintf("%s <- %s", name, tc.remote))
		}
	}
	return out
}

type tcpConn struct{ local, remote string }

// establishedTCP parses the kernel's table of IPv4 TCP sockets and keeps the established ones.
func establishedTCP(path string) ([]tcpConn, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []tcpConn
	sc := bufio.NewScanner(f)
	sc.Scan() // header
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 4 || fields[3] != "01" { // 01 is TCP_ESTABLISHED
			continue
		}
		local, err1 := parseProcAddr(fields[1])
		remote, err2 := parseProcAddr(fields[2])
		if err1 == nil && err2 == nil {
			out = append(out, tcpConn{local, remote})
		}
	}
	return out, sc.Err()
}

// parseProcAddr reads "0101007F:1F90": the address as the kernel's u32 in this machine's byte
// order, then the port in hex.
func parseProcAddr(s string) (string, error) {
	ipHex, portHex, ok := strings.Cut(s, ":")
	if !ok || len(ipHex) != 8 {
		return "", fmt.Errorf("bad address %q", s)
	}
	raw, err := hex.DecodeString(ipHex)
	if err != nil {
		return "", err
	}
	ip := make(net.IP, 4)
	binary.NativeEndian.PutUint32(ip, binary.BigEndian.Uint32(raw))
	port, err := strconv.ParseUint(portHex, 16, 16)
	if err != nil {
		return "", err
	}
	return net.JoinHostPort(ip.String(), strconv.FormatUint(port, 10)), nil
}
