//go:build !linux || netio_portable

package netio

import "net"

// Conn is a *net.TCPConn. Here its Read and Write are net's own: the raw
// system calls that spare the scheduler's bookkeeping are Linux's (see the
// package documentation).
type Conn struct {
	*net.TCPConn
}

// Wrap returns conn as a *Conn when it is a TCP connection, and conn
// itself otherwise.
func Wrap(conn net.Conn) net.Conn {
	if tc, ok := conn.(*net.TCPConn); ok {
		return &Conn{TCPConn: tc}
	}
	return conn
}
