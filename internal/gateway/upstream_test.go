package gateway

import (
	"errors"
	"fmt"
	"testing"

	"github.com/dsqlgate/dsqlgate/authbridge"
	"github.com/dsqlgate/dsqlgate/pgwire"
)

// TestUpstreamConnNoAlloc: handing a connection to pgwire and taking it
// back allocates nothing (the relay does it for every attachment), and two
// adapters of one connection are the same upstream to pgwire.
func TestUpstreamConnNoAlloc(t *testing.T) {
	sc := &authbridge.ServerConn{ID: 7}
	var u pgwire.Upstream
	allocs := testing.AllocsPerRun(1000, func() {
		u = upstreamConn{sc}
		if serverConn(u) != sc {
			t.Fatal("the adapter lost its connection")
		}
	})
	if allocs != 0 {
		t.Fatalf("%v allocations per round trip, want 0", allocs)
	}
	if u != pgwire.Upstream(upstreamConn{sc}) || u == pgwire.Upstream(upstreamConn{&authbridge.ServerConn{ID: 7}}) {
		t.Fatal("adapters do not compare as their connections")
	}
	if serverConn(nil) != nil {
		t.Fatal("no upstream is not a nil connection")
	}
}

// TestPoolErrorsForPgwire: what authbridge's pools return is what pgwire's
// error classification recognises.
func TestPoolErrorsForPgwire(t *testing.T) {
	closed := poolError(fmt.Errorf("acquire: %w", authbridge.ErrPoolClosed))
	if !errors.Is(closed, pgwire.ErrPoolClosed) || !errors.Is(closed, authbridge.ErrPoolClosed) {
		t.Fatalf("%v does not match both ErrPoolClosed", closed)
	}
	dial := &authbridge.DialError{Route: "db", SQLState: "53300", Retryable: true, Err: errors.New("too many")}
	wait := poolError(&authbridge.WaitError{Route: "db", UserCapped: true, User: "u", Last: dial})
	var we pgwire.WaitError
	if !errors.As(wait, &we) {
		t.Fatalf("%v is not a pgwire.WaitError", wait)
	}
	if _, capped, user := we.Busy(); !capped || user != "u" {
		t.Fatalf("Busy() = %v, %q", capped, user)
	}
	var de pgwire.DialError
	if !errors.As(wait, &de) {
		t.Fatalf("%v does not wrap a pgwire.DialError", wait)
	}
	if route, sqlstate, retryable := de.DialFailed(); route != "db" || sqlstate != "53300" || !retryable {
		t.Fatalf("DialFailed() = %q, %q, %v", route, sqlstate, retryable)
	}
	if errors.Is(wait, pgwire.ErrPoolClosed) {
		t.Fatal("a wait error matches ErrPoolClosed")
	}
}
