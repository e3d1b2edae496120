package e2e

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/dsqlgate/dsqlgate/internal/harness"
)

var execModes = []pgx.QueryExecMode{
	pgx.QueryExecModeCacheStatement,
	pgx.QueryExecModeCacheDescribe,
	pgx.QueryExecModeDescribeExec,
	pgx.QueryExecModeExec,
	pgx.QueryExecModeSimpleProtocol,
}

// TestPgxExecModes runs the same work through every pgx query mode, on
// both upstream kinds: typed parameters and results, a statement used many
// times, an error and recovery, and a transaction.
func TestPgxExecModes(t *testing.T) { eachUpstreamAndMode(t, testPgxExecMode) }

// eachUpstreamAndMode runs f as a subtest for every upstream kind and pgx
// query mode, with a connection in that mode.
func eachUpstreamAndMode(t *testing.T, f func(t *testing.T, ctx context.Context, conn *pgx.Conn, mode pgx.QueryExecMode)) {
	for _, kind := range upstreamKinds {
		for _, mode := range execModes {
			t.Run(kind.name+"/"+mode.String(), func(t *testing.T) {
				ctx := testCtx(t, time.Minute)
				f(t, ctx, connect(t, stackFor(t, kind.stack), "sslmode=disable&default_query_exec_mode="+modeParam(mode)), mode)
			})
		}
	}
}

func testPgxExecMode(t *testing.T, ctx context.Context, conn *pgx.Conn, mode pgx.QueryExecMode) {
	table := "pgx_" + modeParam(mode)
	if _, err := conn.Exec(ctx, "create table "+table+" (id int primary key, name text, at timestamptz)"); err != nil {
		t.Fatal(err)
	}
	defer conn.Exec(context.Background(), "drop table "+table)

	now := time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)
	for i := 1; i <= 20; i++ {
		if _, err := conn.Exec(ctx, "insert into "+table+" values ($1, $2, $3)", i, fmt.Sprintf("n%d", i), now); err != nil {
			t.Fatalf("insert %d: %v", i, err)
		}
	}
	var count, sum int
	var at time.Time
	if err := conn.QueryRow(ctx, "select count(*), sum(id), max(at) from "+table+" where id > $1", 0).Scan(&count, &sum, &at); err != nil {
		t.Fatal(err)
	}
	if count != 20 || sum != 210 || !at.Equal(now) {
		t.Fatalf("got count=%d sum=%d at=%v", count, sum, at)
	}
	// An error, then the connection is still good.
	_, err := conn.Exec(ctx, "insert into "+table+" values ($1, $2, $3)", 1, "dup", now)
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) || pgErr.Code != "23505" {
		t.Fatalf("duplicate insert: %v, want 23505", err)
	}
	// A transaction rolled back and one committed.
	tx, err := conn.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	tx.Exec(ctx, "delete from "+table+" where id = $1", 1)
	tx.Rollback(ctx)
	tx, err = conn.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, "delete from "+table+" where id = $1", 2); err != nil {
		t.Fatal(err)
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	rows, err := conn.Query(ctx, "select id from "+table+" where id <= $1 order by id", 3)
	if err != nil {
		t.Fatal(err)
	}
	ids, err := pgx.CollectRows(rows, pgx.RowTo[int])
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(ids) != "[1 3]" {
		t.Fatalf("ids %v, want [1 3]", ids)
	}
}

func modeParam(m pgx.QueryExecMode) string {
	switch m {
	case pgx.QueryExecModeCacheStatement:
		return "cache_statement"
	case pgx.QueryExecModeCacheDescribe:
		return "cache_describe"
	case pgx.QueryExecModeDescribeExec:
		return "describe_exec"
	case pgx.QueryExecModeExec:
		return "exec"
	case pgx.QueryExecModeSimpleProtocol:
		return "simple_protocol"
	}
	return "unknown"
}

// TestPgxBatch sends a pipelined batch (one Sync per query) including an
// error in the middle, on both upstream kinds.
func TestPgxBatch(t *testing.T) { eachUpstreamAndMode(t, testPgxBatch) }

func testPgxBatch(t *testing.T, ctx context.Context, conn *pgx.Conn, _ pgx.QueryExecMode) {
	b := &pgx.Batch{}
	for i := 0; i < 50; i++ {
		b.Queue("select $1::int * 2", i)
	}
	res := conn.SendBatch(ctx, b)
	for i := 0; i < 50; i++ {
		var v int
		if err := res.QueryRow().Scan(&v); err != nil {
			t.Fatalf("batch item %d: %v", i, err)
		}
		if v != 2*i {
			t.Fatalf("batch item %d = %d", i, v)
		}
	}
	if err := res.Close(); err != nil {
		t.Fatal(err)
	}
	// A batch with a failing statement: the ones before it
	// succeed, the error is reported.
	b = &pgx.Batch{}
	b.Queue("select 1")
	b.Queue("select 1/0")
	res = conn.SendBatch(ctx, b)
	var one int
	if err := res.QueryRow().Scan(&one); err != nil || one != 1 {
		t.Fatalf("first of failing batch: %v %d", err, one)
	}
	var pgErr *pgconn.PgError
	if err := res.QueryRow().Scan(&one); !errors.As(err, &pgErr) || pgErr.Code != "22012" {
		t.Fatalf("second of failing batch: %v, want 22012", err)
	}
	res.Close()
	var v int
	if err := conn.QueryRow(ctx, "select 7").Scan(&v); err != nil || v != 7 {
		t.Fatalf("after the batch: %v %d", err, v)
	}
}

// TestPgxCancel cancels a long pg_sleep through the gateway's own cancel
// key: the query ends with 57014 and the connection stays usable.
func TestPgxCancel(t *testing.T) {
	for _, kind := range upstreamKinds {
		t.Run(kind.name, func(t *testing.T) { testPgxCancel(t, stackFor(t, kind.stack)) })
	}
}

func testPgxCancel(t *testing.T, st *harness.Stack) {
	conn := connect(t, st, "")
	// pgx's default context handling closes the connection; send a real
	// CancelRequest instead, as a user pressing Ctrl-C in psql does.
	go func() {
		time.Sleep(500 * time.Millisecond)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := conn.PgConn().CancelRequest(ctx); err != nil {
			t.Errorf("send cancel: %v", err)
		}
	}()
	start := time.Now()
	_, err := conn.Exec(context.Background(), "select pg_sleep(30)")
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) || pgErr.Code != "57014" {
		t.Fatalf("cancelled pg_sleep: %v, want SQLSTATE 57014", err)
	}
	if d := time.Since(start); d > 20*time.Second {
		t.Fatalf("cancel took %v: the sleep was not cancelled", d)
	}
	var v int
	if err := conn.QueryRow(context.Background(), "select 5").Scan(&v); err != nil || v != 5 {
		t.Fatalf("after cancel: %v %d", err, v)
	}
}
