package authbridge

import (
	"context"
	"math/rand/v2"
	"sync"
	"time"
)

// dialLimiter is a token bucket shared by every route that dials the same
// cluster endpoint: DSQL counts new connections per cluster (100/s, not
// configurable), and a refusal with 53400 or 53300 pauses every dial to
// that cluster for a jittered backoff. Safe for concurrent use.
type dialLimiter struct {
	rate  float64 // tokens per second
	burst float64
	now   func() time.Time

	mu           sync.Mutex
	tokens       float64
	last         time.Time
	blockedUntil time.Time
}

func newDialLimiter(rate float64, burst int, now func() time.Time) *dialLimiter {
	if burst < 1 {
		burst = 1
	}
	return &dialLimiter{rate: rate, burst: float64(burst), tokens: float64(burst), last: now(), now: now}
}

// wait blocks until a dial may start or ctx ends.
func (l *dialLimiter) wait(ctx context.Context) error {
	for {
		l.mu.Lock()
		now := l.now()
		if elapsed := now.Sub(l.last).Seconds(); elapsed > 0 {
			l.tokens = min(l.burst, l.tokens+elapsed*l.rate)
			l.last = now
		}
		var delay time.Duration
		switch {
		case now.Before(l.blockedUntil):
			delay = l.blockedUntil.Sub(now)
		case l.tokens >= 1:
			l.tokens--
			l.mu.Unlock()
			return nil
		default:
			delay = time.Duration((1 - l.tokens) / l.rate * float64(time.Second))
		}
		l.mu.Unlock()
		t := time.NewTimer(max(delay, time.Millisecond))
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
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
