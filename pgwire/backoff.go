package pgwire

import (
	"net"
	"sync"
	"time"
)

// authBackoff slows down password guessing from one source address: after
// limit failures within window, each further failure from that address is
// reported only after a delay that doubles per failure (up to maxDelay), and
// the address may have only a couple of authentications in progress at
// once. A success from the address clears its record. The zero limit turns
// it off. Safe for concurrent use.
type authBackoff struct {
	limit    int
	window   time.Duration
	maxDelay time.Duration
	now      func() time.Time

	mu    sync.Mutex
	addrs map[string]*addrFailures
	swept time.Time
}

type addrFailures struct {
	count      int       // failures in the current window
	since      time.Time // start of the window
	inProgress int       // authentications running now
}

// maxConcurrentInBackoff is how many authentications an address in
// backoff may run at once; more are refused at once.
const maxConcurrentInBackoff = 2

func newAuthBackoff(limit int, window, maxDelay time.Duration, now func() time.Time) *authBackoff {
	return &authBackoff{limit: limit, window: window, maxDelay: maxDelay, now: now, addrs: map[string]*addrFailures{}}
}

// hostOf is the address part of a remote address (no port): failures are
// counted per host.
func hostOf(addr net.Addr) string {
	host, _, err := net.SplitHostPort(addr.String())
	if err != nil {
		return addr.String()
	}
	return host
}

// begin is called before an authentication from host starts. It returns
// false when the host is in backoff and already has its share of
// authentications in progress; otherwise the caller must call end.
func (b *authBackoff) begin(host string) bool {
	if b == nil || b.limit <= 0 {
		return true
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	f := b.current(host)
	if f != nil && f.count >= b.limit && f.inProgress >= maxConcurrentInBackoff {
		return false
	}
	if f == nil {
		f = &addrFailures{since: b.now()}
		b.addrs[host] = f
	}
	f.inProgress++
	return true
}

// end records the outcome of an authentication begun with begin and
// returns how long to wait before reporting a failure.
func (b *authBackoff) end(host string, ok bool) time.Duration {
	if b == nil || b.limit <= 0 {
		return 0
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	f := b.addrs[host]
	if f == nil {
		return 0
	}
	f.inProgress--
	if ok {
		f.count = 0
		return 0
	}
	now := b.now()
	if now.Sub(f.since) > b.window {
		f.count, f.since = 0, now
	}
	f.count++
	b.sweepLocked(now)
	if f.count <= b.limit {
		return 0
	}
	d := 100 * time.Millisecond << min(f.count-b.limit-1, 16)
	return min(d, b.maxDelay)
}

// current returns host's record if it is still within its window.
func (b *authBackoff) current(host string) *addrFailures {
	f := b.addrs[host]
	if f != nil && f.inProgress == 0 && b.now().Sub(f.since) > b.window {
		delete(b.addrs, host)
		return nil
	}
	return f
}

// sweepLocked forgets expired records now and then, so the map cannot
// grow without bound.
func (b *authBackoff) sweepLocked(now time.Time) {
	if now.Sub(b.swept) < b.window {
		return
	}
	b.swept = now
	for host, f := range b.addrs {
		if f.inProgress == 0 && now.Sub(f.since) > b.window {
			delete(b.addrs, host)
		}
	}
}
