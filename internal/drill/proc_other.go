//go:build !linux

package drill

import (
	"os/exec"
	"syscall"
)

// The drill addresses nodes on 127.0.x.y, which only Linux routes to the loopback interface
// without configuration; elsewhere it still builds and signals the node process alone.
func isolate(*exec.Cmd) {}

func signalGroup(cmd *exec.Cmd, sig syscall.Signal) error {
	return cmd.Process.Signal(sig)
}
