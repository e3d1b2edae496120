package pgwire

import (
	"net"
	"sync"
	"time"
)

// authBackoff slows down password guessing from one source address, as
// PostgreSQL's auth_delay does, and never locks anyone out: after limit
// failures within window, each further failure from that address is
// reported only after a delay that doubles per failure (up to maxDelay).
// Only failures are slowed: a correct password is never refused nor
// delayed because of other attempts, and an authentication in progress
// counts for nothing until it fails (or times out). A success does not
// clear the record either, or a client knowing one password could reset
// its guessing of others. While its failure is delayed, a connection
// still counts toward limits.max_client_conn and holds what any idle
// connection does (its socket, goroutine and read buffer), nothing of its
// exchange. The zero limit turns it off. Safe for concurrent use.
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
	count int       // failures in the current window
	since time.Time // start of the window
}

// maxBackoffAddrs bounds the addresses tracked at once (a few MiB): a
// client with more addresses than that defeats a per-address count
// anyway, and must not grow the table without bound.
const maxBackoffAddrs = 1 << 16

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

// end records the outcome of an authentication and returns how long to
// wait before reporting it: zero for a success, and for a failure while
// host has had at most limit failures within the window.
func (b *authBackoff) end(host string, ok bool) time.Duration {
	if b == nil || b.limit <= 0 || ok {
		return 0
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	now := b.now()
	b.sweepLocked(now)
	f := b.addrs[host]
	if f == nil {
		if len(b.addrs) >= maxBackoffAddrs {
			return 0
		}
		f = &addrFailures{since: now}
		b.addrs[host] = f
	}
	if now.Sub(f.since) > b.window {
		f.count, f.since = 0, now
	}
	f.count++
	if f.count <= b.limit {
		return 0
	}
	d := 100 * time.Millisecond << min(f.count-b.limit-1, 16)
	return min(d, b.maxDelay)
}

// sweepLocked forgets expired records now and then, so the map holds only
// addresses that failed within the last window or two.
func (b *authBackoff) sweepLocked(now time.Time) {
	if now.Sub(b.swept) < b.window {
		return
	}
	b.swept = now
	for host, f := range b.addrs {
		if now.Sub(f.since) > b.window {
			delete(b.addrs, host)
		}
	}
}
