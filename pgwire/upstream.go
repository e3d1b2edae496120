package pgwire

import (
	"bufio"
	"context"
	"errors"
	"net"
	"time"

	"github.com/dsqlgate/dsqlgate/config"
	"github.com/dsqlgate/dsqlgate/internal/compat"
)

// This file is everything pgwire needs from the upstream side: the routes,
// their pools and the connections they hand out. pgwire declares it and
// the wiring (internal/gateway) adapts the real upstream side to it, so
// that the client side depends on no implementation of it and its tests
// can run a session against upstreams that live in memory.

// Upstreams is the set of routes the server takes clients for.
type Upstreams interface {
	// Route is the route for a client's startup database, or nil when
	// there is none.
	Route(database string) Route
	// Routes lists every route, in no particular order, for the admin
	// console.
	Routes() []Route
}

// Route is one configured upstream database with its pool.
type Route interface {
	Name() string    // the database name clients ask for
	Kind() string    // config.KindDSQL or config.KindPostgres
	User() string    // the upstream login, for the admin console
	Address() string // the address dialled, for the admin console
	Compat() config.Compat
	// Params is the ParameterStatus set of the route's upstream handshake
	// for the gateway user user (whose upstream role it reports), nil
	// until one such connection was made; read-only.
	Params(user string) map[string]string
	Pool() Pool
	// Locks is the route's advisory lock table (DSQL compatibility).
	Locks() compat.LockTable
}

// Pool hands out a route's upstream connections. A connection handed out
// belongs to its holder until it gives it back with exactly one of
// Release, Discard or Retire. A pool hands a connection only to the user
// it was first handed to, so no session state crosses users.
type Pool interface {
	Settings() config.Pool
	// Acquire waits, until ctx ends, for a connection of user's, preferring
	// prefer (nil: none) when it is idle. When none comes, the error
	// matches WaitError, DialError or ErrPoolClosed (errors.As, errors.Is).
	Acquire(ctx context.Context, user string, prefer Upstream) (Upstream, error)
	// TakeIdle returns an idle, alive connection of user's (prefer first)
	// without waiting or dialling, or nil: Acquire's fast path.
	TakeIdle(user string, prefer Upstream) Upstream
	// TryAcquire returns an idle connection for user, or dials one when
	// the pool has room, without waiting: (nil, nil) when it can do
	// neither. It is for replacements dialled ahead of need.
	TryAcquire(ctx context.Context, user string) (Upstream, error)
	Release(u Upstream) // back to the pool, idle at ReadyForQuery
	Discard(u Upstream) // broken or in an unknown state: closed
	Retire(u Upstream)  // healthy but at the end of its life: closed, counted as a replacement
	// ReplaceLead is how long before a connection's RetireAt its
	// replacement should be dialled.
	ReplaceLead() time.Duration

	// For the admin console.
	Stats() PoolStats
	Conns() []ConnInfo
	Pause(ctx context.Context) error
	Resume()
	Paused() bool
	Reconnect()
}

// PoolStats is what the admin console shows of a pool's counters.
type PoolStats struct {
	Open int // open or being dialled
	Idle int
}

// ConnInfo describes one open upstream connection, for SHOW SERVERS.
type ConnInfo struct {
	ID       uint64
	PID      uint32 // the upstream's backend process id
	Role     string // the upstream login it was opened with (user_roles)
	Created  time.Time
	RetireAt time.Time
	Idle     bool
	LastUsed time.Time // when it last came back to the pool (idle ones)
}

// Upstream is one authenticated upstream connection, at ReadyForQuery
// when it is handed out. Only its holder uses it, from one goroutine at a
// time; the session never reads Conn directly, only Reader.
//
// An implementation should be pointer-shaped (a pointer, or a struct of
// one pointer), so that storing one in this interface allocates nothing:
// the relay passes upstreams around on every message.
type Upstream interface {
	ID() uint64 // unique in the process, for logs and the admin console
	Conn() net.Conn
	Reader() *bufio.Reader
	Writer() *bufio.Writer
	// Params is the ParameterStatus set of the handshake; read-only.
	Params() map[string]string
	// State and SetState are the slot where the session keeps what this
	// connection has (its settings and prepared statements): it travels
	// with the connection through the pool untouched.
	State() any
	SetState(v any)
	// RetireAt is the time after which the connection is replaced at its
	// next safe point; Retiring reports whether it should start no new
	// work at now.
	RetireAt() time.Time
	Retiring(now time.Time) bool
	// Alive reports, without blocking, whether an idle connection still
	// looks usable (nothing buffered or pending on its socket); Pending
	// whether it has something to be read. Only the holder may call them.
	Alive() bool
	Pending() bool
	// Cancel asks the upstream to cancel what the connection runs now,
	// over a connection of its own.
	Cancel(ctx context.Context) error
}

// The errors of a pool that pgwire tells clients apart. A pool returns
// them (or errors wrapping them); errorForClient recognises them with
// errors.As and errors.Is, whatever their concrete types.

// ErrPoolClosed is matched (errors.Is) by what a pool returns once it is
// closed: the gateway is shutting down.
var ErrPoolClosed = errors.New("pool closed")

// WaitError is an Acquire that gave up: no connection came within the
// wait. It may wrap the DialError of the last failed dial.
type WaitError interface {
	error
	// WaitedFor reports the route waited for and for how long.
	WaitedFor() (route string, waited time.Duration)
	// Busy reports why nothing came back in time: every connection of the
	// pool was in use (exhausted), or user held its limit of connections
	// (userCapped).
	Busy() (exhausted, userCapped bool, user string)
}

// DialError is a failed dial of an upstream connection.
type DialError interface {
	error
	// DialFailed reports the route, the upstream's SQLSTATE when it
	// refused with an ErrorResponse (else ""), and whether waiting and
	// trying again may help.
	DialFailed() (route, sqlstate string, retryable bool)
	// Unwrap is the cause, which a client is told about only in general
	// terms unless the upstream refused.
	Unwrap() error
}
