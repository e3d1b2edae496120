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
