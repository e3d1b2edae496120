package e2e

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// TestClientEncodingRefused: a client encoding in which a multibyte
// character can contain a backslash or quote (SJIS here) is refused with
// 0A000 and a hint naming UTF8, whether asked for with SET (simple Query)
// or set_config() (extended protocol), and the session goes on in UTF8;
// asked for in the startup parameters, the connection fails with a FATAL
// 0A000.
func TestClientEncodingRefused(t *testing.T) {
	ctx := testCtx(t, time.Minute)
	conn := connect(t, shared, "")

	check := func(what string, err error) {
		t.Helper()
		var pe *pgconn.PgError
		if !errors.As(err, &pe) || pe.Code != "0A000" || !strings.Contains(pe.Hint, "client_encoding UTF8") {
			t.Fatalf("%s: %v, want 0A000 with the UTF8 hint", what, err)
		}
	}
	_, err := conn.PgConn().Exec(ctx, "SET client_encoding='SJIS'").ReadAll()
	check("SET client_encoding='SJIS'", err)
	var v string
	err = conn.QueryRow(ctx, "SELECT set_config('client_encoding', 'Shift_JIS', false)").Scan(&v)
	check("set_config('client_encoding', 'Shift_JIS', false)", err)

	if err := conn.QueryRow(ctx, "SHOW client_encoding").Scan(&v); err != nil || v != "UTF8" {
		t.Fatalf("after the refusals: client_encoding %q, %v; want UTF8", v, err)
	}
	var n int
	if err := conn.QueryRow(ctx, "SELECT 1 + $1::int", 1).Scan(&n); err != nil || n != 2 {
		t.Fatalf("after the refusals: %d, %v", n, err)
	}

	cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	c2, err := pgx.Connect(cctx, shared.URL("sslmode=disable&options=-c%20client_encoding%3DSJIS"))
	if err == nil {
		c2.Close(ctx)
		t.Fatal("startup with client_encoding SJIS: connected")
	}
	var pe *pgconn.PgError
	if !errors.As(err, &pe) || pe.Code != "0A000" || pe.Severity != "FATAL" {
		t.Fatalf("startup with client_encoding SJIS: %v, want FATAL 0A000", err)
	}
}
