package authbridge

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/dsqlgate/dsqlgate/config"
	"github.com/jackc/pgerrcode"
)

// ErrPoolClosed is returned by Acquire once the pool is closed.
var ErrPoolClosed = errors.New("pool closed")

// WaitError is returned by Acquire when no upstream could be had within the
// caller's deadline. Last is the most recent dial error, if any; Exhausted
// reports that every connection was busy (the pool was at its size);
// UserCapped that User held Limit connections, its
// pool.max_user_connections, when the wait ended.
type WaitError struct {
	Route      string
	Waited     time.Duration
	Exhausted  bool
	UserCapped bool
	User       string
	Limit      int
	Last       error
}

func (e *WaitError) Error() string {
	prefix := fmt.Sprintf("no upstream for route %q after %s", e.Route, e.Waited.Round(time.Millisecond))
	switch {
	case e.UserCapped:
		return fmt.Sprintf("%s: user %q holds its limit of %d connections (pool.max_user_connections)", prefix, e.User, e.Limit)
	case e.Last != nil:
		return fmt.Sprintf("%s: %v", prefix, e.Last)
	}
	return prefix + ": all connections busy"
}

func (e *WaitError) Unwrap() error { return e.Last }

// WaitedFor and Busy let a caller that does not know this type (pgwire,
// through the interface it declares) tell its client what happened.
func (e *WaitError) WaitedFor() (route string, waited time.Duration) { return e.Route, e.Waited }

func (e *WaitError) Busy() (exhausted, userCapped bool, user string) {
	return e.Exhausted, e.UserCapped, e.User
}

// Backoff between failed dials, doubled per failure up to the maximum.
const (
	dialBackoffMin = 50 * time.Millisecond
	dialBackoffMax = 2 * time.Second
	// limitBackoff is how long the whole cluster's dials pause after it
	// refused one for its connection rate or count.
	limitBackoff = time.Second
)

// PoolStats is a snapshot of a pool's counters.
type PoolStats struct {
	Open      int // open or being dialled
	Idle      int
	Waiting   int
	Dials     uint64
	DialFails uint64
	Retired   uint64 // closed for lifetime
	Lost      uint64 // found dead or discarded as broken
	Evicted   uint64 // idle, closed to give its slot to another user
}

// Pool keeps a route's upstream connections: at most Size open, MinIdle
// kept warm, idle ones closed after IdleTimeout, every one retired at its
// first safe point past its lifetime. Waiting clients are served in order.
//
// Ownership: every connection belongs to the gateway user it was first
// handed to (ServerConn.Owner; "" until then) and is only ever handed to
// that user again, so no session state (temporary tables, SET ROLE, WITH
// HOLD cursors, prepared statements, LISTEN, locks) passes from one user
// to another. A user with no idle connection of its own claims a never-used
// one, else dials while the pool is below its size, else takes the slot of
// another user's idle connection, which is closed first (see evictAfter).
// With max_user_connections, a user holding that many waits for one of its own
// to come back, without holding up the users behind it.
//
// Lock order: Pool.mu is a leaf; nothing else is locked while it is held,
// and no I/O happens under it. Everything that can let a waiter be served
// calls dispatchLocked before it unlocks, so after every unlock no waiter
// that could be served is still waiting.
type Pool struct {
	route    *Route
	settings atomic.Pointer[config.Pool] // replaced whole by update
	log      *zap.Logger
	now      func() time.Time
	nextID   atomic.Uint64

	mu        sync.Mutex
	idle      []*ServerConn  // most recently released last
	open      int            // connections open or being dialled, and slots granted
	waiters   []*waiter      // FIFO
	held      map[string]int // per user: connections and dial slots handed out, not yet back
	closed    bool
	stats     PoolStats
	stop      chan struct{}
	wg        sync.WaitGroup
	maintTick time.Duration
	// paused: nothing is handed out (see Pause).
	paused bool
	// all holds every open connection, for SHOW SERVERS.
	all map[uint64]*ServerConn

	// generation is bumped by Reconnect: connections dialled before are
	// retired at their next safe point. Read without mu.
	generation atomic.Uint64
}

// waiter is a client waiting in Acquire for user.
type waiter struct {
	user   string
	since  time.Time // when it joined the line
	prefer *ServerConn
	ch     chan grant // buffered 1; dispatchLocked or close sends once
}

// grant is what a waiter receives: an idle connection already handed out
// to its user (sc), or a dial slot counted in open and in the user's held
// count. With a slot, victim is an idle connection (another user's, or
// one past its retirement) whose slot it was: the waiter closes it before
// it dials. closed: the pool closed; nothing was granted.
type grant struct {
	sc     *ServerConn
	victim *ServerConn
	closed bool
}

func newPool(r *Route, settings config.Pool, opts Options) *Pool {
	p := &Pool{route: r, log: r.log, now: opts.Now, stop: make(chan struct{}), all: map[uint64]*ServerConn{}, held: map[string]int{}}
	p.settings.Store(&settings)
	// Check often enough for the shortest period the pool must honour.
	tick := time.Second
	for _, d := range []time.Duration{settings.IdleTimeout.D() / 4, settings.LifetimeJitter.D() / 4, settings.MaxLifetime.D() / 20} {
		if d > 0 && d < tick {
			tick = d
		}
	}
	p.maintTick = max(tick, 10*time.Millisecond)
	return p
}

func (p *Pool) start() {
	p.wg.Add(1)
	go p.maintain()
}

// Settings returns the pool's configuration.
func (p *Pool) Settings() config.Pool { return *p.settings.Load() }

// cfg is the pool's configuration in force.
func (p *Pool) cfg() *config.Pool { return p.settings.Load() }

// update puts new settings in force (a reload): a smaller size takes
// effect as connections come back; a larger one, or a higher
// max_user_connections, at once, for waiters too.
func (p *Pool) update(settings config.Pool) {
	p.settings.Store(&settings)
	p.mu.Lock()
	p.dispatchLocked()
	p.mu.Unlock()
}

// Stats returns a snapshot of the pool's counters.
func (p *Pool) Stats() PoolStats {
	p.mu.Lock()
	defer p.mu.Unlock()
	s := p.stats
	s.Open, s.Idle, s.Waiting = p.open, len(p.idle), len(p.waiters)
	return s
}

// Acquire returns an upstream connection for the gateway user user, at
// ReadyForQuery, idle, alive and not past its lifetime; user owns it from
// then on (see Pool). It prefers prefer when that is an idle connection of
// user's (fewer state changes for the caller), then user's most recently
// used idle connection, then a never-used one, then a new dial while the
// pool is below its size, then a new dial in the slot of another user's
// idle connection, which is closed first; otherwise it waits in line, as
// it does while user holds pool.max_user_connections connections. Dials
// that fail for reasons that may pass (DSQL's rate or connection limit,
// network trouble) are retried with jittered backoff until ctx ends;
// other failures return at once.
//
// user "" is for callers that send nothing on the connection (health
// checks): a connection dialled for it stays unowned.
//
// The caller holds the result until it calls Release, Discard or Retire.
func (p *Pool) Acquire(ctx context.Context, user string, prefer *ServerConn) (*ServerConn, error) {
	start := p.now()
	defer func() {
		p.route.metrics.PoolWaitSeconds.WithLabelValues(p.route.Name).Observe(p.now().Sub(start).Seconds())
	}()
	var lastErr error
	backoff := dialBackoffMin
	for {
		g, err := p.wait(ctx, user, prefer)
		if err != nil {
			var we *WaitError
			if errors.As(err, &we) {
				we.Waited, we.Last = p.now().Sub(start), lastErr
				we.Exhausted = we.Exhausted && lastErr == nil
			}
			return nil, err
		}
		if g.sc != nil {
			if g.sc.Alive() {
				return g.sc, nil
			}
			p.route.metrics.UpstreamReplacementsTotal.WithLabelValues(p.route.Name, "lost_idle").Inc()
			p.Discard(g.sc)
			continue
		}
		if g.victim != nil {
			p.takeOver(g.victim)
		}
		sc, err := p.dial(ctx, user, true)
		if err == nil {
			return sc, nil
		}
		lastErr = err
		var de *DialError
		if !errors.As(err, &de) || !de.Retryable || ctx.Err() != nil {
			return nil, p.waitError(start, err, ctx)
		}
		if !sleepCtx(ctx, jitter(backoff)) {
			return nil, p.waitError(start, lastErr, ctx)
		}
		backoff = min(2*backoff, dialBackoffMax)
	}
}

// wait joins the line for user and returns what dispatchLocked grants, or
// ErrPoolClosed, or, when ctx ends first, a *WaitError that says why it
// waited (the caller fills in Waited and Last). A grant that arrives as
// ctx ends is given back.
func (p *Pool) wait(ctx context.Context, user string, prefer *ServerConn) (grant, error) {
	w := &waiter{user: user, prefer: prefer, ch: make(chan grant, 1), since: p.now()}
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return grant{}, ErrPoolClosed
	}
	p.waiters = append(p.waiters, w)
	p.dispatchLocked()
	p.mu.Unlock()
	select {
	case g := <-w.ch:
		if g.closed {
			return grant{}, ErrPoolClosed
		}
		return g, nil
	case <-ctx.Done():
		p.mu.Lock()
		i := slices.Index(p.waiters, w)
		if i >= 0 {
			p.waiters = slices.Delete(p.waiters, i, i+1)
		}
		we := &WaitError{Route: p.route.Name, Exhausted: true, User: user}
		if limit := p.cfg().MaxUserConnections; p.cappedLocked(user) {
			we.Exhausted, we.UserCapped, we.Limit = false, true, limit
		}
		p.mu.Unlock()
		if i < 0 {
			p.giveBack(<-w.ch, user)
		}
		return grant{}, we
	}
}

// giveBack returns a grant its waiter gave up on.
func (p *Pool) giveBack(g grant, user string) {
	switch {
	case g.closed:
	case g.sc != nil:
		p.Release(g.sc)
	default:
		if g.victim != nil {
			p.takeOver(g.victim)
		}
		p.releaseSlot(user, true)
	}
}

// TakeIdle returns an idle, alive connection for user at once (prefer when
// it is user's and idle here; else user's most recently used; else a
// never-used one), or nil when it cannot: Acquire's fast path, without a
// context or a wait. It never dials and never closes another user's
// connection, and returns nil while the pool is paused or user holds
// pool.max_user_connections connections. Waiting clients are never passed
// over: any waiter that such a connection could serve was served first.
func (p *Pool) TakeIdle(user string, prefer *ServerConn) *ServerConn {
	for {
		p.mu.Lock()
		if p.closed || p.paused || p.cappedLocked(user) {
			p.mu.Unlock()
			return nil
		}
		sc := p.takeLocked(user, prefer)
		if sc != nil {
			p.handOutLocked(sc, user)
		}
		p.mu.Unlock()
		if sc == nil {
			return nil
		}
		if sc.Alive() {
			return sc
		}
		p.route.metrics.UpstreamReplacementsTotal.WithLabelValues(p.route.Name, "lost_idle").Inc()
		p.Discard(sc)
	}
}

// waitError is the error of an Acquire whose dial failed with last: last
// itself when it is final, or a WaitError when ctx ended.
func (p *Pool) waitError(start time.Time, last error, ctx context.Context) error {
	if ctx.Err() == nil {
		return last
	}
	return &WaitError{Route: p.route.Name, Waited: p.now().Sub(start), Last: last}
}

// dispatchLocked serves the line. In order, each eligible waiter (the pool
// is not paused and its user holds fewer than max_user_connections; others
// are passed over, not waited for) is granted the first of: an idle
// connection takeLocked finds for its user; a free dial slot (open below
// size); the slot of the oldest idle connection left, which can only be
// another user's or one past its retirement (the waiter closes it, off the
// lock, before it dials: the slot passes over, open stays). It stops when
// the pool has nothing left to grant. Every change that can let a waiter
// be served calls it: a waiter joining, a connection coming back or going
// away, a user's held count going down, Resume, update.
func (p *Pool) dispatchLocked() {
	if p.closed || p.paused {
		return
	}
	size := p.cfg().Size
	for i := 0; i < len(p.waiters); {
		w := p.waiters[i]
		if p.cappedLocked(w.user) {
			i++
			continue
		}
		var g grant
		switch sc := p.takeLocked(w.user, w.prefer); {
		case sc != nil:
			p.handOutLocked(sc, w.user)
			g.sc = sc
		case p.open < size:
			p.open++
			p.held[w.user]++
		default:
			v := p.victimLocked(w)
			if v < 0 {
				i++ // a waiter behind may still have an idle one of its own
				continue
			}
			g.victim = p.idle[v]
			p.idle = slices.Delete(p.idle, v, v+1)
			p.held[w.user]++
		}
		p.waiters = slices.Delete(p.waiters, i, i+1)
		w.ch <- g
	}
}

// evictAfter is how long another user's connection must have been idle
// before a user that holds connections of its own may take its slot. A
// user that holds none takes one at once; one that holds some waits for
// its own to come back rather than make two users trade slots (each trade
// costs a dial) on every transaction.
const evictAfter = time.Second

// victimLocked returns the index in p.idle of the connection whose slot
// waiter w may take (closing it), or -1: the least recently used one past
// its retirement, or one of another user's that has been idle evictAfter,
// or any of another user's when w's user holds none or w has waited
// evictAfter already (a busy user reuses its connections within
// microseconds; waiting for one of them to sit idle could starve w).
func (p *Pool) victimLocked(w *waiter) int {
	now := p.now()
	urgent := p.held[w.user] == 0 || now.Sub(w.since) >= evictAfter
	for i, c := range p.idle { // least recently released first
		if c.Retiring(now) || (c.owner != w.user && (urgent || now.Sub(c.lastUsed) >= evictAfter)) {
			return i
		}
	}
	return -1
}

// cappedLocked reports whether user holds its pool.max_user_connections.
func (p *Pool) cappedLocked(user string) bool {
	limit := p.cfg().MaxUserConnections
	return limit > 0 && p.held[user] >= limit
}

// takeLocked removes and returns an idle connection user may have: prefer
// when it is one of user's, else user's most recently used, else the most
// recently released never-used one; never one past its retirement (those
// wait for maintenance or a waiter that takes their slot). nil when there
// is none.
func (p *Pool) takeLocked(user string, prefer *ServerConn) *ServerConn {
	now := p.now()
	own, unowned := -1, -1
	for i := len(p.idle) - 1; i >= 0; i-- {
		c := p.idle[i]
		switch {
		case c.Retiring(now):
		case c.owner == user:
			if own < 0 || c == prefer {
				own = i
			}
		case c.owner == "" && unowned < 0 && c.role == p.route.RoleFor(user):
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
	sc := p.idle[i]
	p.idle = slices.Delete(p.idle, i, i+1)
	return sc
}

// handOutLocked gives sc, just taken from the idle list, to user: user
// becomes its owner if it had none, and holds it.
func (p *Pool) handOutLocked(sc *ServerConn, user string) {
	sc.owner = user
	sc.held = true
	p.held[user]++
}

// letGoLocked ends sc's holder's hold on it, once: from then on it no
// longer counts towards its owner's max_user_connections.
func (p *Pool) letGoLocked(sc *ServerConn) {
	if sc.held {
		sc.held = false
		p.unholdLocked(sc.owner)
	}
}

func (p *Pool) unholdLocked(user string) {
	if p.held[user]--; p.held[user] <= 0 {
		delete(p.held, user)
	}
}

// takeOver closes victim, an idle connection whose slot dispatchLocked
// granted to a waiter, before the waiter dials in it: the server lets the
// old connection go before the new one opens.
func (p *Pool) takeOver(victim *ServerConn) {
	victim.closeGracefully()
	p.mu.Lock()
	delete(p.all, victim.ID)
	retired := victim.Retiring(p.now())
	if retired {
		p.stats.Retired++
	} else {
		p.stats.Evicted++
	}
	p.mu.Unlock()
	if retired {
		reason := "lifetime"
		if victim.gen < p.generation.Load() {
			reason = "reconnect"
		}
		p.route.metrics.UpstreamReplacementsTotal.WithLabelValues(p.route.Name, reason).Inc()
	}
}

// dial opens one connection in a slot already counted in open. With held,
// the slot was granted to user (and counted in its held count): the
// connection is user's and held by the caller. Without, it is a warm
// connection for the idle list, with no owner. On failure it gives the
// slot back.
func (p *Pool) dial(ctx context.Context, user string, held bool) (*ServerConn, error) {
	r := p.route
	if err := r.waitToDial(ctx); err != nil {
		p.releaseSlot(user, held)
		return nil, err
	}
	started := p.now()
	sc, err := r.dial(ctx, r.RoleFor(user))
	if err != nil {
		outcome := "error"
		var de *DialError
		if errors.As(err, &de) {
			switch de.SQLState {
			case pgerrcode.ConfigurationLimitExceeded:
				outcome = "rate_limited"
			case pgerrcode.TooManyConnections:
				outcome = "too_many"
			case pgerrcode.InvalidAuthorizationSpecification, pgerrcode.InvalidPassword:
				outcome = "auth_failed"
			}
		}
		r.metrics.UpstreamDialsTotal.WithLabelValues(r.Name, outcome).Inc()
		r.backOffIfLimited(err)
		p.mu.Lock()
		p.stats.DialFails++
		p.mu.Unlock()
		p.releaseSlot(user, held)
		r.log.Warn("upstream dial failed", zap.Error(err), zap.Duration("took", p.now().Sub(started)))
		return nil, err
	}
	r.metrics.UpstreamDialsTotal.WithLabelValues(r.Name, "ok").Inc()
	now := p.now()
	sc.ID = p.nextID.Add(1)
	sc.pool = p
	sc.gen = p.generation.Load()
	sc.Created = now
	life := p.cfg().MaxLifetime.D()
	sc.maxAge = now.Add(life)
	sc.retireAt = sc.maxAge
	if j := p.cfg().LifetimeJitter.D(); j > 0 {
		sc.retireAt = sc.maxAge.Add(-rand.N(j))
	}
	if held {
		sc.owner, sc.held = user, true
	}
	r.setParams(sc.role, sc.Params)
	p.mu.Lock()
	p.stats.Dials++
	p.all[sc.ID] = sc
	p.mu.Unlock()
	r.log.Debug("upstream dialled", zap.Uint64("server_id", sc.ID), zap.Duration("took", now.Sub(started)))
	return sc, nil
}

// Release gives a healthy connection at a safe point back to the pool,
// still its owner's. A connection past its retirement is closed instead.
func (p *Pool) Release(sc *ServerConn) {
	now := p.now()
	p.mu.Lock()
	p.letGoLocked(sc)
	if p.closed || sc.Retiring(now) {
		p.dispatchLocked() // the owner's count went down
		p.mu.Unlock()
		p.retire(sc)
		return
	}
	sc.lastUsed = now
	p.idle = append(p.idle, sc)
	p.dispatchLocked()
	p.mu.Unlock()
}

// Discard closes a connection that is broken or whose state is unknown.
func (p *Pool) Discard(sc *ServerConn) {
	p.mu.Lock()
	p.letGoLocked(sc)
	p.stats.Lost++
	delete(p.all, sc.ID)
	p.forgetLocked()
	p.mu.Unlock()
	sc.close()
}

// Retire closes a healthy connection that its holder retires (lifetime).
func (p *Pool) Retire(sc *ServerConn) {
	p.mu.Lock()
	p.letGoLocked(sc)
	p.dispatchLocked() // the owner's count went down
	p.mu.Unlock()
	p.retire(sc)
}

// retire closes healthy connections gracefully, then gives up their slots:
// until the server has let a connection go, it still counts as open.
func (p *Pool) retire(cs ...*ServerConn) {
	p.closeThenForget(cs, true)
}

// closeThenForget closes connections (gracefully or not), idle or held,
// and then accounts for them, in that order.
func (p *Pool) closeThenForget(cs []*ServerConn, retired bool) {
	if len(cs) == 0 {
		return
	}
	for _, c := range cs {
		c.closeGracefully()
	}
	p.mu.Lock()
	reconnected := 0
	for _, c := range cs {
		if retired {
			p.stats.Retired++
			if c.gen < p.generation.Load() {
				reconnected++
			}
		}
		p.letGoLocked(c)
		delete(p.all, c.ID)
		p.forgetLocked()
	}
	p.mu.Unlock()
	if retired {
		m := p.route.metrics.UpstreamReplacementsTotal
		m.WithLabelValues(p.route.Name, "lifetime").Add(float64(len(cs) - reconnected))
		if reconnected > 0 {
			m.WithLabelValues(p.route.Name, "reconnect").Add(float64(reconnected))
		}
	}
}

// retireAll is for a pool whose route was replaced or removed: its idle
// connections close now, held ones when their holders let go, and nothing
// is dialled to keep min_idle any more. It returns once the idle ones are
// closed, each gracefully (up to gracefulCloseWait), so it must not run
// under a lock that anything else waits for.
func (p *Pool) retireAll() {
	settings := *p.cfg()
	settings.MinIdle = 0
	p.settings.Store(&settings)
	p.Reconnect()
}

// Pause stops handing out connections (clients wait, up to their
// query_wait_timeout) until Resume, then waits until every connection
// has come back to the pool or ctx ends. Idle connections stay open.
func (p *Pool) Pause(ctx context.Context) error {
	p.mu.Lock()
	p.paused = true
	p.mu.Unlock()
	for {
		s := p.Stats()
		if s.Open == s.Idle {
			return nil
		}
		if !sleepCtx(ctx, 20*time.Millisecond) {
			return fmt.Errorf("pause %q: %d connections still in use: %w", p.route.Name, s.Open-s.Idle, ctx.Err())
		}
	}
}

// Resume ends a Pause.
func (p *Pool) Resume() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.paused = false
	p.dispatchLocked()
}

// Paused reports whether the pool is paused.
func (p *Pool) Paused() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.paused
}

// Reconnect retires every connection open now at its next safe point
// (idle ones at once, held ones when their holder lets go): for rotating
// credentials or moving to a new cluster address.
func (p *Pool) Reconnect() {
	p.generation.Add(1)
	p.mu.Lock()
	idle := p.idle
	p.idle = nil
	p.mu.Unlock()
	p.retire(idle...)
}

// ConnInfo describes one open upstream connection, for SHOW SERVERS.
type ConnInfo struct {
	ID       uint64
	PID      uint32 // the upstream's backend process id
	User     string // its owner, the gateway user it belongs to ("" never handed out)
	Role     string // the upstream login it was opened with (Route.RoleFor)
	Created  time.Time
	RetireAt time.Time
	Idle     bool
	LastUsed time.Time // when it last came back to the pool (idle ones)
}

// Conns lists the pool's open connections.
func (p *Pool) Conns() []ConnInfo {
	p.mu.Lock()
	defer p.mu.Unlock()
	idle := map[*ServerConn]bool{}
	for _, c := range p.idle {
		idle[c] = true
	}
	out := make([]ConnInfo, 0, len(p.all))
	for _, c := range p.all {
		ci := ConnInfo{ID: c.ID, PID: c.PID, User: c.owner, Role: c.role, Created: c.Created, RetireAt: c.retireAt, Idle: idle[c]}
		if ci.Idle {
			ci.LastUsed = c.lastUsed
		}
		out = append(out, ci)
	}
	slices.SortFunc(out, func(a, b ConnInfo) int { return int(a.ID) - int(b.ID) })
	return out
}

// forgetLocked accounts for one connection or slot going away: its slot
// goes back to the pool, and so to the first waiter that can use it.
func (p *Pool) forgetLocked() {
	p.open--
	p.dispatchLocked()
}

// releaseSlot gives back a dial slot that produced no connection; held as
// for dial.
func (p *Pool) releaseSlot(user string, held bool) {
	p.mu.Lock()
	if held {
		p.unholdLocked(user)
	}
	p.forgetLocked()
	p.mu.Unlock()
}

// maintain runs in the pool's goroutine: it retires idle connections past
// their lifetime, closes idle ones beyond MinIdle after IdleTimeout, and
// dials to keep MinIdle warm (counting connections about to retire as gone,
// so a replacement exists before the old one is let go).
func (p *Pool) maintain() {
	defer p.wg.Done()
	t := time.NewTicker(p.maintTick)
	defer t.Stop()
	for {
		select {
		case <-p.stop:
			return
		case <-t.C:
		}
		p.maintainOnce()
	}
}

// ReplaceLead is how long before a connection's retirement its
// replacement is dialled: enough for a dial, small against the lifetime.
func (p *Pool) ReplaceLead() time.Duration {
	return min(max(p.cfg().MaxLifetime.D()/5, 3*p.maintTick), 30*time.Second)
}

// TryAcquire returns an idle connection for user as TakeIdle does, or dials
// a new one for user when the pool has room; it never waits and never
// closes another user's connection, and returns (nil, nil) when the pool
// is full or paused or user holds pool.max_user_connections connections.
// It is for replacements dialled ahead of need. user "" is as for Acquire.
func (p *Pool) TryAcquire(ctx context.Context, user string) (*ServerConn, error) {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil, ErrPoolClosed
	}
	if p.paused || p.cappedLocked(user) {
		p.mu.Unlock()
		return nil, nil
	}
	if sc := p.takeLocked(user, nil); sc != nil {
		p.handOutLocked(sc, user)
		p.mu.Unlock()
		if !sc.Alive() {
			p.Discard(sc)
			return nil, nil
		}
		return sc, nil
	}
	// Room left means no waiter can use it (dispatchLocked would have
	// granted it): nobody is passed over.
	if p.open >= p.cfg().Size {
		p.mu.Unlock()
		return nil, nil
	}
	p.open++
	p.held[user]++
	p.mu.Unlock()
	return p.dial(ctx, user, true)
}

func (p *Pool) maintainOnce() {
	now := p.now()
	lead := p.ReplaceLead()
	var toClose []*ServerConn
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return
	}
	var toRetire, stale, dead []*ServerConn
	// keep is built newest first in a new slice: filling p.idle's own
	// array from the front while reading it from the back would overwrite
	// connections before they are read (and duplicate others).
	keep := make([]*ServerConn, 0, len(p.idle))
	fresh := 0
	for i := len(p.idle) - 1; i >= 0; i-- { // newest first
		c := p.idle[i]
		switch {
		case !c.Alive():
			// Gone while idle (a FATAL error and a close, or DSQL's silent
			// close): not counted as idle a moment longer.
			dead = append(dead, c)
		case c.Retiring(now):
			toRetire = append(toRetire, c)
		case fresh >= p.cfg().MinIdle && now.Sub(c.lastUsed) >= p.cfg().IdleTimeout.D():
			toClose = append(toClose, c)
		default:
			keep = append(keep, c)
			switch {
			case now.Before(c.retireAt.Add(-lead)):
				fresh++
			case !c.replaced && now.Sub(c.lastUsed) < 2*lead:
				// In use lately and about to retire: dial its
				// replacement now (make before break).
				stale = append(stale, c)
			}
		}
	}
	slices.Reverse(keep)
	p.idle = keep
	p.dispatchLocked() // another user's connection may now be idle long enough to take
	// Room left means no waiter can use it (dispatchLocked would have
	// granted it), so warm connections take nothing from the line.
	need := max(min(max(p.cfg().MinIdle-fresh, len(stale)), p.cfg().Size-p.open), 0)
	for i := 0; i < need && i < len(stale); i++ {
		stale[i].replaced = true
	}
	p.open += need
	p.mu.Unlock()
	p.closeThenForget(toRetire, true)
	p.closeThenForget(toClose, false)
	if len(dead) > 0 {
		p.closeThenForget(dead, false)
		p.route.metrics.UpstreamReplacementsTotal.WithLabelValues(p.route.Name, "lost_idle").Add(float64(len(dead)))
	}
	for i := 0; i < need; i++ {
		p.wg.Add(1)
		go func() {
			defer p.wg.Done()
			ctx, cancel := context.WithTimeout(context.Background(), p.cfg().DialTimeout.D())
			defer cancel()
			go func() {
				select {
				case <-p.stop:
					cancel()
				case <-ctx.Done():
				}
			}()
			sc, err := p.dial(ctx, "", false)
			if err != nil {
				return
			}
			p.Release(sc) // idle, never used: the first user to need one claims it
		}()
	}
}

// close stops maintenance and closes the idle connections. Connections
// held by clients are closed when they come back.
func (p *Pool) close() {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return
	}
	p.closed = true
	idle := p.idle
	p.idle = nil
	p.open -= len(idle)
	waiters := p.waiters
	p.waiters = nil
	p.mu.Unlock()
	close(p.stop)
	for _, w := range waiters {
		w.ch <- grant{closed: true} // Acquire returns ErrPoolClosed
	}
	for _, c := range idle {
		c.closeGracefully()
	}
	p.mu.Lock()
	for _, c := range idle {
		delete(p.all, c.ID)
	}
	p.mu.Unlock()
	p.wg.Wait()
}

// sleepCtx sleeps for d and reports whether ctx was still live after it.
func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
