// Package netio gives the gateway's TCP connections a cheaper read and
// write for its hot path.
//
// A net.TCPConn's Read and Write tell the Go scheduler they enter a system
// call that may block, and the scheduler may hand the goroutine's P to
// another thread while it runs. The gateway's sockets are non-blocking, so
// a read or write never blocks: on loopback or a LAN it copies bytes and
// returns within microseconds (an empty read returns EAGAIN, a full socket
// a short write). On Linux, Conn makes those calls without the scheduler's
// bookkeeping and waits on the runtime's poller, as net does, when the
// socket has no data or no room. Deadlines, Close and the errors returned
// behave as net.TCPConn's.
//
// Elsewhere (macOS, Windows) Conn is the *net.TCPConn itself: its Read and
// Write are net's, so the gateway builds and runs everywhere Go does and
// only Linux, where it is deployed, gets the cheaper calls. The API is the
// same on every platform; what a caller sees differs in cost only. The
// build tag netio_portable selects that fallback on Linux as well, so that
// its tests (go test -tags netio_portable) run where the rest do.
package netio

import "net"

// TCP returns the TCP connection under conn (a *net.TCPConn or a *Conn),
// or nil.
func TCP(conn net.Conn) *net.TCPConn {
	switch c := conn.(type) {
	case *net.TCPConn:
		return c
	case *Conn:
		return c.TCPConn
	}
	return nil
}
