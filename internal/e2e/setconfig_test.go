package e2e

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// TestSetConfig: set_config() with literal arguments is transparent
// through the gateway on the DSQL route, in every protocol mode: a
// parameter DSQL pins is answered with its value (pgAdmin's bytea_output
// call), an emulated setting changes as SET does (SHOW sees it, it
// survives an upstream replacement, and statement_timeout bounds the next
// statement), and what cannot be emulated keeps DSQL's 0A000 with a hint.
func TestSetConfig(t *testing.T) {
	for _, mode := range execModes {
		t.Run(mode.String(), func(t *testing.T) {
			ctx := testCtx(t, time.Minute)
			conn := connect(t, shared, "sslmode=disable&default_query_exec_mode="+modeParam(mode))

			rows, err := conn.Query(ctx, "SELECT set_config('bytea_output','hex',false) FROM pg_show_all_settings() WHERE name = 'bytea_output'")
			if err != nil {
				t.Fatal(err)
			}
			got, err := pgx.CollectRows(rows, pgx.RowTo[string])
			if err != nil || len(got) != 1 || got[0] != "hex" {
				t.Fatalf("pgAdmin's set_config: %q, %v; want one row hex", got, err)
			}
			if f := rows.FieldDescriptions(); len(f) != 1 || f[0].Name != "set_config" {
				t.Fatalf("pgAdmin's set_config: columns %v, want set_config", f)
			}

			var v string
			if err := conn.QueryRow(ctx, "SELECT set_config('client_min_messages', 'warning', false)").Scan(&v); err != nil || v != "warning" {
				t.Fatalf("set_config(client_min_messages): %q, %v", v, err)
			}
			for _, when := range []string{"after set_config", "after an upstream replacement"} {
				if when != "after set_config" {
					shared.Emulator.KillAll()
				}
				if err := conn.QueryRow(ctx, "SHOW client_min_messages").Scan(&v); err != nil || v != "warning" {
					t.Fatalf("%s: client_min_messages %q, %v; want warning", when, v, err)
				}
			}
			// is_local true lasts only for its transaction, as SET LOCAL.
			tx, err := conn.Begin(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if err := tx.QueryRow(ctx, "SELECT set_config('client_min_messages', 'error', true)").Scan(&v); err != nil || v != "error" {
				t.Fatalf("set_config(client_min_messages, is_local): %q, %v", v, err)
			}
			if err := tx.Commit(ctx); err != nil {
				t.Fatal(err)
			}
			if err := conn.QueryRow(ctx, "SHOW client_min_messages").Scan(&v); err != nil || v != "warning" {
				t.Fatalf("after a local set_config: client_min_messages %q, %v; want warning", v, err)
			}

			// Refusals keep DSQL's 0A000, with the gateway's hint.
			for _, q := range []string{
				"SELECT set_config('bytea_output', 'escape', false)",
				"SELECT set_config('work_mem', '64MB', false)",
				"SELECT set_config('statement_timeout', '1s', false) FROM pg_class LIMIT 1",
			} {
				_, err := conn.Exec(ctx, q)
				var pgErr *pgconn.PgError
				if !errors.As(err, &pgErr) || pgErr.Code != "0A000" || !strings.Contains(pgErr.Hint, "set_config") {
					t.Fatalf("%s: %v (hint %q), want 0A000 with the gateway's hint", q, err, hintOf(err))
				}
			}

			// statement_timeout set by set_config bounds the next statement.
			if err := conn.QueryRow(ctx, "SELECT set_config('statement_timeout','50ms',false)").Scan(&v); err != nil || v != "50ms" {
				t.Fatalf("set_config(statement_timeout): %q, %v", v, err)
			}
			start := time.Now()
			_, err = conn.Exec(ctx, "SELECT pg_sleep(1)")
			if pgCode(err) != "57014" || time.Since(start) > 900*time.Millisecond {
				t.Fatalf("pg_sleep(1) under statement_timeout 50ms: %v after %v, want 57014 well before 1s", err, time.Since(start))
			}
			if err := conn.QueryRow(ctx, "SELECT set_config('statement_timeout', '0', false)").Scan(&v); err != nil || v != "0" {
				t.Fatalf("set_config(statement_timeout, 0): %q, %v", v, err)
			}
			if _, err := conn.Exec(ctx, "SELECT pg_sleep(0.1)"); err != nil {
				t.Fatalf("pg_sleep(0.1) after statement_timeout 0: %v", err)
			}
		})
	}
}

// TestSetConfigPsql: the same through psql, each line its own query.
func TestSetConfigPsql(t *testing.T) {
	out, err := psql(t, shared, "SELECT set_config('statement_timeout','50ms',false);\nSELECT pg_sleep(1);\n")
	if err == nil || !strings.Contains(out, "canceling statement due to statement timeout") {
		t.Fatalf("psql: %v\n%s\nwant the statement timeout", err, out)
	}
	out, err = psql(t, shared, "", "-At", "-c", "SELECT set_config('bytea_output','hex',false) FROM pg_show_all_settings() WHERE name = 'bytea_output'")
	if err != nil || strings.TrimSpace(out) != "hex" {
		t.Fatalf("psql: %v\n%s\nwant hex", err, out)
	}
}
