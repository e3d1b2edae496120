package sqllex_test

import (
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/dsqlgate/dsqlgate/pgwire/sqllex"
)

func TestParseShow(t *testing.T) {
	tests := []struct {
		name   string
		stmt   string
		want   string
		wantOK bool
	}{
		{"parameter", "SHOW search_path", "search_path", true},
		{"mixed case", "show TimeZone;", "timezone", true},
		{"quoted", `SHOW "DateStyle"`, "datestyle", true},
		{"custom", "SHOW myapp.Tenant", "myapp.tenant", true},
		{"all", "SHOW ALL", "all", true},
		{"time zone", "SHOW TIME ZONE", "timezone", true},
		{"transaction isolation level", "SHOW TRANSACTION ISOLATION LEVEL", "transaction_isolation", true},
		{"session authorization", "/* c */ SHOW SESSION AUTHORIZATION", "session_authorization", true},
		{"time alone", "SHOW time", "time", true},
		{"nothing", "SHOW", "", false},
		{"two names", "SHOW a b", "", false},
		{"reserved", "SHOW select", "", false},
		{"not show", "SET x = 1", "", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := sqllex.ParseShow(tt.stmt)
			if got != tt.want || ok != tt.wantOK {
				t.Errorf("ParseShow(%q) = %q, %v; want %q, %v", tt.stmt, got, ok, tt.want, tt.wantOK)
			}
		})
	}
}

func TestParseSelectCall(t *testing.T) {
	tests := []struct {
		name   string
		stmt   string
		want   sqllex.Call
		wantOK bool
	}{
		{"one arg", "SELECT pg_advisory_lock(1)", sqllex.Call{Name: "pg_advisory_lock", Args: []string{"1"}}, true},
		{"params", "select pg_advisory_lock($1, $2);", sqllex.Call{Name: "pg_advisory_lock", Args: []string{"$1", "$2"}}, true},
		{"cast arg", "SELECT pg_try_advisory_lock(1::bigint)", sqllex.Call{Name: "pg_try_advisory_lock", Args: []string{"1::bigint"}}, true},
		{"qualified", "SELECT pg_catalog.pg_advisory_unlock_all()", sqllex.Call{Schema: "pg_catalog", Name: "pg_advisory_unlock_all"}, true},
		{"quoted and folded", `SELECT "MySchema".My_Fn( 'a,b' , f(1, 2), ARRAY[1,2] )`, sqllex.Call{Schema: "MySchema", Name: "my_fn", Args: []string{"'a,b'", "f(1, 2)", "ARRAY[1,2]"}}, true},
		{"alias", "SELECT pg_advisory_lock(42) AS got", sqllex.Call{Name: "pg_advisory_lock", Args: []string{"42"}, Alias: "got"}, true},
		{"bare alias", `SELECT pg_advisory_lock(42) "Got"`, sqllex.Call{Name: "pg_advisory_lock", Args: []string{"42"}, Alias: "Got"}, true},
		{"keyword alias after as", "SELECT f(1) AS select", sqllex.Call{Name: "f", Args: []string{"1"}, Alias: "select"}, true},
		{"comments", "/* lock */ SELECT /* x */ f( /* a */ 1 /* b */ ) -- c", sqllex.Call{Name: "f", Args: []string{"1"}}, true},
		{"type-func keyword name", "SELECT left('abc', 1)", sqllex.Call{Name: "left", Args: []string{"'abc'", "1"}}, true},
		{"from clause", "SELECT f(1) FROM t", sqllex.Call{}, false},
		{"two columns", "SELECT f(1), g(2)", sqllex.Call{}, false},
		{"cast of result", "SELECT f(1)::int", sqllex.Call{}, false},
		{"arithmetic", "SELECT f(1) + 1", sqllex.Call{}, false},
		{"distinct", "SELECT DISTINCT f(1)", sqllex.Call{}, false},
		{"col name keyword", "SELECT coalesce(1, 2)", sqllex.Call{}, false},
		{"no parentheses", "SELECT f", sqllex.Call{}, false},
		{"empty arg", "SELECT f(1,,2)", sqllex.Call{}, false},
		{"trailing comma", "SELECT f(1,)", sqllex.Call{}, false},
		{"unclosed", "SELECT f(1", sqllex.Call{}, false},
		{"bracket closes call", "SELECT f(1]", sqllex.Call{}, false},
		{"three part name", "SELECT a.b.c(1)", sqllex.Call{}, false},
		{"unterminated arg", "SELECT f('abc)", sqllex.Call{}, false},
		{"second statement", "SELECT f(1); SELECT 2", sqllex.Call{}, false},
		{"not select", "VALUES (f(1))", sqllex.Call{}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := sqllex.ParseSelectCall(tt.stmt)
			if ok != tt.wantOK {
				t.Fatalf("ParseSelectCall(%q) ok = %v, want %v (got %+v)", tt.stmt, ok, tt.wantOK, got)
			}
			if diff := cmp.Diff(tt.want, got, cmpopts.EquateEmpty()); diff != "" {
				t.Errorf("ParseSelectCall(%q) (-want +got):\n%s", tt.stmt, diff)
			}
		})
	}
}

func TestParseTruncate(t *testing.T) {
	tests := []struct {
		name   string
		stmt   string
		want   sqllex.TruncateStmt
		wantOK bool
	}{
		{"plain", "TRUNCATE t", sqllex.TruncateStmt{Tables: []sqllex.TruncateTable{{Name: "t"}}}, true},
		{"table keyword", "truncate table public.t;", sqllex.TruncateStmt{Tables: []sqllex.TruncateTable{{Name: "public.t"}}}, true},
		{"quoted", `TRUNCATE "My Schema"."My Table", db.s.t`, sqllex.TruncateStmt{Tables: []sqllex.TruncateTable{{Name: `"My Schema"."My Table"`}, {Name: "db.s.t"}}}, true},
		{"only and star", "TRUNCATE ONLY a, b *, ONLY (c)", sqllex.TruncateStmt{Tables: []sqllex.TruncateTable{{Name: "a", Only: true}, {Name: "b"}, {Name: "c", Only: true}}}, true},
		{"continue identity restrict", "TRUNCATE t CONTINUE IDENTITY RESTRICT", sqllex.TruncateStmt{Tables: []sqllex.TruncateTable{{Name: "t"}}}, true},
		{"restart identity", "TRUNCATE t RESTART IDENTITY", sqllex.TruncateStmt{Tables: []sqllex.TruncateTable{{Name: "t"}}, RestartIdentity: true}, true},
		{"cascade", "TRUNCATE TABLE a, b CASCADE", sqllex.TruncateStmt{Tables: []sqllex.TruncateTable{{Name: "a"}, {Name: "b"}}, Cascade: true}, true},
		{"both", "TRUNCATE a RESTART IDENTITY CASCADE", sqllex.TruncateStmt{Tables: []sqllex.TruncateTable{{Name: "a"}}, RestartIdentity: true, Cascade: true}, true},
		{"comments", "/* c */ TRUNCATE /* d */ t -- e", sqllex.TruncateStmt{Tables: []sqllex.TruncateTable{{Name: "t"}}}, true},
		{"no table", "TRUNCATE", sqllex.TruncateStmt{}, false},
		{"table only", "TRUNCATE TABLE", sqllex.TruncateStmt{}, false},
		{"reserved name", "TRUNCATE select", sqllex.TruncateStmt{}, false},
		{"four parts", "TRUNCATE a.b.c.d", sqllex.TruncateStmt{}, false},
		{"identity alone", "TRUNCATE t IDENTITY", sqllex.TruncateStmt{}, false},
		{"cascade restrict", "TRUNCATE t CASCADE RESTRICT", sqllex.TruncateStmt{}, false},
		{"only unclosed", "TRUNCATE ONLY (t", sqllex.TruncateStmt{}, false},
		{"trailing comma", "TRUNCATE a,", sqllex.TruncateStmt{}, false},
		{"not truncate", "DELETE FROM t", sqllex.TruncateStmt{}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := sqllex.ParseTruncate(tt.stmt)
			if ok != tt.wantOK {
				t.Fatalf("ParseTruncate(%q) ok = %v, want %v (got %+v)", tt.stmt, ok, tt.wantOK, got)
			}
			if diff := cmp.Diff(tt.want, got, cmpopts.EquateEmpty()); diff != "" {
				t.Errorf("ParseTruncate(%q) (-want +got):\n%s", tt.stmt, diff)
			}
		})
	}
}
