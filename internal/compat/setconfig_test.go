package compat

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/jackc/pgerrcode"

	"github.com/dsqlgate/dsqlgate/pgwire/sqllex"
)

// TestDecideSetConfig: set_config() calls with literal arguments are
// transparent through the gateway: a parameter DSQL allows is DSQL's, an
// emulated setting changes as SET does, a pinned parameter set to the value
// DSQL has is answered with it, and anything else keeps DSQL's refusal
// with a hint.
func TestDecideSetConfig(t *testing.T) {
	const pinned = "(SELECT 'hex'::text AS set_config)"
	hint := &Rewrite{Hint: setConfigHint}
	emulated := func(text string, ch *SettingChange) *Rewrite {
		return &Rewrite{Text: text, Tag: "SELECT 1", Change: ch}
	}
	refused := func(code string) *Rewrite { return &Rewrite{Text: FailingSQL, Err: &Error{Code: code}} }
	for _, tc := range []struct {
		sql  string
		opt  Options
		want *Rewrite
	}{
		// Parameters DSQL allows: its own.
		{sql: "SELECT set_config('search_path', 'app', false)", want: nil},
		{sql: "SELECT set_config('Application_Name', 'x', true)", want: nil},
		{sql: "SELECT set_config('enable_seqscan', 'off', false)", want: nil},
		// pgAdmin's connect query: bytea_output is pinned to hex on DSQL.
		{sql: "SELECT set_config('bytea_output','hex',false) FROM pg_show_all_settings() WHERE name = 'bytea_output'",
			want: &Rewrite{Text: "SELECT " + pinned + " FROM pg_show_all_settings() WHERE name = 'bytea_output'"}},
		{sql: "select pg_catalog.set_config('BYTEA_OUTPUT', 'HEX', true) as b",
			want: &Rewrite{Text: "select " + pinned + " as b"}},
		{sql: `SELECT "set_config"('bytea_output', 'hex', false), set_config('search_path', 'a', false)`,
			want: &Rewrite{Text: "SELECT " + pinned + ", set_config('search_path', 'a', false)"}},
		{sql: "SELECT set_config('bytea_output', 'hex', false), set_config('bytea_output', 'hex', true)",
			want: &Rewrite{Text: "SELECT " + pinned + ", " + pinned}},
		{sql: "SELECT set_config('transaction_isolation', 'REPEATABLE READ', true)",
			want: &Rewrite{Text: "SELECT (SELECT 'repeatable read'::text AS set_config)"}},
		{sql: "SELECT set_config('bytea_output', 'escape', false)", want: hint},
		{sql: "SELECT set_config('transaction_isolation', 'serializable', true)", want: hint},
		// Emulated settings: the whole statement, literal arguments.
		{sql: "SELECT set_config('statement_timeout', '50ms', false)",
			want: emulated(`SELECT '50ms'::text AS set_config`, &SettingChange{Kind: sqllex.SetValue, Name: "statement_timeout", Value: "50ms"})},
		{sql: "select pg_catalog.set_config('Lock_Timeout', '1000', true) AS lt;",
			want: emulated(`SELECT '1s'::text AS lt`, &SettingChange{Kind: sqllex.SetValue, Scope: sqllex.ScopeLocal, Name: "lock_timeout", Value: "1s"})},
		{sql: "SELECT set_config('client_min_messages', E'WARNING', false)",
			want: emulated(`SELECT 'warning'::text AS set_config`, &SettingChange{Kind: sqllex.SetValue, Name: "client_min_messages", Value: "warning"})},
		{sql: "SELECT set_config('statement_timeout', 'soon', false)", want: refused(pgerrcode.InvalidParameterValue)},
		{sql: "SELECT set_config('standard_conforming_strings', 'off', false)", want: refused(pgerrcode.FeatureNotSupported)},
		// An emulated setting inside a larger statement: how often the
		// call runs is the server's business, so DSQL refuses it.
		{sql: "SELECT set_config('statement_timeout', '1s', false) FROM t", want: hint},
		{sql: "SELECT set_config('statement_timeout', '1s', false), 1", want: hint},
		{sql: "SELECT set_config('statement_timeout', '1s', false), set_config('bytea_output', 'hex', false)", want: hint},
		{sql: "INSERT INTO t VALUES (set_config('statement_timeout', '1s', false))", want: hint},
		// Not fully recognised: left to DSQL, with the hint.
		// A parameter named at run time could be client_encoding: the
		// gateway's refusal (encoding_test.go).
		{sql: "SELECT set_config($1, 'hex', false)", want: refused(pgerrcode.FeatureNotSupported)},
		{sql: "SELECT set_config('bytea_output', $1, false)", want: hint},
		{sql: "SELECT set_config('bytea_output', 'hex', $1)", want: hint},
		{sql: "SELECT set_config('bytea_output', 'hex', 'false')", want: hint},
		{sql: "SELECT set_config('bytea_output', 'hex'::text, false)", want: hint},
		{sql: "SELECT set_config('bytea_output', NULL, false)", want: hint},
		{sql: "SELECT set_config('bytea_output', 'hex', false", want: hint},
		{sql: "SELECT set_config('work_mem', '64MB', false)", want: hint},
		{sql: "SELECT set_config('statement_timeout', '1s', false) -- ok", opt: Options{AdvisoryLocks: true}, want: nil},
		{sql: "SELECT set_config('bytea_output', 'hex', false) /* unterminated", want: hint},
		// Only queries and DML are rewritten: elsewhere (a view, a SQL
		// function's body) the rewrite could outlive the session.
		{sql: "CREATE VIEW v AS SELECT set_config('bytea_output', 'hex', false)", want: hint},
		{sql: "EXPLAIN SELECT set_config('statement_timeout', '1s', false)", want: hint},
		{sql: "CREATE VIEW v AS SELECT set_config('search_path', 'a', false)", want: nil},
		{sql: "UPDATE t SET a = set_config('bytea_output', 'hex', false) RETURNING a",
			want: &Rewrite{Text: "UPDATE t SET a = " + pinned + " RETURNING a"}},
		{sql: "WITH x AS (SELECT 1) SELECT set_config('bytea_output', 'hex', false) FROM x",
			want: &Rewrite{Text: "WITH x AS (SELECT 1) SELECT " + pinned + " FROM x"}},
		// Not calls of pg_catalog's set_config.
		{sql: "SELECT app.set_config('bytea_output', 'hex', false)", want: nil},
		{sql: "SELECT set_config FROM t", want: nil},
		{sql: "SELECT 'set_config(''bytea_output'', ''x'', false)'", want: nil},
		{sql: "SELECT 1 -- set_config('work_mem', '1MB', false)", want: nil},
	} {
		opt := tc.opt
		if opt == (Options{}) {
			opt = allOn
		}
		got := Decide(lexed(tc.sql), sqllex.Classify(tc.sql), nil, opt, nil)
		if got != nil && got.Err != nil {
			if got.Err.Message == "" {
				t.Errorf("Decide(%q) refuses without a message", tc.sql)
			}
			got.Err = &Error{Code: got.Err.Code}
		}
		if diff := cmp.Diff(tc.want, got); diff != "" {
			t.Errorf("Decide(%q, %+v) (-want +got):\n%s", tc.sql, opt, diff)
		}
	}
}

// TestDecideSetConfigOffsets: the call is found in the statement's own
// text whether the statement is one of several in a query (token positions
// count in the query), the extended protocol's one statement, or one of a
// query too long to keep tokens for.
func TestDecideSetConfigOffsets(t *testing.T) {
	const stmt = "SELECT set_config('bytea_output','hex',false) FROM pg_show_all_settings() WHERE name = 'bytea_output'"
	const want = "SELECT (SELECT 'hex'::text AS set_config) FROM pg_show_all_settings() WHERE name = 'bytea_output'"
	long := "SELECT '" + strings.Repeat("x", sqllex.MaxTokenized) + "'"
	for _, query := range []string{
		"SET DateStyle=ISO; SET client_min_messages=notice; " + stmt + "; SET client_encoding='utf-8';",
		long + "; /* c */ " + stmt,
	} {
		var lx sqllex.Lexed
		lx.Lex(query)
		found := false
		for i := range lx.Len() {
			st := lx.Stmt(i)
			if st.Text != stmt {
				continue
			}
			found = true
			got := Decide(st, st.Kind(), nil, allOn, nil)
			if got == nil || got.Text != want {
				t.Errorf("Decide(statement of %.60q...) = %+v, want text %q", query, got, want)
			}
		}
		if !found {
			t.Fatalf("statement not found in %.60q", query)
		}
	}
	if got := Decide(sqllex.OneStmt(stmt), sqllex.Select, nil, allOn, nil); got == nil || got.Text != want {
		t.Errorf("Decide(OneStmt) = %+v, want text %q", got, want)
	}
}
