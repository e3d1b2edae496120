package pgwire

import (
	"testing"
	"time"
)

func TestAuthBackoff(t *testing.T) {
	now := time.Unix(1000, 0)
	b := newAuthBackoff(3, time.Minute, 2*time.Second, func() time.Time { return now })
	fail := func(host string) time.Duration {
		t.Helper()
		if !b.begin(host) {
			t.Fatalf("%s refused", host)
		}
		return b.end(host, false)
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
	// In backoff, only two authentications at once.
	if !b.begin("1.2.3.4") || !b.begin("1.2.3.4") {
		t.Fatal("the first two concurrent attempts were refused")
	}
	if b.begin("1.2.3.4") {
		t.Fatal("a third concurrent attempt in backoff was allowed")
	}
	b.end("1.2.3.4", false)
	// A success clears the record.
	if d := b.end("1.2.3.4", true); d != 0 {
		t.Fatal(d)
	}
	if d := fail("1.2.3.4"); d != 0 {
		t.Fatalf("after a success: delay %v", d)
	}
	// The window expires.
	for i := 0; i < 5; i++ {
		fail("9.9.9.9")
	}
	now = now.Add(2 * time.Minute)
	if d := fail("9.9.9.9"); d != 0 {
		t.Fatalf("after the window: delay %v", d)
	}
	// Off.
	var off *authBackoff
	if !off.begin("x") || off.end("x", false) != 0 {
		t.Fatal("a nil backoff did something")
	}
}
