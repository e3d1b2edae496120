package authbridge

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestDialLimiterTighten: a route with a lower dial rate on the same
// cluster lowers the shared limit and its burst; a higher one changes
// nothing.
func TestDialLimiterTighten(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	clock := func() time.Time { return now }
	l := newDialLimiter(100, 100, clock)
	l.tighten(2)
	l.tighten(50) // looser: ignored
	if got := l.lim.Burst(); got != 2 {
		t.Fatalf("burst %d after tighten(2), want 2", got)
	}
	allowed := func() int {
		n := 0
		for range 10 {
			if l.lim.AllowN(clock(), 1) {
				n++
			}
		}
		return n
	}
	if n := allowed(); n != 2 {
		t.Fatalf("%d dials allowed at one instant, want the burst of 2", n)
	}
	now = now.Add(time.Second) // two tokens at 2/s
	if n := allowed(); n != 2 {
		t.Fatalf("%d dials allowed a second later, want 2", n)
	}
}

// TestDialLimiterCancel: a dial whose context ends while it waits for a
// token gives the token back, and a wait on an ended context with a token
// at hand still goes through, as a dial already due does.
func TestDialLimiterCancel(t *testing.T) {
	l := newDialLimiter(1, 1, time.Now)
	if err := l.wait(context.Background()); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if err := l.wait(ctx); err != context.DeadlineExceeded {
		t.Fatalf("wait for a token a second away under a 20ms context = %v; want DeadlineExceeded", err)
	}
	// The waiter that gave up took nothing: the next token is due about
	// a second after the first dial, not two.
	start := time.Now()
	if err := l.wait(context.Background()); err != nil {
		t.Fatal(err)
	}
	if waited := time.Since(start); waited > 1500*time.Millisecond {
		t.Fatalf("the next dial waited %v; the cancelled one kept its token", waited)
	}
	done, stop := context.WithCancel(context.Background())
	stop()
	l2 := newDialLimiter(1, 1, time.Now)
	if err := l2.wait(done); err != nil {
		t.Fatalf("wait with a token at hand on an ended context = %v; want nil", err)
	}
}

// TestDialLimiterWaitersGivingUp: waiters that give up (a client's
// query_wait_timeout) must not hold up the dials behind them. A limiter
// that booked a future slot per waiter let those bookings pile up past
// every waiter's deadline, so under overload almost nothing dialled.
func TestDialLimiterWaitersGivingUp(t *testing.T) {
	const rate, run = 20.0, time.Second
	l := newDialLimiter(rate, 1, time.Now)
	var dials atomic.Int64
	end := time.Now().Add(run)
	var wg sync.WaitGroup
	for range 30 {
		wg.Go(func() {
			for time.Now().Before(end) {
				ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
				if l.wait(ctx) == nil {
					dials.Add(1)
				}
				cancel()
			}
		})
	}
	wg.Wait()
	// About 1 + rate×run get through; the booking limiter let 2 or 3.
	if n := dials.Load(); n < 10 || n > 1+int64(rate*1.5) {
		t.Fatalf("%d dials in %v at %v/s with 30 waiters giving up after 100 ms, want about %v", n, run, rate, 1+rate)
	}
}
