package e2e

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"runtime"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/dsqlgate/dsqlgate/config"
	"github.com/dsqlgate/dsqlgate/internal/harness"
	"github.com/dsqlgate/dsqlgate/internal/pgtest"
	"github.com/dsqlgate/dsqlgate/internal/scram"
)

// Isolation tests: one client must never stall, see, change or cancel
// what belongs to another, and a client that misbehaves or vanishes must
// not hold on to the gateway's resources. Each test starts stacks of its
// own (isoStack), since most change the pool's size or break what they
// use when the gateway is wrong.

// Users the isolation stacks add besides the harness's demo user.
const (
	isoUserA = "iso_a"
	isoUserB = "iso_b"
	isoAdmin = "iso_ops"
)

// isoKinds are the two route kinds: through the DSQL emulator, and
// straight to PostgreSQL (kind postgres).
var isoKinds = []struct {
	name  string
	plain bool
}{{"dsql", false}, {"plain", true}}

// ---- 1 ----

// TestIsolationQueryAfterBatchError: after an error inside an
// extended-protocol batch PostgreSQL ignores every message up to the next
// Sync, a simple Query or a FunctionCall included, and answers the Sync
// with one ReadyForQuery. The gateway must answer exactly as PostgreSQL
// does (same message types and SQLSTATEs, compared with the stack's
// PostgreSQL itself), the session must go on, and repeating it on
// pool.size × 3 connections that then disconnect must leave the pool
// usable for another user within seconds. On both route kinds.
func TestIsolationQueryAfterBatchError(t *testing.T) {
	const poolSize = 3
	sequences := []struct {
		name string
		msgs []pgproto3.FrontendMessage
	}{
		{"Parse Bind Execute of 1/0, Query, Sync", []pgproto3.FrontendMessage{
			&pgproto3.Parse{Query: "SELECT 1/0"},
			&pgproto3.Bind{},
			&pgproto3.Execute{},
			&pgproto3.Query{String: "SELECT 1"},
			&pgproto3.Sync{},
		}},
		{"Bind of a missing statement, FunctionCall, Sync", []pgproto3.FrontendMessage{
			&pgproto3.Bind{PreparedStatement: "iso_no_such_statement"},
			&pgproto3.FunctionCall{Function: 1598}, // random()
			&pgproto3.Sync{},
		}},
	}
	for _, kind := range isoKinds {
		t.Run(kind.name, func(t *testing.T) {
			st, pw := isoStack(t, kind.plain, []string{isoUserA, isoUserB}, func(c *config.Config) {
				c.Routes[0].Pool.Size = poolSize
			})
			for _, seq := range sequences {
				want := pgReplies(t, st, seq.msgs)
				t.Logf("%s: PostgreSQL answers %v", seq.name, want)
				for i := range poolSize * 3 {
					c := isoLogin(t, st.Gateway.Addr, isoUserA, pw[isoUserA])
					got, err := c.play(seq.msgs, 5*time.Second)
					if err != nil {
						t.Errorf("%s, run %d: %v after %v; PostgreSQL answers %v (the gateway waits for a ReadyForQuery that never comes)", seq.name, i, err, got, want)
						c.conn.Close()
						break
					}
					if !slices.Equal(got, want) {
						t.Errorf("%s, run %d: the gateway answered %v, PostgreSQL answers %v", seq.name, i, got, want)
					}
					if rows, code, err := c.query("SELECT 2"); err != nil || code != "" || !slices.Equal(rows, []string{"2"}) {
						t.Errorf("%s, run %d: the batch was answered %v, but SELECT 2 afterwards: rows %v, SQLSTATE %q, %v (the session is stuck: the gateway waits for a ReadyForQuery PostgreSQL never sends)", seq.name, i, got, rows, code, err)
						c.conn.Close()
						break
					}
					if i%2 == 0 {
						c.close() // Terminate
					} else {
						c.conn.Close() // vanish
					}
				}
			}
			// Every upstream those sessions used must be back in the pool.
			start := time.Now()
			other, err := isoTryLogin(st.Gateway.Addr, isoUserB, pw[isoUserB], 5*time.Second)
			if err != nil {
				t.Fatalf("another user's login after the sequences: %v", err)
			}
			defer other.conn.Close()
			other.timeout = 5 * time.Second
			if rows, code, err := other.query("SELECT 1"); err != nil || code != "" || !slices.Equal(rows, []string{"1"}) {
				t.Errorf("another user's SELECT 1 after the sequences: rows %v, SQLSTATE %q, %v (after %v): the pool's upstreams are stuck", rows, code, err, time.Since(start).Round(time.Millisecond))
			}
		})
	}
}

// ---- 2 ----

// TestIsolationCloseFlood: a client parses a new named statement without
// Sync (the upstream owes a ParseComplete), then writes 4,000,000 Close
// messages without reading anything. The gateway must stay within a
// bounded amount of memory: the Go heap and stacks of the test process
// (the gateway runs in it) at most 100 MB above their size before the
// flood. (Not VmRSS, which the race detector's shadow memory inflates
// several times; RSS is logged, and a growth of 1 GB stops the flood in
// any case.) It stops reading a client it cannot answer, or ends it with
// FATAL 54000; either way another client's queries work during and after
// the flood.
func TestIsolationCloseFlood(t *testing.T) {
	const (
		total     = 4_000_000
		maxGrowth = 100 << 20 // Go heap and stacks
		maxRSS    = 1 << 30   // RSS: the machine's safety
		perWrite  = 1 << 16   // messages per write
	)
	st, _ := isoStack(t, false, nil, nil)
	ctx := testCtx(t, 5*time.Minute)

	// Another client's queries, during and after the flood.
	other := connect(t, st, "")
	var otherQueries atomic.Int64
	otherErr := make(chan error, 1)
	stopOther := make(chan struct{})
	otherDone := make(chan struct{})
	go func() {
		defer close(otherDone)
		for i := 0; ; i++ {
			select {
			case <-stopOther:
				return
			case <-time.After(100 * time.Millisecond):
			}
			qctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			var v int
			err := other.QueryRow(qctx, "SELECT $1::int + 1", i).Scan(&v)
			cancel()
			if err == nil && v != i+1 {
				err = fmt.Errorf("got %d, want %d", v, i+1)
			}
			if err != nil {
				otherErr <- fmt.Errorf("query %d: %w", i, err)
				return
			}
			otherQueries.Add(1)
		}
	}()

	c := isoLogin(t, st.Gateway.Addr, st.User, st.Password)
	if err := c.send(&pgproto3.Parse{Name: "iso_flood", Query: "SELECT 1"}); err != nil {
		t.Fatal(err)
	}
	runtime.GC()
	debug.FreeOSMemory()
	base, baseRSS := goMemory(), rss(t)

	closeMsg := []byte{'C', 0, 0, 0, 0, 'S'}
	closeMsg = append(closeMsg, "nosuch\x00"...)
	binary.BigEndian.PutUint32(closeMsg[1:], uint32(len(closeMsg)-1))
	chunk := bytes.Repeat(closeMsg, perWrite)
	var sent atomic.Int64
	writeErr := make(chan error, 1)
	go func() {
		for sent.Load() < total {
			n := min(perWrite, total-int(sent.Load()))
			c.conn.SetWriteDeadline(time.Now().Add(5 * time.Minute))
			if _, err := c.conn.Write(chunk[:n*len(closeMsg)]); err != nil {
				writeErr <- err
				return
			}
			sent.Add(int64(n))
		}
		_, err := c.conn.Write([]byte{'S', 0, 0, 0, 4}) // Sync
		writeErr <- err
	}()

	// Phase 1: nothing is read. It ends when the writer is done, when it
	// has been blocked for 3s (the gateway stopped reading: bounded), or
	// after 60s.
	peak, peakRSS := base, baseRSS
	tooBig := false
	checkMemory := func() {
		m, r := goMemory(), rss(t)
		peak, peakRSS = max(peak, m), max(peakRSS, r)
		if (m-base > maxGrowth || r-baseRSS > maxRSS) && !tooBig {
			tooBig = true
			t.Errorf("Go heap and stacks grew by %d MB (from %d MB), RSS by %d MB (from %d MB), after %d Close messages: the gateway buffers what it cannot deliver",
				(m-base)>>20, base>>20, (r-baseRSS)>>20, baseRSS>>20, sent.Load())
		}
	}
	var writerDone error
	writerFinished := false
	lastSent, lastMove := int64(-1), time.Now()
phase1:
	for start := time.Now(); time.Since(start) < 60*time.Second; {
		select {
		case writerDone = <-writeErr:
			writerFinished = true
			break phase1
		case <-time.After(50 * time.Millisecond):
		}
		checkMemory()
		if tooBig {
			c.conn.Close() // stop the flood before the machine runs out of memory
			break phase1
		}
		if n := sent.Load(); n != lastSent {
			lastSent, lastMove = n, time.Now()
		} else if time.Since(lastMove) > 3*time.Second {
			break phase1 // the gateway pushes back
		}
	}
	t.Logf("phase 1 (not reading): %d of %d Close messages written; Go heap and stacks %d MB → peak %d MB, RSS %d MB → peak %d MB", sent.Load(), total, base>>20, peak>>20, baseRSS>>20, peakRSS>>20)

	// Phase 2: read. The session answers everything (ParseComplete, one
	// CloseComplete per Close, ReadyForQuery), or ends with FATAL 54000.
	if !tooBig {
		type outcome struct {
			closes int
			sigs   []string
			err    error
		}
		read := make(chan outcome, 1)
		go func() {
			var o outcome
			c.conn.SetReadDeadline(time.Now().Add(3 * time.Minute))
			for {
				msg, err := c.fe.Receive()
				if err != nil {
					o.err = err
					break
				}
				if _, ok := msg.(*pgproto3.CloseComplete); ok {
					o.closes++
					continue
				}
				o.sigs = append(o.sigs, msgSig(msg))
				if _, ok := msg.(*pgproto3.ReadyForQuery); ok {
					break
				}
			}
			read <- o
		}()
		var o outcome
	phase2:
		for {
			select {
			case o = <-read:
				break phase2
			case <-time.After(50 * time.Millisecond):
				checkMemory()
				if tooBig {
					c.conn.Close()
				}
			}
		}
		if !writerFinished {
			select {
			case writerDone = <-writeErr:
			case <-time.After(10 * time.Second):
				c.conn.Close()
				writerDone = <-writeErr
			}
		}
		fatal54000 := slices.Contains(o.sigs, "ErrorResponse FATAL 54000")
		switch {
		case tooBig:
		case fatal54000:
			t.Logf("the gateway ended the flooding client with FATAL 54000 after %d CloseCompletes (%v)", o.closes, o.sigs)
		case o.err != nil:
			t.Errorf("the flooding client: %v after %d CloseCompletes and %v (writer: %v); want every answer or FATAL 54000", o.err, o.closes, o.sigs, writerDone)
		case o.closes != total || !slices.Equal(o.sigs, []string{"ParseComplete", "ReadyForQuery I"}):
			t.Errorf("the flooding client got %d CloseCompletes and %v, want %d and [ParseComplete ReadyForQuery I]", o.closes, o.sigs, total)
		}
	}
	c.conn.Close()
	t.Logf("Go heap and stacks before the flood %d MB, peak %d MB; RSS %d MB, peak %d MB", base>>20, peak>>20, baseRSS>>20, peakRSS>>20)

	// The other client went on during the flood and still works.
	close(stopOther)
	<-otherDone
	select {
	case err := <-otherErr:
		t.Errorf("another client during the flood: %v", err)
	default:
	}
	qctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	var v int
	if err := other.QueryRow(qctx, "SELECT 41 + 1").Scan(&v); err != nil || v != 42 {
		t.Errorf("another client after the flood: %d, %v", v, err)
	}
	t.Logf("the other client ran %d queries", otherQueries.Load())
}

// ---- 3 ----

// TestIsolationCrossUser: two gateway users A and B share a route to
// plain PostgreSQL with one upstream (pool size 1, transaction mode).
// Nothing A leaves on an upstream (temporary tables, role, WITH HOLD
// cursors, SQL and protocol prepared statements, LISTEN, advisory locks)
// may ever be visible to B or usable by B against A, whether A is still
// connected and idle or gone.
func TestIsolationCrossUser(t *testing.T) {
	st, pw := isoStack(t, true, []string{isoUserA, isoUserB}, func(c *config.Config) {
		c.Routes[0].Pool.Size = 1
		c.Routes[0].Pool.Mode = config.PoolTransaction
	})
	ctx := testCtx(t, 5*time.Minute)
	direct := pgDirect(t, st)
	if _, err := direct.Exec(ctx, `CREATE ROLE iso_evil; GRANT iso_evil TO postgres;
		CREATE TABLE public.t_iso2 (x int); INSERT INTO public.t_iso2 VALUES (1)`); err != nil {
		t.Fatal(err)
	}
	loginA := func(t *testing.T) *isoClient { return isoLogin(t, st.Gateway.Addr, isoUserA, pw[isoUserA]) }
	loginB := func(t *testing.T) *isoClient { return isoLogin(t, st.Gateway.Addr, isoUserB, pw[isoUserB]) }
	// Each case starts on a new upstream: whatever an earlier case left
	// on the old one does not spill into the next.
	fresh := func(t *testing.T) {
		t.Helper()
		freshUpstreams(t, ctx, direct)
	}

	t.Run("temporary tables", func(t *testing.T) {
		fresh(t)
		a := loginA(t)
		// Transaction mode refuses CREATE TEMP TABLE (without ON COMMIT
		// DROP); a DO block gets past what the gateway can see.
		a.setup(`DO $$ BEGIN CREATE TEMP TABLE t_iso (x int); INSERT INTO t_iso VALUES (42);
			CREATE TEMP TABLE t_iso2 (x int); INSERT INTO t_iso2 VALUES (666); END $$`)
		check := func(when string) {
			b := loginB(t)
			defer b.close()
			if rows, code, err := b.query("SELECT x FROM t_iso"); err != nil || code != "42P01" {
				t.Errorf("%s: B's SELECT x FROM t_iso: rows %v, SQLSTATE %q, %v; want 42P01 (A's temporary table is B's)", when, rows, code, err)
			}
			if rows, code, err := b.query("SELECT x FROM t_iso2"); err != nil || code != "" || !slices.Equal(rows, []string{"1"}) {
				t.Errorf("%s: B's SELECT x FROM t_iso2: rows %v, SQLSTATE %q, %v; want public.t_iso2's 1 (666 is A's temporary table)", when, rows, code, err)
			}
		}
		check("A connected and idle")
		a.close()
		check("A gone")
	})

	t.Run("role", func(t *testing.T) {
		for _, set := range []string{"SET ROLE iso_evil", "SELECT set_config('role', 'iso_evil', false)", "SET SESSION AUTHORIZATION iso_evil"} {
			fresh(t)
			a := loginA(t)
			a.setup(set)
			check := func(when string) {
				b := loginB(t)
				defer b.close()
				if rows, code, err := b.query("SELECT current_user || '/' || session_user"); err != nil || code != "" || !slices.Equal(rows, []string{"postgres/postgres"}) {
					t.Errorf("after A's %q, %s: B's current_user/session_user: rows %v, SQLSTATE %q, %v; want postgres/postgres", set, when, rows, code, err)
				}
			}
			check("A connected and idle")
			a.close()
			check("A gone")
		}
	})

	t.Run("WITH HOLD cursor", func(t *testing.T) {
		fresh(t)
		execPortal := []pgproto3.FrontendMessage{&pgproto3.Execute{Portal: "c_iso"}, &pgproto3.Sync{}}
		want := pgReplies(t, st, execPortal)
		a := loginA(t)
		a.setup("DECLARE c_iso CURSOR WITH HOLD FOR SELECT 1")
		check := func(when string) {
			b := loginB(t)
			defer b.close()
			if rows, code, err := b.query("FETCH c_iso"); err != nil || code != "34000" {
				t.Errorf("%s: B's FETCH c_iso: rows %v, SQLSTATE %q, %v; want 34000 (A's cursor is B's)", when, rows, code, err)
			}
			if got, err := b.play(execPortal, 10*time.Second); err != nil || !slices.Equal(got, want) {
				t.Errorf("%s: B's Execute of portal c_iso: %v %v; PostgreSQL answers %v", when, got, err, want)
			}
		}
		check("A connected and idle")
		a.close()
		check("A gone")
	})

	t.Run("SQL PREPARE", func(t *testing.T) {
		fresh(t)
		a := loginA(t)
		a.setup("PREPARE p_iso AS SELECT 1")
		check := func(when string) {
			b := loginB(t)
			defer b.close()
			if rows, code, err := b.query("EXECUTE p_iso"); err != nil || code != "26000" {
				t.Errorf("%s: B's EXECUTE p_iso: rows %v, SQLSTATE %q, %v; want 26000 (A's prepared statement is B's)", when, rows, code, err)
			}
		}
		check("A connected and idle")
		a.close()
		check("A gone")
	})

	t.Run("prepared statement hijack", func(t *testing.T) {
		fresh(t)
		const victimSQL = "SELECT $1::int + 0 AS victim_marker"
		victim, err := pgx.Connect(ctx, isoURL(st, isoUserA, pw[isoUserA])) // default mode: statements cached
		if err != nil {
			t.Fatal(err)
		}
		defer victim.Close(context.Background())
		use := func() (int, error) {
			qctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			defer cancel()
			var v int
			err := victim.QueryRow(qctx, victimSQL, 7).Scan(&v)
			return v, err
		}
		if v, err := use(); err != nil || v != 7 {
			t.Fatalf("A's statement: %d, %v", v, err)
		}
		b := loginB(t)
		defer b.close()
		rows, code, err := b.query("SELECT name || ' => ' || statement FROM pg_prepared_statements")
		if err != nil || code != "" {
			t.Fatalf("B's look at pg_prepared_statements: SQLSTATE %q, %v", code, err)
		}
		for _, r := range rows {
			if strings.Contains(r, "victim_marker") {
				t.Errorf("B sees A's prepared statement: %s", r)
			}
		}
		_, code, err = b.query(`DO $$
DECLARE r record;
BEGIN
	FOR r IN SELECT name FROM pg_prepared_statements LOOP
		EXECUTE format('DEALLOCATE %I', r.name);
		EXECUTE format('PREPARE %I(int) AS SELECT 666', r.name);
	END LOOP;
END $$`)
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("B's DO block replacing every prepared statement it sees: SQLSTATE %q", code)
		if v, err := use(); err != nil || v != 7 {
			t.Errorf("A's statement after B's DO block: %d, %v; want 7 (666 is B's replacement)", v, err)
		}
	})

	t.Run("LISTEN", func(t *testing.T) {
		fresh(t)
		a := loginA(t)
		a.setup("LISTEN iso_chan")
		check := func(when string) {
			b := loginB(t)
			defer b.close()
			// PostgreSQL delivers a notification when its backend goes
			// idle: at the end of B's statement if B is on A's upstream.
			if err := b.send(&pgproto3.Query{String: "SELECT pg_sleep(0.5)"}); err != nil {
				t.Fatal(err)
			}
			time.Sleep(150 * time.Millisecond)
			if _, err := direct.Exec(ctx, "NOTIFY iso_chan, 'for A only'"); err != nil {
				t.Fatal(err)
			}
			if sigs, err := b.untilReady(10 * time.Second); err != nil {
				t.Errorf("%s: B's SELECT pg_sleep(0.5): %v after %v", when, err, sigs)
			}
			if _, err := direct.Exec(ctx, "NOTIFY iso_chan, 'for A only, while B idles'"); err != nil {
				t.Fatal(err)
			}
			if rows, code, err := b.query("SELECT 1"); err != nil || code != "" || !slices.Equal(rows, []string{"1"}) {
				t.Errorf("%s: B's SELECT 1: rows %v, SQLSTATE %q, %v", when, rows, code, err)
			}
			b.drain(300 * time.Millisecond)
			if len(b.notifications) > 0 {
				t.Errorf("%s: B received A's notifications %v", when, b.notifications)
			}
		}
		check("A connected and idle")
		a.close()
		check("A gone")
	})

	t.Run("advisory lock", func(t *testing.T) {
		fresh(t)
		a := loginA(t)
		// Transaction mode refuses session-level lock calls it sees.
		a.setup("DO $$ BEGIN PERFORM pg_advisory_lock(4242); END $$")
		holders := func() []int {
			t.Helper()
			var pids []int
			rows, err := direct.Query(ctx, "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND classid = 0 AND objid = 4242 AND objsubid = 1 AND granted")
			if err != nil {
				t.Fatal(err)
			}
			pids, err = pgx.CollectRows(rows, pgx.RowTo[int])
			if err != nil {
				t.Fatal(err)
			}
			return pids
		}
		b := loginB(t)
		rows, code, err := b.query("SELECT pg_backend_pid()")
		if err != nil || code != "" || len(rows) != 1 {
			t.Fatalf("B's pg_backend_pid(): %v %q %v", rows, code, err)
		}
		bPid, _ := strconv.Atoi(rows[0])
		if h := holders(); slices.Contains(h, bPid) {
			t.Errorf("A connected: A's advisory lock 4242 is held by backend %d, the upstream B uses", bPid)
		}
		b.close()
		a.close()
		// A's lock must not outlive A.
		var h []int
		for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
			if h = holders(); len(h) == 0 {
				break
			}
		}
		if len(h) > 0 {
			t.Errorf("A gone for 5s: its advisory lock 4242 is still held by backend(s) %v", h)
		}
		b = loginB(t)
		defer b.close()
		if rows, code, err := b.query(`DO $$ BEGIN IF NOT pg_try_advisory_lock(4242) THEN RAISE EXCEPTION 'held'; END IF;
			PERFORM pg_advisory_unlock(4242); END $$`); err != nil || code != "" {
			t.Errorf("A gone: B's pg_try_advisory_lock(4242): rows %v, SQLSTATE %q, %v; want it taken", rows, code, err)
		}
	})
}

// TestIsolationStatementTimeoutInMultiStatementQuery: a statement_timeout
// SET inside a multi-statement simple query applies to the statements after
// it in the same query, as in PostgreSQL (emulator route: the gateway
// enforces the timeout). It did not: the SET's completion reaches the
// gateway only with the rest of the query's output.
func TestIsolationStatementTimeoutInMultiStatementQuery(t *testing.T) {
	st, pw := isoStack(t, false, []string{"alice"}, nil)
	c := isoLogin(t, st.Gateway.Addr, "alice", pw["alice"])
	defer c.close()
	started := time.Now()
	_, code, err := c.query("SET statement_timeout = '100ms'; SELECT pg_sleep(5)")
	took := time.Since(started)
	if err != nil {
		t.Fatal(err)
	}
	if code != "57014" || took > 3*time.Second {
		t.Fatalf("SET statement_timeout then pg_sleep(5) in one query: SQLSTATE %q after %v; want 57014 within the timeout's reach", code, took.Round(time.Millisecond))
	}
	// The failed query's implicit transaction took its SET with it, as in
	// PostgreSQL: the next query has no timeout.
	if _, code, err := c.query("SELECT pg_sleep(0.3)"); err != nil || code != "" {
		t.Fatalf("the next query, after the SET was rolled back: SQLSTATE %q, %v", code, err)
	}
	// A query that raises the timeout for itself is not held to the old
	// value, and the raised value stays.
	if _, code, err := c.query("SET statement_timeout = '100ms'"); err != nil || code != "" {
		t.Fatalf("SET statement_timeout: SQLSTATE %q, %v", code, err)
	}
	if _, code, err := c.query("SET statement_timeout = '5s'; SELECT pg_sleep(0.3)"); err != nil || code != "" {
		t.Fatalf("a query that raises its own timeout: SQLSTATE %q, %v", code, err)
	}
	if _, code, err := c.query("SELECT pg_sleep(0.3)"); err != nil || code != "" {
		t.Fatalf("the next query under the raised timeout: SQLSTATE %q, %v", code, err)
	}
}

// ---- 4 ----

// TestIsolationStatementKeySettings: a statement whose meaning depends on
// a session setting at parse time (a date literal under DateStyle, a
// timestamptz literal under TimeZone) prepared by one session must not be
// reused for another session of the same user whose setting differs, on
// the one upstream they share (emulator route, pool size 1).
func TestIsolationStatementKeySettings(t *testing.T) {
	st, _ := isoStack(t, false, nil, func(c *config.Config) { c.Routes[0].Pool.Size = 1 })
	ctx := testCtx(t, 2*time.Minute)
	one := connect(t, st, "")
	two := connect(t, st, "")
	value := func(conn *pgx.Conn, sql string) string {
		t.Helper()
		qctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		var s string
		if err := conn.QueryRow(qctx, sql).Scan(&s); err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
		return s
	}
	set := func(conn *pgx.Conn, sql string) {
		t.Helper()
		if _, err := conn.Exec(ctx, sql); err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
	}
	check := func(who string, conn *pgx.Conn, sql, want string) {
		t.Helper()
		if got := value(conn, sql); got != want {
			t.Errorf("session %s: %s = %q, want %q (the statement parsed under the other session's setting)", who, sql, got, want)
		}
	}

	const dateSQL = "SELECT '01/02/2024'::date::text"
	set(one, "SET DateStyle = 'ISO, DMY'")
	check("1 (ISO, DMY)", one, dateSQL, "2024-02-01")
	check("2 (ISO, MDY)", two, dateSQL, "2024-01-02")
	check("1 (ISO, DMY)", one, dateSQL, "2024-02-01")

	const tzSQL = "SELECT '2024-01-01 00:00'::timestamptz::text"
	set(one, "SET TimeZone = 'UTC'")
	set(two, "SET TimeZone = 'Asia/Tokyo'")
	check("1 (UTC)", one, tzSQL, "2024-01-01 00:00:00+00")
	check("2 (Asia/Tokyo)", two, tzSQL, "2024-01-01 00:00:00+09")
	check("1 (UTC)", one, tzSQL, "2024-01-01 00:00:00+00")
}

// ---- 5 ----

// TestIsolationStatementTimeoutCancelsOnlyOwn: on a DSQL route the
// gateway enforces statement_timeout itself by cancelling upstream. Eight
// clients share three upstreams; half run with statement_timeout 5ms and
// statements that exceed it (mostly 10ms, which ends close to when the
// cancel arrives: the race; every tenth 200ms, which must be cancelled),
// half never set a timeout. Not one statement of the clients without a
// timeout may be cancelled (57014).
// DSQLGATE_E2E_TIMEOUT_MIX (a Go duration, default 20s) sets how long.
func TestIsolationStatementTimeoutCancelsOnlyOwn(t *testing.T) {
	run := 20 * time.Second
	if s := os.Getenv("DSQLGATE_E2E_TIMEOUT_MIX"); s != "" {
		d, err := time.ParseDuration(s)
		if err != nil {
			t.Fatalf("DSQLGATE_E2E_TIMEOUT_MIX: %v", err)
		}
		run = d
	}
	st, pw := isoStack(t, false, []string{isoUserB}, func(c *config.Config) { c.Routes[0].Pool.Size = 3 })
	ctx := testCtx(t, run+2*time.Minute)
	const clients = 8
	type group struct {
		statements, cancels, others atomic.Int64
		long, longCancels           atomic.Int64 // pg_sleep(0.2)
		mu                          sync.Mutex
		firstOther                  error
	}
	var withTimeout, without group
	var wg sync.WaitGroup
	stop := time.Now().Add(run)
	for i := range clients {
		user := []string{st.User, isoUserB}[i%2]
		conn, err := pgx.Connect(ctx, isoURL(st, user, pw[user]))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { conn.Close(context.Background()) })
		g, stmts := &without, []string{"SELECT pg_sleep(0.001)", "SELECT 1"}
		if i < clients/2 {
			g, stmts = &withTimeout, slices.Repeat([]string{"SELECT pg_sleep(0.01)"}, 10)
			stmts[9] = "SELECT pg_sleep(0.2)"
			if _, err := conn.Exec(ctx, "SET statement_timeout = '5ms'"); err != nil {
				t.Fatal(err)
			}
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			for n := 0; time.Now().Before(stop); n++ {
				qctx, cancel := context.WithTimeout(ctx, 10*time.Second)
				sql := stmts[n%len(stmts)]
				_, err := conn.Exec(qctx, sql)
				cancel()
				g.statements.Add(1)
				long := sql == "SELECT pg_sleep(0.2)"
				if long {
					g.long.Add(1)
				}
				switch {
				case err == nil:
				case pgCode(err) == "57014":
					g.cancels.Add(1)
					if long {
						g.longCancels.Add(1)
					}
				default:
					g.others.Add(1)
					g.mu.Lock()
					if g.firstOther == nil {
						g.firstOther = err
					}
					g.mu.Unlock()
					if conn.IsClosed() {
						return
					}
				}
			}
		}()
	}
	wg.Wait()
	t.Logf("with statement_timeout 5ms: %d statements, %d cancelled (57014), %d other errors; of them pg_sleep(0.2): %d, %d cancelled",
		withTimeout.statements.Load(), withTimeout.cancels.Load(), withTimeout.others.Load(), withTimeout.long.Load(), withTimeout.longCancels.Load())
	t.Logf("without a timeout: %d statements, %d cancelled (57014), %d other errors", without.statements.Load(), without.cancels.Load(), without.others.Load())
	if n := without.cancels.Load(); n != 0 {
		t.Errorf("%d of %d statements of the clients without a timeout were cancelled by other clients' statement_timeout", n, without.statements.Load())
	}
	if without.firstOther != nil {
		t.Errorf("the clients without a timeout got %d other errors, the first: %v", without.others.Load(), without.firstOther)
	}
	if withTimeout.firstOther != nil {
		t.Errorf("the clients with a timeout got %d errors other than 57014, the first: %v", withTimeout.others.Load(), withTimeout.firstOther)
	}
	// The timeout itself must be enforced, or the test proves nothing.
	// (PostgreSQL would cancel every one of them; a miss is logged, the
	// finding here is only about other clients' statements.)
	switch n, c := withTimeout.long.Load(), withTimeout.longCancels.Load(); {
	case c == 0:
		t.Errorf("none of %d statements of 200ms under statement_timeout 5ms was cancelled: the timeout is not enforced, the scenario did not happen", n)
	case c != n:
		t.Logf("NOTE: only %d of %d statements of 200ms under statement_timeout 5ms were cancelled (PostgreSQL cancels all)", c, n)
	}
}

// ---- 6 ----

// TestIsolationDisconnectStopsPipeline: a client that pipelines 30
// one-second statements and disconnects 200 ms later leaves nothing
// running upstream: within 1.5 s of the close no backend runs its
// pg_sleep, and none starts in the 2 s after. The same for a client whose
// one statement is blocked upstream and would stay so for long: its
// backend is gone within 1.5 s. On a PostgreSQL route that statement waits
// for a row lock held by someone else; on DSQL, where no statement ever
// waits for a lock (optimistic concurrency: a conflict fails at once), it
// is a pg_sleep(30), which only a cancel or the session's end can stop.
// On both route kinds.
func TestIsolationDisconnectStopsPipeline(t *testing.T) {
	for _, kind := range isoKinds {
		t.Run(kind.name, func(t *testing.T) {
			st, _ := isoStack(t, kind.plain, nil, nil)
			ctx := testCtx(t, 2*time.Minute)
			direct := pgDirect(t, st)
			count := func(t *testing.T, sql string) int {
				t.Helper()
				var n int
				if err := direct.QueryRow(ctx, sql).Scan(&n); err != nil {
					t.Fatal(err)
				}
				return n
			}
			// gone waits up to within for count(sql) to be 0, then
			// requires it to stay 0 for stay.
			gone := func(t *testing.T, what, sql string, closed time.Time, within, stay time.Duration) {
				t.Helper()
				n := count(t, sql)
				for n != 0 && time.Since(closed) < within {
					time.Sleep(25 * time.Millisecond)
					n = count(t, sql)
				}
				if n != 0 {
					t.Errorf("%v after the client closed, %d backend(s) still %s", time.Since(closed).Round(time.Millisecond), n, what)
					return
				}
				t.Logf("%s: none %v after the close", what, time.Since(closed).Round(time.Millisecond))
				for until := time.Now().Add(stay); time.Now().Before(until); time.Sleep(50 * time.Millisecond) {
					if n := count(t, sql); n != 0 {
						t.Errorf("%v after the client closed, %d backend(s) %s again: the pipeline goes on", time.Since(closed).Round(time.Millisecond), n, what)
						return
					}
				}
			}

			t.Run("pipeline", func(t *testing.T) {
				c := isoLogin(t, st.Gateway.Addr, st.User, st.Password)
				var pipeline []byte
				for range 30 {
					pipeline = append(pipeline, queryMessage("SELECT pg_sleep(1)")...)
				}
				c.conn.SetWriteDeadline(time.Now().Add(5 * time.Second))
				if _, err := c.conn.Write(pipeline); err != nil {
					t.Fatal(err)
				}
				time.Sleep(200 * time.Millisecond)
				const sleeping = "SELECT count(*) FROM pg_stat_activity WHERE query LIKE '%pg_sleep(1)%' AND state = 'active' AND pid <> pg_backend_pid()"
				t.Logf("backends in pg_sleep(1) before the close: %d", count(t, sleeping))
				c.conn.Close()
				gone(t, "running pg_sleep(1)", sleeping, time.Now(), 1500*time.Millisecond, 2*time.Second)
			})

			t.Run("long wait", func(t *testing.T) {
				if kind.plain {
					t.Skip("the PostgreSQL route's blocked statement is the lock wait below")
				}
				c := isoLogin(t, st.Gateway.Addr, st.User, st.Password)
				if err := c.send(&pgproto3.Query{String: "SELECT pg_sleep(30) AS iso_long_wait"}); err != nil {
					t.Fatal(err)
				}
				const sleeping = "SELECT count(*) FROM pg_stat_activity WHERE query LIKE '%iso_long_wait%' AND wait_event = 'PgSleep' AND state = 'active' AND pid <> pg_backend_pid()"
				for deadline := time.Now().Add(10 * time.Second); count(t, sleeping) == 0; time.Sleep(25 * time.Millisecond) {
					if time.Now().After(deadline) {
						t.Fatal("the client's statement never started sleeping upstream")
					}
				}
				c.conn.Close()
				gone(t, "running pg_sleep(30)", sleeping, time.Now(), 1500*time.Millisecond, time.Second)
			})

			t.Run("lock wait", func(t *testing.T) {
				if !kind.plain {
					t.Skip("on DSQL no statement waits for a lock (optimistic concurrency): the long wait above stands for it")
				}
				if _, err := direct.Exec(ctx, "CREATE TABLE iso_lockrow (id int PRIMARY KEY); INSERT INTO iso_lockrow VALUES (1)"); err != nil {
					t.Fatal(err)
				}
				holder, err := direct.Begin(ctx)
				if err != nil {
					t.Fatal(err)
				}
				defer holder.Rollback(context.Background())
				if _, err := holder.Exec(ctx, "SELECT id FROM iso_lockrow WHERE id = 1 FOR UPDATE"); err != nil {
					t.Fatal(err)
				}
				other, err := pgx.Connect(ctx, st.PG.SocketDSN("postgres")) // the holder's connection is busy
				if err != nil {
					t.Fatal(err)
				}
				defer other.Close(context.Background())
				const waiting = "SELECT count(*) FROM pg_stat_activity WHERE query LIKE 'SELECT id FROM iso_lockrow%' AND wait_event_type = 'Lock' AND state = 'active' AND pid <> pg_backend_pid()"
				waitCount := func() int {
					var n int
					if err := other.QueryRow(ctx, waiting).Scan(&n); err != nil {
						t.Fatal(err)
					}
					return n
				}
				c := isoLogin(t, st.Gateway.Addr, st.User, st.Password)
				if err := c.send(&pgproto3.Query{String: "SELECT id FROM iso_lockrow WHERE id = 1 FOR UPDATE"}); err != nil {
					t.Fatal(err)
				}
				for deadline := time.Now().Add(10 * time.Second); waitCount() == 0; time.Sleep(25 * time.Millisecond) {
					if time.Now().After(deadline) {
						t.Fatal("the client's statement never waited for the lock")
					}
				}
				c.conn.Close()
				closed := time.Now()
				n := waitCount()
				for n != 0 && time.Since(closed) < 1500*time.Millisecond {
					time.Sleep(25 * time.Millisecond)
					n = waitCount()
				}
				if n != 0 {
					t.Errorf("%v after the client closed, its statement still waits for the lock upstream", time.Since(closed).Round(time.Millisecond))
				}
			})
		})
	}
}

// ---- 7 ----

// TestIsolationCancelFloodNonReadingClient: a client X starts a query
// with a large result and never reads; then 1,100 CancelRequests with X's
// own key arrive, each on a new connection, up to 50 at once. The gateway
// closes every cancel connection promptly (EOF within 5 s), holds no more
// descriptors afterwards than before (+50), its admin console answers
// SHOW CLIENTS within 2 s, another client's query works, and a shutdown
// returns within shutdown_timeout + 2 s.
func TestIsolationCancelFloodNonReadingClient(t *testing.T) {
	const (
		cancels  = 1100
		inFlight = 50
		shutdown = 3 * time.Second
		fdSlack  = 50
	)
	st, pw := isoStack(t, false, []string{isoAdmin}, func(c *config.Config) {
		c.ShutdownTimeout = config.Duration(shutdown)
		c.Admin.Users = []string{isoAdmin}
	})
	ctx := testCtx(t, 3*time.Minute)
	good := connect(t, st, "")
	if _, err := good.Exec(ctx, "SELECT 1"); err != nil {
		t.Fatal(err)
	}

	x := isoLogin(t, st.Gateway.Addr, st.User, st.Password)
	if x.key == nil {
		t.Fatal("no BackendKeyData for X")
	}
	if err := x.send(&pgproto3.Query{String: "SELECT repeat('x', 1000) FROM generate_series(1, 200000)"}); err != nil {
		t.Fatal(err)
	}
	time.Sleep(500 * time.Millisecond) // the result fills every buffer on the way
	runtime.GC()
	fdsBefore := openFDs(t)

	packet := binary.BigEndian.AppendUint32([]byte{0, 0, 0, 16}, cancelRequestCode)
	packet = binary.BigEndian.AppendUint32(packet, x.key.ProcessID)
	packet = append(packet, x.key.SecretKey...)
	var launched, slow, failed atomic.Int64
	var firstErr atomic.Value
	sem := make(chan struct{}, inFlight)
	var wg sync.WaitGroup
	start := time.Now()
	for range cancels {
		if slow.Load() >= 200 {
			break // the point is made; 5s each would take minutes
		}
		sem <- struct{}{}
		wg.Add(1)
		launched.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			conn, err := net.DialTimeout("tcp", st.Gateway.Addr, 5*time.Second)
			if err != nil {
				failed.Add(1)
				firstErr.CompareAndSwap(nil, err)
				return
			}
			defer conn.Close()
			conn.SetDeadline(time.Now().Add(5 * time.Second))
			if _, err := conn.Write(packet); err != nil {
				failed.Add(1)
				firstErr.CompareAndSwap(nil, err)
				return
			}
			_, err = io.Copy(io.Discard, conn)
			if err != nil && !isReset(err) {
				if ne, ok := err.(net.Error); ok && ne.Timeout() {
					slow.Add(1)
				} else {
					failed.Add(1)
				}
				firstErr.CompareAndSwap(nil, err)
			}
		}()
	}
	wg.Wait()
	t.Logf("%d CancelRequests in %v: %d not closed within 5s, %d failed otherwise", launched.Load(), time.Since(start).Round(time.Millisecond), slow.Load(), failed.Load())
	if slow.Load() > 0 || failed.Load() > 0 {
		t.Errorf("%d of %d cancel connections were not closed by the gateway within 5s, %d failed otherwise (flood stopped after %d of %d); first: %v", slow.Load(), launched.Load(), failed.Load(), launched.Load(), cancels, firstErr.Load())
	}

	fdsAfter := openFDs(t)
	for deadline := time.Now().Add(5 * time.Second); fdsAfter > fdsBefore+fdSlack && time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		fdsAfter = openFDs(t)
	}
	t.Logf("open descriptors: %d before the flood, %d after", fdsBefore, fdsAfter)
	if fdsAfter > fdsBefore+fdSlack {
		t.Errorf("open descriptors: %d before the flood, %d after (more than +%d)", fdsBefore, fdsAfter, fdSlack)
	}

	// The admin console answers.
	if admin, err := isoTryLoginDB(st.Gateway.Addr, isoAdmin, pw[isoAdmin], st.Gateway.Config().Admin.Database, 2*time.Second); err != nil {
		t.Errorf("admin console login after the flood: %v", err)
	} else {
		admin.timeout = 2 * time.Second
		if rows, code, err := admin.query("SHOW CLIENTS"); err != nil || code != "" {
			t.Errorf("SHOW CLIENTS after the flood: %d rows, SQLSTATE %q, %v", len(rows), code, err)
		}
		admin.close()
	}
	// Another client works.
	qctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	var v int
	if err := good.QueryRow(qctx, "SELECT 2").Scan(&v); err != nil || v != 2 {
		t.Errorf("another client after the flood: %d, %v", v, err)
	}
	cancel()

	// X still does not read; shutdown gives it shutdown_timeout.
	done := make(chan error, 1)
	sctx, scancel := context.WithTimeout(context.Background(), shutdown)
	defer scancel()
	began := time.Now()
	gw := st.Gateway
	go func() { done <- gw.Shutdown(sctx) }()
	select {
	case err := <-done:
		t.Logf("shutdown returned after %v: %v", time.Since(began).Round(time.Millisecond), err)
		st.Gateway = nil // shut down: Stack.Close must not close it again
	case <-time.After(shutdown + 2*time.Second):
		t.Errorf("the gateway's shutdown (shutdown_timeout %v) has not returned after %v", shutdown, shutdown+2*time.Second)
	}
}

// ---- 8 ----

// TestIsolationIdleTransactionFairShare: one user idling in transactions
// must not keep another user from the pool. With
// limits.idle_in_transaction_timeout 2s, user A's two idle transactions
// (pool size 2) end with FATAL 25P03 and user B's query is served within
// about 3 s. With pool.max_user_connections 1, A's second transaction
// waits while B is served at once.
func TestIsolationIdleTransactionFairShare(t *testing.T) {
	t.Run("idle_in_transaction_timeout", func(t *testing.T) {
		st, pw := isoStack(t, false, []string{isoUserA, isoUserB}, func(c *config.Config) {
			c.Routes[0].Pool.Size = 2
			c.Limits.IdleInTransactionTimeout = config.Duration(2 * time.Second)
		})
		var as []*isoClient
		for range 2 {
			a := isoLogin(t, st.Gateway.Addr, isoUserA, pw[isoUserA])
			if _, code, err := a.query("BEGIN; SELECT 1"); err != nil || code != "" || a.status != 'T' {
				t.Fatalf("A's BEGIN; SELECT 1: SQLSTATE %q, status %c, %v", code, a.status, err)
			}
			as = append(as, a)
		}
		b, err := pgx.Connect(testCtx(t, 30*time.Second), isoURL(st, isoUserB, pw[isoUserB]))
		if err != nil {
			t.Fatal(err)
		}
		defer b.Close(context.Background())
		start := time.Now()
		qctx, cancel := context.WithTimeout(context.Background(), 4*time.Second)
		var v int
		err = b.QueryRow(qctx, "SELECT 1").Scan(&v)
		cancel()
		if err != nil {
			t.Errorf("B's SELECT 1 while A idles in two transactions: %v after %v, want it served within about 3s", err, time.Since(start).Round(time.Millisecond))
		} else {
			t.Logf("B served after %v", time.Since(start).Round(time.Millisecond))
		}
		for i, a := range as {
			a.conn.SetReadDeadline(time.Now().Add(5 * time.Second))
			msgs, err := readUntilClose(a.conn)
			var sigs []string
			for _, m := range msgs {
				sigs = append(sigs, msgSig(m))
			}
			if err != nil || !slices.Equal(sigs, []string{"ErrorResponse FATAL 25P03"}) {
				t.Errorf("A's idle transaction %d: %v, %v; want FATAL 25P03 then close", i, sigs, err)
			}
		}
	})

	t.Run("max_user_connections", func(t *testing.T) {
		st, pw := isoStack(t, false, []string{isoUserA, isoUserB}, func(c *config.Config) {
			c.Routes[0].Pool.Size = 2
			c.Routes[0].Pool.MaxUserConnections = 1
		})
		a1 := isoLogin(t, st.Gateway.Addr, isoUserA, pw[isoUserA])
		if _, code, err := a1.query("BEGIN; SELECT 1"); err != nil || code != "" || a1.status != 'T' {
			t.Fatalf("A's first BEGIN; SELECT 1: SQLSTATE %q, status %c, %v", code, a1.status, err)
		}
		a2 := isoLogin(t, st.Gateway.Addr, isoUserA, pw[isoUserA])
		if err := a2.send(&pgproto3.Query{String: "BEGIN; SELECT 1"}); err != nil {
			t.Fatal(err)
		}
		a2Replies := make(chan []string, 1)
		go func() {
			sigs, _ := a2.untilReady(15 * time.Second)
			a2Replies <- sigs
		}()
		a2Ran := false
		select {
		case sigs := <-a2Replies:
			a2Ran = true
			t.Errorf("A's second transaction ran at once (%v) while A's first holds A's one upstream", sigs)
		case <-time.After(time.Second):
		}
		b, err := pgx.Connect(testCtx(t, 30*time.Second), isoURL(st, isoUserB, pw[isoUserB]))
		if err != nil {
			t.Fatal(err)
		}
		defer b.Close(context.Background())
		start := time.Now()
		qctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		var v int
		err = b.QueryRow(qctx, "SELECT 1").Scan(&v)
		cancel()
		if err != nil {
			t.Errorf("B's SELECT 1 while A's second transaction waits: %v after %v, want it served at once", err, time.Since(start).Round(time.Millisecond))
		}
		if _, code, err := a1.query("COMMIT"); err != nil || code != "" {
			t.Errorf("A's first COMMIT: %q %v", code, err)
		}
		if !a2Ran {
			select {
			case sigs := <-a2Replies:
				if len(sigs) == 0 || sigs[len(sigs)-1] != "ReadyForQuery T" {
					t.Errorf("A's second transaction after the first committed: %v", sigs)
				}
			case <-time.After(16 * time.Second):
				t.Errorf("A's second transaction did not run after A's first committed")
			}
		}
	})
}

// ---- helpers ----

// isoStack starts a stack for one test, closed with it: through the
// emulator, or with plain straight to PostgreSQL. users are added (SCRAM,
// random passwords) beside the harness's demo user, then edit adjusts the
// configuration. It returns every user's password by name.
func isoStack(t *testing.T, plain bool, users []string, edit func(*config.Config)) (*harness.Stack, map[string]string) {
	t.Helper()
	pw := map[string]string{}
	for _, u := range users {
		pw[u] = pgtest.RandomHex(12)
	}
	var hookErr error
	st, err := harness.StartStack(testCtx(t, 2*time.Minute), harness.StackOptions{
		Plain: plain,
		Gateway: func(c *config.Config) {
			for _, u := range users {
				v, err := scram.GenerateVerifier(pw[u])
				if err != nil {
					hookErr = err
					return
				}
				c.Users = append(c.Users, config.User{Name: u, Verifier: v.Encode()})
			}
			if edit != nil {
				edit(c)
			}
		},
	})
	if err == nil && hookErr != nil {
		st.Close()
		err = hookErr
	}
	if err != nil {
		t.Fatalf("start a stack: %v", err)
	}
	t.Cleanup(func() { closeBounded(t, st) })
	pw[st.User] = st.Password
	return st, pw
}

// closeBounded closes st, but gives up waiting after 20s: a gateway whose
// sessions hang (waiting for an upstream reply that never comes) must fail
// the test, not hang go test. Stopping PostgreSQL then ends every
// upstream, which lets the stuck sessions and the rest of Close finish.
func closeBounded(t *testing.T, st *harness.Stack) {
	done := make(chan struct{})
	go func() {
		defer close(done)
		st.Close()
	}()
	select {
	case <-done:
		return
	case <-time.After(20 * time.Second):
	}
	t.Errorf("the stack did not close within 20s (gateway sessions stuck?); stopping PostgreSQL under it")
	st.PG.Close()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		t.Errorf("the stack still did not close 30s after PostgreSQL stopped")
	}
}

// isoURL is a pgx URL for user on st's gateway, without TLS.
func isoURL(st *harness.Stack, user, password string) string {
	u := url.URL{Scheme: "postgres", User: url.UserPassword(user, password), Host: st.Gateway.Addr, Path: "/" + harness.StackDatabase, RawQuery: "sslmode=disable"}
	return u.String()
}

// pgDirect is a pgx connection to st's PostgreSQL itself, as superuser
// over the unix socket (so it is never one of the gateway's TCP
// upstreams); it closes with the test.
func pgDirect(t *testing.T, st *harness.Stack) *pgx.Conn {
	t.Helper()
	conn, err := pgx.Connect(testCtx(t, 30*time.Second), st.PG.SocketDSN("postgres"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	return conn
}

// freshUpstreams terminates every TCP client backend of the stack's
// PostgreSQL (the plain route's upstreams) and waits until they are gone,
// so that the gateway opens new ones.
func freshUpstreams(t *testing.T, ctx context.Context, direct *pgx.Conn) {
	t.Helper()
	const which = "FROM pg_stat_activity WHERE backend_type = 'client backend' AND client_addr IS NOT NULL AND pid <> pg_backend_pid()"
	if _, err := direct.Exec(ctx, "SELECT pg_terminate_backend(pid) "+which); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		var n int
		if err := direct.QueryRow(ctx, "SELECT count(*) "+which).Scan(&n); err != nil {
			t.Fatal(err)
		}
		if n == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d upstream backends still there 5s after pg_terminate_backend", n)
		}
	}
}

// pgReplies plays msgs against st's PostgreSQL itself, on a new raw
// connection, and returns its replies up to ReadyForQuery (msgSig).
func pgReplies(t *testing.T, st *harness.Stack, msgs []pgproto3.FrontendMessage) []string {
	t.Helper()
	c, err := isoTryLoginDB(st.PG.Addr(), st.PG.User, st.PG.Password, "postgres", 10*time.Second)
	if err != nil {
		t.Fatalf("log in to PostgreSQL: %v", err)
	}
	defer c.close()
	got, err := c.play(msgs, 10*time.Second)
	if err != nil {
		t.Fatalf("PostgreSQL itself: %v after %v", err, got)
	}
	if rows, code, err := c.query("SELECT 2"); err != nil || code != "" || !slices.Equal(rows, []string{"2"}) {
		t.Fatalf("PostgreSQL itself, SELECT 2 afterwards: %v %q %v", rows, code, err)
	}
	return got
}

// isoClient is a raw protocol client (pgproto3) logged in to a gateway or
// to PostgreSQL.
type isoClient struct {
	t    testing.TB
	conn net.Conn
	fe   *pgproto3.Frontend
	key  *pgproto3.BackendKeyData
	// timeout bounds each exchange (query, play): 10s unless set.
	timeout time.Duration
	// status is the transaction status of the last ReadyForQuery.
	status byte
	// notifications are the NotificationResponses received so far,
	// "channel: payload".
	notifications []string
}

// isoLogin logs user in to addr's route database with SCRAM, without
// TLS, and fails the test when it cannot. The connection closes with the
// test.
func isoLogin(t testing.TB, addr, user, password string) *isoClient {
	t.Helper()
	c, err := isoTryLogin(addr, user, password, 10*time.Second)
	if err != nil {
		t.Fatalf("log in as %s: %v", user, err)
	}
	c.t = t
	t.Cleanup(func() { c.conn.Close() })
	return c
}

// isoTryLogin logs user in to addr's route database within d.
func isoTryLogin(addr, user, password string, d time.Duration) (*isoClient, error) {
	return isoTryLoginDB(addr, user, password, harness.StackDatabase, d)
}

// isoTryLoginDB logs user in to database db on addr (SCRAM-SHA-256, no
// TLS) within d and returns the client after the first ReadyForQuery.
func isoTryLoginDB(addr, user, password, db string, d time.Duration) (*isoClient, error) {
	conn, err := net.DialTimeout("tcp", addr, d)
	if err != nil {
		return nil, err
	}
	conn.SetDeadline(time.Now().Add(d))
	fe, key, err := loginWithKey(conn, user, password, db)
	if err != nil {
		conn.Close()
		return nil, err
	}
	c := &isoClient{conn: conn, fe: fe, key: key, status: 'I', timeout: 10 * time.Second}
	conn.SetDeadline(time.Time{})
	return c, nil
}

// send writes msgs at once.
func (c *isoClient) send(msgs ...pgproto3.FrontendMessage) error {
	for _, m := range msgs {
		c.fe.Send(m)
	}
	c.conn.SetWriteDeadline(time.Now().Add(c.timeout))
	return c.fe.Flush()
}

// next reads one message before the connection's read deadline, and
// records notifications and the transaction status.
func (c *isoClient) next() (pgproto3.BackendMessage, error) {
	msg, err := c.fe.Receive()
	if err != nil {
		return nil, err
	}
	switch m := msg.(type) {
	case *pgproto3.NotificationResponse:
		c.notifications = append(c.notifications, m.Channel+": "+m.Payload)
	case *pgproto3.ReadyForQuery:
		c.status = m.TxStatus
	}
	return msg, nil
}

// untilReady reads replies up to and including ReadyForQuery, within d,
// and returns their signatures (msgSig).
func (c *isoClient) untilReady(d time.Duration) ([]string, error) {
	c.conn.SetReadDeadline(time.Now().Add(d))
	defer c.conn.SetReadDeadline(time.Time{})
	var sigs []string
	for {
		msg, err := c.next()
		if err != nil {
			if ne, ok := err.(net.Error); ok && ne.Timeout() {
				return sigs, fmt.Errorf("no ReadyForQuery within %v", d)
			}
			return sigs, err
		}
		sigs = append(sigs, msgSig(msg))
		if _, ok := msg.(*pgproto3.ReadyForQuery); ok {
			return sigs, nil
		}
	}
}

// play sends msgs in one write and returns the replies up to
// ReadyForQuery, within d.
func (c *isoClient) play(msgs []pgproto3.FrontendMessage, d time.Duration) ([]string, error) {
	if err := c.send(msgs...); err != nil {
		return nil, err
	}
	return c.untilReady(d)
}

// query runs one simple query: the first column of its rows, the SQLSTATE
// of its first ErrorResponse (the rows and the error of one statement
// after the other), and an error when the exchange itself failed or took
// longer than c.timeout.
func (c *isoClient) query(sql string) (rows []string, code string, err error) {
	if err := c.send(&pgproto3.Query{String: sql}); err != nil {
		return nil, "", err
	}
	c.conn.SetReadDeadline(time.Now().Add(c.timeout))
	defer c.conn.SetReadDeadline(time.Time{})
	for {
		msg, err := c.next()
		if err != nil {
			if ne, ok := err.(net.Error); ok && ne.Timeout() {
				return rows, code, fmt.Errorf("%q: no answer within %v", sql, c.timeout)
			}
			return rows, code, fmt.Errorf("%q: %w", sql, err)
		}
		switch m := msg.(type) {
		case *pgproto3.DataRow:
			if len(m.Values) > 0 {
				rows = append(rows, string(m.Values[0]))
			}
		case *pgproto3.ErrorResponse:
			if code == "" {
				code = m.Code
			}
			if m.Severity == "FATAL" {
				return rows, code, fmt.Errorf("%q: FATAL %s: %s", sql, m.Code, m.Message)
			}
		case *pgproto3.ReadyForQuery:
			return rows, code, nil
		}
	}
}

// setup runs the statements of a case's first client; a failure is
// logged (the gateway may refuse them) but does not stop the case.
func (c *isoClient) setup(sqls ...string) {
	for _, sql := range sqls {
		rows, code, err := c.query(sql)
		if err != nil {
			c.t.Fatalf("%s: %v", sql, err)
		}
		if code != "" {
			c.t.Logf("%s: refused with %s", sql, code)
		} else if len(rows) > 0 {
			c.t.Logf("%s: %v", sql, rows)
		}
	}
}

// drain reads whatever arrives within d (notifications, stray replies).
func (c *isoClient) drain(d time.Duration) {
	c.conn.SetReadDeadline(time.Now().Add(d))
	defer c.conn.SetReadDeadline(time.Time{})
	for {
		msg, err := c.next()
		if err != nil {
			return
		}
		if _, ok := msg.(*pgproto3.NotificationResponse); !ok {
			c.t.Errorf("unexpected %s while idle", msgSig(msg))
		}
	}
}

// close says Terminate and closes.
func (c *isoClient) close() {
	c.fe.Send(&pgproto3.Terminate{})
	c.conn.SetWriteDeadline(time.Now().Add(time.Second))
	c.fe.Flush()
	c.conn.Close()
}

// msgSig names a backend message for comparisons: its type, with the
// severity and SQLSTATE of an ErrorResponse and the status of a
// ReadyForQuery.
func msgSig(m pgproto3.BackendMessage) string {
	switch m := m.(type) {
	case *pgproto3.ErrorResponse:
		return "ErrorResponse " + m.Severity + " " + m.Code
	case *pgproto3.ReadyForQuery:
		return "ReadyForQuery " + string(m.TxStatus)
	}
	return strings.TrimPrefix(fmt.Sprintf("%T", m), "*pgproto3.")
}

// rss is the test process's resident set size in bytes (the gateway and
// the emulator run in it).
func rss(t testing.TB) int64 {
	t.Helper()
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Skipf("no /proc/self/status: %v", err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), 10, 64)
			if err != nil {
				t.Fatalf("VmRSS %q: %v", rest, err)
			}
			return kb << 10
		}
	}
	t.Fatal("no VmRSS in /proc/self/status")
	return 0
}

// goMemory is the Go heap and stacks of the test process in use, in
// bytes (the gateway and the emulator run in it).
func goMemory() int64 {
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return int64(ms.HeapInuse + ms.StackInuse)
}

// openFDs is the number of open descriptors of the test process.
func openFDs(t testing.TB) int {
	t.Helper()
	entries, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skipf("no /proc/self/fd: %v", err)
	}
	return len(entries)
}

// TestStatementTimeoutInPipeline: a SET statement_timeout and a long
// statement sent in one pipeline (a pgx batch) hold the long statement to
// the new timeout, as PostgreSQL does, on a route where the gateway keeps
// statement_timeout (the emulator).
func TestStatementTimeoutInPipeline(t *testing.T) {
	st, pw := isoStack(t, false, []string{"alice"}, nil)
	ctx := testCtx(t, time.Minute)
	conn, err := pgx.Connect(ctx, isoURL(st, "alice", pw["alice"]))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	b := &pgx.Batch{}
	b.Queue("SET statement_timeout = '100ms'")
	b.Queue("SELECT pg_sleep(5)")
	started := time.Now()
	err = conn.SendBatch(ctx, b).Close()
	took := time.Since(started)
	if pgCode(err) != "57014" || took > 3*time.Second {
		t.Fatalf("SET statement_timeout then pg_sleep(5) in one batch: %v after %v; want 57014 within the timeout's reach", err, took.Round(time.Millisecond))
	}
}

// TestSessionModeResetOnRelease: in session mode on a PostgreSQL route, the
// upstream a client leaves goes back to the pool reset (DISCARD ALL, as
// PgBouncer's server_reset_query): the next client of the same user does
// not see the first one's temporary table, SQL prepared statement or
// setting, and does not inherit its LISTEN.
func TestSessionModeResetOnRelease(t *testing.T) {
	st, pw := isoStack(t, true, []string{"alice"}, func(c *config.Config) {
		c.Routes[0].Pool.Mode = config.PoolSession
		c.Routes[0].Pool.Size = 1
	})
	ctx := testCtx(t, time.Minute)
	first, err := pgx.Connect(ctx, isoURL(st, "alice", pw["alice"]))
	if err != nil {
		t.Fatal(err)
	}
	var pid1 int
	if err := first.QueryRow(ctx, "select pg_backend_pid()").Scan(&pid1); err != nil {
		t.Fatal(err)
	}
	for _, q := range []string{"create temp table reset_probe (v int)", "insert into reset_probe values (42)",
		"prepare reset_stmt as select 1", "listen reset_channel", "set work_mem = '7MB'"} {
		if _, err := first.Exec(ctx, q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	first.Close(ctx)

	second, err := pgx.Connect(ctx, isoURL(st, "alice", pw["alice"]))
	if err != nil {
		t.Fatal(err)
	}
	defer second.Close(context.Background())
	var pid2 int
	if err := second.QueryRow(ctx, "select pg_backend_pid()").Scan(&pid2); err != nil {
		t.Fatal(err)
	}
	if pid2 != pid1 {
		t.Logf("the second client got another upstream (%d, not %d): the reset is not exercised", pid2, pid1)
	}
	var n int
	if err := second.QueryRow(ctx, "select count(*) from pg_class where relname = 'reset_probe' and relpersistence = 't'").Scan(&n); err != nil || n != 0 {
		t.Fatalf("the first client's temporary table is visible to the next: %d, %v", n, err)
	}
	if err := second.QueryRow(ctx, "select count(*) from pg_prepared_statements where name = 'reset_stmt'").Scan(&n); err != nil || n != 0 {
		t.Fatalf("the first client's SQL prepared statement survived: %d, %v", n, err)
	}
	if err := second.QueryRow(ctx, "select count(*) from pg_listening_channels()").Scan(&n); err != nil || n != 0 {
		t.Fatalf("the first client's LISTEN survived: %d, %v", n, err)
	}
	var wm string
	if err := second.QueryRow(ctx, "show work_mem").Scan(&wm); err != nil || wm == "7MB" {
		t.Fatalf("the first client's setting survived: %q, %v", wm, err)
	}
}
