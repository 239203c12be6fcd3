//go:build !linux

package bench

import (
	"os/exec"
	"syscall"
)

// isolate gives a local server its own process group; only Linux can also have it stopped
// when the bench dies.
func isolate(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
}
