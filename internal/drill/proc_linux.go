package drill

import (
	"os/exec"
	"syscall"
)

// isolate puts the node in its own process group, so a Ctrl-C in the drill's terminal reaches
// only the drill (which then stops the nodes itself), and asks the kernel to kill the node if
// the drill dies without cleaning up.
func isolate(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}

// signalGroup sends sig to the node's whole process group.
func signalGroup(cmd *exec.Cmd, sig syscall.Signal) error {
	return syscall.Kill(-cmd.Process.Pid, sig)
}
