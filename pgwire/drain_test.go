package pgwire

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/dsqlgate/dsqlgate/config"
)

// TestMemDrainGrace: at shutdown an idle client that has been connected
// for a while is closed at once (57P01), a client that has just logged in
// gets its first request answered and is closed at the safe point after
// it, and a client that has just logged in and sends nothing is closed
// when the grace is over; Shutdown then returns, well before its timeout.
// Without the grace pgbench -C, whose request follows its login by a few
// milliseconds, fails when a drain begins in between.
func TestMemDrainGrace(t *testing.T) {
	g := startMemGateway(t, config.PoolTransaction)
	old := g.connect(t)
	mustQuery(t, old, "SELECT 1", "1")
	time.Sleep(drainGrace + 100*time.Millisecond)
	fresh, silent := g.connect(t), g.connect(t)

	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	start := time.Now()
	done := make(chan error, 1)
	go func() { done <- g.srv.Shutdown(ctx) }()
	// The old client is closed at once: its next query meets the FATAL
	// (or, once it has been read, the closed connection).
	deadline := time.Now().Add(drainGrace / 2)
	for closedByDrain(t, old) == nil {
		if time.Now().After(deadline) {
			t.Fatalf("the idle client connected %s before the drain is still served %s after it began", drainGrace, drainGrace/2)
		}
		time.Sleep(5 * time.Millisecond)
	}
	if err := closedByDrain(t, fresh); err != nil {
		t.Fatalf("the just-connected client's first request: %v", err)
	}
	if closedByDrain(t, fresh) == nil {
		t.Error("the just-connected client was served a second request while draining")
	}
	select {
	case err := <-done:
		if took := time.Since(start); took > drainGrace+2*time.Second {
			t.Errorf("Shutdown took %s: the silent client was not closed when its grace ended", took)
		}
		if err != nil {
			t.Fatalf("Shutdown: %v", err)
		}
	case <-ctx.Done():
		t.Fatal("Shutdown did not return")
	}
	if closedByDrain(t, silent) == nil {
		t.Error("the silent client was still served after the drain")
	}
}

// closedByDrain runs SELECT 1 on c: nil when it is answered, else the
// error, which must be the drain's 57P01 or the connection it closed.
func closedByDrain(t *testing.T, c *pgconn.PgConn) error {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, err := c.Exec(ctx, "SELECT 1").ReadAll()
	var pe *pgconn.PgError
	if errors.As(err, &pe) && pe.Code != "57P01" {
		t.Fatalf("SELECT 1 while draining: %v, want 57P01 or a closed connection", err)
	}
	return err
}
