package pgwire

import (
	"bufio"
	"net"
	"slices"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/dsqlgate/dsqlgate/config"
	"github.com/dsqlgate/dsqlgate/internal/metrics"
	"github.com/dsqlgate/dsqlgate/internal/scram"
)

// benchSession is a session with its client writer going to io.Discard
// and a route that never dials, for measuring the relay's own cost.
func benchSession(b *testing.B) *session {
	b.Helper()
	v, err := scram.GenerateVerifier("x")
	if err != nil {
		b.Fatal(err)
	}
	cfg := config.Default()
	cfg.Users = []config.User{{Name: "u", Verifier: v.Encode()}}
	r := config.DefaultRoute(config.KindPostgres, "db")
	r.Endpoint, r.User, r.Password, r.TLS = "127.0.0.1:1", "u", "p", "disable"
	cfg.Routes = []config.Route{r}
	if err := cfg.Validate(); err != nil {
		b.Fatal(err)
	}
	route, err := newMemRoute(cfg.Routes[0], nil)
	if err != nil {
		b.Fatal(err)
	}
	ups := newMemUpstreams(route)
	b.Cleanup(ups.close)
	srv := &Server{upstreams: ups, log: zap.NewNop(), now: time.Now, metrics: metrics.New()}
	srv.conf.Store(cfg)
	s := &session{srv: srv, log: zap.NewNop(), route: route, pool: route.Pool(), conn: discardConn{}}
	s.engine = newEngine(s, s.log, newGUCState(nil, nil))
	s.flushed.L, s.written.L, s.progress.L = &s.mu, &s.mu, &s.mu
	return s
}

func dataRow(cols ...string) []byte {
	msg, start := beginMessage(nil, 'D')
	msg = appendInt16(msg, int16(len(cols)))
	for _, c := range cols {
		msg = appendInt32(msg, int32(len(c)))
		msg = append(msg, c...)
	}
	return finishMessage(msg, start)
}

// BenchmarkRelayDataRow is the hot path: a DataRow of a running query,
// forwarded to the client (and flushed, as the end of a critical section
// does). It must not allocate.
func BenchmarkRelayDataRow(b *testing.B) {
	s := benchSession(b)
	s.q.push(reply{kind: rQuery, query: &queryInfo{stmts: []stmtInfo{{}}}})
	msg := dataRow("12345", "some text value", "2026-11-26 12:00:00+00")
	b.ReportAllocs()
	b.SetBytes(int64(len(msg)))
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		s.mu.Lock()
		s.serverLocked(msg)
		s.flushClientLocked()
		s.mu.Unlock()
	}
}

// BenchmarkRelayExecuteCommandComplete is the end of an extended-protocol
// statement: CommandComplete for an Execute, then the next Execute queued.
// It must not allocate.
func BenchmarkRelayExecuteCommandComplete(b *testing.B) {
	s := benchSession(b)
	st := &preparedStmt{name: "s", query: "select 1"}
	cc := commandComplete("SELECT 1")
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		s.mu.Lock()
		s.q.push(reply{kind: rExecute, stmt: st})
		s.serverLocked(cc)
		s.flushClientLocked()
		s.mu.Unlock()
	}
}

// BenchmarkRelaySimpleQueryUnit is a whole select-only unit of the simple
// protocol as the server answers it: RowDescription, DataRow,
// CommandComplete, ReadyForQuery (without the detach).
func BenchmarkRelaySimpleQueryUnit(b *testing.B) {
	s := benchSession(b)
	rowDesc := []byte{'T', 0, 0, 0, 31, 0, 1, 'a', 'b', 'a', 'l', 'a', 'n', 'c', 'e', 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 23, 0, 4, 255, 255, 255, 255, 0, 0}
	rowDesc[4] = byte(len(rowDesc) - 1)
	row := dataRow("-4242")
	cc := commandComplete("SELECT 1")
	qi := &queryInfo{stmts: []stmtInfo{{}}}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		s.mu.Lock()
		qi.next = 0
		s.q.push(reply{kind: rQuery, query: qi})
		s.serverLocked(rowDesc)
		s.serverLocked(row)
		s.serverLocked(cc)
		s.q.pop()
		s.flushClientLocked()
		s.mu.Unlock()
	}
}

// BenchmarkDescribeQuery is the client side's cost per simple Query: the
// statement split and classification the session-state engine needs.
func BenchmarkDescribeQuery(b *testing.B) {
	s := benchSession(b)
	const q = "SELECT abalance FROM pgbench_accounts WHERE aid = 48213;"
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		s.describeQuery(q)
	}
}

// describeMix is a typical mix of simple Queries: a transaction's
// statements, a setting, and a multi-statement string.
var describeMix = []struct{ name, sql string }{
	{"begin", "BEGIN"},
	{"select", `/* app=api */ SELECT "o"."id", "o"."total" FROM "orders" AS "o" WHERE "o"."status" = 'open' AND "o"."created_at" > now() - interval '1 day' ORDER BY "o"."created_at" DESC LIMIT 50`},
	{"set", `SET search_path = "My Schema", public`},
	{"commit", "COMMIT"},
	{"multi", "SET statement_timeout = '5s'; BEGIN; INSERT INTO t (a, b) VALUES (1, 'x;y'), (2, $$z$$); SELECT count(*) FROM t; COMMIT"},
}

// BenchmarkDescribeQueryMix is describeQuery over describeMix: the whole
// per-query classification of the client side (split, classify, the
// compatibility layer's look, SET parsing).
func BenchmarkDescribeQueryMix(b *testing.B) {
	s := benchSession(b)
	for _, bc := range describeMix {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			for i := 0; i < b.N; i++ {
				s.describeQuery(bc.sql)
			}
		})
	}
}

// BenchmarkStateSync is the session-state engine's diff when a client with
// three settings moves to an upstream that has two of them differently.
func BenchmarkStateSync(b *testing.B) {
	have := map[string]string{"application_name": "'other'", "timezone": "'UTC'"}
	want := map[string]string{"application_name": "'billing'", "timezone": "'UTC'", "search_path": "app, public"}
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		syncSQL(have, want, false)
	}
}

// discardConn is a client connection that takes every write.
type discardConn struct{ net.Conn }

func (discardConn) Write(p []byte) (int, error) { return len(p), nil }

func (discardConn) SetWriteDeadline(time.Time) error { return nil }

// repeatReader returns data again and again.
type repeatReader struct {
	data []byte
	off  int
}

func (r *repeatReader) Read(p []byte) (int, error) {
	n := 0
	for n < len(p) {
		c := copy(p[n:], r.data[r.off:])
		n += c
		r.off = (r.off + c) % len(r.data)
	}
	return n, nil
}

// BenchmarkRelayHeldUnit is BenchmarkRelaySimpleQueryUnit for a unit the
// OCC retry holds (every eligible unit on a DSQL route): its replies are
// read through occNext, held until ReadyForQuery, then handed out. Once
// warm it must not allocate.
func BenchmarkRelayHeldUnit(b *testing.B) {
	s := benchSession(b)
	rowDesc := []byte{'T', 0, 0, 0, 31, 0, 1, 'a', 'b', 'a', 'l', 'a', 'n', 'c', 'e', 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 23, 0, 4, 255, 255, 255, 255, 0, 0}
	rowDesc[4] = byte(len(rowDesc) - 1)
	row := dataRow("-4242")
	cc := commandComplete("SELECT 1")
	unit := slices.Concat(rowDesc, row, cc, readyForQuery('I'))
	us := newUpstreamState(frameReader{r: bufio.NewReader(&repeatReader{data: unit}), maxSize: maxServerMessage}, nil)
	qi := &queryInfo{stmts: []stmtInfo{{}}}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		s.retry.phase, s.retry.attempts = occHolding, 1
		s.mu.Lock()
		qi.next = 0
		s.q.push(reply{kind: rQuery, query: qi})
		s.mu.Unlock()
		for range 3 {
			msg, err := s.occNext(nil, us)
			if err != nil {
				b.Fatal(err)
			}
			s.mu.Lock()
			s.serverLocked(msg)
			s.mu.Unlock()
		}
		if msg, _ := s.occNext(nil, us); msg[0] != 'Z' {
			b.Fatalf("held unit ends with %q", msg[0])
		}
		s.mu.Lock()
		s.q.pop()
		s.flushClientLocked()
		s.mu.Unlock()
		s.retry.disarm()
	}
}
