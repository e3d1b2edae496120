package e2e

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/dsqlgate/dsqlgate/internal/pgtest"
)

// fillRows inserts rows 1..n into table (id, v) in autocommit INSERTs of
// at most 2,000 rows: each fits DSQL's 3,000 rows per transaction.
func fillRows(t *testing.T, ctx context.Context, conn *pgx.Conn, table string, n int) {
	t.Helper()
	for lo := 1; lo <= n; lo += 2000 {
		hi := min(lo+1999, n)
		if _, err := conn.Exec(ctx, fmt.Sprintf("insert into %s select g, 'row ' || g from generate_series(%d, %d) g", table, lo, hi)); err != nil {
			t.Fatal(err)
		}
	}
}

func countRows(t *testing.T, ctx context.Context, conn *pgx.Conn, table string) int {
	t.Helper()
	var n int
	if err := conn.QueryRow(ctx, "select count(*) from "+table).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// TestTruncateUnderLimits: TRUNCATE through the gateway respects DSQL's
// 3,000 rows per transaction.
//
//   - Outside a transaction block, a simple-query TRUNCATE of a 7,000-row
//     table empties it in batched DELETEs (the gateway's log shows at
//     least 7 batches for the table; the emulator does not enforce the
//     row limit yet, so the batches are what shows it is respected).
//   - Inside a transaction block, or through the extended protocol, the
//     same TRUNCATE fails at once with 54000, a message saying why and a
//     hint saying what to do, and deletes nothing.
//   - pgbench's "truncate table a, b, c, d" empties all four outside a
//     transaction block, a big one among them; inside one it is refused
//     with 0A000 and a hint.
//   - ONLY, CONTINUE IDENTITY and RESTRICT are accepted; RESTART IDENTITY
//     and CASCADE refused with 0A000 and a hint.
//   - A composite primary key is batched on; a table without one (which
//     DSQL cannot have) is emptied in one DELETE when small, and refused
//     with 54000 when over the limit.
func TestTruncateUnderLimits(t *testing.T) {
	ctx := testCtx(t, 3*time.Minute)
	simple := connect(t, shared, "sslmode=disable&default_query_exec_mode=simple_protocol")
	extended := connect(t, shared, "sslmode=disable&default_query_exec_mode=cache_statement")
	sfx := pgtest.RandomHex(4)
	name := func(n string) string { return "trl_" + n + "_" + sfx }
	mk := func(table, cols string) {
		t.Helper()
		if _, err := simple.Exec(ctx, "create table "+table+" ("+cols+")"); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { simple.Exec(context.Background(), "drop table if exists "+table) })
	}
	wantErr := func(err error, code string, what string) {
		t.Helper()
		var pgErr *pgconn.PgError
		if !errors.As(err, &pgErr) || pgErr.Code != code || pgErr.Hint == "" {
			t.Fatalf("%s: %v, want %s with a hint", what, err, code)
		}
	}

	big := name("big")
	mk(big, "id int primary key, v text")
	fillRows(t, ctx, simple, big, 7000)

	// In a transaction block: refused before anything is deleted.
	tx, err := simple.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	_, err = tx.Exec(ctx, "truncate table "+big)
	wantErr(err, "54000", "TRUNCATE in a transaction")
	if !strings.Contains(err.Error(), "3,000") {
		t.Fatalf("the error does not say why: %v", err)
	}
	tx.Rollback(ctx)
	// Through the extended protocol: the same.
	// (pgx sends an Exec without arguments as a simple query.)
	err = extended.PgConn().ExecParams(ctx, "truncate "+big, nil, nil, nil, nil).Read().Err
	wantErr(err, "54000", "TRUNCATE through the extended protocol")
	if n := countRows(t, ctx, simple, big); n != 7000 {
		t.Fatalf("a refused TRUNCATE left %d rows of 7000", n)
	}

	// Outside a transaction block: batches.
	tag, err := simple.Exec(ctx, "TRUNCATE TABLE ONLY "+big+" CONTINUE IDENTITY RESTRICT")
	if err != nil || tag.String() != "TRUNCATE TABLE" {
		t.Fatalf("TRUNCATE: %q %v", tag, err)
	}
	if n := countRows(t, ctx, simple, big); n != 0 {
		t.Fatalf("TRUNCATE left %d rows", n)
	}
	batches := 0
	for _, line := range strings.Split(sharedLogs.String(), "\n") {
		if strings.Contains(line, `"truncate batch"`) && strings.Contains(line, big) {
			batches++
		}
	}
	if batches < 7 {
		t.Fatalf("%d batches logged for %s, want at least 7 of at most 1,000 rows", batches, big)
	}

	// Several tables, as pgbench sends.
	tables := []string{name("a"), name("b"), name("c"), name("d")}
	for i, tb := range tables {
		mk(tb, "id int primary key, v text")
		fillRows(t, ctx, simple, tb, []int{10, 3500, 0, 1}[i])
	}
	list := strings.Join(tables, ", ")
	tx, err = simple.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	_, err = tx.Exec(ctx, "truncate table "+list)
	wantErr(err, "0A000", "several tables in a transaction")
	tx.Rollback(ctx)
	if _, err := simple.Exec(ctx, "truncate table "+list); err != nil {
		t.Fatal(err)
	}
	for _, tb := range tables {
		if n := countRows(t, ctx, simple, tb); n != 0 {
			t.Fatalf("%s: %d rows left", tb, n)
		}
	}

	// What cannot be honoured.
	_, err = simple.Exec(ctx, "truncate "+tables[0]+" restart identity")
	wantErr(err, "0A000", "RESTART IDENTITY")
	_, err = simple.Exec(ctx, "truncate "+tables[0]+" cascade")
	wantErr(err, "0A000", "CASCADE")

	// A composite key.
	pair := name("pair")
	mk(pair, "id int, v text, primary key (v, id)")
	fillRows(t, ctx, simple, pair, 3500)
	if _, err := simple.Exec(ctx, "truncate "+pair); err != nil {
		t.Fatal(err)
	}
	if n := countRows(t, ctx, simple, pair); n != 0 {
		t.Fatalf("%s: %d rows left", pair, n)
	}

	// No primary key.
	nokey := name("nokey")
	mk(nokey, "id int, v text")
	fillRows(t, ctx, simple, nokey, 20)
	if _, err := simple.Exec(ctx, "truncate "+nokey); err != nil {
		t.Fatal(err)
	}
	fillRows(t, ctx, simple, nokey, 3001)
	_, err = simple.Exec(ctx, "truncate "+nokey)
	wantErr(err, "54000", "a big table without a primary key")
	if n := countRows(t, ctx, simple, nokey); n != 3001 {
		t.Fatalf("%s: %d rows left, want all 3001", nokey, n)
	}
	// In a transaction, a small table still truncates (and rolls back).
	tx, err = simple.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, "truncate "+tables[0]); err != nil {
		t.Fatal(err)
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
}
