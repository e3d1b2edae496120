//go:build unix

package pgwire

import (
	"syscall"

	"golang.org/x/sys/unix"
)

// peekSocket reports whether a read of the socket would return at once,
// without blocking and without taking anything from it.
func peekSocket(sc syscall.Conn) (readable, ok bool) {
	raw, err := sc.SyscallConn()
	if err != nil {
		return true, true
	}
	readable = true
	err = raw.Read(func(fd uintptr) bool {
		var b [1]byte
		_, _, err := unix.Recvfrom(int(fd), b[:], unix.MSG_PEEK|unix.MSG_DONTWAIT)
		readable = err != unix.EAGAIN
		return true
	})
	return err != nil || readable, true
}
