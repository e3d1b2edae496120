package compat

import (
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/jackc/pgerrcode"

	"github.com/dsqlgate/dsqlgate/pgwire/sqllex"
)

var allOn = Options{Settings: true, AdvisoryLocks: true, Truncate: true}

// TestDecide: what the compatibility layer decides for each kind of
// statement it knows, and that it leaves alone what it does not.
func TestDecide(t *testing.T) {
	placeholder := func(tag string, ch *SettingChange) *Rewrite {
		return &Rewrite{Text: PlaceholderSQL, Tag: tag, HideRows: true, Change: ch}
	}
	refused := func(code string) *Rewrite { return &Rewrite{Text: FailingSQL, Err: &Error{Code: code}} }
	for _, tc := range []struct {
		sql  string
		opt  Options
		emu  map[string]string
		want *Rewrite
	}{
		// Emulated settings.
		{sql: "SET statement_timeout = '5s'", want: placeholder("SET", &SettingChange{Kind: sqllex.SetValue, Name: "statement_timeout", Value: "5s"})},
		{sql: "set local lock_timeout to 1000", want: placeholder("SET", &SettingChange{Kind: sqllex.SetValue, Scope: sqllex.ScopeLocal, Name: "lock_timeout", Value: "1s"})},
		{sql: "SET client_min_messages TO DEFAULT", want: placeholder("SET", &SettingChange{Kind: sqllex.SetDefault, Name: "client_min_messages"})},
		{sql: "RESET synchronous_commit", want: placeholder("RESET", &SettingChange{Kind: sqllex.ResetParam, Name: "synchronous_commit"})},
		{sql: "SET statement_timeout = 'soon'", want: refused(pgerrcode.InvalidParameterValue)},
		{sql: "SET standard_conforming_strings = off", want: refused(pgerrcode.FeatureNotSupported)},
		{sql: "SET default_transaction_isolation = 'serializable'", want: refused(pgerrcode.FeatureNotSupported)},
		{sql: "SET search_path = app", want: nil},
		{sql: "SET statement_timeout = '5s'", opt: Options{Truncate: true}, want: nil},
		// Transaction isolation.
		{sql: "SET TRANSACTION ISOLATION LEVEL SERIALIZABLE", want: refused(pgerrcode.FeatureNotSupported)},
		{sql: "SET TRANSACTION ISOLATION LEVEL REPEATABLE READ", want: placeholder("SET", nil)},
		{sql: "SET SESSION CHARACTERISTICS AS TRANSACTION ISOLATION LEVEL REPEATABLE READ",
			want: placeholder("SET", &SettingChange{Kind: sqllex.SetValue, Name: "default_transaction_isolation", Value: "repeatable read"})},
		{sql: "SET TRANSACTION READ ONLY", want: nil},
		{sql: "BEGIN ISOLATION LEVEL READ COMMITTED", want: refused(pgerrcode.FeatureNotSupported)},
		{sql: "begin isolation level repeatable read", want: nil},
		{sql: "BEGIN", want: nil},
		// SHOW and current_setting answered by the gateway.
		{sql: "SHOW statement_timeout", emu: map[string]string{"statement_timeout": "5s"},
			want: &Rewrite{Text: `SELECT '5s'::text AS statement_timeout`, Tag: "SHOW", Show: &Show{Name: "statement_timeout", Column: "statement_timeout", Tag: "SHOW"}}},
		{sql: "show transaction_isolation",
			want: &Rewrite{Text: `SELECT 'repeatable read'::text AS transaction_isolation`, Tag: "SHOW", Show: &Show{Name: "transaction_isolation", Column: "transaction_isolation", Tag: "SHOW"}}},
		{sql: "SHOW search_path", want: nil},
		{sql: "SELECT current_setting('Client_Min_Messages') AS lvl",
			want: &Rewrite{Text: `SELECT 'notice'::text AS lvl`, Show: &Show{Name: "client_min_messages", Column: "lvl", Tag: "SELECT 1"}}},
		{sql: "SELECT current_setting('search_path')", want: nil},
		{sql: "SELECT current_setting('statement_timeout')", opt: Options{AdvisoryLocks: true}, want: nil},
		// Advisory locks (the calls themselves: TestDecideLockCall, TestLockCallValues).
		{sql: "SELECT pg_advisory_lock(a.b)", want: &Rewrite{Hint: lockCallHint}},
		{sql: "SELECT pg_advisory_lock(a.b)", opt: Options{Settings: true}, want: nil},
		// TRUNCATE.
		{sql: "TRUNCATE t", want: &Rewrite{Text: "DELETE FROM t WHERE (SELECT 1 / (CASE WHEN count(*) > 3000 THEN 0 ELSE 1 END) FROM t) = 1",
			Tag: "TRUNCATE TABLE", Err: &Error{Code: pgerrcode.ProgramLimitExceeded}, ErrCode: pgerrcode.DivisionByZero,
			Truncate: &TruncatePlan{Tables: []sqllex.TruncateTable{{Name: "t"}}, Batch: TruncateBatch}}},
		{sql: "truncate table only s.t continue identity restrict", want: &Rewrite{
			Text: "DELETE FROM ONLY s.t WHERE (SELECT 1 / (CASE WHEN count(*) > 3000 THEN 0 ELSE 1 END) FROM ONLY s.t) = 1",
			Tag:  "TRUNCATE TABLE", Err: &Error{Code: pgerrcode.ProgramLimitExceeded}, ErrCode: pgerrcode.DivisionByZero,
			Truncate: &TruncatePlan{Tables: []sqllex.TruncateTable{{Name: "s.t", Only: true}}, Batch: TruncateBatch}}},
		{sql: "truncate table pgbench_accounts, pgbench_branches, pgbench_history, pgbench_tellers", want: &Rewrite{
			Text: FailingSQL, Err: &Error{Code: pgerrcode.FeatureNotSupported},
			Truncate: &TruncatePlan{Tables: []sqllex.TruncateTable{{Name: "pgbench_accounts"}, {Name: "pgbench_branches"},
				{Name: "pgbench_history"}, {Name: "pgbench_tellers"}}, Batch: TruncateBatch}}},
		{sql: "TRUNCATE t CASCADE", want: refused(pgerrcode.FeatureNotSupported)},
		{sql: "TRUNCATE a, b RESTART IDENTITY", want: refused(pgerrcode.FeatureNotSupported)},
		{sql: "TRUNCATE t RESTART IDENTITY RESTRICT", want: refused(pgerrcode.FeatureNotSupported)},
		{sql: "TRUNCATE t, ", want: &Rewrite{Hint: truncateHint}},
		{sql: "TRUNCATE t", opt: Options{Settings: true}, want: nil},
		// Refusals DSQL makes, with a hint.
		{sql: "CREATE TEMP TABLE x (a int)", want: &Rewrite{Hint: tempTableHint}},
		{sql: "create global temporary table x (a int)", want: &Rewrite{Hint: tempTableHint}},
		{sql: "CREATE TABLE x (a int)", want: nil},
		{sql: "SAVEPOINT a", want: &Rewrite{Hint: refusalHints[sqllex.Savepoint]}},
		{sql: "LISTEN ch", want: &Rewrite{Hint: refusalHints[sqllex.Listen]}},
		{sql: "DECLARE c CURSOR FOR SELECT 1", want: &Rewrite{Hint: refusalHints[sqllex.Declare]}},
		{sql: "LOCK TABLE t", want: &Rewrite{Hint: refusalHints[sqllex.Lock]}},
		{sql: "SELECT 1", want: nil},
	} {
		opt := tc.opt
		if opt == (Options{}) {
			opt = allOn
		}
		got := Decide(lexed(tc.sql), sqllex.Classify(tc.sql), nil, opt, tc.emu)
		if got != nil && got.Err != nil {
			if got.Err.Message == "" {
				t.Errorf("Decide(%q) refuses without a message", tc.sql)
			}
			got.Err = &Error{Code: got.Err.Code} // the code is what matters here
		}
		if diff := cmp.Diff(tc.want, got); diff != "" {
			t.Errorf("Decide(%q, %+v) (-want +got):\n%s", tc.sql, opt, diff)
		}
	}
}

// TestDecideLockCall: a whole-statement advisory-lock call is answered by
// the gateway, with the parameter types PostgreSQL would infer.
func TestDecideLockCall(t *testing.T) {
	for _, tc := range []struct {
		sql        string
		oids       []uint32
		column     string
		params     []uint32
		returnBool bool
		xact       bool
	}{
		{"SELECT pg_advisory_lock($1)", nil, "pg_advisory_lock", []uint32{OIDInt8}, false, false},
		{"select pg_catalog.pg_try_advisory_xact_lock($1, $2) as got", []uint32{OIDInt8}, "got", []uint32{OIDInt8, OIDInt4}, true, true},
		{"SELECT pg_advisory_unlock(7::bigint)", nil, "pg_advisory_unlock", []uint32{}, true, false},
		{"SELECT pg_advisory_unlock_all()", nil, "pg_advisory_unlock_all", []uint32{}, false, false},
	} {
		rw := Decide(lexed(tc.sql), sqllex.Classify(tc.sql), tc.oids, allOn, nil)
		if rw == nil || rw.Lock == nil || rw.Text != "" {
			t.Fatalf("Decide(%q) = %+v, want a lock call", tc.sql, rw)
		}
		lc := rw.Lock
		if lc.Column != tc.column || !cmp.Equal(lc.Params, tc.params) || lc.ReturnsBool() != tc.returnBool || lc.Xact() != tc.xact {
			t.Errorf("Decide(%q) = %+v", tc.sql, lc)
		}
	}
	for _, sql := range []string{"SELECT pg_advisory_lock(1, 2, 3)", "SELECT pg_advisory_unlock_all(1)", "SELECT pg_advisory_lock('$1')", "SELECT pg_advisory_lock(1::text)"} {
		if rw := Decide(lexed(sql), sqllex.Classify(sql), nil, allOn, nil); rw == nil || rw.Lock != nil || rw.Hint != lockCallHint {
			t.Errorf("Decide(%q) = %+v, want the lock-call hint", sql, rw)
		}
	}
}

func TestDeallocate(t *testing.T) {
	for sql, want := range map[string]*Rewrite{
		"DEALLOCATE s1":         {Text: PlaceholderSQL, Tag: "DEALLOCATE", HideRows: true, Dealloc: &Deallocation{Name: "s1"}},
		"deallocate prepare S1": {Text: PlaceholderSQL, Tag: "DEALLOCATE", HideRows: true, Dealloc: &Deallocation{Name: "s1"}},
		"DEALLOCATE ALL":        {Text: PlaceholderSQL, Tag: "DEALLOCATE ALL", HideRows: true, Dealloc: &Deallocation{All: true}},
		"DEALLOCATE":            nil,
	} {
		if diff := cmp.Diff(want, Deallocate(lexed(sql))); diff != "" {
			t.Errorf("Deallocate(%q) (-want +got):\n%s", sql, diff)
		}
	}
}

func TestBeginIsolation(t *testing.T) {
	for sql, want := range map[string]string{
		"BEGIN ISOLATION LEVEL SERIALIZABLE":                          "serializable",
		"start transaction read only, isolation level read committed": "read committed",
		"begin isolation /* x */ level repeatable read":               "repeatable read",
		"begin":                                        "",
		"begin isolation level repeatable read":        "repeatable read",
		"begin isolation level":                        "",
		"begin transaction isolation level read write": "",
	} {
		rw := Decide(lexed(sql), sqllex.Begin, nil, allOn, nil)
		refused := want != "" && want != "repeatable read"
		switch {
		case !refused && rw != nil:
			t.Errorf("Decide(%s) = %+v, want nil (level %q)", sql, rw, want)
		case refused && (rw == nil || rw.Err == nil || !strings.Contains(rw.Err.Message, strings.ToUpper(want))):
			t.Errorf("Decide(%s) = %+v, want a refusal of %s", sql, rw, strings.ToUpper(want))
		}
	}
}

func TestValue(t *testing.T) {
	emu := map[string]string{"statement_timeout": "5s"}
	for name, want := range map[string]string{
		"statement_timeout":             "5s",
		"lock_timeout":                  "0",
		"client_min_messages":           "notice",
		"default_transaction_isolation": "repeatable read",
		"transaction_isolation":         "repeatable read",
	} {
		if got, ok := Value(emu, name); !ok || got != want {
			t.Errorf("Value(%s) = %q, %v; want %q", name, got, ok, want)
		}
	}
	if v, ok := Value(emu, "search_path"); ok {
		t.Errorf("Value(search_path) = %q: not emulated", v)
	}
}

func TestStartupSettings(t *testing.T) {
	got, err := StartupSettings(map[string]string{"statement_timeout": "1500", "default_transaction_isolation": "Repeatable  Read",
		"client_min_messages": "DEBUG", "application_name": "app"})
	want := map[string]string{"statement_timeout": "1500ms", "default_transaction_isolation": "repeatable read", "client_min_messages": "debug2"}
	if err != nil || !cmp.Equal(got, want) {
		t.Fatalf("StartupSettings = %v, %v; want %v", got, err, want)
	}
	for _, bad := range []map[string]string{{"statement_timeout": "1 2"}, {"default_transaction_isolation": "serializable"}, {"synchronous_commit": ""}} {
		if got, err := StartupSettings(bad); err == nil {
			t.Errorf("StartupSettings(%v) = %v, want an error", bad, got)
		}
	}
}

func TestBelowMinMessages(t *testing.T) {
	for _, tc := range []struct {
		level, severity string
		want            bool
	}{
		{"notice", "NOTICE", false},
		{"notice", "DEBUG1", true},
		{"warning", "NOTICE", true},
		{"warning", "INFO", false}, // always sent
		{"error", "WARNING", true},
		{"notice", "NOTICIA", false}, // unknown: sent
	} {
		if got := BelowMinMessages(tc.level, tc.severity); got != tc.want {
			t.Errorf("BelowMinMessages(%s, %s) = %v", tc.level, tc.severity, got)
		}
	}
}

func TestMillis(t *testing.T) {
	for v, want := range map[string]time.Duration{"0": 0, "": 0, "1500ms": 1500 * time.Millisecond, "5s": 5 * time.Second, "2min": 2 * time.Minute, "x": 0} {
		if got := Millis(v); got != want {
			t.Errorf("Millis(%q) = %v, want %v", v, got, want)
		}
	}
}

// BenchmarkDecide: statements the layer leaves alone, the common case on
// the per-query path, cost a classification's worth and no allocation.
func BenchmarkDecide(b *testing.B) {
	for _, sql := range []string{"SELECT abalance FROM pgbench_accounts WHERE aid = $1", "UPDATE t SET a = 1 WHERE id = 2", "BEGIN"} {
		var lx sqllex.Lexed
		lx.Lex(sql)
		st := lx.Stmt(0)
		k := st.Kind()
		b.Run(k.String(), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if Decide(st, k, nil, allOn, nil) != nil {
					b.Fatal("rewritten")
				}
			}
		})
	}
}

// lexed is sql's first statement lexed as the gateway lexes a simple
// Query (sql whole when it holds none).
func lexed(sql string) sqllex.Stmt {
	var lx sqllex.Lexed
	lx.Lex(sql)
	if lx.Len() == 0 {
		return sqllex.OneStmt(sql)
	}
	return lx.Stmt(0)
}

// TestTruncateStatements: the statements a batched TRUNCATE runs.
func TestTruncateStatements(t *testing.T) {
	one := sqllex.TruncateTable{Name: `public."Big"`, Only: true}
	if got, want := TruncateBatchDelete(one, []string{"id"}, 1000),
		`DELETE FROM ONLY public."Big" WHERE id IN (SELECT id FROM ONLY public."Big" LIMIT 1000)`; got != want {
		t.Errorf("got  %s\nwant %s", got, want)
	}
	two := sqllex.TruncateTable{Name: "t"}
	if got, want := TruncateBatchDelete(two, []string{"a", "B c"}, 500),
		`DELETE FROM t WHERE (a, "B c") IN (SELECT a, "B c" FROM t LIMIT 500)`; got != want {
		t.Errorf("got  %s\nwant %s", got, want)
	}
	if got := TruncateKeysQuery(one); !strings.Contains(got, `'public."Big"'::regclass`) || !strings.Contains(got, "indisprimary") {
		t.Errorf("keys query %s", got)
	}
	e := TruncateOverLimit("big")
	if e.Code != pgerrcode.ProgramLimitExceeded || !strings.Contains(e.Message, "3,000") || e.Hint == "" {
		t.Errorf("over-limit error %+v", e)
	}
	if !IsTruncateGuard(pgerrcode.DivisionByZero) || IsTruncateGuard(pgerrcode.UndefinedTable) {
		t.Error("IsTruncateGuard")
	}
}
