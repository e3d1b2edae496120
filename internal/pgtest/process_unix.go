//go:build unix

package pgtest

import (
	"os"
	"os/exec"
	"syscall"
)

// ownGroup makes cmd the leader of a process group of its own, so that
// stopping it reaches postgres even through runuser.
func ownGroup(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
}

// interruptGroup asks postgres for a fast shutdown (SIGINT). runuser passes
// SIGINT on to postgres; signalling the whole process group makes the
// server go even when runuser does not forward.
func interruptGroup(p *os.Process) { syscall.Kill(-p.Pid, syscall.SIGINT) }

// killGroup kills the process group at once.
func killGroup(p *os.Process) { syscall.Kill(-p.Pid, syscall.SIGKILL) }
