// Package testnet gives tests that start clusters of real servers their addresses.
package testnet

import (
	"fmt"
	"math/rand/v2"
	"net"
	"testing"
)

// LoopbackAddrs returns n addresses on one loopback IP picked at random, each with a port
// that was free a moment ago: tests running at once, in this package's process or another,
// then rarely pick the same ports, and their clusters never route to each other.
func LoopbackAddrs(tb testing.TB, n int) []string {
	tb.Helper()
	ip := fmt.Sprintf("127.%d.%d.%d", 100+rand.IntN(100), rand.IntN(256), 1+rand.IntN(254))
	addrs := make([]string, n)
	for i := range addrs {
		ln, err := net.Listen("tcp", net.JoinHostPort(ip, "0"))
		if err != nil {
			tb.Fatal(err)
		}
		addrs[i] = ln.Addr().String()
		ln.Close()
	}
	return addrs
}
