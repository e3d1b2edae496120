// Package netio gives the gateway's TCP connections a cheaper read and
// write for its hot path.
//
// A net.TCPConn's Read and Write tell the Go scheduler they enter a system
// call that may block, and the scheduler may hand the goroutine's P to
// another thread while it runs. The gateway's sockets are non-blocking, so
// a read or write never blocks: on loopback or a LAN it copies bytes and
// returns within microseconds (an empty read returns EAGAIN, a full socket
// a short write). Conn makes those calls without the scheduler's
// bookkeeping and waits on the runtime's poller, as net does, when the
// socket has no data or no room. Deadlines, Close and the errors returned
// behave as net.TCPConn's.
package netio

import (
	"io"
	"net"
	"os"
	"syscall"
	"unsafe"
)

// Conn is a *net.TCPConn whose Read and Write use the socket directly.
type Conn struct {
	*net.TCPConn
	raw syscall.RawConn
}

// Wrap returns conn as a *Conn when it is a TCP connection, and conn
// itself otherwise.
func Wrap(conn net.Conn) net.Conn {
	tc, ok := conn.(*net.TCPConn)
	if !ok {
		return conn
	}
	raw, err := tc.SyscallConn()
	if err != nil {
		return conn
	}
	return &Conn{TCPConn: tc, raw: raw}
}

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

// Read reads what the socket holds, up to len(p) bytes, waiting for data
// when there is none.
func (c *Conn) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	var n int
	var errno syscall.Errno
	err := c.raw.Read(func(fd uintptr) bool {
		for {
			r, _, e := syscall.RawSyscall(syscall.SYS_READ, fd, uintptr(unsafe.Pointer(&p[0])), uintptr(len(p)))
			switch e {
			case syscall.EINTR:
				continue
			case syscall.EAGAIN:
				return false // wait for data
			}
			n, errno = int(r), e
			return true
		}
	})
	switch {
	case err != nil:
		return 0, err
	case errno != 0:
		return 0, c.opError("read", errno)
	case n == 0:
		return 0, io.EOF
	}
	return n, nil
}

// Write writes all of p, waiting for room in the socket when it is full.
func (c *Conn) Write(p []byte) (int, error) {
	var n int
	var errno syscall.Errno
	err := c.raw.Write(func(fd uintptr) bool {
		for n < len(p) {
			r, _, e := syscall.RawSyscall(syscall.SYS_WRITE, fd, uintptr(unsafe.Pointer(&p[n])), uintptr(len(p)-n))
			switch e {
			case 0:
				n += int(r)
			case syscall.EINTR:
			case syscall.EAGAIN:
				return false // wait for room
			default:
				errno = e
				return true
			}
		}
		return true
	})
	switch {
	case err != nil:
		return n, err
	case errno != 0:
		return n, c.opError("write", errno)
	}
	return n, nil
}

func (c *Conn) opError(op string, errno syscall.Errno) error {
	return &net.OpError{Op: op, Net: "tcp", Source: c.LocalAddr(), Addr: c.RemoteAddr(), Err: os.NewSyscallError(op, errno)}
}
