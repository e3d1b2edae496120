package compat

import (
	"testing"

	"github.com/jackc/pgerrcode"

	"github.com/dsqlgate/dsqlgate/pgwire/sqllex"
)

// TestLockTableProtected: a client statement that names the advisory lock
// table (the default, or a configured [schema.]table), in any spelling the
// lexer accepts, qualified or not, is refused with 42501 and a hint, in a
// simple Query (a statement of a Lexed) as in a Parse (OneStmt). Anything
// else goes on: the name in a string constant, a longer name, and the
// table's schema (it may be the application's own).
func TestLockTableProtected(t *testing.T) {
	ProtectLockTable("")
	ProtectLockTable("gate_locks.held")
	for _, tc := range []struct {
		sql     string
		refused bool
	}{
		{"DELETE FROM dsqlgate_advisory_locks", true},
		{"delete from DSQLGATE_ADVISORY_LOCKS where owner <> 'x'", true},
		{`UPDATE "dsqlgate_advisory_locks" SET expires_at = 'infinity'`, true},
		{`update public."dsqlgate_advisory_locks" set expires_at = 'infinity'`, true},
		{`INSERT INTO U&"dsqlgate\005fadvisory\005flocks" VALUES (1, 1, 'me', 'infinity')`, true},
		{`INSERT INTO U&"dsqlgate!005fadvisory!005flocks" UESCAPE '!' VALUES (1, 1, 'me', 'infinity')`, true},
		{"select * from dsqlgate_advisory_locks", true},
		{"drop table dsqlgate_advisory_locks", true},
		{"with x as (select 1) delete from /* c */ dsqlgate_advisory_locks", true},
		{"DELETE FROM gate_locks.held", true},
		{"delete from held", true},
		{`delete from "gate_locks".other`, false},
		{"SET search_path = gate_locks, public", false},
		{"select set_config('search_path', 'public,gate_locks', false)", false},
		{"select set_config('application_name', 'app', false)", false},
		// Not the table.
		{`UPDATE "DSQLGATE_ADVISORY_LOCKS" SET x = 1`, false}, // a quoted name keeps its case
		{"select 'dsqlgate_advisory_locks'", false},
		{"select * from dsqlgate_advisory_locks_archive", false},
		{"select * from my_dsqlgate_advisory_locks", false},
		{"SET search_path = app, public", false},
		{`select U&"d\0061ta" from t`, false},
		{"select 1", false},
	} {
		for _, st := range []sqllex.Stmt{lexedStmt(tc.sql), sqllex.OneStmt(tc.sql)} {
			rw := Decide(st, st.Kind(), nil, allOn, nil)
			refused := rw != nil && rw.Err != nil && rw.Err.Code == pgerrcode.InsufficientPrivilege
			if refused != tc.refused {
				t.Errorf("%s: %+v, want refused %v", tc.sql, rw, tc.refused)
				continue
			}
			if refused && (rw.Text != FailingSQL || rw.Err.Hint != lockTableHint) {
				t.Errorf("%s: %+v, want FailingSQL and the hint", tc.sql, rw)
			}
		}
	}
}

func lexedStmt(sql string) sqllex.Stmt {
	var l sqllex.Lexed
	l.Lex(sql)
	return l.Stmt(0)
}

func BenchmarkDecideNotLockTable(b *testing.B) {
	st := lexedStmt("SELECT id, name, created_at FROM accounts WHERE id = $1 AND tenant = $2")
	for b.Loop() {
		Decide(st, sqllex.Select, nil, allOn, nil)
	}
}

func BenchmarkTouchesLockTable(b *testing.B) {
	st := lexedStmt("SELECT id, name, created_at FROM accounts WHERE id = $1 AND tenant = $2")
	for b.Loop() {
		touchesLockTable(st)
	}
}

func TestContainsFoldASCII(t *testing.T) {
	for _, tc := range []struct {
		s, sub string
		want   bool
	}{
		{"DELETE FROM DSQLGATE_advisory_LOCKS", "dsqlgate_advisory_locks", true},
		{"dsqlgate_advisory_lock", "dsqlgate_advisory_locks", false},
		{"ddsqlgate_x dsqlgate_y", "dsqlgate_y", true},
		{"abc", "", true},
		{"", "a", false},
		{"xSet_Config(", "set_config", true},
	} {
		if got := containsFoldASCII(tc.s, tc.sub); got != tc.want {
			t.Errorf("containsFoldASCII(%q, %q) = %v", tc.s, tc.sub, got)
		}
	}
}

// TestLockTableInRoutineBody: a statement that creates or replaces a
// SQL-language function or procedure is refused when its body (a string
// constant, in any of its forms: dollar-quoted, quoted with doubled
// quotes, with E-string or U&-string escapes) names the lock table in any
// spelling, or defines a
// routine that does (nested to maxBodyDepth; deeper is refused), or
// changes client_encoding to one the gateway cannot read. The name in a
// string of the body, and strings of ordinary statements, are left alone:
// they are not SQL the server runs.
func TestLockTableInRoutineBody(t *testing.T) {
	ProtectLockTable("")
	ProtectLockTable("gate_locks.held")
	nested := "DELETE FROM dsqlgate_advisory_locks"
	for range maxBodyDepth + 1 {
		nested = "CREATE FUNCTION f() RETURNS void LANGUAGE sql AS " + sqllex.QuoteLiteral(nested)
	}
	const (
		lockRefusal     = pgerrcode.InsufficientPrivilege
		featureRefusal  = pgerrcode.FeatureNotSupported
		notRefused      = ""
		createF         = "CREATE FUNCTION f() RETURNS bigint LANGUAGE sql AS "
		createOrReplace = "create or replace function f() returns void language sql as "
	)
	for _, tc := range []struct {
		sql  string
		code string
	}{
		{createF + "$$ DELETE FROM dsqlgate_advisory_locks RETURNING 1 $$", lockRefusal},
		{createF + "$body$ delete from DSQLGATE_ADVISORY_LOCKS; select 1 $body$", lockRefusal},
		{createOrReplace + "'UPDATE \"dsqlgate_advisory_locks\" SET owner = ''x'''", lockRefusal},
		{createOrReplace + `E'DELETE FROM dsqlgate\x5fadvisory\x5flocks'`, lockRefusal},
		{createOrReplace + `E'DELETE FROM \"dsqlgate_advisory_\u006cocks\"'`, lockRefusal},
		{createOrReplace + `$$ INSERT INTO U&"dsqlgate\005fadvisory\005flocks" VALUES (1, 1, 'me', 'infinity') $$`, lockRefusal},
		{createOrReplace + `U&'DELETE FROM dsqlgate\005fadvisory\005flocks'`, lockRefusal},
		{createOrReplace + `'DELETE FROM U&"dsqlgate!005fadvisory!005flocks" UESCAPE ''!'''`, lockRefusal},
		{"CREATE PROCEDURE p() LANGUAGE sql AS $$ DELETE FROM public.dsqlgate_advisory_locks $$", lockRefusal},
		{"CREATE OR REPLACE PROCEDURE p() LANGUAGE sql AS 'delete from held'", lockRefusal},
		{"/* c */ CREATE FUNCTION f() RETURNS void AS 'DELETE FROM dsqlgate_advisory_locks' LANGUAGE sql", lockRefusal},
		// A routine defined in a routine's body, with the inner body's
		// escapes decoded in turn.
		{createF + `$o$ CREATE FUNCTION g() RETURNS void LANGUAGE sql AS E'DELETE FROM dsqlgate\x5fadvisory_locks' $o$`, lockRefusal},
		{createF + `'CREATE FUNCTION g() RETURNS void LANGUAGE sql AS ''DELETE FROM dsqlgate_advisory_locks'''`, lockRefusal},
		{nested, featureRefusal},
		// A body that changes client_encoding for the session.
		{createF + "$$ SELECT set_config('client_encoding', 'SJIS', false) $$", featureRefusal},
		{"CREATE PROCEDURE p() LANGUAGE sql AS $$ SET client_encoding = 'BIG5' $$", featureRefusal},
		// Not the table.
		{createF + "$$ SELECT count(*) FROM accounts $$", notRefused},
		{createF + "$$ SELECT 'dsqlgate_advisory_locks' $$", notRefused},
		{createF + "$$ SELECT count(*) FROM dsqlgate_advisory_locks_archive $$", notRefused},
		{createF + "$$ SELECT set_config('client_encoding', 'UTF8', false) $$", notRefused},
		{"CREATE TABLE function_log (note text DEFAULT 'dsqlgate_advisory_locks')", notRefused},
		{"CREATE VIEW procedures AS SELECT 'DELETE FROM dsqlgate_advisory_locks' AS q", notRefused},
		{`SELECT E'DELETE FROM dsqlgate\x5fadvisory\x5flocks' AS function`, notRefused},
		{"SELECT f()", notRefused},
	} {
		for _, st := range []sqllex.Stmt{lexedStmt(tc.sql), sqllex.OneStmt(tc.sql)} {
			rw := Decide(st, st.Kind(), nil, allOn, nil)
			code := ""
			if rw != nil && rw.Err != nil {
				code = rw.Err.Code
				if rw.Text != FailingSQL || rw.Err.Hint == "" {
					t.Errorf("%s: %+v, want FailingSQL and a hint", tc.sql, rw)
				}
			}
			if code != tc.code {
				t.Errorf("%s: refused with %q (%+v), want %q", tc.sql, code, rw, tc.code)
			}
		}
	}
}

func BenchmarkTouchesLockTableStrings(b *testing.B) {
	st := lexedStmt("SELECT id FROM accounts WHERE note = 'a function of the procedure' AND tenant = E'x\\x41'")
	for b.Loop() {
		touchesLockTable(st)
	}
}
