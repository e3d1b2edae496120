//go:build clients

package clients

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net/url"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// pgxModes are pgx's QueryExecModes, each run as its own client.
var pgxModes = []struct {
	name string
	mode pgx.QueryExecMode
}{
	{"cache_statement", pgx.QueryExecModeCacheStatement},
	{"cache_describe", pgx.QueryExecModeCacheDescribe},
	{"describe_exec", pgx.QueryExecModeDescribeExec},
	{"exec", pgx.QueryExecModeExec},
	{"simple_protocol", pgx.QueryExecModeSimpleProtocol},
}

// createTables is the scenario's DDL, one statement at a time (DSQL runs
// one DDL statement per transaction).
func createTables(schema string) []string {
	return []string{
		"create table " + schema + ".items (id int primary key, name text not null, qty int not null)",
		"create table " + schema + ".bulk (id int primary key, payload text not null)",
	}
}

// runPgxPool runs the scenario on a pgxpool in one QueryExecMode: the
// session is one pool connection held from start to end; other pool
// connections check what a second session sees.
func runPgxPool(ctx context.Context, tg target, mode pgx.QueryExecMode) (rep report) {
	rep = report{version: "pgx " + moduleVersion("github.com/jackc/pgx/v5")}
	var r recorder
	defer func() { rep.steps = r.steps }()

	cfg, err := pgxpool.ParseConfig(tg.URL)
	if err != nil {
		r.fail(err.Error())
		return rep
	}
	cfg.ConnConfig.DefaultQueryExecMode = mode
	cfg.MaxConns = 3
	var (
		pool *pgxpool.Pool
		conn *pgxpool.Conn // the session
		tq   = func(name string) string { return tg.Schema + "." + name }
	)
	defer func() {
		if conn != nil {
			conn.Release()
		}
		if pool != nil {
			pool.Close()
		}
	}()

	r.step(ctx, "connect_tls", func(ctx context.Context) (string, error) {
		// A wrong password is refused the way PostgreSQL refuses it.
		bad, _ := url.Parse(tg.URL)
		bad.User = url.UserPassword(tg.User, tg.Password+"x")
		if c, err := pgx.Connect(ctx, bad.String()); err == nil {
			c.Close(ctx)
			return "", errors.New("a wrong password was accepted")
		} else if err := wantState("wrong password", err, "28P01", sqlState); err != nil {
			return "", err
		}
		if pool, err = pgxpool.NewWithConfig(ctx, cfg); err != nil {
			return "", err
		}
		if conn, err = pool.Acquire(ctx); err != nil {
			return "", err
		}
		tc, ok := conn.Conn().PgConn().Conn().(*tls.Conn)
		if !ok {
			return "", fmt.Errorf("connection is %T, not TLS", conn.Conn().PgConn().Conn())
		}
		for _, q := range createTables(tg.Schema) {
			if _, err := conn.Exec(ctx, q); err != nil {
				return "", fmt.Errorf("%s: %w", q, err)
			}
		}
		return tlsVersion(tc.ConnectionState().Version) + " verify-full, wrong password 28P01", nil
	})
	if conn == nil {
		r.fail("no connection")
		return rep
	}

	r.step(ctx, "param_query", func(ctx context.Context) (string, error) {
		var (
			sum   int64
			upper string
			flag  bool
			null  *string
			when  time.Time
		)
		err := conn.QueryRow(ctx, "select $1::int8 + $2::int8, upper($3::text) || ' ' || $4::text, $5::bool, $6::text, $7::timestamptz",
			int64(40), int64(2), "dsql", "ünïcode", true, nil, time.Date(2024, 1, 15, 12, 0, 0, 0, time.UTC)).
			Scan(&sum, &upper, &flag, &null, &when)
		if err != nil {
			return "", err
		}
		// A second session (another pool connection) the same way.
		var n int
		err2 := pool.QueryRow(ctx, "select count(*) from "+tq("items")+" where id > $1 and name <> $2", 0, "x").Scan(&n)
		return "7 parameters incl. NULL", firstErr(err2,
			want("sum", sum, 42), want("text", upper, "DSQL ünïcode"), want("bool", flag, true),
			want("null", null == nil, true), want("timestamptz", when.UTC(), time.Date(2024, 1, 15, 12, 0, 0, 0, time.UTC)))
	})

	r.step(ctx, "prepared_reuse", func(ctx context.Context) (string, error) {
		if _, err := conn.Conn().Prepare(ctx, "double_it", "select $1::int * 2, $2::text"); err != nil {
			return "", err
		}
		for i := range reuseCount {
			var n int
			var s string
			if err := conn.QueryRow(ctx, "double_it", i, fmt.Sprint(i)).Scan(&n, &s); err != nil {
				return "", fmt.Errorf("execution %d: %w", i, err)
			}
			if n != 2*i || s != fmt.Sprint(i) {
				return "", fmt.Errorf("execution %d: got %d %q", i, n, s)
			}
		}
		// The same text again and again: the mode's own statement cache.
		for i := range reuseCount {
			var n int
			if err := conn.QueryRow(ctx, "select $1::int + 1", i).Scan(&n); err != nil || n != i+1 {
				return "", fmt.Errorf("cached text, execution %d: %d, %v", i, n, err)
			}
		}
		return fmt.Sprintf("named statement and cached text, %d executions each", reuseCount), nil
	})

	r.step(ctx, "tx_commit", func(ctx context.Context) (string, error) {
		tx, err := conn.Begin(ctx)
		if err != nil {
			return "", err
		}
		defer tx.Rollback(ctx)
		for i := 1; i <= 3; i++ {
			if _, err := tx.Exec(ctx, "insert into "+tq("items")+" (id, name, qty) values ($1, $2, $3)", i, fmt.Sprint("item ", i), i*10); err != nil {
				return "", err
			}
		}
		if err := tx.Commit(ctx); err != nil {
			return "", err
		}
		var n, sum int
		if err := pool.QueryRow(ctx, "select count(*), sum(qty) from "+tq("items")).Scan(&n, &sum); err != nil {
			return "", err
		}
		return "3 rows, seen by another session", firstErr(want("rows", n, 3), want("sum", sum, 60))
	})

	r.step(ctx, "tx_rollback", func(ctx context.Context) (string, error) {
		tx, err := conn.Begin(ctx)
		if err != nil {
			return "", err
		}
		defer tx.Rollback(ctx)
		if _, err := tx.Exec(ctx, "insert into "+tq("items")+" values ($1, $2, $3)", 100, "rolled back", 1); err != nil {
			return "", err
		}
		var inside, after int
		if err := tx.QueryRow(ctx, "select count(*) from "+tq("items")).Scan(&inside); err != nil {
			return "", err
		}
		if err := tx.Rollback(ctx); err != nil {
			return "", err
		}
		if err := conn.QueryRow(ctx, "select count(*) from "+tq("items")).Scan(&after); err != nil {
			return "", err
		}
		return "", firstErr(want("rows inside", inside, 4), want("rows after", after, 3))
	})

	r.step(ctx, "error_recovery", func(ctx context.Context) (string, error) {
		_, err := conn.Exec(ctx, "insert into "+tq("items")+" values ($1, $2, $3)", 1, "duplicate", 0)
		if err := wantState("duplicate key", err, "23505", sqlState); err != nil {
			return "", err
		}
		var one int
		if err := conn.QueryRow(ctx, "select 1").Scan(&one); err != nil {
			return "", fmt.Errorf("after the error: %w", err)
		}
		tx, err := conn.Begin(ctx)
		if err != nil {
			return "", err
		}
		defer tx.Rollback(ctx)
		_, err = tx.Exec(ctx, "select 1/0")
		if err := wantState("division by zero", err, "22012", sqlState); err != nil {
			return "", err
		}
		_, err = tx.Exec(ctx, "select 1")
		if err := wantState("in the failed transaction", err, "25P02", sqlState); err != nil {
			return "", err
		}
		if err := tx.Rollback(ctx); err != nil {
			return "", err
		}
		var n int
		err = conn.QueryRow(ctx, "select count(*) from "+tq("items")).Scan(&n)
		return "23505, then 22012 and 25P02 in a transaction", firstErr(err, want("rows", n, 3))
	})

	r.step(ctx, "set_observed", func(ctx context.Context) (string, error) {
		for _, q := range []string{"SET search_path TO " + tg.Schema + ", public", "SET TimeZone TO '" + scenarioTZ + "'"} {
			if _, err := conn.Exec(ctx, q); err != nil {
				return "", fmt.Errorf("%s: %w", q, err)
			}
		}
		return checkPgxSettings(ctx, conn.Conn(), tg)
	})

	r.step(ctx, "bulk_insert", func(ctx context.Context) (string, error) {
		rows := make([][]any, bulkRows)
		for i := range rows {
			rows[i] = []any{i + 1, fmt.Sprint("payload ", i+1)}
		}
		// Unqualified: COPY goes by search_path.
		n, err := conn.Conn().CopyFrom(ctx, pgx.Identifier{"bulk"}, []string{"id", "payload"}, pgx.CopyFromRows(rows))
		if err != nil {
			return "", err
		}
		var count, sum int
		if err := conn.QueryRow(ctx, "select count(*), sum(id) from bulk").Scan(&count, &sum); err != nil {
			return "", err
		}
		return "CopyFrom", firstErr(want("copied", n, int64(bulkRows)), want("count", count, bulkRows), want("sum", sum, bulkRows*(bulkRows+1)/2))
	})

	r.step(ctx, "cancel", func(ctx context.Context) (string, error) {
		pgc := conn.Conn().PgConn()
		cancelled := make(chan error, 1)
		go func() {
			time.Sleep(cancelAfter)
			cancelled <- pgc.CancelRequest(ctx)
		}()
		start := time.Now()
		_, err := conn.Exec(ctx, "select pg_sleep(30)")
		took := time.Since(start)
		if cerr := <-cancelled; cerr != nil {
			return "", fmt.Errorf("CancelRequest: %w", cerr)
		}
		if err := wantState("pg_sleep(30)", err, "57014", sqlState); err != nil {
			return "", err
		}
		if took > cancelWithin {
			return "", fmt.Errorf("the cancel took %s", took)
		}
		if _, err := checkPgxSettings(ctx, conn.Conn(), tg); err != nil {
			return "", fmt.Errorf("after the cancel: %w", err)
		}
		return fmt.Sprintf("57014 after %s", took.Round(time.Millisecond)), nil
	})

	r.step(ctx, "survive_replacement", func(ctx context.Context) (string, error) {
		pgc := conn.Conn().PgConn()
		if _, err := conn.Conn().Prepare(ctx, "item_name", "select name from items where id = $1"); err != nil {
			return "", err
		}
		var name string
		if err := conn.QueryRow(ctx, "item_name", 2).Scan(&name); err != nil {
			return "", fmt.Errorf("before the kill: %w", err)
		}
		if err := killAll(ctx, tg); err != nil {
			return "", err
		}
		if _, err := checkPgxSettings(ctx, conn.Conn(), tg); err != nil {
			return "", fmt.Errorf("after the kill: %w", err)
		}
		var n int
		var s string
		err1 := conn.QueryRow(ctx, "item_name", 3).Scan(&name)
		err2 := conn.QueryRow(ctx, "double_it", 21, "x").Scan(&n, &s)
		var cached int
		err3 := conn.QueryRow(ctx, "select $1::int + 1", 41).Scan(&cached)
		if err := firstErr(err1, err2, err3); err != nil {
			return "", fmt.Errorf("prepared statements after the kill: %w", err)
		}
		return "search_path, TimeZone, 3 prepared statements", firstErr(
			want("same client connection", conn.Conn().PgConn() == pgc && !pgc.IsClosed(), true),
			want("item 3", name, "item 3"), want("double_it", n, 42), want("cached", cached, 42))
	})
	return rep
}

// checkPgxSettings checks that the session sees the scenario's
// search_path and TimeZone.
func checkPgxSettings(ctx context.Context, conn *pgx.Conn, tg target) (string, error) {
	var (
		n            int
		path, tz, ts string
	)
	if err := conn.QueryRow(ctx, "select count(*) from items").Scan(&n); err != nil {
		return "", fmt.Errorf("unqualified table: %w", err)
	}
	if err := conn.QueryRow(ctx, "select current_setting('search_path'), current_setting('TimeZone')").Scan(&path, &tz); err != nil {
		return "", err
	}
	if err := conn.QueryRow(ctx, timestampQuery).Scan(&ts); err != nil {
		return "", err
	}
	var shown string
	if err := conn.QueryRow(ctx, "SHOW TimeZone").Scan(&shown); err != nil {
		return "", err
	}
	return "search_path, TimeZone (ParameterStatus too)", firstErr(
		want("rows in items", n, 3),
		want("search_path", path, tg.Schema+", public"),
		want("TimeZone", tz, scenarioTZ),
		want("SHOW TimeZone", shown, scenarioTZ),
		want("timestamptz text", ts, timestampNY),
		want("ParameterStatus TimeZone", conn.PgConn().ParameterStatus("TimeZone"), scenarioTZ))
}
