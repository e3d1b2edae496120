package dsqlsim_test

// Fidelity tests of what DSQL refuses, run with pgx v5 straight against the
// emulator: each refusal has DSQL's SQLSTATE (0A000) and message in the
// simple protocol (Query) and in the extended protocol (Parse), aborts a
// transaction block (25P02 until ROLLBACK) and leaves a session outside one
// usable; and the refused statement never ran on the real PostgreSQL.

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/dsqlgate/dsqlgate/internal/dsqlsim"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// connectPgx opens a pgx connection to the emulator as role over direct TLS.
func (e *emulator) connectPgx(t *testing.T, role string) *pgx.Conn {
	t.Helper()
	cfg, err := pgx.ParseConfig("")
	if err != nil {
		t.Fatalf("pgx.ParseConfig: %v", err)
	}
	cfg.Config = *e.connConfig(t, dsqlsim.TestHost, role, "direct")
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		t.Fatalf("pgx connect as %s: %v", role, err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		conn.Close(ctx)
	})
	return conn
}

// A protocol runs one statement and returns its error.
type protocol struct {
	name string
	run  func(ctx context.Context, conn *pgx.Conn, sql string) error
}

var protocols = []protocol{
	// pgx sends a statement without arguments as a simple Query.
	{"simple", func(ctx context.Context, conn *pgx.Conn, sql string) error {
		_, err := conn.Exec(ctx, sql)
		return err
	}},
	// Parse, Bind, Describe, Execute, Sync of the unnamed statement.
	{"extended", func(ctx context.Context, conn *pgx.Conn, sql string) error {
		return conn.PgConn().ExecParams(ctx, sql, nil, nil, nil, nil).Read().Err
	}},
}

// wantRefusal fails unless err is DSQL's 0A000 with exactly message, with no
// trace of the emulator's marker.
func wantRefusal(t *testing.T, err error, message string) {
	t.Helper()
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) {
		t.Fatalf("error = %v, want 0A000 %q", err, message)
	}
	if pgErr.Code != "0A000" || pgErr.Message != message || pgErr.Severity != "ERROR" {
		t.Fatalf("error = %s %s %q, want ERROR 0A000 %q", pgErr.Severity, pgErr.Code, pgErr.Message, message)
	}
	if strings.Contains(pgErr.Message+pgErr.Detail+pgErr.Hint+pgErr.Where, "dsqlsim_refused") {
		t.Fatalf("refusal shows its marker: %+v", *pgErr)
	}
}

func queryString(t *testing.T, conn *pgx.Conn, sql string, args ...any) string {
	t.Helper()
	var s string
	if err := conn.QueryRow(context.Background(), sql, args...).Scan(&s); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
	return s
}

// checkRefused runs sql with each protocol outside a transaction (the
// session goes on) and inside one (it is aborted until ROLLBACK).
func checkRefused(t *testing.T, conn *pgx.Conn, sql, message string) {
	t.Helper()
	ctx := context.Background()
	for _, p := range protocols {
		err := p.run(ctx, conn, sql)
		wantRefusal(t, err, message)
		if status := conn.PgConn().TxStatus(); status != 'I' {
			t.Fatalf("%s: TxStatus after a refusal outside a transaction = %c, want I", p.name, status)
		}
		if got := queryString(t, conn, "SELECT 'still here'"); got != "still here" {
			t.Fatalf("%s: session after a refusal: %q", p.name, got)
		}

		if _, err := conn.Exec(ctx, "BEGIN"); err != nil {
			t.Fatalf("BEGIN: %v", err)
		}
		wantRefusal(t, p.run(ctx, conn, sql), message)
		if status := conn.PgConn().TxStatus(); status != 'E' {
			t.Fatalf("%s: TxStatus after a refusal in a transaction = %c, want E", p.name, status)
		}
		_, err = conn.Exec(ctx, "SELECT 1")
		wantPgError(t, err, "25P02", "current transaction is aborted")
		if _, err := conn.Exec(ctx, "ROLLBACK"); err != nil {
			t.Fatalf("ROLLBACK: %v", err)
		}
	}
}

func TestFidelityIsolationLevel(t *testing.T) {
	e := startEmulator(t, nil)
	conn := e.connectPgx(t, "app")
	ctx := context.Background()

	refused := []struct{ sql, message string }{
		{"BEGIN ISOLATION LEVEL SERIALIZABLE", "Unsupported isolation level: SERIALIZABLE"},
		{"begin transaction isolation level read committed", "Unsupported isolation level: READ COMMITTED"},
		{"BEGIN READ ONLY, ISOLATION LEVEL READ UNCOMMITTED", "Unsupported isolation level: READ UNCOMMITTED"},
		{"START TRANSACTION ISOLATION LEVEL SERIALIZABLE", "Unsupported isolation level: SERIALIZABLE"},
		{"SET TRANSACTION ISOLATION LEVEL SERIALIZABLE", "SET TRANSACTION not supported"},
		{"SET SESSION CHARACTERISTICS AS TRANSACTION ISOLATION LEVEL SERIALIZABLE", "SET SESSION CHARACTERISTICS not supported"},
	}
	for _, tt := range refused {
		t.Run(tt.sql, func(t *testing.T) { checkRefused(t, conn, tt.sql, tt.message) })
	}

	t.Run("pgx BeginTx", func(t *testing.T) {
		for _, level := range []pgx.TxIsoLevel{pgx.Serializable, pgx.ReadCommitted, pgx.ReadUncommitted} {
			_, err := conn.BeginTx(ctx, pgx.TxOptions{IsoLevel: level})
			wantRefusal(t, err, "Unsupported isolation level: "+strings.ToUpper(string(level)))
			if status := conn.PgConn().TxStatus(); status != 'I' {
				t.Fatalf("TxStatus after a refused BeginTx = %c, want I", status)
			}
		}
		for _, opts := range []pgx.TxOptions{{}, {IsoLevel: pgx.RepeatableRead}, {IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly}} {
			tx, err := conn.BeginTx(ctx, opts)
			if err != nil {
				t.Fatalf("BeginTx(%+v): %v", opts, err)
			}
			if got := queryString(t, conn, "SHOW transaction_isolation"); got != "repeatable read" {
				t.Fatalf("transaction_isolation = %q, want repeatable read", got)
			}
			if err := tx.Commit(ctx); err != nil {
				t.Fatalf("commit: %v", err)
			}
		}
	})

	t.Run("repeatable read and other modes work", func(t *testing.T) {
		for _, sql := range []string{
			"BEGIN", "BEGIN ISOLATION LEVEL REPEATABLE READ", "BEGIN READ ONLY", "BEGIN READ WRITE",
			"START TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY", "BEGIN WORK NOT DEFERRABLE",
		} {
			for _, p := range protocols {
				if err := p.run(ctx, conn, sql); err != nil {
					t.Fatalf("%s %q: %v", p.name, sql, err)
				}
				if status := conn.PgConn().TxStatus(); status != 'T' {
					t.Fatalf("%s %q: TxStatus = %c, want T", p.name, sql, status)
				}
				if _, err := conn.Exec(ctx, "COMMIT"); err != nil {
					t.Fatalf("COMMIT: %v", err)
				}
			}
		}
	})
}

func TestFidelitySetConfig(t *testing.T) {
	e := startEmulator(t, nil)
	conn := e.connectPgx(t, "admin")
	ctx := context.Background()
	timeoutBefore := queryString(t, conn, "SHOW statement_timeout")

	refused := []struct{ sql, message string }{
		{"SELECT set_config('statement_timeout', '1', false)", `setting configuration parameter "statement_timeout" not supported`},
		{"SELECT pg_catalog.set_config('statement_timeout', '1', true)", `setting configuration parameter "statement_timeout" not supported`},
		{`select "set_config"('Lock_Timeout', '1', false)`, `setting configuration parameter "Lock_Timeout" not supported`},
		{"SELECT 1 WHERE SET_CONFIG('default_transaction_isolation', 'serializable', false) IS NOT NULL",
			`setting configuration parameter "default_transaction_isolation" not supported`},
		{"SELECT set_config('search_path', 'public', false), set_config('role', 'app', false)", `setting configuration parameter "role" not supported`},
		{"SELECT set_config('statement' || '_timeout', '1', false)", "set_config() with a parameter name that is not a string literal not supported"},
	}
	for _, tt := range refused {
		t.Run(tt.sql, func(t *testing.T) { checkRefused(t, conn, tt.sql, tt.message) })
	}

	t.Run("a parameter as the name", func(t *testing.T) {
		_, err := conn.Exec(ctx, "SELECT set_config($1, $2, false)", "statement_timeout", "1")
		wantRefusal(t, err, "set_config() with a parameter name that is not a string literal not supported")
		queryString(t, conn, "SELECT 'still here'")
	})

	if got := queryString(t, conn, "SHOW statement_timeout"); got != timeoutBefore {
		t.Fatalf("statement_timeout = %q after refused set_config calls, want %q", got, timeoutBefore)
	}

	t.Run("allowed names work", func(t *testing.T) {
		for _, p := range protocols {
			if err := p.run(ctx, conn, "SELECT set_config('search_path', 'fidelity, public', false)"); err != nil {
				t.Fatalf("%s: %v", p.name, err)
			}
		}
		if got := queryString(t, conn, "SHOW search_path"); got != "fidelity, public" {
			t.Fatalf("search_path = %q, want fidelity, public", got)
		}
		if got := queryString(t, conn, "SELECT pg_catalog.set_config('TimeZone', 'UTC', false)"); got != "UTC" {
			t.Fatalf("set_config TimeZone = %q", got)
		}
		if got := queryString(t, conn, "SELECT set_config('enable_seqscan', 'off', false)"); got != "off" {
			t.Fatalf("set_config enable_seqscan = %q", got)
		}
		if got := queryString(t, conn, "SELECT current_setting('statement_timeout')"); got != timeoutBefore {
			t.Fatalf("current_setting = %q", got)
		}
	})
}

func TestFidelityUnsupportedStatements(t *testing.T) {
	e := startEmulator(t, nil)
	conn := e.connectPgx(t, "admin") // a superuser on the real PostgreSQL: nothing fails there for want of privilege
	ctx := context.Background()
	// One DDL statement per transaction, as on DSQL.
	for _, q := range []string{"DROP TABLE IF EXISTS fid_t", "CREATE TABLE fid_t (a int)", "DROP FUNCTION IF EXISTS fid_sql()"} {
		if _, err := conn.Exec(ctx, q); err != nil {
			t.Fatalf("setup: %s: %v", q, err)
		}
	}
	copyFile := filepath.Join(t.TempDir(), "copy-out")

	refused := []struct{ sql, message string }{
		{"CREATE EXTENSION IF NOT EXISTS pgcrypto", "CREATE EXTENSION not supported"},
		{"ALTER EXTENSION plpgsql UPDATE", "ALTER EXTENSION not supported"},
		{"DROP EXTENSION IF EXISTS plpgsql", "DROP EXTENSION not supported"},
		{"ALTER SYSTEM SET work_mem = '64MB'", "ALTER SYSTEM not supported"},
		{"CREATE DATABASE fid_other", "CREATE DATABASE not supported"},
		{"ALTER DATABASE dsqlsim SET work_mem = '64MB'", "ALTER DATABASE not supported"},
		{"DROP DATABASE IF EXISTS fid_other", "DROP DATABASE not supported"},
		{"CREATE TABLESPACE fid_ts LOCATION '/tmp'", "CREATE TABLESPACE not supported"},
		{"VACUUM fid_t", "VACUUM not supported"},
		{"VACUUM (ANALYZE) fid_t", "VACUUM not supported"},
		{"CREATE FUNCTION fid_trg() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RETURN NEW; END $$",
			"CREATE FUNCTION with LANGUAGE plpgsql not supported"},
		{"CREATE OR REPLACE PROCEDURE fid_p() AS $$ BEGIN NULL; END $$ LANGUAGE plpgsql", "CREATE PROCEDURE with LANGUAGE plpgsql not supported"},
		{"CREATE TRIGGER fid_trg BEFORE INSERT ON fid_t FOR EACH ROW EXECUTE FUNCTION suppress_redundant_updates_trigger()",
			"CREATE TRIGGER not supported"},
		{"CREATE EVENT TRIGGER fid_et ON ddl_command_start EXECUTE FUNCTION pg_catalog.pg_event_trigger_ddl_commands()",
			"CREATE EVENT TRIGGER not supported"},
		{"CREATE MATERIALIZED VIEW fid_mv AS SELECT 1", "CREATE MATERIALIZED VIEW not supported"},
		{"CREATE TABLE fid_part (a int) PARTITION BY RANGE (a)", "CREATE TABLE with PARTITION BY not supported"},
		{"CREATE TABLE fid_child (b int) INHERITS (fid_t)", "CREATE TABLE with INHERITS not supported"},
		{"DO $$ BEGIN CREATE TABLE fid_do (a int); END $$", "DO not supported"},
		{"COPY fid_t TO '" + copyFile + "'", "COPY TO a file not supported"},
		{"COPY (SELECT 1) TO PROGRAM 'touch " + copyFile + "'", "COPY TO PROGRAM not supported"},
		{"COPY fid_t FROM '/etc/hostname'", "COPY FROM a file not supported"},
		{"COPY fid_t FROM PROGRAM 'echo 1'", "COPY FROM PROGRAM not supported"},
	}
	for _, tt := range refused {
		t.Run(tt.sql, func(t *testing.T) { checkRefused(t, conn, tt.sql, tt.message) })
	}

	t.Run("nothing ran", func(t *testing.T) {
		checks := []struct{ what, sql string }{
			{"extension pgcrypto", "SELECT count(*)::text FROM pg_extension WHERE extname = 'pgcrypto'"},
			{"database fid_other", "SELECT count(*)::text FROM pg_database WHERE datname = 'fid_other'"},
			{"tablespace fid_ts", "SELECT count(*)::text FROM pg_tablespace WHERE spcname = 'fid_ts'"},
			{"function fid_trg or procedure fid_p", "SELECT count(*)::text FROM pg_proc WHERE proname IN ('fid_trg', 'fid_p')"},
			{"trigger fid_trg", "SELECT count(*)::text FROM pg_trigger WHERE tgname = 'fid_trg'"},
			{"event trigger fid_et", "SELECT count(*)::text FROM pg_event_trigger WHERE evtname = 'fid_et'"},
			{"relations fid_mv, fid_do, fid_part, fid_child", "SELECT count(*)::text FROM pg_class WHERE relname IN ('fid_mv', 'fid_do', 'fid_part', 'fid_child')"},
			{"ALTER SYSTEM", "SELECT count(*)::text FROM pg_file_settings WHERE name = 'work_mem' AND sourcefile LIKE '%postgresql.auto.conf'"},
			{"ALTER DATABASE", "SELECT count(*)::text FROM pg_db_role_setting s JOIN pg_database d ON d.oid = s.setdatabase WHERE d.datname = 'dsqlsim'"},
		}
		for _, c := range checks {
			if got := queryString(t, conn, c.sql); got != "0" {
				t.Errorf("%s: %s rows, want 0: the refused statement ran", c.what, got)
			}
		}
		if got := queryString(t, conn, "SELECT count(*)::text FROM pg_extension WHERE extname = 'plpgsql'"); got != "1" {
			t.Errorf("extension plpgsql was dropped")
		}
		if _, err := os.Stat(copyFile); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("COPY TO a file or program wrote %s (stat: %v)", copyFile, err)
		}
	})

	t.Run("a multi-statement query stops at the refusal", func(t *testing.T) {
		results, err := conn.PgConn().Exec(ctx, "SELECT 'before'; VACUUM; SELECT 'after'").ReadAll()
		wantRefusal(t, err, "VACUUM not supported")
		if len(results) != 1 || string(results[0].Rows[0][0]) != "before" {
			t.Fatalf("results before the refusal = %+v, want only 'before'", results)
		}
	})

	t.Run("what DSQL runs still runs", func(t *testing.T) {
		for _, sql := range []string{
			"ANALYZE fid_t",
			"CREATE FUNCTION fid_sql() RETURNS int LANGUAGE sql AS $$ SELECT 41 + 1 $$",
			"CREATE OR REPLACE FUNCTION fid_sql() RETURNS int LANGUAGE sql IMMUTABLE RETURN 42",
		} {
			if _, err := conn.Exec(ctx, sql); err != nil {
				t.Fatalf("%s: %v", sql, err)
			}
		}
		if got := queryString(t, conn, "SELECT fid_sql()::text"); got != "42" {
			t.Fatalf("fid_sql() = %s", got)
		}
		tag, err := conn.PgConn().CopyFrom(ctx, strings.NewReader("1\n2\n"), "COPY fid_t FROM STDIN")
		if err != nil || tag.RowsAffected() != 2 {
			t.Fatalf("COPY FROM STDIN: %v %v", tag, err)
		}
		var out strings.Builder
		if _, err := conn.PgConn().CopyTo(ctx, &out, "COPY (SELECT a FROM fid_t ORDER BY a) TO STDOUT"); err != nil || out.String() != "1\n2\n" {
			t.Fatalf("COPY TO STDOUT: %q %v", out.String(), err)
		}
		for _, q := range []string{"DROP FUNCTION fid_sql()", "DROP TABLE fid_t"} {
			if _, err := conn.Exec(ctx, q); err != nil {
				t.Fatalf("cleanup: %s: %v", q, err)
			}
		}
	})
}

func TestFidelityServerVersion(t *testing.T) {
	e := startEmulator(t, nil)
	conn := e.connectPgx(t, "app")
	if got := conn.PgConn().ParameterStatus("server_version"); !strings.HasPrefix(got, "16.") {
		t.Fatalf("server_version in the handshake = %q, want 16.x as DSQL reports", got)
	}
	// Other parameters pass unchanged.
	if got := conn.PgConn().ParameterStatus("server_encoding"); got != "UTF8" {
		t.Fatalf("server_encoding = %q, want UTF8", got)
	}
	// Not rewritten: what the real PostgreSQL says when asked in SQL.
	t.Logf("SHOW server_version = %s (the real PostgreSQL's)", queryString(t, conn, "SHOW server_version"))
}

func TestFidelityStrictTokenExpiry(t *testing.T) {
	clock := &testClock{}
	e := startEmulator(t, func(c *dsqlsim.Config) {
		c.Now = clock.Now
		c.ClockSkew = 0 // the default
	})
	tests := []struct {
		name    string
		advance time.Duration // of the emulator's clock, after minting a 15-minute token
		reason  dsqlsim.TokenReason
	}{
		{"20 s past expiry", 15*time.Minute + 20*time.Second, ""},
		{"35 s past expiry", 15*time.Minute + 35*time.Second, dsqlsim.ReasonExpired},
		{"4 minutes past expiry", 15*time.Minute + 4*time.Minute, dsqlsim.ReasonExpired},
		{"signed 20 s ahead", -20 * time.Second, ""},
		{"signed 40 s ahead", -40 * time.Second, dsqlsim.ReasonNotYetValid},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := e.connConfig(t, dsqlsim.TestHost, "app", "direct")
			clock.Advance(tt.advance)
			defer clock.Reset()
			_, err := connectConfig(t, cfg)
			if tt.reason == "" {
				if err != nil {
					t.Fatalf("connect: %v", err)
				}
				return
			}
			pgErr := wantPgError(t, err, "28000", "IAM authentication failed")
			if pgErr.Detail != string(tt.reason) {
				t.Fatalf("detail = %q, want %q", pgErr.Detail, tt.reason)
			}
		})
	}
}
