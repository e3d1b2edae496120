package authbridge

import (
	"context"
	"math/rand/v2"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// dialLimiter paces the dials to one cluster endpoint, shared by every
// route that dials it: DSQL counts new connections per cluster (100/s, not
// configurable), and a refusal with 53400 or 53300 pauses every dial to
// that cluster for a jittered backoff. Safe for concurrent use.
type dialLimiter struct {
	// lim is the token bucket; it is read on the bridge's clock (now), so
	// that a test's clock governs it as it does lifetimes.
	lim *rate.Limiter
	now func() time.Time

	mu           sync.Mutex
	blockedUntil time.Time // no dial starts before it (backoff)
}

// newDialLimiter allows perSecond dials a second, with bursts of up to
// burst (at least 1), the bucket starting full.
func newDialLimiter(perSecond float64, burst int, now func() time.Time) *dialLimiter {
	return &dialLimiter{lim: rate.NewLimiter(rate.Limit(perSecond), max(1, burst)), now: now}
}

// tighten lowers the limit to perSecond (and the burst with it) when that
// is stricter than the one in force: routes sharing a cluster share its
// limit, and the strictest wins.
func (l *dialLimiter) tighten(perSecond float64) {
	if rate.Limit(perSecond) >= l.lim.Limit() {
		return
	}
	now := l.now()
	l.lim.SetLimitAt(now, rate.Limit(perSecond))
	l.lim.SetBurstAt(now, max(1, int(perSecond)))
}

// perSecond is the limit in force, in dials a second.
func (l *dialLimiter) perSecond() float64 { return float64(l.lim.Limit()) }

// wait blocks until a dial may start or ctx ends: past any backoff, then
// for a token. It takes a token only when one is there, and otherwise
// sleeps until one should be, then looks again: a waiter that gives up
// (its client's query_wait_timeout) then leaves nothing behind, where a
// slot booked ahead (rate.Limiter's Reserve) would stay booked whenever a
// later waiter booked after it, so under overload the bookings would pile
// up past every waiter's deadline and almost nothing would dial. A
// backoff that begins while it waits holds the dial too.
func (l *dialLimiter) wait(ctx context.Context) error {
	for {
		if err := l.waitBackoff(ctx); err != nil {
			return err
		}
		now := l.now()
		if l.lim.AllowN(now, 1) {
			return nil
		}
		if !sleepCtx(ctx, l.untilToken(now)) {
			return ctx.Err()
		}
	}
}

// untilToken is how long after now the bucket should next hold a whole
// token (at least a millisecond, so that waiters never spin).
func (l *dialLimiter) untilToken(now time.Time) time.Duration {
	missing := 1 - l.lim.TokensAt(now)
	d := time.Millisecond
	if perSecond := float64(l.lim.Limit()); perSecond > 0 && missing > 0 {
		d = max(d, time.Duration(missing/perSecond*float64(time.Second)))
	}
	return d
}

// waitBackoff returns when no backoff is in force, or ctx ends. A backoff
// extended meanwhile is waited for too.
func (l *dialLimiter) waitBackoff(ctx context.Context) error {
	for {
		l.mu.Lock()
		d := l.blockedUntil.Sub(l.now())
		l.mu.Unlock()
		if d <= 0 {
			return nil
		}
		if !sleepCtx(ctx, d) {
			return ctx.Err()
		}
	}
}

// backoff pauses every dial through l for about d (with jitter), after the
// cluster refused a connection for its rate or count limit.
func (l *dialLimiter) backoff(d time.Duration) {
	d = jitter(d)
	l.mu.Lock()
	if until := l.now().Add(d); until.After(l.blockedUntil) {
		l.blockedUntil = until
	}
	l.mu.Unlock()
}

// jitter returns a duration uniformly between d/2 and d.
func jitter(d time.Duration) time.Duration {
	if d <= 0 {
		return 0
	}
	return d/2 + rand.N(d/2+1)
}
