package dsqlsim

import (
	"errors"
	"strings"
	"testing"
	"time"
)

// FuzzSplitStatements checks the splitter's invariants on any input: the
// statements tile the source with exactly one ";" between neighbours, the
// tokens lie inside their statement in order, and rewriting keeps every
// statement that is not refused byte for byte.
func FuzzSplitStatements(f *testing.F) {
	for _, seed := range []string{
		"select 1; select 2",
		"SET statement_timeout = 0; SELECT 'a;b'",
		`select E'a\';b' ; savepoint x`,
		"select $t$ ; $t$; /* /* ; */ */ DISCARD ALL -- ;\n",
		"create function f() begin atomic select 1; end; lock t",
		"select E'a'\n'\\';'; select pg_advisory_lock(1)",
		`SET "x""y" TO 1; RESET ALL; deallocate prepare all`,
		"begin isolation level serializable; start transaction read only, isolation level repeatable read",
		"select pg_catalog.set_config('lock_timeout', $1, false); select set_config($$search_path$$::text, 'x', true)",
		"create function f(language text) returns int language plpgsql as $$ begin return 1; end $$; do $$ $$",
		"copy (select 1) to program 'x'; copy t (a) from stdin; vacuum; create extension x; alter system reset all",
		"select set_config(E'a\\'', 'b', false); select set_config('x'",
		"'", `"`, "$", "$$", "/*", "--", "E'\\", "e'", ";",
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, src string) {
		stmts := splitStatements(src)
		if len(stmts) == 0 {
			t.Fatal("no statements")
		}
		pos := 0
		for i, st := range stmts {
			if st.start != pos || st.end < st.start || st.end > len(src) {
				t.Fatalf("statement %d range [%d,%d) does not follow %d in %d bytes", i, st.start, st.end, pos, len(src))
			}
			last := st.start
			for _, tok := range st.tokens {
				if tok.start < last || tok.end <= tok.start || tok.end > st.end {
					t.Fatalf("statement %d token [%d,%d) out of order or range", i, tok.start, tok.end)
				}
				last = tok.end
			}
			if i < len(stmts)-1 {
				if st.end >= len(src) || src[st.end] != ';' {
					t.Fatalf("statement %d does not end at a ';'", i)
				}
				pos = st.end + 1
			} else if st.end != len(src) {
				t.Fatalf("last statement ends at %d of %d", st.end, len(src))
			}
		}

		r := newStatementRefuser("fuzz")
		rewritten, refused := r.rewriteQuery(src)
		if refused == nil && rewritten != src {
			t.Fatal("rewriteQuery changed a query without refusals")
		}
		for _, st := range stmts {
			if refusalOf(src, st) == "" && !strings.Contains(rewritten, src[st.start:st.end]) {
				t.Fatalf("rewriteQuery lost statement %q", src[st.start:st.end])
			}
		}
		if _, msg := r.rewriteParse(src); (msg != "") != (len(refused) > 0) {
			t.Fatalf("rewriteParse and rewriteQuery disagree: %q vs %q", msg, refused)
		}
	})
}

// FuzzSetConfigName checks the set_config() refusal against the allow-list
// for any parameter name written as a string literal, standard or
// dollar-quoted: the call is refused exactly when SET of that name would
// be, with the same message. stringLiteral must read the literal back.
func FuzzSetConfigName(f *testing.F) {
	for _, seed := range []string{"search_path", "statement_timeout", "TimeZone", "enable_seqscan", "it's", "a$b", "myapp.tenant", "", "'", "$$"} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, name string) {
		literals := []string{"'" + strings.ReplaceAll(name, "'", "''") + "'"}
		if !strings.Contains(name, "$q$") && !strings.HasSuffix(name, "$q") {
			literals = append(literals, "$q$"+name+"$q$")
		}
		for _, lit := range literals {
			if got := stringLiteral(lit); got != name {
				t.Fatalf("stringLiteral(%q) = %q, want %q", lit, got, name)
			}
			src := "SELECT pg_catalog.set_config(" + lit + ", 'v', false)"
			stmts := splitStatements(src)
			if len(stmts) != 1 {
				t.Fatalf("%q split into %d statements", src, len(stmts))
			}
			got := refusalOf(src, stmts[0])
			var want string
			switch {
			case name == "":
				want = "set_config() with a parameter name that is not a string literal not supported"
			case !allowedSetting(name):
				want = unsupportedSettingMessage(name)
			}
			if got != want {
				t.Fatalf("refusalOf(%q) = %q, want %q", src, got, want)
			}
		}
	})
}

// FuzzVerifyToken checks that any token either verifies or fails with a
// *TokenError, never panics, and never puts a secret in the error.
func FuzzVerifyToken(f *testing.F) {
	valid := sdkToken(f, testHost, testRegion, "app", testCred, 15*time.Minute)
	now := tokenDate(f, valid).Add(time.Minute)
	for _, seed := range []string{
		valid,
		cliForm(valid),
		sdkToken(f, testHost, testRegion, "admin", testCred, 15*time.Minute),
		sdkToken(f, testHost, testRegion, "app", testSessionCred, 15*time.Minute),
		"",
		"?",
		"host/?Action=DbConnect&X-Amz-Signature=00",
		testHost + "?Action=DbConnect&%zz=1&&==",
	} {
		f.Add(seed, "app")
	}
	f.Add(valid, "admin")
	f.Fuzz(func(t *testing.T, token, role string) {
		err := VerifyToken(token, testHost, role, testRegion, testCreds, now, testSkew)
		if err == nil {
			return
		}
		var te *TokenError
		if !errors.As(err, &te) {
			t.Fatalf("VerifyToken returned %T, want *TokenError", err)
		}
		for _, secret := range []string{testCred.SecretAccessKey, testSessionCred.SecretAccessKey, testSessionCred.SessionToken} {
			if strings.Contains(err.Error(), secret) {
				t.Fatalf("error %q holds a secret", err)
			}
		}
	})
}
