package sqllex_test

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/dsqlgate/dsqlgate/pgwire/sqllex"
)

// TestSetConfigCalls: the calls are found anywhere in the statement, with
// their span in the statement's own text, whatever the statement's place
// in the query.
func TestSetConfigCalls(t *testing.T) {
	for _, tc := range []struct {
		stmt string
		want []sqllex.SetConfigCall
		ok   bool
	}{
		{"SELECT set_config('bytea_output', 'hex', false) FROM x", []sqllex.SetConfigCall{
			{Start: 7, End: 47, Literal: true, NameKnown: true, Name: "bytea_output", Value: "hex"}}, true},
		{`SELECT pg_catalog."set_config"(E'a', 'b''c', TRUE), 1`, []sqllex.SetConfigCall{
			{Start: 7, End: 50, Literal: true, NameKnown: true, Name: "a", Value: "b'c", Local: true}}, true},
		{"SELECT set_config($1, 'v', false), set_config('a', 'b', is_local)", []sqllex.SetConfigCall{
			{Start: 7, End: -1}, {Start: 35, End: -1, NameKnown: true, Name: "a"}}, true},
		{"SELECT set_config(E'client\\x5fencoding', $1, false), set_config('a' || 'b', 'c', false)", []sqllex.SetConfigCall{
			{Start: 7, End: -1, NameKnown: true, Name: "client_encoding"}, {Start: 53, End: -1}}, true},
		{"SELECT app.set_config('a', 'b', false), db.pg_catalog.set_config('a', 'b', false)", nil, true},
		{"SELECT set_config, 'set_config(''a'', ''b'', false)' /* set_config('a','b',false) */ FROM t", nil, true},
		{"SELECT set_config('a', 'b', false) FROM \"t", nil, false},
	} {
		for _, prefix := range []string{"", "SELECT 1; /* x */ "} {
			var lx sqllex.Lexed
			lx.Lex(prefix + tc.stmt)
			st := lx.Stmt(lx.Len() - 1)
			got, ok := st.SetConfigCalls()
			if ok != tc.ok || !cmp.Equal(got, tc.want) {
				t.Errorf("SetConfigCalls(%q) = %+v, %v; want %+v, %v", prefix+tc.stmt, got, ok, tc.want, tc.ok)
			}
			if got2, ok2 := sqllex.OneStmt(tc.stmt).SetConfigCalls(); ok2 != ok || !cmp.Equal(got2, got) {
				t.Errorf("OneStmt(%q).SetConfigCalls() = %+v, %v; want as lexed %+v", tc.stmt, got2, ok2, got)
			}
			for _, c := range got {
				if span := st.Text[c.Start:max(c.End, c.Start)]; c.Literal && (!strings.HasSuffix(span, ")") ||
					!strings.HasPrefix(strings.ToLower(span), "set_config(") && !strings.HasPrefix(strings.ToLower(span), "pg_catalog.")) {
					t.Errorf("%q: span %q is not the call", tc.stmt, span)
				}
			}
		}
	}
}
