package dsqlsim

import (
	"testing"

	"github.com/jackc/pgx/v5/pgproto3"
)

func TestConflictError(t *testing.T) {
	tuple := "while updating tuple (0,1) in relation \"t\""
	for _, c := range []struct {
		code, where string
		kind        stmtKind
		want        string // "" for none
	}{
		{"40001", "", kindWrite, msgConflictData},
		{"40P01", "", kindDDL, msgConflictData},
		{"55P03", tuple, kindWrite, msgConflictData},
		{"55P03", tuple, kindDDL, msgConflictData},
		// A writer queued behind another for a row's tuple lock: no context.
		{"55P03", "", kindWrite, msgConflictData},
		// DDL waiting for a table lock another transaction holds, and a
		// read waiting for a table another transaction altered.
		{"55P03", "", kindDDL, msgConflictSchema},
		{"55P03", "", kindRead, msgConflictSchema},
		{"23505", "", kindWrite, ""},
	} {
		got := conflictError(&pgproto3.ErrorResponse{Severity: "ERROR", Code: c.code, Where: c.where}, c.kind)
		switch {
		case c.want == "" && got != nil:
			t.Errorf("%s: got %q, want none", c.code, got.Message)
		case c.want != "" && (got == nil || got.Message != c.want || got.Code != "40001"):
			t.Errorf("%s where=%q kind=%v: got %+v, want 40001 %q", c.code, c.where, c.kind, got, c.want)
		}
	}
}

func TestKindOf(t *testing.T) {
	for q, want := range map[string]stmtKind{
		"select 1": kindRead,
		"SELECT * FROM t WHERE id = 1 FOR UPDATE":        kindWrite,
		"select * from t for no key update":              kindWrite,
		"update t set created = 1":                       kindWrite,
		"ALTER TABLE t ADD COLUMN c int":                 kindDDL,
		"begin; drop table t; commit":                    kindDDL,
		"select 'create table x'":                        kindRead,
		"/* alter */ insert into t values(1)":            kindWrite,
		"Create Index i on t(a)":                         kindDDL,
		"begin; select v from t; commit":                 kindRead,
		"with x as (delete from t returning *) select 1": kindWrite,
		"insert into t values (1)":                       kindWrite,
	} {
		if got := kindOf([]byte(q + "\x00")); got != want {
			t.Errorf("kindOf(%q) = %v, want %v", q, got, want)
		}
	}
}
