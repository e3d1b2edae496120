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
