//go:build unix && !solaris

package gateway

import (
	"context"
	"errors"
	"net"
	"syscall"

	"golang.org/x/sys/unix"
)

// listen opens a TCP listener; with reusePort (reuse_port) it sets
// SO_REUSEPORT, so that a new gateway process can listen on the same port
// during a rolling restart while the old one drains. Without it a port in
// use is an error, so a second process cannot silently take a share of
// another's clients.
func listen(addr string, reusePort bool) (net.Listener, error) {
	var lc net.ListenConfig
	if reusePort {
		lc.Control = func(network, address string, c syscall.RawConn) error {
			var serr error
			err := c.Control(func(fd uintptr) {
				serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_REUSEPORT, 1)
			})
			return errors.Join(err, serr)
		}
	}
	l, err := lc.Listen(context.Background(), "tcp", addr)
	return l, explainListenError(err, reusePort)
}
