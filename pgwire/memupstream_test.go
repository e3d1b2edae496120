package pgwire

import (
	"bufio"
	"cmp"
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/dsqlgate/dsqlgate/config"
	"github.com/dsqlgate/dsqlgate/internal/compat"
)

// The in-memory upstream side: an implementation of the interfaces of
// upstream.go for tests, so that a whole session (client socket, startup,
// relay, pool modes) runs against upstreams the test controls: the model
// backend of modelserver_test.go over net.Pipe, the model over loopback,
// or a real PostgreSQL. Its pool keeps the rules a session relies on
// (a size, one owner per connection, waiting clients, Alive before a
// connection is handed out) and nothing of the real pool's upkeep.

// memUpstreams is a fixed set of routes.
type memUpstreams struct {
	routes map[string]*memRoute
}

func newMemUpstreams(routes ...*memRoute) *memUpstreams {
	u := &memUpstreams{routes: map[string]*memRoute{}}
	for _, r := range routes {
		u.routes[r.name] = r
	}
	return u
}

func (u *memUpstreams) Route(database string) Route {
	if r := u.routes[database]; r != nil {
		return r
	}
	return nil
}

func (u *memUpstreams) Routes() []Route {
	out := make([]Route, 0, len(u.routes))
	for _, r := range u.routes {
		out = append(out, r)
	}
	return out
}

// close closes every pool and the connections in them.
func (u *memUpstreams) close() {
	for _, r := range u.routes {
		r.pool.close()
	}
}

// memDialFunc opens the transport of one upstream connection; pgconn runs
// the handshake over it.
type memDialFunc func(ctx context.Context, network, addr string) (net.Conn, error)

// memRoute is one route. Its connections log in with connString, over
// dial when set (else pgconn's own dialler).
type memRoute struct {
	name   string
	kind   string
	compat config.Compat
	pool   *memPool
	params atomic.Pointer[map[string]string]
	locks  memLocks
}

// newMemRoute builds a route from rc (kind, database, pool settings,
// endpoint and login) whose connections are opened by dial (nil: TCP to
// rc.Endpoint).
func newMemRoute(rc config.Route, dial memDialFunc) (*memRoute, error) {
	db := cmp.Or(rc.UpstreamDatabase, "postgres")
	cs := fmt.Sprintf("host=%s port=%d user=%s password=%s dbname=%s sslmode=disable", rc.Host(), rc.Port(), rc.User, rc.Password, db)
	cfg, err := pgconn.ParseConfig(cs)
	if err != nil {
		return nil, err
	}
	if dial != nil {
		cfg.DialFunc = pgconn.DialFunc(dial)
		cfg.LookupFunc = func(ctx context.Context, host string) ([]string, error) { return []string{host}, nil }
	}
	r := &memRoute{name: rc.Database, kind: rc.Kind, compat: rc.Compat, locks: memLocks{held: map[compat.LockKey]string{}}}
	r.pool = &memPool{route: r, settings: rc.Pool, conf: cfg, wake: make(chan struct{})}
	return r, nil
}

func (r *memRoute) Name() string { return r.name }
func (r *memRoute) Kind() string { return r.kind }
func (r *memRoute) User() string { return r.pool.conf.User }
func (r *memRoute) Address() string {
	return net.JoinHostPort(r.pool.conf.Host, fmt.Sprint(r.pool.conf.Port))
}
func (r *memRoute) Compat() config.Compat   { return r.compat }
func (r *memRoute) Pool() Pool              { return r.pool }
func (r *memRoute) Locks() compat.LockTable { return &r.locks }

func (r *memRoute) Params(string) map[string]string {
	if p := r.params.Load(); p != nil {
		return *p
	}
	return nil
}

// memPool is a route's pool.
type memPool struct {
	route    *memRoute
	settings config.Pool
	conf     *pgconn.Config

	mu      sync.Mutex
	idle    []*memConn // most recently released last
	all     []*memConn
	open    int // open or being dialled
	waiting int
	closed  bool
	paused  bool
	wake    chan struct{} // closed (and replaced) when a connection or slot comes back
	dials   int
}

// memConnID numbers connections across pools, as Upstream.ID asks.
var memConnID atomic.Uint64

// memStats is what the tests read of a pool.
type memStats struct{ open, idle, waiting, dials int }

func (p *memPool) stats() memStats {
	p.mu.Lock()
	defer p.mu.Unlock()
	return memStats{open: p.open, idle: len(p.idle), waiting: p.waiting, dials: p.dials}
}

func (p *memPool) Settings() config.Pool      { return p.settings }
func (p *memPool) ReplaceLead() time.Duration { return time.Second }

func (p *memPool) Acquire(ctx context.Context, user string, prefer Upstream) (Upstream, error) {
	start := time.Now()
	for {
		p.mu.Lock()
		if p.closed {
			p.mu.Unlock()
			return nil, ErrPoolClosed
		}
		if !p.paused {
			if c := p.takeLocked(user, prefer); c != nil {
				p.mu.Unlock()
				if c.Alive() {
					return c, nil
				}
				p.Discard(c)
				continue
			}
			if p.open >= p.settings.Size {
				// Close another user's idle connection for its slot.
				for i, c := range p.idle {
					if c.owner != user {
						p.idle = slices.Delete(p.idle, i, i+1)
						p.mu.Unlock()
						p.Discard(c)
						p.mu.Lock()
						break
					}
				}
			}
			if p.open < p.settings.Size {
				p.open++
				p.dials++
				p.mu.Unlock()
				c, err := p.dial(ctx, user)
				if err != nil {
					p.forget(nil)
					return nil, &memDialError{route: p.route.name, err: err}
				}
				return c, nil
			}
		}
		wake := p.wake
		p.waiting++
		p.mu.Unlock()
		select {
		case <-wake:
			p.mu.Lock()
			p.waiting--
			p.mu.Unlock()
		case <-ctx.Done():
			p.mu.Lock()
			p.waiting--
			p.mu.Unlock()
			return nil, &memWaitError{route: p.route.name, waited: time.Since(start)}
		}
	}
}

func (p *memPool) TakeIdle(user string, prefer Upstream) Upstream {
	for {
		p.mu.Lock()
		if p.closed || p.paused {
			p.mu.Unlock()
			return nil
		}
		c := p.takeLocked(user, prefer)
		p.mu.Unlock()
		if c == nil {
			return nil
		}
		if c.Alive() {
			return c
		}
		p.Discard(c)
	}
}

func (p *memPool) TryAcquire(ctx context.Context, user string) (Upstream, error) {
	if c := p.TakeIdle(user, nil); c != nil {
		return c, nil
	}
	p.mu.Lock()
	if p.closed || p.paused || p.open >= p.settings.Size {
		p.mu.Unlock()
		return nil, nil
	}
	p.open++
	p.dials++
	p.mu.Unlock()
	c, err := p.dial(ctx, user)
	if err != nil {
		p.forget(nil)
		return nil, &memDialError{route: p.route.name, err: err}
	}
	return c, nil
}

// takeLocked takes user's idle connection (prefer first, else the one
// released last), else one never handed out, which becomes user's.
func (p *memPool) takeLocked(user string, prefer Upstream) *memConn {
	own, unowned := -1, -1
	for i := len(p.idle) - 1; i >= 0; i-- {
		c := p.idle[i]
		switch {
		case c.owner == user && (own < 0 || Upstream(c) == prefer):
			own = i
		case c.owner == "" && unowned < 0:
			unowned = i
		}
	}
	i := own
	if i < 0 {
		i = unowned
	}
	if i < 0 {
		return nil
	}
	c := p.idle[i]
	p.idle = slices.Delete(p.idle, i, i+1)
	c.owner = user
	return c
}

// dial opens and logs in one connection for user; the caller counted it
// in open.
func (p *memPool) dial(ctx context.Context, user string) (*memConn, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	pc, err := pgconn.ConnectConfig(ctx, p.conf)
	if err != nil {
		return nil, err
	}
	if err := pc.SyncConn(ctx); err != nil {
		pc.Close(context.Background())
		return nil, err
	}
	hj, err := pc.Hijack()
	if err != nil {
		pc.Close(context.Background())
		return nil, err
	}
	params := map[string]string{}
	for k, v := range hj.ParameterStatuses {
		params[k] = v
	}
	p.route.params.CompareAndSwap(nil, &params)
	now := time.Now()
	c := &memConn{id: memConnID.Add(1), pool: p, owner: user, conn: hj.Conn,
		r: bufio.NewReader(hj.Conn), w: bufio.NewWriter(hj.Conn), params: params,
		pid: hj.PID, secret: hj.SecretKey, created: now, retireAt: now.Add(time.Hour)}
	p.mu.Lock()
	p.all = append(p.all, c)
	closed := p.closed
	p.mu.Unlock()
	if closed {
		p.Discard(c)
		return nil, ErrPoolClosed
	}
	return c, nil
}

// forget accounts for a connection (nil: a failed dial) gone from the pool.
func (p *memPool) forget(c *memConn) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if c != nil {
		p.all = slices.DeleteFunc(p.all, func(o *memConn) bool { return o == c })
	}
	p.open--
	p.signalLocked()
}

func (p *memPool) signalLocked() {
	close(p.wake)
	p.wake = make(chan struct{})
}

func (p *memPool) Release(u Upstream) {
	c := u.(*memConn)
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		p.Discard(c)
		return
	}
	c.lastUsed = time.Now()
	p.idle = append(p.idle, c)
	p.signalLocked()
	p.mu.Unlock()
}

func (p *memPool) Discard(u Upstream) {
	c := u.(*memConn)
	c.close()
	p.forget(c)
}

func (p *memPool) Retire(u Upstream) { p.Discard(u) }

func (p *memPool) Stats() PoolStats {
	st := p.stats()
	return PoolStats{Open: st.open, Idle: st.idle}
}

func (p *memPool) Conns() []ConnInfo {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []ConnInfo
	for _, c := range p.all {
		out = append(out, ConnInfo{ID: c.id, PID: c.pid, Role: p.conf.User, Created: c.created, RetireAt: c.retireAt,
			Idle: slices.Contains(p.idle, c), LastUsed: c.lastUsed})
	}
	return out
}

func (p *memPool) Pause(ctx context.Context) error {
	p.mu.Lock()
	p.paused = true
	p.mu.Unlock()
	return nil
}

func (p *memPool) Resume() {
	p.mu.Lock()
	p.paused = false
	p.signalLocked()
	p.mu.Unlock()
}

func (p *memPool) Paused() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.paused
}

// Reconnect closes the idle connections.
func (p *memPool) Reconnect() {
	p.mu.Lock()
	idle := p.idle
	p.idle = nil
	p.mu.Unlock()
	for _, c := range idle {
		p.Discard(c)
	}
}

func (p *memPool) close() {
	p.mu.Lock()
	p.closed = true
	p.signalLocked()
	p.mu.Unlock()
	p.Reconnect()
}

// memConn is one upstream connection.
type memConn struct {
	id       uint64
	pool     *memPool
	owner    string // guarded by pool.mu
	conn     net.Conn
	r        *bufio.Reader
	w        *bufio.Writer
	params   map[string]string
	pid      uint32
	secret   []byte
	state    any
	created  time.Time
	retireAt time.Time
	lastUsed time.Time // guarded by pool.mu
	once     sync.Once
}

func (c *memConn) ID() uint64                  { return c.id }
func (c *memConn) Conn() net.Conn              { return c.conn }
func (c *memConn) Reader() *bufio.Reader       { return c.r }
func (c *memConn) Writer() *bufio.Writer       { return c.w }
func (c *memConn) Params() map[string]string   { return c.params }
func (c *memConn) State() any                  { return c.state }
func (c *memConn) SetState(v any)              { c.state = v }
func (c *memConn) RetireAt() time.Time         { return c.retireAt }
func (c *memConn) Retiring(now time.Time) bool { return !now.Before(c.retireAt) }
func (c *memConn) Alive() bool                 { return c.r.Buffered() == 0 && !c.readable() }
func (c *memConn) Pending() bool               { return c.r.Buffered() > 0 || c.readable() }
func (c *memConn) close()                      { c.once.Do(func() { c.conn.Close() }) }

// readable reports whether a read would return at once: bytes, an end of
// stream or an error are waiting. A socket is peeked at without blocking
// (as the real upstream side does: a read deadline cannot tell, since Go
// fails a read whose deadline has passed without looking at the socket);
// anything else (net.Pipe) by a read through the connection's reader,
// which keeps what it reads, under a deadline of a millisecond.
func (c *memConn) readable() bool {
	if sc, ok := c.conn.(syscall.Conn); ok {
		if readable, ok := peekSocket(sc); ok {
			return readable
		}
	}
	c.conn.SetReadDeadline(time.Now().Add(time.Millisecond))
	_, err := c.r.Peek(1)
	c.conn.SetReadDeadline(time.Time{})
	return !isTimeout(err)
}

// Cancel sends a CancelRequest with the connection's key over a new
// transport.
func (c *memConn) Cancel(ctx context.Context) error {
	cfg := c.pool.conf
	dial := cfg.DialFunc
	conn, err := dial(ctx, "tcp", net.JoinHostPort(cfg.Host, fmt.Sprint(cfg.Port)))
	if err != nil {
		return err
	}
	defer conn.Close()
	buf, err := (&pgproto3.CancelRequest{ProcessID: c.pid, SecretKey: c.secret}).Encode(nil)
	if err != nil {
		return err
	}
	_, err = conn.Write(buf)
	return err
}

// memWaitError and memDialError are the pool's errors, as pgwire's
// WaitError and DialError interfaces describe them.
type memWaitError struct {
	route  string
	waited time.Duration
}

func (e *memWaitError) Error() string {
	return fmt.Sprintf("no upstream for route %q after %s", e.route, e.waited)
}
func (e *memWaitError) WaitedFor() (string, time.Duration)          { return e.route, e.waited }
func (e *memWaitError) Busy() (exhausted, capped bool, user string) { return true, false, "" }

type memDialError struct {
	route string
	err   error
}

func (e *memDialError) Error() string {
	return fmt.Sprintf("dial upstream for route %q: %v", e.route, e.err)
}
func (e *memDialError) Unwrap() error { return e.err }
func (e *memDialError) DialFailed() (string, string, bool) {
	var pe *pgconn.PgError
	if errors.As(e.err, &pe) {
		return e.route, pe.Code, false
	}
	return e.route, "", true
}

// memLocks is an advisory lock table in memory: a key is held by one
// owner at a time, and Lock waits for it.
type memLocks struct {
	mu   sync.Mutex
	held map[compat.LockKey]string
	wake chan struct{}
}

func (l *memLocks) TryLock(ctx context.Context, owner string, k compat.LockKey) (bool, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if o, ok := l.held[k]; ok && o != owner {
		return false, nil
	}
	l.held[k] = owner
	return true, nil
}

func (l *memLocks) Lock(ctx context.Context, owner string, k compat.LockKey) error {
	for {
		l.mu.Lock()
		if o, ok := l.held[k]; !ok || o == owner {
			l.held[k] = owner
			l.mu.Unlock()
			return nil
		}
		if l.wake == nil {
			l.wake = make(chan struct{})
		}
		wake := l.wake
		l.mu.Unlock()
		select {
		case <-wake:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

func (l *memLocks) Unlock(ctx context.Context, owner string, k compat.LockKey) (bool, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.held[k] != owner {
		return false, nil
	}
	delete(l.held, k)
	l.wakeLocked()
	return true, nil
}

func (l *memLocks) UnlockAll(ctx context.Context, owner string) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	for k, o := range l.held {
		if o == owner {
			delete(l.held, k)
		}
	}
	l.wakeLocked()
	return nil
}

func (l *memLocks) wakeLocked() {
	if l.wake != nil {
		close(l.wake)
		l.wake = nil
	}
}
