package e2e

import (
	"context"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// TestAdvisoryLocks: the advisory-lock functions, answered by the gateway
// with locks kept on the cluster, behave as PostgreSQL's between clients:
// exclusive, reentrant, released by unlock, at session end (session locks)
// and at transaction end (transaction locks), in both protocols.
func TestAdvisoryLocks(t *testing.T) {
	ctx := testCtx(t, 2*time.Minute)
	a := connect(t, shared, "sslmode=disable&default_query_exec_mode=simple_protocol")
	b := connect(t, shared, "sslmode=disable&default_query_exec_mode=cache_statement")
	try := func(conn *pgx.Conn, args ...any) bool {
		t.Helper()
		var got bool
		q := "select pg_try_advisory_lock($1)"
		if len(args) == 2 {
			q = "select pg_try_advisory_lock($1, $2)"
		}
		if err := conn.QueryRow(ctx, q, args...).Scan(&got); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
		return got
	}
	unlock := func(conn *pgx.Conn, key int64) bool {
		t.Helper()
		var got bool
		if err := conn.QueryRow(ctx, "select pg_advisory_unlock($1)", key).Scan(&got); err != nil {
			t.Fatal(err)
		}
		return got
	}

	if _, err := a.Exec(ctx, "select pg_advisory_lock(4242)"); err != nil {
		t.Fatal(err)
	}
	if try(b, int64(4242)) {
		t.Fatal("b took a lock a holds")
	}
	// Reentrant: a takes it again and must unlock twice.
	if !try(a, int64(4242)) {
		t.Fatal("a could not take its own lock again")
	}
	if !unlock(a, 4242) || try(b, int64(4242)) {
		t.Fatal("one unlock of two released the lock")
	}
	if !unlock(a, 4242) || !try(b, int64(4242)) {
		t.Fatal("b did not get the lock after a's second unlock")
	}
	if unlock(a, 4242) {
		t.Fatal("a unlocked a lock it does not hold")
	}
	// The int4 pair space is separate from the bigint space.
	if !try(a, int32(0), int32(4242)) {
		t.Fatal("a pair key clashed with a bigint key")
	}

	// A blocking lock waits for the holder, then gets it.
	got := make(chan error, 1)
	go func() {
		_, err := a.Exec(ctx, "select pg_advisory_lock(4242)")
		got <- err
	}()
	select {
	case err := <-got:
		t.Fatalf("a's pg_advisory_lock returned while b held the lock: %v", err)
	case <-time.After(300 * time.Millisecond):
	}
	unlock(b, 4242)
	if err := <-got; err != nil {
		t.Fatal(err)
	}

	// Session end releases session locks.
	c := connect(t, shared, "")
	if !try(c, int64(777)) {
		t.Fatal("c could not lock 777")
	}
	c.Close(ctx)
	deadline := time.Now().Add(10 * time.Second)
	for !try(b, int64(777)) {
		if time.Now().After(deadline) {
			t.Fatal("777 was not released when c left")
		}
		time.Sleep(20 * time.Millisecond)
	}

	// Transaction locks end with the transaction.
	tx, err := a.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, "select pg_advisory_xact_lock(88)"); err != nil {
		t.Fatal(err)
	}
	if try(b, int64(88)) {
		t.Fatal("b took a transaction lock a holds")
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	deadline = time.Now().Add(10 * time.Second)
	for !try(b, int64(88)) {
		if time.Now().After(deadline) {
			t.Fatal("88 was not released at a's commit")
		}
		time.Sleep(20 * time.Millisecond)
	}
	b.Exec(ctx, "select pg_advisory_unlock_all()")
}

// TestAdvisoryLockCancel: a client waiting in pg_advisory_lock can cancel
// the wait (57014), and statement_timeout bounds it.
func TestAdvisoryLockCancel(t *testing.T) {
	ctx := testCtx(t, time.Minute)
	holder := connect(t, shared, "")
	waiter := connect(t, shared, "")
	if _, err := holder.Exec(ctx, "select pg_advisory_lock(9001)"); err != nil {
		t.Fatal(err)
	}
	go func() {
		time.Sleep(300 * time.Millisecond)
		waiter.PgConn().CancelRequest(context.Background())
	}()
	if _, err := waiter.Exec(ctx, "select pg_advisory_lock(9001)"); pgCode(err) != "57014" {
		t.Fatalf("cancelled wait: %v, want 57014", err)
	}
	waiter.Exec(ctx, "set statement_timeout = '300ms'")
	var pgErr *pgconn.PgError
	_, err := waiter.Exec(ctx, "select pg_advisory_lock(9001)")
	if pgCode(err) != "57014" || !asPgError(err, &pgErr) || pgErr.Message != "canceling statement due to statement timeout" {
		t.Fatalf("timed-out wait: %v", err)
	}
	holder.Exec(ctx, "select pg_advisory_unlock_all()")
}

func asPgError(err error, target **pgconn.PgError) bool {
	pe, ok := err.(*pgconn.PgError)
	if ok {
		*target = pe
	}
	return ok
}

// TestAdvisoryLocksAcrossGateways: two gateways in front of the same
// cluster share the lock table, so a lock taken through one holds against
// clients of the other.
func TestAdvisoryLocksAcrossGateways(t *testing.T) {
	ctx := testCtx(t, time.Minute)
	second := secondGateway(t, shared)
	one := connect(t, shared, "")
	if _, err := one.Exec(ctx, "select pg_advisory_lock(31337)"); err != nil {
		t.Fatal(err)
	}
	two, err := pgx.Connect(ctx, second)
	if err != nil {
		t.Fatal(err)
	}
	defer two.Close(ctx)
	var got bool
	if err := two.QueryRow(ctx, "select pg_try_advisory_lock(31337)").Scan(&got); err != nil || got {
		t.Fatalf("through the second gateway: %v %v, want false", got, err)
	}
	one.Exec(ctx, "select pg_advisory_unlock(31337)")
	if err := two.QueryRow(ctx, "select pg_try_advisory_lock(31337)").Scan(&got); err != nil || !got {
		t.Fatalf("after the unlock: %v %v, want true", got, err)
	}
}
