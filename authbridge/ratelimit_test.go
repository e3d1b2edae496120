package authbridge

import (
	"context"
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
	// The cancelled reservation was returned: the next token is due about
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
