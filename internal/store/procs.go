package store

import (
	"os"
	"runtime"
)

// extraProcsPerServer is how many more Go processors (GOMAXPROCS) than CPUs a process runs
// with for each JetStream server it embeds. JetStream fsyncs each write in a system call that
// keeps its processor until the runtime's monitor hands it on, tens of microseconds or more
// later; with one processor per CPU, a CPU then idles while other goroutines wait. At maximum
// load on 2 CPUs, 2 extra took a node from 142% to 161% of a core and sends/s up by about a
// tenth; 6 extra cost more CPU per send than they won.
const extraProcsPerServer = 2

// ProcsForEmbedded is the GOMAXPROCS for this process while it embeds servers JetStream
// servers: the runtime's default (one processor per CPU the process may use) plus
// extraProcsPerServer for each server. Callers raise it from the default only once, or put
// the default back when they stop embedding the servers. ok is false when GOMAXPROCS is set
// in the environment: the operator chose, and it is left alone. Nodes and the bench's
// measurement of the engine both use it, so the engine is measured with the processors a
// node gives it.
func ProcsForEmbedded(servers int) (procs int, ok bool) {
	if os.Getenv("GOMAXPROCS") != "" {
		return 0, false
	}
	return runtime.GOMAXPROCS(0) + extraProcsPerServer*servers, true
}
