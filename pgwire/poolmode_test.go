package pgwire

import (
	"testing"

	"github.com/dsqlgate/dsqlgate/pgwire/sqllex"
	"github.com/jackc/pgerrcode"
)

func TestTxPoolRefusal(t *testing.T) {
	for _, c := range []struct {
		sql     string
		refused bool
	}{
		{"LISTEN ch", true},
		{"listen \"Ch\"", true},
		{"UNLISTEN *", false},
		{"NOTIFY ch", false},
		{"create temp table t (x int)", true},
		{"CREATE GLOBAL TEMPORARY TABLE t (x int)", true},
		{"create temp table t (x int) on commit drop", false},
		{"create temp table t (x int) on commit /* c */ drop", false},
		{"create temp table t (x int) on commit delete rows", true},
		{"create temporary view v as select 1", true},
		{"create table t (x int)", false},
		{"declare c cursor with hold for select 1", true},
		{"DECLARE c NO SCROLL CURSOR WITHOUT HOLD FOR select 1", false},
		{"declare c cursor for select 1", false},
		{"select pg_advisory_lock(1)", true},
		{"SELECT 1, PG_TRY_ADVISORY_LOCK(1, 2)", true},
		{"select pg_advisory_unlock_all()", true},
		{"select pg_advisory_xact_lock(1)", false},
		{"select 'pg_advisory_lock(1)'", false},
		{"do $$ begin perform pg_advisory_lock(1); end $$", false},
		{"select 1", false},
		{"select 1 as x into temp t", true},
		{"SELECT * INTO TEMPORARY TABLE t FROM x", true},
		{"select * into t from x", false},
		{"create table pg_temp.t (x int)", true},
		{"create function pg_temp.f() returns int language sql as 'select 1'", true},
		{"create table pg_temp.t (x int) on commit drop", false},
		{"create table public.t (x int)", false},
	} {
		pe := txPoolRefusal(sqllex.OneStmt(c.sql), sqllex.Classify(c.sql))
		if (pe != nil) != c.refused {
			t.Errorf("%s: refused %v, want %v", c.sql, pe != nil, c.refused)
		}
		if pe != nil && (pe.Code != pgerrcode.FeatureNotSupported || pe.Hint == "") {
			t.Errorf("%s: %+v", c.sql, pe)
		}
	}
}

// TestStatementWords: what the gateway reads out of a statement's words.
func TestStatementWords(t *testing.T) {
	for _, c := range []struct {
		name  string
		fn    func(string) string
		cases map[string]string
	}{
		{"preparedName", func(sql string) string { return preparedName(sqllex.OneStmt(sql)) }, map[string]string{
			"PREPARE p AS select 1":               "p",
			"prepare \"My P\" (int) as select $1": "My P",
			"/* c */ prepare Q as select 1":       "q",
			"select 1":                            "",
		}},
	} {
		for sql, want := range c.cases {
			if got := c.fn(sql); got != want {
				t.Errorf("%s(%s) = %q, want %q", c.name, sql, got, want)
			}
		}
	}
}

func BenchmarkTxPoolRefusal(b *testing.B) {
	var lx sqllex.Lexed
	lx.Lex("SELECT abalance FROM pgbench_accounts WHERE aid = $1")
	st := lx.Stmt(0)
	k := st.Kind()
	b.ReportAllocs()
	for b.Loop() {
		txPoolRefusal(st, k)
	}
}
