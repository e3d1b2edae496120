//go:build replicas && linux

package replicas

import (
	"context"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// TestReplicas runs every scenario on one bed. The rolling restarts come
// last: each replaces every replica.
func TestReplicas(t *testing.T) {
	b := startBed(t)
	t.Run("advisory locks", b.advisoryLocks)
	t.Run("cancels", b.cancels)
	t.Run("forged and stale keys", b.forgedKeys)
	t.Run("rolling restart", b.rollingRestart(true))
	t.Run("rolling restart without drain", b.rollingRestart(false))
}

// connect opens a pgx connection to addr, closed with the test.
func (b *bed) connect(t *testing.T, addr string) *pgx.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	c, err := pgx.Connect(ctx, b.url(addr, ""))
	if err != nil {
		t.Fatalf("connect to %s: %v", addr, err)
	}
	t.Cleanup(func() { c.Close(context.Background()) })
	return c
}

// advisoryLocks: a lock taken through one replica excludes the sessions of
// the others (the gateway keeps advisory locks on the cluster, not in a
// replica), for session and transaction locks alike.
func (b *bed) advisoryLocks(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	c1, c2, c3 := b.connect(t, b.replicas[0].addr), b.connect(t, b.replicas[1].addr), b.connect(t, b.replicas[2].addr)
	boolOf := func(c *pgx.Conn, sql string) bool {
		t.Helper()
		var v bool
		if err := c.QueryRow(ctx, sql).Scan(&v); err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
		return v
	}
	exec := func(c *pgx.Conn, sql string) {
		t.Helper()
		if _, err := c.Exec(ctx, sql); err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
	}
	// blocked runs sql on c in the background; the channel yields its
	// error when it returns.
	blocked := func(c *pgx.Conn, sql string) <-chan error {
		done := make(chan error, 1)
		go func() { _, err := c.Exec(ctx, sql); done <- err }()
		return done
	}
	stillWaiting := func(done <-chan error, what string) {
		t.Helper()
		select {
		case err := <-done:
			t.Fatalf("%s returned (%v) while another replica's session held the lock", what, err)
		case <-time.After(time.Second):
		}
	}
	granted := func(done <-chan error, what string) {
		t.Helper()
		select {
		case err := <-done:
			if err != nil {
				t.Fatalf("%s: %v", what, err)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("%s still waits 10s after the holder released the lock", what)
		}
	}

	exec(c1, "select pg_advisory_lock(42)")
	if boolOf(c2, "select pg_try_advisory_lock(42)") {
		t.Fatal("replica 2 took the session lock replica 1 holds")
	}
	wait := blocked(c3, "select pg_advisory_lock(42)")
	stillWaiting(wait, "pg_advisory_lock(42) on replica 3")
	if !boolOf(c1, "select pg_advisory_unlock(42)") {
		t.Fatal("replica 1 could not unlock its lock")
	}
	granted(wait, "pg_advisory_lock(42) on replica 3")
	if boolOf(c2, "select pg_try_advisory_lock(42)") {
		t.Fatal("replica 2 took the lock replica 3 now holds")
	}
	if !boolOf(c3, "select pg_advisory_unlock(42)") || !boolOf(c2, "select pg_try_advisory_lock(42)") {
		t.Fatal("replica 2 did not get the lock after replica 3 unlocked it")
	}
	exec(c2, "select pg_advisory_unlock(42)")
	t.Logf("session lock 42: held on r1, refused on r2, r3 waited until r1 unlocked")

	// Transaction locks, released at COMMIT.
	exec(c1, "begin")
	exec(c1, "select pg_advisory_xact_lock(43)")
	exec(c2, "begin")
	if boolOf(c2, "select pg_try_advisory_xact_lock(43)") {
		t.Fatal("replica 2 took the transaction lock replica 1 holds")
	}
	exec(c2, "commit")
	exec(c3, "begin")
	wait = blocked(c3, "select pg_advisory_xact_lock(43)")
	stillWaiting(wait, "pg_advisory_xact_lock(43) on replica 3")
	exec(c1, "commit")
	granted(wait, "pg_advisory_xact_lock(43) on replica 3")
	exec(c2, "begin")
	if boolOf(c2, "select pg_try_advisory_xact_lock(43)") {
		t.Fatal("replica 2 took the transaction lock replica 3 holds")
	}
	exec(c2, "commit")
	exec(c3, "commit")
	// The gateway lets go of a transaction's locks after it has answered
	// the COMMIT: the lock is free soon after, not at once.
	committed := time.Now()
	for !boolOf(c2, "select pg_try_advisory_lock(43)") {
		if time.Since(committed) > 10*time.Second {
			t.Fatal("replica 2 did not get lock 43 within 10s of replica 3's commit")
		}
		time.Sleep(20 * time.Millisecond)
	}
	exec(c2, "select pg_advisory_unlock(43)")
	t.Logf("transaction lock 43: held on r1, refused on r2, r3 waited until r1 committed, free on r2 %s after r3 committed",
		time.Since(committed).Round(time.Millisecond))
}
