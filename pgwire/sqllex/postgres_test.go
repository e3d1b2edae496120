package sqllex_test

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/dsqlgate/dsqlgate/internal/pgtest"
	"github.com/dsqlgate/dsqlgate/pgwire/sqllex"
)

// TestAgainstPostgres checks the package's answers against a real
// PostgreSQL: statement counts of multi-statement strings, string and
// identifier decoding, quoting, SET replay and list splitting. A server
// that cannot be started is a failure, not a skip (except with -short).
func TestAgainstPostgres(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: not starting PostgreSQL")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	pg, err := pgtest.StartPostgres(ctx, pgtest.PostgresOptions{})
	if err != nil {
		t.Fatalf("start postgres: %v", err)
	}
	defer pg.Close()

	connect := func(t *testing.T) *pgconn.PgConn {
		t.Helper()
		conn, err := pgconn.Connect(ctx, pg.SocketDSN("postgres"))
		if err != nil {
			t.Fatalf("connect: %v", err)
		}
		t.Cleanup(func() { conn.Close(context.Background()) })
		return conn
	}
	// exec runs sql with the simple protocol and returns the results.
	exec := func(conn *pgconn.PgConn, sql string) ([]*pgconn.Result, error) {
		return conn.Exec(ctx, sql).ReadAll()
	}
	// completions counts the CommandCompletes among results (an
	// EmptyQueryResponse gives a result with an empty tag).
	completions := func(results []*pgconn.Result) int {
		n := 0
		for _, r := range results {
			if r.CommandTag.String() != "" {
				n++
			}
		}
		return n
	}

	t.Run("split counts", func(t *testing.T) {
		conn := connect(t)
		for _, tt := range splitCases {
			if strings.IndexByte(tt.sql, 0) >= 0 {
				continue // a NUL cannot be sent in a Query message
			}
			results, err := exec(conn, tt.sql)
			if tt.bad {
				if err == nil {
					t.Errorf("%s: PostgreSQL accepted %q", tt.name, tt.sql)
				}
				continue
			}
			if err != nil {
				t.Errorf("%s: PostgreSQL rejected %q: %v", tt.name, tt.sql, err)
				continue
			}
			if got, want := len(sqllex.SplitStatements(tt.sql)), completions(results); got != want {
				t.Errorf("%s: %d statements in %q, PostgreSQL completed %d", tt.name, got, tt.sql, want)
			}
		}
	})

	t.Run("split counts of combinations", func(t *testing.T) {
		conn := connect(t)
		pieces := []string{
			"", " ", "SELECT 1", "select ';'", "SELECT E'\\';'", `SELECT 1 AS "a;"`, "SELECT $$;$$",
			"SELECT $a$ $$ ; $a$", "/* ; /* ; */ */", "-- ;\n", "SELECT 'a'\n';'", "SELECT U&'\\0041;'",
			"SELECT 1 AS a$b", "SELECT $1", "BEGIN", "COMMIT", "SET x.y = ';'", "SELECT 1.5e3;",
			"SELECT 1 /* */", "SELECT 'x' -- '\n", "SELECT 2 */* ; */ 3", "SELECT 'a' -- ;\n 'b'", `SELECT E'\\'`, "CREATE OR REPLACE FUNCTION pg_temp.f() RETURNS int LANGUAGE sql BEGIN ATOMIC SELECT 1; END",
		}
		seps := []string{";", "; ;", ";\n-- c\n", "\n"}
		compared := 0
		for _, a := range pieces {
			for _, sep := range seps {
				for _, b := range pieces {
					sql := a + sep + b
					results, err := exec(conn, sql)
					if err != nil {
						exec(conn, "ROLLBACK")
						continue // not valid SQL; only valid strings are compared
					}
					compared++
					if got, want := len(sqllex.SplitStatements(sql)), completions(results); got != want {
						t.Errorf("%d statements in %q, PostgreSQL completed %d", got, sql, want)
					}
				}
			}
			exec(conn, "ROLLBACK")
		}
		if compared < len(pieces)*len(pieces) {
			t.Errorf("only %d combinations were valid SQL; the corpus is broken", compared)
		}
	})

	t.Run("classify", func(t *testing.T) {
		for _, tt := range classifyCases {
			if len(tt.tags) == 0 {
				continue
			}
			conn := connect(t)
			if tt.setup != "" {
				if _, err := exec(conn, tt.setup); err != nil {
					t.Fatalf("%s: setup %q: %v", tt.name, tt.setup, err)
				}
			}
			results, err := exec(conn, tt.stmt)
			if err != nil {
				t.Errorf("%s: PostgreSQL rejected %q: %v", tt.name, tt.stmt, err)
				continue
			}
			if tag := results[len(results)-1].CommandTag.String(); !slices.Contains(tt.tags, tag) {
				t.Errorf("%s: %q completed with tag %q, want one of %q", tt.name, tt.stmt, tag, tt.tags)
			}
		}
	})

	t.Run("string constants", func(t *testing.T) {
		conn := connect(t)
		for _, tt := range stringCases {
			if strings.IndexByte(tt.src, 0) >= 0 {
				continue
			}
			var s sqllex.Scanner
			s.Init(tt.src)
			if s.Next().Kind != sqllex.String {
				continue
			}
			results, err := exec(conn, "SELECT "+tt.src)
			if !tt.wantOK {
				if err == nil {
					t.Errorf("%s: PostgreSQL accepted %q", tt.name, tt.src)
				}
				continue
			}
			if err != nil {
				t.Errorf("%s: PostgreSQL rejected %q: %v", tt.name, tt.src, err)
				continue
			}
			if got := string(results[0].Rows[0][0]); got != tt.want {
				t.Errorf("%s: PostgreSQL reads %q as %q, the test wants %q", tt.name, tt.src, got, tt.want)
			}
		}
	})

	t.Run("identifiers", func(t *testing.T) {
		conn := connect(t)
		for _, tt := range identCases {
			results, err := exec(conn, "SELECT 1 AS "+tt.src)
			if !tt.wantOK {
				if err == nil {
					t.Errorf("%s: PostgreSQL accepted %q", tt.name, tt.src)
				}
				continue
			}
			if err != nil {
				t.Errorf("%s: PostgreSQL rejected %q: %v", tt.name, tt.src, err)
				continue
			}
			if got := results[0].FieldDescriptions[0].Name; got != tt.want {
				t.Errorf("%s: PostgreSQL names %q %q, the test wants %q", tt.name, tt.src, got, tt.want)
			}
		}
	})

	t.Run("quote ident", func(t *testing.T) {
		conn := connect(t)
		for _, tt := range quoteIdentCases {
			results, err := exec(conn, "SELECT quote_ident("+sqllex.QuoteLiteral(tt.in)+")")
			if err != nil {
				t.Fatalf("%s: %v", tt.name, err)
			}
			if got := string(results[0].Rows[0][0]); got != tt.want {
				t.Errorf("%s: quote_ident(%q) = %s, the test wants %s", tt.name, tt.in, got, tt.want)
			}
		}
	})

	t.Run("quote literal", func(t *testing.T) {
		conn := connect(t)
		for _, tt := range quoteLiteralCases {
			lit := sqllex.QuoteLiteral(tt.in)
			results, err := exec(conn, "SELECT "+lit+", quote_literal("+lit+")")
			if err != nil {
				t.Fatalf("%s: %v", tt.name, err)
			}
			if got := string(results[0].Rows[0][0]); got != tt.in {
				t.Errorf("%s: PostgreSQL reads %s as %q", tt.name, lit, got)
			}
			if got := string(results[0].Rows[0][1]); got != lit {
				t.Errorf("%s: quote_literal gives %s, QuoteLiteral %s", tt.name, got, lit)
			}
		}
	})

	t.Run("set replay", func(t *testing.T) {
		for _, tt := range setCases {
			if !tt.wantOK || tt.wantReplay == "" {
				continue
			}
			st, _ := sqllex.ParseSet(tt.stmt)
			show := func(stmt string) string {
				conn := connect(t)
				sql := stmt + "; SHOW " + sqllexQuoteName(st.Name)
				if st.Scope == sqllex.ScopeLocal {
					sql = "BEGIN; " + sql + "; COMMIT"
				}
				results, err := exec(conn, sql)
				if err != nil {
					t.Fatalf("%s: PostgreSQL rejected %q: %v", tt.name, sql, err)
				}
				for _, r := range results {
					if r.CommandTag.String() == "SHOW" {
						return string(r.Rows[0][0])
					}
				}
				t.Fatalf("%s: no SHOW result for %q", tt.name, sql)
				return ""
			}
			if st.Name == "" {
				continue
			}
			if orig, replay := show(tt.stmt), show(st.Replay()); orig != replay {
				t.Errorf("%s: %q leaves %s = %q, its replay %q leaves %q", tt.name, tt.stmt, st.Name, orig, st.Replay(), replay)
			}
		}
	})

	t.Run("list values", func(t *testing.T) {
		conn := connect(t)
		for _, tt := range listCases {
			for _, name := range tt.want {
				if name != "$user" {
					exec(conn, "CREATE SCHEMA IF NOT EXISTS "+sqllex.QuoteIdent(name))
				}
			}
			results, err := exec(conn, "SELECT set_config('search_path', "+sqllex.QuoteLiteral(tt.raw)+", false); SELECT array_to_string(current_schemas(false), '|')")
			if tt.wantErr {
				if err == nil {
					t.Errorf("%s: PostgreSQL accepted search_path %q", tt.name, tt.raw)
				}
				continue
			}
			if err != nil {
				t.Errorf("%s: PostgreSQL rejected search_path %q: %v", tt.name, tt.raw, err)
				continue
			}
			var want []string
			for _, name := range tt.want {
				if name != "$user" { // no schema is named after the user
					want = append(want, name)
				}
			}
			if got := string(results[1].Rows[0][0]); got != strings.Join(want, "|") {
				t.Errorf("%s: PostgreSQL splits %q into %q, the test wants %q", tt.name, tt.raw, got, want)
			}
			// Rendering the parsed list as SQL gives the same path back.
			quoted := make([]string, len(tt.want))
			for i, name := range tt.want {
				quoted[i] = sqllex.QuoteIdent(name)
			}
			if len(quoted) > 0 {
				res2, err := exec(conn, "SET search_path TO "+strings.Join(quoted, ", ")+"; SELECT array_to_string(current_schemas(false), '|')")
				if err != nil {
					t.Errorf("%s: replaying %q: %v", tt.name, quoted, err)
				} else if got := string(res2[1].Rows[0][0]); got != strings.Join(want, "|") {
					t.Errorf("%s: replay of %q gives %q", tt.name, quoted, got)
				}
			}
		}
	})
}

// sqllexQuoteName renders a canonical parameter name for SHOW.
func sqllexQuoteName(name string) string {
	parts := strings.Split(name, ".")
	for i, p := range parts {
		parts[i] = sqllex.QuoteIdent(p)
	}
	return strings.Join(parts, ".")
}
