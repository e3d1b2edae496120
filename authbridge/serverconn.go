package authbridge

import (
	"bufio"
	"crypto/tls"
	"io"
	"net"
	"sync"
	"syscall"
	"time"
)

// Buffer sizes of an upstream connection, in bytes.
const (
	serverReadBufferSize  = 32 * 1024
	serverWriteBufferSize = 16 * 1024
)

// ServerConn is one authenticated upstream connection, idle at
// ReadyForQuery when it is handed out.
//
// Ownership: a ServerConn belongs either to its pool (idle) or to exactly one
// holder (between Acquire and Release/Discard/Retire). Only the holder may
// use Conn, Reader, Writer and State, and only from one goroutine at a time
// of its choosing. The exported fields other than those are fixed at dial
// time and may be read by anyone.
//
// Apart from its holder of the moment, a connection has an owner: the
// gateway user it was first handed to (Owner). The pool hands it to no
// other user, ever, so session state left on it never reaches another
// user.
type ServerConn struct {
	ID      uint64
	pool    *Pool
	Conn    net.Conn      // TLS (or, for kind postgres, possibly plain) connection
	Reader  *bufio.Reader // the only reader of Conn: never read Conn directly
	Writer  *bufio.Writer
	Params  map[string]string // ParameterStatus values from the handshake; read-only
	PID     uint32            // the upstream's own cancel key
	Secret  []byte
	Created time.Time
	// retireAt is when the connection stops being handed out for new work
	// (max_lifetime minus this connection's jitter); maxAge is
	// max_lifetime itself: past it the connection is never handed out.
	retireAt time.Time
	maxAge   time.Time

	// State is the holder's per-connection session state (pgwire keeps
	// the settings and prepared statements this upstream has in it). It
	// travels with the connection through the pool untouched.
	State any

	gen      uint64    // the pool's generation when dialled (see Pool.Reconnect)
	lastUsed time.Time // guarded by pool.mu while idle
	replaced bool      // a replacement was dialled ahead of retirement; guarded by pool.mu
	// owner is the user the connection belongs to, "" until it is first
	// handed out; set once, guarded by pool.mu.
	owner string
	// role is the upstream login it was opened with (Route.RoleFor of the
	// user it was opened for): only that role's users may own it.
	role string
	// held: handed out to its owner and not yet back (Release, Discard,
	// Retire), so it counts towards the owner's max_user_connections;
	// guarded by pool.mu.
	held      bool
	closeOnce sync.Once
}

// Owner is the gateway user the connection belongs to, the only one it is
// ever handed to; "" for a connection never handed out.
func (sc *ServerConn) Owner() string {
	sc.pool.mu.Lock()
	defer sc.pool.mu.Unlock()
	return sc.owner
}

// Route is the route this connection belongs to.
func (sc *ServerConn) Route() *Route { return sc.pool.route }

// Pool is the pool the connection came from.
func (sc *ServerConn) Pool() *Pool { return sc.pool }

// RetireAt is the time after which the connection is replaced at its next
// safe point.
func (sc *ServerConn) RetireAt() time.Time { return sc.retireAt }

// Retiring reports whether the connection should not start new work at
// now: it is past its lifetime, or the pool was told to reconnect after it
// was dialled.
func (sc *ServerConn) Retiring(now time.Time) bool {
	return !now.Before(sc.retireAt) || sc.gen < sc.pool.generation.Load()
}

// close closes the network connection once, abruptly: for connections
// that are broken or in an unknown state.
func (sc *ServerConn) close() {
	sc.closeOnce.Do(func() { sc.Conn.Close() })
}

// closeGracefully ends a healthy idle connection the way a PostgreSQL
// client does: Terminate, then a short wait for the server to close its
// side, so the server has let the connection go before the pool reuses
// its slot (the count of open DSQL connections then never exceeds the
// pool size, even for a moment).
func (sc *ServerConn) closeGracefully() {
	sc.closeOnce.Do(func() {
		sc.Conn.SetDeadline(time.Now().Add(gracefulCloseWait))
		if _, err := sc.Conn.Write([]byte{'X', 0, 0, 0, 4}); err == nil {
			io.Copy(io.Discard, sc.Reader)
		}
		sc.Conn.Close()
	})
}

// gracefulCloseWait bounds how long closeGracefully waits for the server.
const gracefulCloseWait = time.Second

// Alive reports whether an idle connection still looks usable: nothing
// unexpected is buffered, and the socket has neither pending bytes nor an
// end of stream. DSQL closes connections without a message and PostgreSQL
// sends a FATAL error before it closes, so this catches connections that
// died while idle before any client work is sent on them. It never blocks.
// Only the holder may call it.
func (sc *ServerConn) Alive() bool {
	if sc.Reader.Buffered() > 0 {
		// An idle upstream has nothing to say; whatever it said (most
		// likely a FATAL error before it closed) makes it unusable.
		return false
	}
	return socketIdle(sc.Conn)
}

// Pending reports whether the connection has something to be read: bytes
// buffered or on the socket, an end of stream or an error. An idle
// upstream that is pending is not dead for that: it may be telling its
// client something (a notification); a read says what. It never blocks.
// Only the holder may call it.
func (sc *ServerConn) Pending() bool {
	return sc.Reader.Buffered() > 0 || !socketIdle(sc.Conn)
}

// socketIdle peeks at conn's socket without blocking: true when nothing is
// waiting to be read (EAGAIN), false on pending bytes, end of stream or an
// error. A deadline cannot do this: Go fails a read whose deadline has
// passed without looking at the socket at all.
func socketIdle(conn net.Conn) bool {
	if tc, ok := conn.(*tls.Conn); ok {
		conn = tc.NetConn()
	}
	sysConn, ok := conn.(syscall.Conn)
	if !ok {
		return true // nothing to look at; let the first write tell
	}
	raw, err := sysConn.SyscallConn()
	if err != nil {
		return false
	}
	idle := false
	err = raw.Read(func(fd uintptr) bool {
		idle = peekIdle(fd)
		return true // done: never wait for readiness
	})
	return err == nil && idle
}
