package e2e

import (
	"context"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/dsqlgate/dsqlgate/config"
	"github.com/dsqlgate/dsqlgate/internal/harness"
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

// waitNotification reads c while it is idle until a notification arrives
// or d passes, and returns the notifications seen.
func waitNotification(t *testing.T, c *isoClient, d time.Duration) []string {
	t.Helper()
	c.conn.SetReadDeadline(time.Now().Add(d))
	defer c.conn.SetReadDeadline(time.Time{})
	for len(c.notifications) == 0 {
		msg, err := c.next()
		if err != nil {
			break
		}
		if _, ok := msg.(*pgproto3.NotificationResponse); !ok {
			t.Errorf("unexpected %s while idle", msgSig(msg))
		}
	}
	got := c.notifications
	c.notifications = nil
	return got
}

// TestListenNotifySessionMode: in session mode a notification that
// arrives while the client is idle reaches it at once, and the upstream,
// with its LISTEN registration, stays the client's: later notifications
// arrive too, and queries run on the same backend. When that backend is
// terminated while the client listens, the client is told (its
// registrations are gone), as PostgreSQL's own client would be.
func TestListenNotifySessionMode(t *testing.T) {
	st, _ := isoStack(t, true, nil, func(c *config.Config) {
		c.Routes[0].Pool.Size = 3
		c.Routes[0].Pool.Mode = config.PoolSession
	})
	ctx := testCtx(t, time.Minute)
	a := isoLogin(t, st.Gateway.Addr, st.User, st.Password)
	b := isoLogin(t, st.Gateway.Addr, st.User, st.Password)
	pid := func() string {
		rows, code, err := a.query("select pg_backend_pid()")
		if err != nil || code != "" || len(rows) != 1 {
			t.Fatalf("pg_backend_pid: %v %s %v", rows, code, err)
		}
		return rows[0]
	}
	if _, code, err := a.query("LISTEN dsg_chan"); err != nil || code != "" {
		t.Fatalf("LISTEN: %s %v", code, err)
	}
	before := pid()
	for i := range 3 {
		if _, code, err := b.query(fmt.Sprintf("NOTIFY dsg_chan, 'hello %d'", i)); err != nil || code != "" {
			t.Fatalf("NOTIFY: %s %v", code, err)
		}
		got := waitNotification(t, a, 5*time.Second)
		if want := fmt.Sprintf("dsg_chan: hello %d", i); !slices.Equal(got, []string{want}) {
			t.Fatalf("notification %d while idle: got %q, want %q", i, got, want)
		}
	}
	if after := pid(); after != before {
		t.Fatalf("the listening client's upstream changed: backend %s, then %s", before, after)
	}
	// A notification that arrives while the client sends a statement (no
	// watcher then) still reaches it.
	if _, code, err := b.query("NOTIFY dsg_chan, 'racing'"); err != nil || code != "" {
		t.Fatal(code, err)
	}
	if rows, code, err := a.query("select 7"); err != nil || code != "" || !slices.Equal(rows, []string{"7"}) {
		t.Fatalf("select 7: %v %s %v", rows, code, err)
	}
	if got := waitNotification(t, a, 5*time.Second); !slices.Equal(got, []string{"dsg_chan: racing"}) {
		t.Fatalf("notification around a statement: %q", got)
	}

	// A pgx client waiting for a notification without sending anything.
	pc, err := pgx.Connect(ctx, isoURL(st, st.User, st.Password))
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close(ctx)
	if _, err := pc.Exec(ctx, "listen pgx_chan"); err != nil {
		t.Fatal(err)
	}
	notified := make(chan struct{})
	go func() {
		defer close(notified)
		time.Sleep(100 * time.Millisecond)
		b.query("NOTIFY pgx_chan, 'x'")
	}()
	wctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	n, err := pc.WaitForNotification(wctx)
	<-notified // b is used again below
	if err != nil || n.Channel != "pgx_chan" || n.Payload != "x" {
		t.Fatalf("pgx WaitForNotification: %v %+v", err, n)
	}

	// The backend is terminated while the client listens.
	direct := pgDirect(t, st)
	if _, err := direct.Exec(ctx, "select pg_terminate_backend($1::int)", before); err != nil {
		t.Fatal(err)
	}
	a.conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	var fatal string
	for {
		msg, err := a.next()
		if err != nil {
			break
		}
		if e, ok := msg.(*pgproto3.ErrorResponse); ok && e.Severity == "FATAL" {
			fatal = e.Code
		}
	}
	if fatal == "" {
		t.Fatal("the listening client was not told that its upstream ended")
	}
	// Everyone else goes on.
	if rows, code, err := b.query("select 1"); err != nil || code != "" || !slices.Equal(rows, []string{"1"}) {
		t.Fatalf("another client afterwards: %v %s %v", rows, code, err)
	}
}

// TestTransactionModeSessionObjects: in transaction pool mode on a
// PostgreSQL route, what would outlive its transaction on an upstream that
// the client may not get back is refused with an error that names the
// pool mode, what lasts one transaction works, SQL PREPARE lasts its
// transaction, and no client receives a notification it did not ask for.
func TestTransactionModeSessionObjects(t *testing.T) {
	st, _ := isoStack(t, true, nil, func(c *config.Config) {
		c.Routes[0].Pool.Size = 1
		c.Routes[0].Pool.Mode = config.PoolTransaction
	})
	a := isoLogin(t, st.Gateway.Addr, st.User, st.Password)
	refused := func(sql string) {
		t.Helper()
		a.send(&pgproto3.Query{String: sql})
		a.conn.SetReadDeadline(time.Now().Add(10 * time.Second))
		defer a.conn.SetReadDeadline(time.Time{})
		var got *pgproto3.ErrorResponse
		for {
			msg, err := a.next()
			if err != nil {
				t.Fatalf("%s: %v", sql, err)
			}
			if e, ok := msg.(*pgproto3.ErrorResponse); ok && got == nil {
				got = e
			}
			if _, ok := msg.(*pgproto3.ReadyForQuery); ok {
				break
			}
		}
		if got == nil || got.Code != "0A000" || !strings.Contains(got.Message, "transaction pool mode") || !strings.Contains(got.Hint, "pool.mode: session") {
			t.Fatalf("%s: want 0A000 naming transaction pool mode with a hint, got %+v", sql, got)
		}
	}
	works := func(sqls ...string) []string {
		t.Helper()
		var last []string
		for _, sql := range sqls {
			rows, code, err := a.query(sql)
			if err != nil || code != "" {
				t.Fatalf("%s: %s %v", sql, code, err)
			}
			last = rows
		}
		return last
	}
	for _, sql := range []string{
		"LISTEN ch",
		"create temp table tt (x int)",
		"CREATE TEMPORARY TABLE tt2 AS SELECT 1 AS x",
		"create temp view tv as select 1",
		"declare c cursor with hold for select 1",
		"select pg_advisory_lock(1)",
		"select 1, pg_try_advisory_lock(1, 2)",
	} {
		refused(sql)
	}
	// Within one transaction.
	if got := works("begin", "create temp table td (x int) on commit drop", "insert into td values (5)", "select x from td"); !slices.Equal(got, []string{"5"}) {
		t.Fatalf("temp table on commit drop: %v", got)
	}
	works("commit")
	if got := works("begin", "declare c cursor for select 7", "fetch c"); !slices.Equal(got, []string{"7"}) {
		t.Fatalf("cursor: %v", got)
	}
	works("commit", "begin", "select pg_advisory_xact_lock(1)", "commit")
	if got := works("begin", "prepare p as select 11", "execute p"); !slices.Equal(got, []string{"11"}) {
		t.Fatalf("prepare/execute: %v", got)
	}
	works("commit")
	// The PREPARE went with its transaction: EXECUTE says why, and the
	// name is free again (one upstream: it would still be there).
	a.send(&pgproto3.Query{String: "execute p"})
	var e *pgproto3.ErrorResponse
	a.conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	for {
		msg, err := a.next()
		if err != nil {
			t.Fatal(err)
		}
		if m, ok := msg.(*pgproto3.ErrorResponse); ok {
			e = m
		}
		if _, ok := msg.(*pgproto3.ReadyForQuery); ok {
			break
		}
	}
	a.conn.SetReadDeadline(time.Time{})
	if e == nil || e.Code != "26000" || !strings.Contains(e.Hint, "transaction pool mode") {
		t.Fatalf("EXECUTE in a later transaction: %+v", e)
	}
	if got := works("prepare p as select 12", "select count(*) from pg_prepared_statements where name = 'p'"); !slices.Equal(got, []string{"0"}) {
		t.Fatalf("an autocommit PREPARE left its statement on the upstream: %v", got)
	}
	// A SQL DEALLOCATE of the client's own statement reaches PostgreSQL.
	works("begin", "prepare q as select 1", "deallocate q", "commit")

	// A registration made where the gateway cannot see it (dynamic SQL)
	// delivers nothing to anyone.
	works("do $$ begin execute 'listen sneaky'; end $$", "notify sneaky, 'x'", "select 1")
	if len(a.notifications) > 0 {
		t.Fatalf("a transaction-mode client received notifications: %v", a.notifications)
	}
}

// TestBeginIsolationLevel: on a DSQL route a transaction runs at
// REPEATABLE READ, and SHOW transaction_isolation says so; BEGIN or START
// TRANSACTION asking for another level is refused (as DSQL refuses it),
// not run at that level upstream while SHOW says otherwise.
func TestBeginIsolationLevel(t *testing.T) {
	c := isoLogin(t, shared.Gateway.Addr, shared.User, shared.Password)
	for _, q := range []string{
		"BEGIN ISOLATION LEVEL SERIALIZABLE",
		"begin transaction read write, isolation level read committed",
		"START TRANSACTION ISOLATION /* x */ LEVEL READ UNCOMMITTED",
	} {
		if _, code, err := c.query(q); err != nil || code != "0A000" || c.status != 'I' {
			t.Errorf("%s: SQLSTATE %q, status %c, %v; want 0A000 outside a transaction", q, code, c.status, err)
		}
	}
	for _, q := range []string{"BEGIN ISOLATION LEVEL REPEATABLE READ", "BEGIN", "START TRANSACTION READ ONLY"} {
		if _, code, err := c.query(q); err != nil || code != "" {
			t.Fatalf("%s: %s %v", q, code, err)
		}
		rows, code, err := c.query("SHOW transaction_isolation")
		if err != nil || code != "" || !slices.Equal(rows, []string{"repeatable read"}) {
			t.Errorf("%s; SHOW transaction_isolation: %v %s %v", q, rows, code, err)
		}
		c.query("COMMIT")
	}
}

// TestDeadUpstreamsAccounted: an idle upstream whose backend ends leaves
// SHOW POOLS' idle count within the pool's maintenance tick, not at the
// next query, and a session-mode client's swap of its dead reserved
// upstream counts in dsqlgate_upstream_replacements_total.
func TestDeadUpstreamsAccounted(t *testing.T) {
	for _, mode := range []string{config.PoolTransaction, config.PoolSession} {
		t.Run(mode, func(t *testing.T) {
			st, pw := isoStack(t, true, []string{isoAdmin}, func(c *config.Config) {
				c.Routes[0].Pool.Mode = mode
				c.Admin.Users = []string{isoAdmin}
			})
			admin := (&url.URL{Scheme: "postgres", User: url.UserPassword(isoAdmin, pw[isoAdmin]), Host: st.Gateway.Addr,
				Path: "/dsqlgate", RawQuery: "sslmode=disable"}).String()
			ctx := testCtx(t, time.Minute)
			direct := pgDirect(t, st)
			lost := func() float64 {
				return harness.Scrape(t, st.Gateway.OpsAddr)[`dsqlgate_upstream_replacements_total{reason="lost_idle",route="postgres"}`]
			}
			a := isoLogin(t, st.Gateway.Addr, st.User, st.Password)
			if _, code, err := a.query("select 1"); err != nil || code != "" {
				t.Fatal(code, err)
			}
			if mode == config.PoolTransaction {
				if idle := column(adminPsql(t, st, admin, "SHOW POOLS"), "sv_idle"); !slices.Equal(idle, []string{"1"}) {
					t.Fatalf("sv_idle before: %v", idle)
				}
			}
			before := lost()
			freshUpstreams(t, ctx, direct)
			if mode == config.PoolTransaction {
				var idle []string
				for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
					if idle = column(adminPsql(t, st, admin, "SHOW POOLS"), "sv_idle"); slices.Equal(idle, []string{"0"}) {
						break
					}
				}
				if !slices.Equal(idle, []string{"0"}) {
					t.Fatalf("SHOW POOLS still counts the dead upstream as idle: sv_idle %v", idle)
				}
			} else if rows, code, err := a.query("select 2"); err != nil || code != "" || !slices.Equal(rows, []string{"2"}) {
				t.Fatalf("after the reserved upstream died: %v %s %v", rows, code, err)
			}
			if after := lost(); after <= before {
				t.Fatalf("lost_idle replacements: %v before, %v after", before, after)
			}
		})
	}
}

// TestBackendFatalInSessionMode: in session mode on a PostgreSQL route a
// client has its backend to itself, and when that backend ends its work
// with a FATAL error the client sees the FATAL and its connection ends, as
// on PostgreSQL. In transaction mode the gateway keeps the client: the
// statement's outcome is reported (08007) and the next one runs elsewhere.
func TestBackendFatalInSessionMode(t *testing.T) {
	for _, mode := range []string{config.PoolSession, config.PoolTransaction} {
		t.Run(mode, func(t *testing.T) {
			st, _ := isoStack(t, true, nil, func(c *config.Config) { c.Routes[0].Pool.Mode = mode })
			a := isoLogin(t, st.Gateway.Addr, st.User, st.Password)
			a.send(&pgproto3.Query{String: "select pg_terminate_backend(pg_backend_pid())"})
			a.conn.SetReadDeadline(time.Now().Add(10 * time.Second))
			var sigs []string
			var err error
			for {
				var msg pgproto3.BackendMessage
				if msg, err = a.next(); err != nil {
					break
				}
				sigs = append(sigs, msgSig(msg))
				if _, ok := msg.(*pgproto3.ReadyForQuery); ok {
					break
				}
			}
			a.conn.SetReadDeadline(time.Time{})
			switch mode {
			case config.PoolSession:
				if !slices.Contains(sigs, "ErrorResponse FATAL 57P01") || err == nil {
					t.Fatalf("session mode: %v, then %v; want FATAL 57P01 and the connection closed", sigs, err)
				}
			default:
				if !slices.Contains(sigs, "ErrorResponse ERROR 08007") || err != nil {
					t.Fatalf("transaction mode: %v, %v; want ERROR 08007 and ReadyForQuery", sigs, err)
				}
				if rows, code, err := a.query("select 1"); err != nil || code != "" || !slices.Equal(rows, []string{"1"}) {
					t.Fatalf("the next statement: %v %s %v", rows, code, err)
				}
			}
		})
	}
}

// TestSessionModeStatementNames: in session mode on a PostgreSQL route a
// client's named statements keep its names upstream (pg_prepared_statements
// shows them, and a closed one is gone), as on PostgreSQL; the next client
// of that upstream sees none of them.
func TestSessionModeStatementNames(t *testing.T) {
	st, _ := isoStack(t, true, nil, func(c *config.Config) {
		c.Routes[0].Pool.Mode = config.PoolSession
		c.Routes[0].Pool.Size = 1
	})
	ctx := testCtx(t, time.Minute)
	conn, err := pgx.Connect(ctx, isoURL(st, st.User, st.Password))
	if err != nil {
		t.Fatal(err)
	}
	count := func(name string) int {
		t.Helper()
		var n int
		if err := conn.QueryRow(ctx, "select count(*) from pg_prepared_statements where name = $1", pgx.QueryExecModeSimpleProtocol, name).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	for _, name := range []string{"mine", "Mine too"} {
		if _, err := conn.Prepare(ctx, name, "select 42"); err != nil {
			t.Fatal(err)
		}
		if n := count(name); n != 1 {
			t.Fatalf("%q in pg_prepared_statements: %d, want 1", name, n)
		}
	}
	if err := conn.Deallocate(ctx, "mine"); err != nil {
		t.Fatal(err)
	}
	if n := count("mine"); n != 0 {
		t.Fatalf("after Close, %q in pg_prepared_statements: %d, want 0", "mine", n)
	}
	var v int
	if err := conn.QueryRow(ctx, "Mine too").Scan(&v); err != nil || v != 42 {
		t.Fatalf("the other statement: %v %d", err, v)
	}
	conn.Close(ctx)
	next, err := pgx.Connect(ctx, isoURL(st, st.User, st.Password))
	if err != nil {
		t.Fatal(err)
	}
	defer next.Close(ctx)
	var n int
	if err := next.QueryRow(ctx, "select count(*) from pg_prepared_statements", pgx.QueryExecModeSimpleProtocol).Scan(&n); err != nil || n != 0 {
		t.Fatalf("the next client sees %d prepared statements (%v)", n, err)
	}
}
