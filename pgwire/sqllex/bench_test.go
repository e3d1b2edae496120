package sqllex_test

import (
	"strings"
	"testing"

	"github.com/dsqlgate/dsqlgate/pgwire/sqllex"
)

// benchQuery is a typical ORM statement: quoted names, parameters, a
// string, a cast and a comment.
const benchQuery = `/* app=api route=/orders */ SELECT "o"."id", "o"."total"::numeric, "c"."name" FROM "orders" AS "o" ` +
	`JOIN "customers" AS "c" ON "c"."id" = "o"."customer_id" WHERE "o"."status" = 'open' AND "o"."created_at" > $1 ` +
	`ORDER BY "o"."created_at" DESC LIMIT $2`

var benchMulti = "SET search_path = \"My Schema\", public; SET statement_timeout = '5s'; BEGIN; " +
	"INSERT INTO t (a, b) VALUES (1, 'x;y'), (2, $$z$$); COMMIT; " + strings.Repeat("SELECT 1; ", 10)

func BenchmarkScanner(b *testing.B) {
	b.ReportAllocs()
	b.SetBytes(int64(len(benchQuery)))
	var s sqllex.Scanner
	for b.Loop() {
		s.Init(benchQuery)
		for s.Next().Kind != sqllex.EOF {
		}
	}
}

func BenchmarkSplitStatements(b *testing.B) {
	for _, bc := range []struct{ name, sql string }{
		{"one", benchQuery},
		{"multi", benchMulti},
	} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(bc.sql)))
			for b.Loop() {
				sqllex.SplitStatements(bc.sql)
			}
		})
	}
}

func BenchmarkClassify(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		sqllex.Classify(benchQuery)
	}
}

func BenchmarkParseSet(b *testing.B) {
	for _, bc := range []struct{ name, stmt string }{
		{"simple", "SET statement_timeout = '5s'"},
		{"list", `SET search_path = "My Schema", public`},
		{"local custom", "SET LOCAL myapp.tenant_id = 42"},
		{"reset", "RESET ALL"},
		{"not a set", benchQuery},
	} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				sqllex.ParseSet(bc.stmt)
			}
		})
	}
}

// classifyMix is what the relay classifies per simple Query, a typical mix.
var classifyMix = []struct{ name, sql string }{
	{"begin", "BEGIN"},
	{"select", benchQuery},
	{"set", `SET search_path = "My Schema", public`},
	{"commit", "COMMIT"},
	{"multi", benchMulti},
}

// BenchmarkClassifyQuery is the relay's per-query classification: the
// query lexed once, then each statement classified, and a SET or SHOW
// taken apart, from the same tokens.
func BenchmarkClassifyQuery(b *testing.B) {
	var lx sqllex.Lexed
	for _, bc := range classifyMix {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(bc.sql)))
			for b.Loop() {
				lx.Lex(bc.sql)
				for i := range lx.Len() {
					st := lx.Stmt(i)
					switch st.Kind() {
					case sqllex.Set, sqllex.Reset:
						st.Set()
					case sqllex.Show:
						st.Show()
					}
				}
			}
		})
	}
}

// BenchmarkClassifyQueryStrings is BenchmarkClassifyQuery the way the
// string functions do it, each scanning the statement's text again.
func BenchmarkClassifyQueryStrings(b *testing.B) {
	for _, bc := range classifyMix {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(bc.sql)))
			for b.Loop() {
				for _, st := range sqllex.SplitStatements(bc.sql) {
					switch sqllex.Classify(st.Text) {
					case sqllex.Set, sqllex.Reset:
						sqllex.ParseSet(st.Text)
					case sqllex.Show:
						sqllex.ParseShow(st.Text)
					}
				}
			}
		})
	}
}
