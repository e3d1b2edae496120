package e2e

import (
	"context"
	"errors"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

func pgCode(err error) string {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		return pgErr.Code
	}
	return ""
}

// TestEmulatedSettings: settings DSQL refuses are accepted by the gateway,
// visible to SHOW and current_setting(), carried across upstream
// replacements, and refused with 0A000 where DSQL cannot honour the value.
func TestEmulatedSettings(t *testing.T) {
	for _, mode := range execModes {
		t.Run(mode.String(), func(t *testing.T) {
			ctx := testCtx(t, time.Minute)
			conn := connect(t, shared, "sslmode=disable&default_query_exec_mode="+modeParam(mode))
			for _, q := range []string{
				"SET statement_timeout = '1min'",
				"SET lock_timeout TO 5000",
				"SET client_min_messages TO warning",
				"SET standard_conforming_strings = on",
				"SET synchronous_commit = off",
				"SET SESSION CHARACTERISTICS AS TRANSACTION ISOLATION LEVEL REPEATABLE READ",
			} {
				if _, err := conn.Exec(ctx, q); err != nil {
					t.Fatalf("%s: %v", q, err)
				}
			}
			check := func(when string) {
				t.Helper()
				for name, want := range map[string]string{
					"statement_timeout": "1min", "lock_timeout": "5s", "client_min_messages": "warning",
					"standard_conforming_strings": "on", "synchronous_commit": "off",
					"default_transaction_isolation": "repeatable read", "transaction_isolation": "repeatable read",
				} {
					var shown, current string
					if err := conn.QueryRow(ctx, "SHOW "+name).Scan(&shown); err != nil {
						t.Fatalf("%s: SHOW %s: %v", when, name, err)
					}
					if err := conn.QueryRow(ctx, "select current_setting('"+name+"')").Scan(&current); err != nil {
						t.Fatalf("%s: current_setting(%s): %v", when, name, err)
					}
					if shown != want || current != want {
						t.Fatalf("%s: %s shows %q and current_setting %q, want %q", when, name, shown, current, want)
					}
				}
			}
			check("after SET")
			shared.Emulator.KillAll()
			check("after an upstream replacement")
			// A rolled-back SET is undone, RESET returns to the default.
			tx, _ := conn.Begin(ctx)
			tx.Exec(ctx, "SET statement_timeout = 0")
			tx.Rollback(ctx)
			check("after a rolled-back SET")
			if _, err := conn.Exec(ctx, "RESET statement_timeout"); err != nil {
				t.Fatal(err)
			}
			var v string
			conn.QueryRow(ctx, "SHOW statement_timeout").Scan(&v)
			if v != "0" {
				t.Fatalf("after RESET: %q", v)
			}
			// Values DSQL cannot honour.
			for _, q := range []string{
				"SET standard_conforming_strings = off",
				"SET default_transaction_isolation = 'serializable'",
				"SET SESSION CHARACTERISTICS AS TRANSACTION ISOLATION LEVEL READ COMMITTED",
			} {
				if _, err := conn.Exec(ctx, q); pgCode(err) != "0A000" {
					t.Fatalf("%s: %v, want 0A000", q, err)
				}
			}
			if _, err := conn.Exec(ctx, "SET client_min_messages = 'loud'"); pgCode(err) != "22023" {
				t.Fatalf("an invalid value: %v, want 22023", err)
			}
			// SET TRANSACTION ISOLATION LEVEL inside a transaction.
			tx, err := conn.Begin(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := tx.Exec(ctx, "SET TRANSACTION ISOLATION LEVEL REPEATABLE READ"); err != nil {
				t.Fatalf("repeatable read: %v", err)
			}
			if _, err := tx.Exec(ctx, "SET TRANSACTION ISOLATION LEVEL SERIALIZABLE"); pgCode(err) != "0A000" {
				t.Fatalf("serializable: %v, want 0A000", err)
			}
			// The refusal failed the transaction, as any error does.
			if _, err := tx.Exec(ctx, "select 1"); pgCode(err) != "25P02" {
				t.Fatalf("after the refusal: %v, want 25P02", err)
			}
			tx.Rollback(ctx)
		})
	}
}

// TestStatementTimeout: pg_sleep(5) under statement_timeout = 200ms ends
// with 57014 in about 200 ms, and the session stays usable, also after an
// upstream replacement.
func TestStatementTimeout(t *testing.T) {
	for _, mode := range poolModes {
		t.Run(mode, func(t *testing.T) {
			st := stackFor(t, mode)
			ctx := testCtx(t, time.Minute)
			conn := connect(t, st, "")
			if _, err := conn.Exec(ctx, "SET statement_timeout = '200ms'"); err != nil {
				t.Fatal(err)
			}
			for round := 0; round < 2; round++ {
				start := time.Now()
				_, err := conn.Exec(ctx, "select pg_sleep(5)")
				took := time.Since(start)
				var pgErr *pgconn.PgError
				if !errors.As(err, &pgErr) || pgErr.Code != "57014" || pgErr.Message != "canceling statement due to statement timeout" {
					t.Fatalf("round %d: %v, want 57014 canceling statement due to statement timeout", round, err)
				}
				t.Logf("round %d: cancelled after %v", round, took.Round(time.Millisecond))
				if took > 4*time.Second {
					t.Fatalf("round %d: the statement ran %v, not cut at 200ms", round, took)
				}
				var v int
				if err := conn.QueryRow(ctx, "select 7").Scan(&v); err != nil || v != 7 {
					t.Fatalf("round %d: after the timeout: %v", round, err)
				}
				st.Emulator.KillAll()
			}
		})
	}
}

// TestClientMinMessages: a NOTICE reaches the client at notice and not at
// warning.
func TestClientMinMessages(t *testing.T) {
	ctx := testCtx(t, time.Minute)
	var mu sync.Mutex
	var notices []string
	cfg, err := pgx.ParseConfig(shared.URL("sslmode=disable"))
	if err != nil {
		t.Fatal(err)
	}
	cfg.OnNotice = func(_ *pgconn.PgConn, n *pgconn.Notice) {
		mu.Lock()
		notices = append(notices, n.Severity+": "+n.Message)
		mu.Unlock()
	}
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	count := func() int {
		mu.Lock()
		defer mu.Unlock()
		return len(notices)
	}
	conn.Exec(ctx, "SET client_min_messages = notice")
	conn.Exec(ctx, "DROP TABLE IF EXISTS no_such_table_for_notice")
	if count() != 1 || !strings.Contains(notices[0], "does not exist, skipping") {
		t.Fatalf("at notice: %v", notices)
	}
	conn.Exec(ctx, "SET client_min_messages = warning")
	conn.Exec(ctx, "DROP TABLE IF EXISTS no_such_table_for_notice")
	if count() != 1 {
		t.Fatalf("at warning the notice still arrived: %v", notices)
	}
}

// TestIdleInTransactionTimeout: a client idle in a transaction past
// idle_in_transaction_session_timeout is disconnected with 25P03, and its
// transaction is rolled back.
func TestIdleInTransactionTimeout(t *testing.T) {
	ctx := testCtx(t, time.Minute)
	conn := connect(t, shared, "sslmode=disable&options=-c%20idle_in_transaction_session_timeout%3D300ms")
	conn.Exec(ctx, "create table idle_tx (a int)")
	defer connect(t, shared, "").Exec(context.Background(), "drop table idle_tx")
	tx, err := conn.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	tx.Exec(ctx, "insert into idle_tx values (1)")
	time.Sleep(time.Second)
	_, err = tx.Exec(ctx, "select 1")
	if err == nil {
		t.Fatal("the idle transaction survived its timeout")
	}
	var n int
	if err := connect(t, shared, "").QueryRow(ctx, "select count(*) from idle_tx").Scan(&n); err != nil || n != 0 {
		t.Fatalf("the abandoned transaction's row: %d %v", n, err)
	}
}

// TestTruncate: TRUNCATE of a plain table becomes DELETE in the client's
// transaction, with TRUNCATE's tag; CASCADE keeps DSQL's refusal, with a
// hint.
func TestTruncate(t *testing.T) {
	for _, mode := range execModes {
		t.Run(mode.String(), func(t *testing.T) {
			ctx := testCtx(t, time.Minute)
			conn := connect(t, shared, "sslmode=disable&default_query_exec_mode="+modeParam(mode))
			table := "trunc_" + modeParam(mode)
			conn.Exec(ctx, "create table "+table+" (a int)")
			defer conn.Exec(context.Background(), "drop table "+table)
			conn.Exec(ctx, "insert into "+table+" values (1), (2), (3)")
			tx, _ := conn.Begin(ctx)
			tag, err := tx.Exec(ctx, "TRUNCATE TABLE "+table)
			if err != nil || tag.String() != "TRUNCATE TABLE" {
				t.Fatalf("truncate: %v %q", err, tag)
			}
			tx.Rollback(ctx)
			var n int
			conn.QueryRow(ctx, "select count(*) from "+table).Scan(&n)
			if n != 3 {
				t.Fatalf("a rolled-back TRUNCATE left %d rows", n)
			}
			if _, err := conn.Exec(ctx, "truncate "+table); err != nil {
				t.Fatal(err)
			}
			conn.QueryRow(ctx, "select count(*) from "+table).Scan(&n)
			if n != 0 {
				t.Fatalf("TRUNCATE left %d rows", n)
			}
			_, err = conn.Exec(ctx, "truncate "+table+" cascade")
			var pgErr *pgconn.PgError
			if !errors.As(err, &pgErr) || pgErr.Code != "0A000" || pgErr.Hint == "" {
				t.Fatalf("TRUNCATE CASCADE: %v, want 0A000 with a hint", err)
			}
		})
	}
}

// TestRefusalHints: what cannot be emulated keeps DSQL's SQLSTATE and
// gains a hint naming the alternative.
func TestRefusalHints(t *testing.T) {
	ctx := testCtx(t, time.Minute)
	conn := connect(t, shared, "")
	for _, q := range []string{"SAVEPOINT s", "LISTEN chan", "NOTIFY chan", "PREPARE p AS SELECT 1", "CREATE TEMP TABLE tt (a int)", "DISCARD ALL"} {
		var err error
		if strings.HasPrefix(q, "SAVEPOINT") {
			tx, _ := conn.Begin(ctx)
			_, err = tx.Exec(ctx, q)
			tx.Rollback(ctx)
		} else {
			_, err = conn.Exec(ctx, q)
		}
		var pgErr *pgconn.PgError
		if !errors.As(err, &pgErr) || pgErr.Code != "0A000" || !strings.Contains(pgErr.Hint, "DSQL") {
			t.Errorf("%s: %v (hint %q), want 0A000 with a hint", q, err, hintOf(err))
		}
	}
}

func hintOf(err error) string {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		return pgErr.Hint
	}
	return ""
}

// TestDeallocate: SQL DEALLOCATE of a protocol-level prepared statement,
// which DSQL refuses by name and drivers send (psycopg when its cache
// rotates), is answered by the gateway in both protocols: the name is
// free again, an unknown name is 26000, and DEALLOCATE ALL drops them all.
func TestDeallocate(t *testing.T) {
	ctx := testCtx(t, time.Minute)
	conn := connect(t, shared, "sslmode=disable").PgConn()
	prepare := func(name, sql string) error {
		_, err := conn.Prepare(ctx, name, sql, nil)
		return err
	}
	exec := func(sql string) (string, error) {
		res := conn.ExecParams(ctx, sql, nil, nil, nil, nil).Read()
		return res.CommandTag.String(), res.Err
	}
	simple := func(sql string) (string, error) {
		res, err := conn.Exec(ctx, sql).ReadAll()
		if err != nil || len(res) != 1 {
			return "", err
		}
		return res[0].CommandTag.String(), res[0].Err
	}
	if err := prepare("s1", "select 1"); err != nil {
		t.Fatal(err)
	}
	if err := prepare("s1", "select 2"); pgCode(err) != "42P05" {
		t.Fatalf("preparing s1 twice: %v, want 42P05", err)
	}
	for _, run := range []struct {
		name string
		fn   func(string) (string, error)
	}{{"simple", simple}, {"extended", exec}} {
		if tag, err := run.fn("DEALLOCATE s1"); err != nil || tag != "DEALLOCATE" {
			t.Fatalf("%s DEALLOCATE s1: %q %v", run.name, tag, err)
		}
		if err := prepare("s1", "select 2"); err != nil {
			t.Fatalf("%s: s1 after DEALLOCATE: %v", run.name, err)
		}
		if _, err := run.fn("deallocate prepare nosuch"); pgCode(err) != "26000" {
			t.Fatalf("%s DEALLOCATE of an unknown name: %v, want 26000", run.name, err)
		}
		if err := prepare("s2", "select 3"); err != nil {
			t.Fatal(err)
		}
		if tag, err := run.fn("DEALLOCATE ALL"); err != nil || tag != "DEALLOCATE ALL" {
			t.Fatalf("%s DEALLOCATE ALL: %q %v", run.name, tag, err)
		}
		for _, name := range []string{"s1", "s2"} {
			if err := prepare(name, "select 4"); err != nil {
				t.Fatalf("%s: %s after DEALLOCATE ALL: %v", run.name, name, err)
			}
		}
		run.fn("DEALLOCATE s2")
	}
	var n int
	if err := connect(t, shared, "sslmode=disable").QueryRow(ctx, "select 41 + 1").Scan(&n); err != nil || n != 42 {
		t.Fatalf("another session after: %d %v", n, err)
	}
}

// TestStartupParameterNotDropped: a startup parameter Aurora DSQL refuses
// and the gateway does not emulate is refused as DSQL refuses it (FATAL
// 0A000 naming it), in the startup packet or in options; it used to be
// dropped, so that default_transaction_read_only=on gave a session that
// writes. Parameters the gateway emulates keep working.
func TestStartupParameterNotDropped(t *testing.T) {
	ctx := testCtx(t, time.Minute)
	for _, extra := range []string{
		"sslmode=disable&default_transaction_read_only=on",
		"sslmode=disable&options=" + optionsParam("-c default_transaction_read_only=on"),
	} {
		conn, err := pgx.Connect(ctx, shared.URL(extra))
		if err == nil {
			conn.Close(ctx)
			t.Fatalf("%s: connected; want FATAL 0A000", extra)
		}
		if pgCode(err) != "0A000" || !strings.Contains(err.Error(), "default_transaction_read_only") {
			t.Fatalf("%s: %v; want FATAL 0A000 naming default_transaction_read_only", extra, err)
		}
	}
	for extra, code := range map[string]string{
		"sslmode=disable&options=" + optionsParam("-c +x=on"): "42704", // not a parameter name
		"sslmode=disable&role=postgres":                       "0A000",
	} {
		conn, err := pgx.Connect(ctx, shared.URL(extra))
		if err == nil {
			conn.Close(ctx)
			t.Fatalf("%s: connected; want FATAL %s", extra, code)
		}
		if pgCode(err) != code {
			t.Fatalf("%s: %v; want FATAL %s", extra, err, code)
		}
	}
	conn := connect(t, shared, "sslmode=disable&statement_timeout=1min")
	var v string
	if err := conn.QueryRow(ctx, "SHOW statement_timeout").Scan(&v); err != nil || v != "1min" {
		t.Fatalf("an emulated startup setting: %q, %v", v, err)
	}
}

// optionsParam escapes an options value for a pgx URL (which reads "+" as
// itself, not as a space).
func optionsParam(v string) string {
	return strings.ReplaceAll(url.QueryEscape(v), "+", "%20")
}
