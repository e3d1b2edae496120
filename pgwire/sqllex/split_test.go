package sqllex_test

import (
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/dsqlgate/dsqlgate/pgwire/sqllex"
)

// splitTexts returns the Text of each statement, with "!" appended to an
// unterminated one, and checks the offsets on the way.
func splitTexts(t *testing.T, sql string) []string {
	t.Helper()
	var out []string
	for _, st := range sqllex.SplitStatements(sql) {
		if sql[st.Start:st.End] != st.Text || st.Text == "" {
			t.Errorf("statement %+v: offsets do not match the text", st)
		}
		text := st.Text
		if st.Unterminated {
			text += "!"
		}
		out = append(out, text)
	}
	return out
}

// splitCases are shared with the test against a real PostgreSQL (every
// case that PostgreSQL runs without error is run there too), so each must
// be valid SQL unless marked bad.
var splitCases = []struct {
	name string
	sql  string
	want []string
	bad  bool // PostgreSQL rejects the string; its statement count is not compared
}{
	{name: "empty", sql: "", want: nil},
	{name: "whitespace", sql: " \n\t ", want: nil},
	{name: "comments only", sql: "-- a\n/* b */ ", want: nil},
	{name: "semicolons only", sql: ";;; ;", want: nil},
	{name: "one", sql: "SELECT 1", want: []string{"SELECT 1"}},
	{name: "trailing semicolon", sql: "SELECT 1;", want: []string{"SELECT 1"}},
	{name: "two", sql: "SELECT 1; SELECT 2", want: []string{"SELECT 1", "SELECT 2"}},
	{name: "empty statement dropped", sql: "SET search_path = public; ; SELECT 1", want: []string{"SET search_path = public", "SELECT 1"}},
	{name: "comment-only statement dropped", sql: "SELECT 1; /* x */; -- y\n; SELECT 2", want: []string{"SELECT 1", "SELECT 2"}},
	{name: "comments trimmed", sql: "/* a */ SELECT 1 /* b */ -- c\n; -- d\n SELECT /* e */ 2 -- f", want: []string{"SELECT 1", "SELECT /* e */ 2"}},
	{name: "semicolon in string", sql: "SET search_path = \"My Schema\", public; SELECT 'a;b'", want: []string{`SET search_path = "My Schema", public`, "SELECT 'a;b'"}},
	{name: "semicolon in escape string", sql: `SELECT E'\';'; SELECT 2`, want: []string{`SELECT E'\';'`, "SELECT 2"}},
	{name: "escape string ending in backslash", sql: `SELECT E'\\'; SELECT E'\\\''';'`, want: []string{`SELECT E'\\'`, `SELECT E'\\\''';'`}},
	{name: "operator before comment", sql: "SELECT 2 */* ; */ 3; SELECT 1 --;\n+1", want: []string{"SELECT 2 */* ; */ 3", "SELECT 1 --;\n+1"}},
	{name: "bit strings", sql: "SELECT B'1;'; SELECT X'1F'", want: []string{"SELECT B'1;'", "SELECT X'1F'"}, bad: true},
	{name: "backslash in standard string", sql: `SELECT 'a\'; SELECT 2`, want: []string{`SELECT 'a\'`, "SELECT 2"}},
	{name: "semicolon in quoted identifier", sql: `SELECT 1 AS "a;b"; SELECT 2`, want: []string{`SELECT 1 AS "a;b"`, "SELECT 2"}},
	{name: "semicolon in dollar quote", sql: "SELECT $$a;b$$; SELECT $x$;$$;$x$", want: []string{"SELECT $$a;b$$", "SELECT $x$;$$;$x$"}},
	{name: "semicolon in line comment", sql: "SELECT 1 -- ; SELECT 2\n; SELECT 3", want: []string{"SELECT 1", "SELECT 3"}},
	{name: "semicolon in nested comment", sql: "SELECT 1 /* a /* ; */ ; */; SELECT 2", want: []string{"SELECT 1", "SELECT 2"}},
	{name: "semicolon in unicode string", sql: `SELECT U&'\0041;'; SELECT U&'!0041;' UESCAPE '!'`, want: []string{`SELECT U&'\0041;'`, `SELECT U&'!0041;' UESCAPE '!'`}},
	{name: "semicolon in continued string", sql: "SELECT 'a'\n';'; SELECT 2", want: []string{"SELECT 'a'\n';'", "SELECT 2"}},
	{name: "params and dollar quotes", sql: "SELECT $$$1;$$ AS a$b$; SELECT 1 AS x$y", want: []string{"SELECT $$$1;$$ AS a$b$", "SELECT 1 AS x$y"}},
	{name: "multi-byte", sql: "SELECT 'é;ü' AS \"ñ;\"; SELECT '日本'", want: []string{"SELECT 'é;ü' AS \"ñ;\"", "SELECT '日本'"}},
	{name: "transaction block", sql: "BEGIN; SET LOCAL statement_timeout = '1s'; SELECT 1; COMMIT", want: []string{"BEGIN", "SET LOCAL statement_timeout = '1s'", "SELECT 1", "COMMIT"}},
	{
		name: "begin atomic body",
		sql:  "CREATE FUNCTION f_atomic() RETURNS int LANGUAGE sql BEGIN ATOMIC SELECT 1; SELECT 2; END; SELECT 3",
		want: []string{"CREATE FUNCTION f_atomic() RETURNS int LANGUAGE sql BEGIN ATOMIC SELECT 1; SELECT 2; END", "SELECT 3"},
	},
	{
		name: "begin atomic with case",
		sql:  "create or replace function f_case(x int) returns int language sql begin atomic select case when x > 0 then 1 else 2 end; end; select 4",
		want: []string{"create or replace function f_case(x int) returns int language sql begin atomic select case when x > 0 then 1 else 2 end; end", "select 4"},
	},
	{
		name: "begin atomic with case in parentheses",
		sql:  "CREATE PROCEDURE p_case() LANGUAGE sql BEGIN ATOMIC SELECT (CASE WHEN true THEN 1 END); END; SELECT 5",
		want: []string{"CREATE PROCEDURE p_case() LANGUAGE sql BEGIN ATOMIC SELECT (CASE WHEN true THEN 1 END); END", "SELECT 5"},
	},
	{
		name: "begin atomic empty body",
		sql:  "CREATE OR REPLACE PROCEDURE p_empty() LANGUAGE sql BEGIN ATOMIC END; SELECT 6",
		want: []string{"CREATE OR REPLACE PROCEDURE p_empty() LANGUAGE sql BEGIN ATOMIC END", "SELECT 6"},
	},
	{
		name: "begin atomic with comments and strings",
		sql:  "CREATE FUNCTION f_str() RETURNS text LANGUAGE sql BEGIN /* x */ ATOMIC SELECT 'end;'; -- end;\n END; SELECT 7",
		want: []string{"CREATE FUNCTION f_str() RETURNS text LANGUAGE sql BEGIN /* x */ ATOMIC SELECT 'end;'; -- end;\n END", "SELECT 7"},
	},
	{
		name: "function named begin is not a body",
		sql:  "CREATE FUNCTION begin() RETURNS int LANGUAGE sql AS 'SELECT 1'; SELECT 8",
		want: []string{"CREATE FUNCTION begin() RETURNS int LANGUAGE sql AS 'SELECT 1'", "SELECT 8"},
	},
	{
		name: "dollar-quoted plpgsql body",
		sql:  "CREATE FUNCTION f_pl() RETURNS int LANGUAGE plpgsql AS $$BEGIN RETURN 1; END$$; SELECT 9",
		want: []string{"CREATE FUNCTION f_pl() RETURNS int LANGUAGE plpgsql AS $$BEGIN RETURN 1; END$$", "SELECT 9"},
	},
	{name: "begin outside a function splits", sql: "BEGIN; SELECT CASE WHEN true THEN 1 END; END", want: []string{"BEGIN", "SELECT CASE WHEN true THEN 1 END", "END"}},
	{name: "semicolon inside parentheses still splits", sql: "SELECT (1; SELECT 2)", want: []string{"SELECT (1", "SELECT 2)"}, bad: true},
	{name: "unterminated string", sql: "SELECT 1; SELECT 'abc; SELECT 2", want: []string{"SELECT 1", "SELECT 'abc; SELECT 2!"}, bad: true},
	{name: "unterminated quoted identifier", sql: `SELECT "a;`, want: []string{`SELECT "a;!`}, bad: true},
	{name: "unterminated dollar quote", sql: "SELECT $q$ ; ", want: []string{"SELECT $q$ ; !"}, bad: true},
	{name: "unterminated comment after statement", sql: "SELECT 1 /* ;", want: []string{"SELECT 1 /* ;!"}, bad: true},
	{name: "unterminated comment alone", sql: "SELECT 1; /* ;", want: []string{"SELECT 1", "/* ;!"}, bad: true},
	{name: "unterminated begin atomic", sql: "CREATE FUNCTION f() RETURNS int LANGUAGE sql BEGIN ATOMIC SELECT 1; SELECT 2", want: []string{"CREATE FUNCTION f() RETURNS int LANGUAGE sql BEGIN ATOMIC SELECT 1; SELECT 2"}, bad: true},
	{name: "nul byte", sql: "SELECT 1;\x00;SELECT 2", want: []string{"SELECT 1", "\x00", "SELECT 2"}, bad: true},
}

func TestSplitStatements(t *testing.T) {
	for _, tt := range splitCases {
		t.Run(tt.name, func(t *testing.T) {
			if diff := cmp.Diff(tt.want, splitTexts(t, tt.sql)); diff != "" {
				t.Errorf("SplitStatements(%q) (-want +got):\n%s", tt.sql, diff)
			}
		})
	}
}

func TestSplitStatementsOffsets(t *testing.T) {
	got := sqllex.SplitStatements(" SELECT 1 ;\n/* c */ SHOW x ")
	want := []sqllex.Statement{
		{Text: "SELECT 1", Start: 1, End: 9},
		{Text: "SHOW x", Start: 20, End: 26},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
}
