package pgwire

import (
	"fmt"
	"testing"
	"time"
)

func TestAuthBackoff(t *testing.T) {
	now := time.Unix(1000, 0)
	b := newAuthBackoff(3, time.Minute, 2*time.Second, func() time.Time { return now })
	fail := func(host string) time.Duration {
		t.Helper()
		return b.end(host, false)
	}
	succeed := func(host string) {
		t.Helper()
		if d := b.end(host, true); d != 0 {
			t.Fatalf("%s: a success delayed %v", host, d)
		}
	}
	for i := 0; i < 3; i++ {
		if d := fail("1.2.3.4"); d != 0 {
			t.Fatalf("failure %d delayed %v before the limit", i+1, d)
		}
	}
	want := []time.Duration{100 * time.Millisecond, 200 * time.Millisecond, 400 * time.Millisecond, 800 * time.Millisecond, 1600 * time.Millisecond, 2 * time.Second, 2 * time.Second}
	for i, w := range want {
		if d := fail("1.2.3.4"); d != w {
			t.Fatalf("failure %d: delay %v, want %v", i+4, d, w)
		}
	}
	// Another address is not affected.
	if d := fail("5.6.7.8"); d != 0 {
		t.Fatalf("another address delayed %v", d)
	}
	// In backoff, a correct login is never delayed.
	for range 10 {
		succeed("1.2.3.4")
	}
	// A success does not clear the failures: the next one is slowed still.
	if d := fail("1.2.3.4"); d != 2*time.Second {
		t.Fatalf("after a success: delay %v, want 2s", d)
	}
	// The window expires.
	for i := 0; i < 5; i++ {
		fail("9.9.9.9")
	}
	now = now.Add(2 * time.Minute)
	if d := fail("9.9.9.9"); d != 0 {
		t.Fatalf("after the window: delay %v", d)
	}
	// Successes leave no record; expired records are swept.
	now = now.Add(2 * time.Minute)
	succeed("10.0.0.1")
	fail("10.0.0.2")
	b.mu.Lock()
	n := len(b.addrs)
	b.mu.Unlock()
	if n != 1 {
		t.Fatalf("%d records after the sweep, want 1 (the last failure's)", n)
	}
	// Off.
	var off *authBackoff
	if off.end("x", false) != 0 {
		t.Fatal("a nil backoff did something")
	}
	zero := newAuthBackoff(0, time.Minute, time.Second, func() time.Time { return now })
	for range 10 {
		if d := zero.end("1.2.3.4", false); d != 0 {
			t.Fatalf("a zero limit delayed %v", d)
		}
	}
}

// TestAuthBackoffBounded: failures from many addresses within one window
// do not grow the table beyond maxBackoffAddrs.
func TestAuthBackoffBounded(t *testing.T) {
	now := time.Unix(1000, 0)
	b := newAuthBackoff(1, time.Minute, time.Second, func() time.Time { return now })
	for i := range maxBackoffAddrs + 100 {
		b.end(fmt.Sprintf("2001:db8::%x", i), false)
	}
	if n := len(b.addrs); n != maxBackoffAddrs {
		t.Fatalf("%d records, want %d", n, maxBackoffAddrs)
	}
	// A tracked address is still slowed.
	if d := b.end("2001:db8::0", false); d != 100*time.Millisecond {
		t.Fatalf("a tracked address's second failure: delay %v, want 100ms", d)
	}
}
