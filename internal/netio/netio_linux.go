//go:build linux && !netio_portable

package netio

import (
	"io"
	"net"
	"os"
	"sync"
	"syscall"
	"unsafe"
)

// Conn is a *net.TCPConn whose Read and Write use the socket directly.
type Conn struct {
	*net.TCPConn
	raw syscall.RawConn

	// The calls given to raw are made once, at Wrap, and keep their
	// state here, so that a read or write allocates nothing.
	rmu     sync.Mutex
	r       op
	readFn  func(fd uintptr) bool
	wmu     sync.Mutex
	w       op
	writeFn func(fd uintptr) bool
}

// op is the state of one read or write.
type op struct {
	p     []byte
	n     int
	errno syscall.Errno
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
	c := &Conn{TCPConn: tc, raw: raw}
	c.readFn, c.writeFn = c.readOnce, c.writeAll
	return c
}

// Read reads what the socket holds, up to len(p) bytes, waiting for data
// when there is none.
func (c *Conn) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	c.rmu.Lock()
	c.r = op{p: p}
	err := c.raw.Read(c.readFn)
	n, errno := c.r.n, c.r.errno
	c.r.p = nil // keep no reference to the caller's buffer
	c.rmu.Unlock()
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

// readOnce is raw.Read's call: false (wait) while the socket is empty.
func (c *Conn) readOnce(fd uintptr) bool {
	p := c.r.p
	for {
		r, _, e := syscall.RawSyscall(syscall.SYS_READ, fd, uintptr(unsafe.Pointer(&p[0])), uintptr(len(p)))
		switch e {
		case syscall.EINTR:
			continue
		case syscall.EAGAIN:
			return false
		case 0:
			c.r.n = int(r)
		default:
			c.r.errno = e
		}
		return true
	}
}

// Write writes all of p, waiting for room in the socket when it is full.
func (c *Conn) Write(p []byte) (int, error) {
	c.wmu.Lock()
	c.w = op{p: p}
	err := c.raw.Write(c.writeFn)
	n, errno := c.w.n, c.w.errno
	c.w.p = nil
	c.wmu.Unlock()
	switch {
	case err != nil:
		return n, err
	case errno != 0:
		return n, c.opError("write", errno)
	}
	return n, nil
}

// writeAll is raw.Write's call: false (wait) while the socket is full.
func (c *Conn) writeAll(fd uintptr) bool {
	p := c.w.p
	for c.w.n < len(p) {
		r, _, e := syscall.RawSyscall(syscall.SYS_WRITE, fd, uintptr(unsafe.Pointer(&p[c.w.n])), uintptr(len(p)-c.w.n))
		switch e {
		case 0:
			c.w.n += int(r)
		case syscall.EINTR:
		case syscall.EAGAIN:
			return false
		default:
			c.w.errno = e
			return true
		}
	}
	return true
}

func (c *Conn) opError(op string, errno syscall.Errno) error {
	return &net.OpError{Op: op, Net: "tcp", Source: c.LocalAddr(), Addr: c.RemoteAddr(), Err: os.NewSyscallError(op, errno)}
}
