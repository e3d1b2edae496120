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
