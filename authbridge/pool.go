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
)

// ErrPoolClosed is returned by Acquire once the pool is closed.
var ErrPoolClosed = errors.New("pool closed")

// WaitError is returned by Acquire when no upstream could be had within the
// caller's deadline. Last is the most recent dial error, if any; Exhausted
// reports that every connection was busy (the pool was at its size).
type WaitError struct {
	Route     string
	Waited    time.Duration
	Exhausted bool
	Last      error
}

func (e *WaitError) Error() string {
	if e.Last != nil {
		return fmt.Sprintf("no upstream for route %q after %s: %v", e.Route, e.Waited.Round(time.Millisecond), e.Last)
	}
	return fmt.Sprintf("no upstream for route %q after %s: all %s", e.Route, e.Waited.Round(time.Millisecond), "connections busy")
}

func (e *WaitError) Unwrap() error { return e.Last }

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
}

// Pool keeps a route's upstream connections: at most Size open, MinIdle
// kept warm, idle ones closed after IdleTimeout, every one retired at its
// first safe point past its lifetime. Waiting clients are served in order.
//
// Lock order: Pool.mu is a leaf; nothing else is locked while it is held,
// and no I/O happens under it.
type Pool struct {
	route    *Route
	settings atomic.Pointer[config.Pool] // replaced whole by update
	log      *zap.Logger
	now      func() time.Time
	nextID   atomic.Uint64

	mu        sync.Mutex
	idle      []*ServerConn // most recently released last
	open      int
	waiters   []*waiter // FIFO
	closed    bool
	stats     PoolStats
	stop      chan struct{}
	wg        sync.WaitGroup
	maintTick time.Duration
	// paused: Acquire waits (see Pause); resumed is closed by Resume.
	paused  bool
	resumed chan struct{}
	// all holds every open connection, for SHOW SERVERS.
	all map[uint64]*ServerConn

	// generation is bumped by Reconnect: connections dialled before are
	// retired at their next safe point. Read without mu.
	generation atomic.Uint64
}

// waiter is a client waiting in Acquire. A grant delivers either a
// connection (sc != nil) or a dial slot already counted in open.
type waiter struct {
	ch chan *ServerConn // buffered 1; nil value = a dial slot
}

func newPool(r *Route, settings config.Pool, opts Options) *Pool {
	p := &Pool{route: r, log: r.log, now: opts.Now, stop: make(chan struct{}), all: map[uint64]*ServerConn{}}
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
// effect as connections come back; a larger one at once, for waiters too.
func (p *Pool) update(settings config.Pool) {
	p.settings.Store(&settings)
	p.mu.Lock()
	for len(p.waiters) > 0 && p.open < settings.Size {
		w := p.waiters[0]
		p.waiters = p.waiters[1:]
		p.open++
		w.ch <- nil // a dial slot
	}
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

// Acquire returns an upstream connection at ReadyForQuery, idle, alive and
// not past its lifetime. It prefers prefer when that connection is idle in
// the pool (fewer state changes for the caller), then the most recently
// used idle connection, then a new dial while the pool is below its size,
// and otherwise waits in line. Dials that fail for reasons that may pass
// (DSQL's rate or connection limit, network trouble) are retried with
// jittered backoff until ctx ends; other failures return at once.
//
// The caller owns the result until it calls Release or Discard.
func (p *Pool) Acquire(ctx context.Context, prefer *ServerConn) (*ServerConn, error) {
	start := p.now()
	defer func() {
		p.route.metrics.PoolWaitSeconds.WithLabelValues(p.route.Name).Observe(p.now().Sub(start).Seconds())
	}()
	var lastErr error
	backoff := dialBackoffMin
	exhausted := false
	for {
		p.mu.Lock()
		if p.closed {
			p.mu.Unlock()
			return nil, ErrPoolClosed
		}
		if p.paused {
			resumed := p.resumed
			p.mu.Unlock()
			select {
			case <-resumed:
				continue
			case <-ctx.Done():
				return nil, p.waitError(start, true, nil, ctx)
			}
		}
		sc, retired := p.takeIdleLocked(prefer)
		if sc == nil && p.open < p.cfg().Size {
			p.open++
			p.mu.Unlock()
			p.retire(retired...)
			sc, err := p.dial(ctx)
			if err == nil {
				return sc, nil
			}
			lastErr = err
			var de *DialError
			if !errors.As(err, &de) || !de.Retryable || ctx.Err() != nil {
				return nil, p.waitError(start, exhausted, err, ctx)
			}
			if !sleepCtx(ctx, jitter(backoff)) {
				return nil, p.waitError(start, exhausted, lastErr, ctx)
			}
			backoff = min(2*backoff, dialBackoffMax)
			continue
		}
		var w *waiter
		if sc == nil {
			w = &waiter{ch: make(chan *ServerConn, 1)}
			p.waiters = append(p.waiters, w)
			exhausted = true
		}
		p.mu.Unlock()
		p.retire(retired...)
		if sc != nil {
			if sc.Alive() {
				return sc, nil
			}
			p.route.metrics.UpstreamReplacementsTotal.WithLabelValues(p.route.Name, "lost_idle").Inc()
			p.Discard(sc)
			continue
		}
		select {
		case sc := <-w.ch:
			if sc == nil {
				// A dial slot was handed to us, or the pool closed.
				p.mu.Lock()
				closed := p.closed
				p.mu.Unlock()
				if closed {
					return nil, ErrPoolClosed
				}
				sc, err := p.dial(ctx)
				if err == nil {
					return sc, nil
				}
				lastErr = err
				var de *DialError
				if !errors.As(err, &de) || !de.Retryable || ctx.Err() != nil {
					return nil, p.waitError(start, exhausted, err, ctx)
				}
				sleepCtx(ctx, jitter(backoff))
				backoff = min(2*backoff, dialBackoffMax)
				continue
			}
			if sc.Alive() {
				return sc, nil
			}
			p.Discard(sc)
		case <-ctx.Done():
			p.mu.Lock()
			i := slices.Index(p.waiters, w)
			if i >= 0 {
				p.waiters = slices.Delete(p.waiters, i, i+1)
			}
			p.mu.Unlock()
			if i < 0 {
				// Granted while we gave up: pass it on.
				if sc := <-w.ch; sc != nil {
					p.Release(sc)
				} else {
					p.releaseSlot()
				}
			}
			return nil, p.waitError(start, exhausted, lastErr, ctx)
		}
	}
}

// TakeIdle returns an idle, alive connection at once (prefer when it is
// idle here), or nil when there is none: Acquire's fast path, without a
// context or a wait. It never dials.
func (p *Pool) TakeIdle(prefer *ServerConn) *ServerConn {
	for {
		p.mu.Lock()
		if p.closed || p.paused || len(p.waiters) > 0 {
			// Waiting clients go first; a paused pool hands out nothing.
			p.mu.Unlock()
			return nil
		}
		sc, retired := p.takeIdleLocked(prefer)
		p.mu.Unlock()
		p.retire(retired...)
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

func (p *Pool) waitError(start time.Time, exhausted bool, last error, ctx context.Context) error {
	if ctx.Err() == nil && last != nil {
		return last
	}
	return &WaitError{Route: p.route.Name, Waited: p.now().Sub(start), Exhausted: exhausted && last == nil, Last: last}
}

// takeIdleLocked removes and returns prefer if it is idle here, else the
// most recently used idle connection. Connections past their retirement are
// removed and returned in retired; they still count as open until the
// caller passes them to retire.
func (p *Pool) takeIdleLocked(prefer *ServerConn) (sc *ServerConn, retired []*ServerConn) {
	now := p.now()
	for i := len(p.idle) - 1; i >= 0; i-- {
		c := p.idle[i]
		if c.Retiring(now) {
			p.idle = slices.Delete(p.idle, i, i+1)
			retired = append(retired, c)
		}
	}
	if len(p.idle) == 0 {
		return nil, retired
	}
	i := len(p.idle) - 1
	if prefer != nil {
		if j := slices.Index(p.idle, prefer); j >= 0 {
			i = j
		}
	}
	sc = p.idle[i]
	p.idle = slices.Delete(p.idle, i, i+1)
	return sc, retired
}

// dial opens one connection in a slot already counted in open. On failure
// it gives the slot back.
func (p *Pool) dial(ctx context.Context) (*ServerConn, error) {
	r := p.route
	if err := r.limiter.wait(ctx); err != nil {
		p.releaseSlot()
		return nil, &DialError{Route: r.Name, Retryable: true, Err: fmt.Errorf("waiting for the dial rate limit: %w", err)}
	}
	started := p.now()
	sc, err := r.dial(ctx)
	if err != nil {
		outcome := "error"
		var de *DialError
		if errors.As(err, &de) {
			switch de.SQLState {
			case "53400":
				outcome = "rate_limited"
			case "53300":
				outcome = "too_many"
			case "28000", "28P01":
				outcome = "auth_failed"
			}
		}
		r.metrics.UpstreamDialsTotal.WithLabelValues(r.Name, outcome).Inc()
		if errors.As(err, &de) && (de.SQLState == "53400" || de.SQLState == "53300") {
			r.limiter.backoff(limitBackoff)
		}
		p.mu.Lock()
		p.stats.DialFails++
		p.mu.Unlock()
		p.releaseSlot()
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
	r.setParams(sc.Params)
	p.mu.Lock()
	p.stats.Dials++
	p.all[sc.ID] = sc
	p.mu.Unlock()
	r.log.Debug("upstream dialled", zap.Uint64("server_id", sc.ID), zap.Duration("took", now.Sub(started)))
	return sc, nil
}

// Release gives a healthy connection at a safe point back to the pool. A
// connection past its retirement is closed instead.
func (p *Pool) Release(sc *ServerConn) {
	now := p.now()
	p.mu.Lock()
	if p.closed || sc.Retiring(now) {
		p.mu.Unlock()
		p.retire(sc)
		return
	}
	if len(p.waiters) > 0 {
		w := p.waiters[0]
		p.waiters = p.waiters[1:]
		w.ch <- sc
		p.mu.Unlock()
		return
	}
	sc.lastUsed = now
	p.idle = append(p.idle, sc)
	p.mu.Unlock()
}

// Discard closes a connection that is broken or whose state is unknown.
func (p *Pool) Discard(sc *ServerConn) {
	p.mu.Lock()
	p.stats.Lost++
	delete(p.all, sc.ID)
	p.forgetLocked()
	p.mu.Unlock()
	sc.close()
}

// Retire closes a healthy connection that its holder retires (lifetime).
func (p *Pool) Retire(sc *ServerConn) { p.retire(sc) }

// retire closes healthy connections gracefully, then gives up their slots:
// until the server has let a connection go, it still counts as open.
func (p *Pool) retire(cs ...*ServerConn) {
	p.closeThenForget(cs, true)
}

// closeThenForget closes connections (gracefully or not) and then
// accounts for them, in that order.
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
// is dialled to keep min_idle any more.
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
	if !p.paused {
		p.paused = true
		p.resumed = make(chan struct{})
	}
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
	if p.paused {
		p.paused = false
		close(p.resumed)
	}
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
		ci := ConnInfo{ID: c.ID, PID: c.PID, Created: c.Created, RetireAt: c.retireAt, Idle: idle[c]}
		if ci.Idle {
			ci.LastUsed = c.lastUsed
		}
		out = append(out, ci)
	}
	slices.SortFunc(out, func(a, b ConnInfo) int { return int(a.ID) - int(b.ID) })
	return out
}

// forgetLocked accounts for one connection going away: its slot goes to the
// first waiter, if any, or back to the pool.
func (p *Pool) forgetLocked() {
	if len(p.waiters) > 0 && !p.closed {
		w := p.waiters[0]
		p.waiters = p.waiters[1:]
		w.ch <- nil // the slot stays counted in open, now the waiter's
		return
	}
	p.open--
}

// releaseSlot gives back a dial slot that produced no connection.
func (p *Pool) releaseSlot() {
	p.mu.Lock()
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

// TryAcquire returns an idle connection, or dials a new one when the pool
// has room; it never waits for another holder and returns (nil, nil) when
// the pool is full. It is for replacements dialled ahead of need.
func (p *Pool) TryAcquire(ctx context.Context) (*ServerConn, error) {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil, ErrPoolClosed
	}
	sc, retired := p.takeIdleLocked(nil)
	if sc == nil && p.open < p.cfg().Size && len(p.waiters) == 0 {
		p.open++
		p.mu.Unlock()
		p.retire(retired...)
		return p.dial(ctx)
	}
	p.mu.Unlock()
	p.retire(retired...)
	if sc != nil && !sc.Alive() {
		p.Discard(sc)
		return nil, nil
	}
	return sc, nil
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
	var toRetire, stale []*ServerConn
	// keep is built newest first in a new slice: filling p.idle's own
	// array from the front while reading it from the back would overwrite
	// connections before they are read (and duplicate others).
	keep := make([]*ServerConn, 0, len(p.idle))
	fresh := 0
	for i := len(p.idle) - 1; i >= 0; i-- { // newest first
		c := p.idle[i]
		switch {
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
	need := 0
	if len(p.waiters) == 0 {
		need = min(max(p.cfg().MinIdle-fresh, len(stale)), p.cfg().Size-p.open)
		need = max(need, 0)
		for i := 0; i < need && i < len(stale); i++ {
			stale[i].replaced = true
		}
	}
	p.open += need
	p.mu.Unlock()
	p.closeThenForget(toRetire, true)
	p.closeThenForget(toClose, false)
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
			sc, err := p.dial(ctx)
			if err != nil {
				return
			}
			p.Release(sc)
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
		w.ch <- nil // they find the pool closed and return ErrPoolClosed
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
