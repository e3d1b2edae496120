//go:build unix && !linux

package authbridge

import (
	"errors"

	"golang.org/x/sys/unix"
)

// peekIdle reports whether the socket fd has nothing to be read: a peek of
// one byte fails with EAGAIN (net's sockets are non-blocking, so it never
// waits). Outside Linux the peek is an ordinary system call.
func peekIdle(fd uintptr) bool {
	var buf [1]byte
	_, _, err := unix.Recvfrom(int(fd), buf[:], unix.MSG_PEEK)
	return errors.Is(err, unix.EAGAIN)
}
