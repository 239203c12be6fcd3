package bench

import (
	"os/exec"
	"syscall"
)

// isolate gives a local server its own process group, so a Ctrl-C meant for the bench does not
// reach it (the bench stops it cleanly), and has the kernel stop it if the bench dies first.
func isolate(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGTERM}
}
