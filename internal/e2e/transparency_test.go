package e2e

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/dsqlgate/dsqlgate/config"
)

// Transparency tests: what a driver sees through the gateway is what it
// would see on PostgreSQL itself, where pooling does not have to differ.

// TestStalePreparedStatementAfterSchemaChange: a statement prepared before
// a schema change, then prepared again after it (by a new connection, or
// under a new name on the same one), works, as a fresh Parse does on
// PostgreSQL. The gateway's upstream copy of the text was planned against
// the old schema; it must not answer "cached plan must not change result
// type" (0A000) or "cache lookup failed for type" (XX000) for a statement
// the client prepared after the change. One upstream, so the copy is
// certainly there; both route kinds and both pool modes (on DSQL routes an
// upstream goes back to the pool with its statements in session mode too).
func TestStalePreparedStatementAfterSchemaChange(t *testing.T) {
	for _, kind := range isoKinds {
		for _, mode := range []string{config.PoolTransaction, config.PoolSession} {
			t.Run(kind.name+"/"+mode, func(t *testing.T) {
				st, _ := isoStack(t, kind.plain, nil, func(c *config.Config) {
					c.Routes[0].Pool.Size = 1
					c.Routes[0].Pool.Mode = mode
				})
				ctx := testCtx(t, 2*time.Minute)
				url := isoURL(st, st.User, st.Password)
				open := func() *pgx.Conn {
					t.Helper()
					conn, err := pgx.Connect(ctx, url)
					if err != nil {
						t.Fatal(err)
					}
					return conn
				}
				ddl := func(sqls ...string) {
					t.Helper()
					conn := open()
					defer conn.Close(ctx)
					for _, q := range sqls {
						if _, err := conn.Exec(ctx, q); err != nil {
							t.Fatalf("%s: %v", q, err)
						}
					}
				}
				const q = "select c from stale_t"
				ddl("drop table if exists stale_t", "create table stale_t (c int)", "insert into stale_t values (1)")

				// A new connection each time, so the statement is the
				// driver's fresh prepare of the same text.
				a := open()
				var n int
				if err := a.QueryRow(ctx, q).Scan(&n); err != nil || n != 1 {
					t.Fatalf("before the change: %v %d", err, n)
				}
				a.Close(ctx)
				ddl("drop table stale_t", "create table stale_t (c text)", "insert into stale_t values ('x')")
				b := open()
				defer b.Close(ctx)
				var s string
				if err := b.QueryRow(ctx, q).Scan(&s); err != nil || s != "x" {
					t.Fatalf("a new connection's prepare after the column's type changed: %v (SQLSTATE %s) %q", err, pgCode(err), s)
				}

				// The same connection, a new statement name.
				if _, err := b.Prepare(ctx, "s1", "select c, 1 as one from stale_t"); err != nil {
					t.Fatal(err)
				}
				if mode == config.PoolSession {
					// The DDL would wait for an upstream held by b.
					if _, err := b.Exec(ctx, "drop table stale_t"); err != nil {
						t.Fatal(err)
					}
					for _, q := range []string{"create table stale_t (c bigint)", "insert into stale_t values (7)"} {
						if _, err := b.Exec(ctx, q); err != nil {
							t.Fatal(err)
						}
					}
				} else {
					ddl("drop table stale_t", "create table stale_t (c bigint)", "insert into stale_t values (7)")
				}
				if _, err := b.Prepare(ctx, "s2", "select c, 1 as one from stale_t"); err != nil {
					t.Fatalf("a new name on the same connection: %v (SQLSTATE %s)", err, pgCode(err))
				}
				var big int64
				var one int
				if err := b.QueryRow(ctx, "s2").Scan(&big, &one); err != nil || big != 7 {
					t.Fatalf("s2: %v (SQLSTATE %s) %d", err, pgCode(err), big)
				}

				// A type dropped and created again: its OID changes.
				if kind.plain {
					if mode == config.PoolSession {
						b.Close(ctx)
					}
					ddl("create type stale_mood as enum ('sad', 'ok')", "create table stale_m (m stale_mood)",
						"insert into stale_m values ('ok')")
					const qm = "select m, m::text from stale_m"
					c := open()
					var m1, m2 string
					if err := c.QueryRow(ctx, qm).Scan(&m1, &m2); err != nil {
						t.Fatal(err)
					}
					c.Close(ctx)
					ddl("drop table stale_m", "drop type stale_mood", "create type stale_mood as enum ('ok', 'happy')",
						"create table stale_m (m stale_mood)", "insert into stale_m values ('happy')")
					d := open()
					defer d.Close(ctx)
					if err := d.QueryRow(ctx, qm).Scan(&m1, &m2); err != nil || m2 != "happy" {
						t.Fatalf("after the type was created again: %v (SQLSTATE %s) %q", err, pgCode(err), m2)
					}
				}
			})
		}
	}
}

// TestStalePreparedStatementPipelined: the raw form of a prepare the
// gateway cannot answer at once (a Parse sent while an earlier statement's
// replies are owed, then a Bind of it in the same batch) after the schema
// changed under the upstream's copy of the text.
func TestStalePreparedStatementPipelined(t *testing.T) {
	st, _ := isoStack(t, true, nil, func(c *config.Config) {
		c.Routes[0].Pool.Size = 1
		c.Routes[0].Pool.Mode = config.PoolTransaction
	})
	a := isoLogin(t, st.Gateway.Addr, st.User, st.Password)
	a.setup("create table stale_p (c int)", "insert into stale_p values (1)")
	prepare := func(name string) []pgproto3.FrontendMessage {
		return []pgproto3.FrontendMessage{
			&pgproto3.Parse{Name: name, Query: "select c from stale_p"},
			&pgproto3.Describe{ObjectType: 'S', Name: name},
			&pgproto3.Bind{PreparedStatement: name},
			&pgproto3.Execute{},
		}
	}
	// The upstream gets its copy of the text.
	got, err := a.play(append(prepare("p1"), &pgproto3.Sync{}), 10*time.Second)
	if err != nil || slices.ContainsFunc(got, isError) {
		t.Fatalf("first prepare: %v %v", got, err)
	}
	a.setup("drop table stale_p", "create table stale_p (c text)", "insert into stale_p values ('x')")
	// pg_sleep keeps a reply owed while the Parse arrives.
	msgs := []pgproto3.FrontendMessage{
		&pgproto3.Parse{Query: "select pg_sleep(0.05)"}, &pgproto3.Bind{}, &pgproto3.Execute{},
	}
	got, err = a.play(append(append(msgs, prepare("p2")...), &pgproto3.Sync{}), 10*time.Second)
	if err != nil || slices.ContainsFunc(got, isError) {
		t.Fatalf("a statement prepared after the change: %v %v", got, err)
	}
}

func isError(sig string) bool { return strings.HasPrefix(sig, "ErrorResponse") }
