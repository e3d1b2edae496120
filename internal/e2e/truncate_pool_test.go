package e2e

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/dsqlgate/dsqlgate/config"
	"github.com/dsqlgate/dsqlgate/internal/harness"
)

// truncTxDatabase is the transaction-mode route of TestTruncatePool.
const truncTxDatabase = "trunc_tx"

// TestTruncatePool: a batched TRUNCATE (a simple Query outside a
// transaction block) and the pool its route has.
//
//   - Session mode, pool size 1: a connected client holds the only
//     upstream, and its TRUNCATE runs its batches on that one (it used
//     to wait for a second one that could never come); the upstream
//     then goes back to the pool for the next client.
//   - Transaction mode, pool size 1, the upstream held by another
//     client's open transaction: the TRUNCATE fails with 53300 within
//     query_wait_timeout instead of waiting without bound.
//   - Transaction mode: a TRUNCATE run on the upstream where another
//     client's unnamed prepared statement is does not leave that client
//     with 26000 when it binds that statement again.
//   - The gateway closes promptly at the end, clients still connected.
func TestTruncatePool(t *testing.T) {
	ctx := testCtx(t, 2*time.Minute)
	logs := &syncBuffer{}
	st, err := harness.StartStack(ctx, harness.StackOptions{Logger: newTestLogger(logs), Gateway: func(c *config.Config) {
		tx := c.Routes[0]
		tx.Database = truncTxDatabase
		tx.Pool.Mode = config.PoolTransaction
		tx.Pool.Size = 1
		tx.Pool.QueryWaitTimeout = config.Duration(500 * time.Millisecond)
		c.Routes[0].Pool.Mode = config.PoolSession
		c.Routes[0].Pool.Size = 1
		c.Routes[0].Pool.QueryWaitTimeout = config.Duration(3 * time.Second)
		c.Routes = append(c.Routes, tx)
	}})
	if err != nil {
		t.Fatal(err)
	}
	// The gateway must close promptly, clients still connected: a session
	// stuck waiting for an upstream would hold Close for ever.
	closeGateway := func() {
		gw := st.Gateway
		if gw == nil {
			return
		}
		st.Gateway = nil
		closed := make(chan struct{})
		go func() {
			gw.Close()
			close(closed)
		}()
		select {
		case <-closed:
		case <-time.After(15 * time.Second):
			t.Error("the gateway did not close within 15s")
		}
	}
	t.Cleanup(func() {
		closeGateway()
		st.Close()
	})
	const params = "sslmode=disable&default_query_exec_mode=simple_protocol"
	open := func(database string) *pgx.Conn {
		t.Helper()
		u := strings.Replace(st.URL(params), "/"+harness.StackDatabase+"?", "/"+database+"?", 1)
		conn, err := pgx.Connect(ctx, u)
		if err != nil {
			t.Fatalf("connect to %s: %v", database, err)
		}
		t.Cleanup(func() { conn.Close(context.Background()) })
		return conn
	}
	exec := func(conn *pgx.Conn, sql string) {
		t.Helper()
		if _, err := conn.Exec(ctx, sql); err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
	}
	count := func(conn *pgx.Conn, table string) int {
		t.Helper()
		var n int
		if err := conn.QueryRow(ctx, "select count(*) from "+table).Scan(&n); err != nil {
			t.Fatalf("count %s: %v", table, err)
		}
		return n
	}

	// Session mode, pool size 1.
	a := open(harness.StackDatabase)
	exec(a, "create table trp_session (id int primary key, v text)")
	exec(a, "insert into trp_session select g, 'row ' || g from generate_series(1, 5) g")
	tctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	tag, err := a.Exec(tctx, "truncate table trp_session")
	cancel()
	if err != nil || tag.String() != "TRUNCATE TABLE" {
		t.Fatalf("TRUNCATE in session mode with the only upstream held by the client: %q %v", tag, err)
	}
	if n := count(a, "trp_session"); n != 0 {
		t.Fatalf("TRUNCATE left %d rows", n)
	}
	if !strings.Contains(logs.String(), `"truncate batch"`) {
		t.Fatal("no batch logged: the TRUNCATE did not take the batched path")
	}
	a.Close(ctx)
	b := open(harness.StackDatabase)
	exec(b, "insert into trp_session values (1, 'again')")
	if n := count(b, "trp_session"); n != 1 {
		t.Fatalf("the next client sees %d rows, want 1", n)
	}

	// Transaction mode, pool size 1.
	setup := open(truncTxDatabase)
	exec(setup, "create table trp_tx (id int primary key, v text)")
	exec(setup, "insert into trp_tx select g, 'row ' || g from generate_series(1, 5) g")
	holder := open(truncTxDatabase)
	tx, err := holder.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, "select 1"); err != nil {
		t.Fatal(err)
	}
	waiter := open(truncTxDatabase)
	start := time.Now()
	tctx, cancel = context.WithTimeout(ctx, 20*time.Second)
	_, err = waiter.Exec(tctx, "truncate table trp_tx")
	cancel()
	waited := time.Since(start)
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) || pgErr.Code != "53300" || !strings.Contains(pgErr.Message, "query_wait_timeout") {
		t.Fatalf("TRUNCATE with the only upstream in another client's transaction: %v, want 53300 (query_wait_timeout)", err)
	}
	if waited < 400*time.Millisecond || waited > 5*time.Second {
		t.Fatalf("the TRUNCATE failed after %v, want about query_wait_timeout (500ms)", waited)
	}
	if err := tx.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
	if n := count(waiter, "trp_tx"); n != 5 {
		t.Fatalf("the TRUNCATE that got no upstream deleted rows: %d of 5 left", n)
	}

	// Another client's unnamed statement on the only upstream.
	stmt := open(truncTxDatabase).PgConn()
	if _, err := stmt.Prepare(ctx, "", "select count(*) from trp_tx", nil); err != nil {
		t.Fatal(err)
	}
	if res := stmt.ExecPrepared(ctx, "", nil, nil, nil).Read(); res.Err != nil {
		t.Fatal(res.Err)
	}
	tag, err = waiter.Exec(ctx, "truncate table trp_tx")
	if err != nil || tag.String() != "TRUNCATE TABLE" {
		t.Fatalf("TRUNCATE in transaction mode: %q %v", tag, err)
	}
	res := stmt.ExecPrepared(ctx, "", nil, nil, nil).Read()
	if res.Err != nil {
		t.Fatalf("the unnamed statement after another client's TRUNCATE on its upstream: %v", res.Err)
	}
	if len(res.Rows) != 1 || string(res.Rows[0][0]) != "0" {
		t.Fatalf("the unnamed statement after TRUNCATE returned %q, want one row 0", res.Rows)
	}

	// The gateway closes promptly, clients still connected.
	closeGateway()
}
