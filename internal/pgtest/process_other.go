//go:build !unix

package pgtest

import (
	"os"
	"os/exec"
)

// ownGroup does nothing here: without runuser (only root needs it, on
// Linux) postgres is the command itself.
func ownGroup(*exec.Cmd) {}

// interruptGroup kills postgres: Windows has no SIGINT to send another
// process, so there is no fast shutdown; the directory is removed anyway.
func interruptGroup(p *os.Process) { p.Kill() }

// killGroup kills postgres.
func killGroup(p *os.Process) { p.Kill() }
