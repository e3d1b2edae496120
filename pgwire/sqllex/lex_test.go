package sqllex_test

import (
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/dsqlgate/dsqlgate/pgwire/sqllex"
)

// checkLexed checks a Lexed of sql against the string functions: the same
// statements as SplitStatements, each with the tokens a Scanner finds in
// its Text, and each parser answering from the tokens what it answers
// from the Text. The string functions scan the text they are given, so
// this is a differential test of the one-pass lexing against scanning each
// statement again.
func checkLexed(t *testing.T, lx *sqllex.Lexed, sql string) {
	t.Helper()
	lx.Lex(sql)
	if lx.Text() != sql {
		t.Fatalf("Text() = %q, want %q", lx.Text(), sql)
	}
	want := sqllex.SplitStatements(sql)
	if lx.Len() != len(want) {
		t.Fatalf("Lex(%q) has %d statements, SplitStatements %d", sql, lx.Len(), len(want))
	}
	for i, w := range want {
		st := lx.Stmt(i)
		if st.Statement != w {
			t.Fatalf("statement %d of %q is %+v, SplitStatements gives %+v", i, sql, st.Statement, w)
		}
		var s sqllex.Scanner
		s.Init(w.Text)
		toks := st.Tokens()
		for j := 0; ; j++ {
			tok := s.Next()
			if tok.Kind == sqllex.EOF {
				if j != len(toks) {
					t.Fatalf("statement %q: %d tokens lexed, %d scanned", w.Text, len(toks), j)
				}
				break
			}
			tok.Pos += w.Start
			if j >= len(toks) || toks[j] != tok {
				t.Fatalf("statement %q: token %d scans as %+v, lexed %+v", w.Text, j, tok, toks[min(j, len(toks)-1)])
			}
		}
		if got, want := st.Kind(), sqllex.Classify(w.Text); got != want {
			t.Fatalf("Kind() of %q = %v, Classify %v", w.Text, got, want)
		}
		same := func(method string, got, want any) {
			t.Helper()
			if diff := cmp.Diff(want, got); diff != "" {
				t.Fatalf("%s of %q differs from the string function's (-string +lexed):\n%s", method, w.Text, diff)
			}
		}
		set, ok := st.Set()
		wantSet, wantOK := sqllex.ParseSet(w.Text)
		same("Set", []any{set, ok}, []any{wantSet, wantOK})
		name, ok := st.Show()
		wantName, wantOK := sqllex.ParseShow(w.Text)
		same("Show", []any{name, ok}, []any{wantName, wantOK})
		name, all, ok := st.Deallocate()
		wantName, wantAll, wantOK := sqllex.ParseDeallocate(w.Text)
		same("Deallocate", []any{name, all, ok}, []any{wantName, wantAll, wantOK})
		call, ok := st.SelectCall()
		wantCall, wantOK := sqllex.ParseSelectCall(w.Text)
		same("SelectCall", []any{call, ok}, []any{wantCall, wantOK})
		ts, ok := st.Truncate()
		wantTS, wantOK := sqllex.ParseTruncate(w.Text)
		same("Truncate", []any{ts, ok}, []any{wantTS, wantOK})
		name, ok = st.PrepareName()
		wantName, wantOK = sqllex.PrepareName(w.Text)
		same("PrepareName", []any{name, ok}, []any{wantName, wantOK})
		same("IsolationLevel", st.IsolationLevel(), sqllex.IsolationLevel(w.Text))
		same("HasKeywords", st.HasKeywords("on", "commit", "drop"), sqllex.HasKeywords(w.Text, "on", "commit", "drop"))
		var idents, wantIdents []string
		st.HasIdent(func(name string) bool { idents = append(idents, name); return false })
		sqllex.HasIdent(w.Text, func(name string) bool { wantIdents = append(wantIdents, name); return false })
		same("HasIdent", idents, wantIdents)
	}
}

// lexSeeds are the inputs of the package's test tables.
func lexSeeds() []string {
	var seeds []string
	for _, c := range splitCases {
		seeds = append(seeds, c.sql)
	}
	for _, c := range classifyCases {
		seeds = append(seeds, c.stmt)
	}
	for _, c := range setCases {
		seeds = append(seeds, c.stmt)
	}
	return append(seeds,
		"SHOW TIME ZONE; DEALLOCATE PREPARE q; TRUNCATE ONLY a.b, c * RESTART IDENTITY; SELECT f(1, 'a') AS x",
		"SET a = 1 /* unterminated", "/* only", "SET a = 1; SELECT U&'x' UESCAPE '!';; RESET ALL",
		"CREATE FUNCTION f() RETURNS int LANGUAGE sql BEGIN ATOMIC SELECT 1; SET x = 1; END; SET y = 2",
	)
}

// TestLexMatchesStringFunctions runs the differential check over the test
// tables, reusing one Lexed as the gateway does.
func TestLexMatchesStringFunctions(t *testing.T) {
	var lx sqllex.Lexed
	for _, sql := range lexSeeds() {
		checkLexed(t, &lx, sql)
	}
}

// FuzzLex is the differential check on any input.
func FuzzLex(f *testing.F) {
	for _, sql := range lexSeeds() {
		f.Add(sql)
	}
	var lx sqllex.Lexed
	f.Fuzz(func(t *testing.T, sql string) {
		checkLexed(t, &lx, sql)
	})
}

func TestLexedStmtOffsets(t *testing.T) {
	const sql = " SET a TO 1 ;\n/* c */ SHOW x /* d"
	var lx sqllex.Lexed
	lx.Lex(sql)
	if lx.Len() != 2 {
		t.Fatalf("Len() = %d, want 2", lx.Len())
	}
	st := lx.Stmt(1)
	toks := st.Tokens()
	if len(toks) != 2 || toks[0].Pos != 22 || toks[1].Text != "x" {
		t.Fatalf("tokens of %q: %+v", st.Text, toks)
	}
	// The statement ends in an unterminated comment: not a complete SHOW.
	if _, ok := st.Show(); ok {
		t.Errorf("Show() of %q is ok", st.Text)
	}
	if set, ok := lx.Stmt(0).Set(); !ok || set.Name != "a" || set.ValueText != "1" {
		t.Errorf("Set() of %q = %+v, %v", lx.Stmt(0).Text, set, ok)
	}
}

// TestLexDoesNotAllocate: a Lexed that is reused allocates nothing once
// its buffers are big enough, and classifying its statements allocates
// nothing either.
func TestLexDoesNotAllocate(t *testing.T) {
	const sql = "BEGIN; /* c */ SELECT a, 'b' FROM t WHERE c = $1; SHOW search_path; COMMIT"
	var lx sqllex.Lexed
	lx.Lex(sql)
	allocs := testing.AllocsPerRun(100, func() {
		lx.Lex(sql)
		for i := range lx.Len() {
			st := lx.Stmt(i)
			st.Kind()
			st.Show()
		}
	})
	if allocs != 0 {
		t.Errorf("Lex and Kind allocate %v times", allocs)
	}
}

// TestOneStmt: a OneStmt is its whole text, as the string functions read
// it, where a Lexed drops empty statements and cuts at semicolons.
func TestOneStmt(t *testing.T) {
	const sql = "; SET a = 1; SELECT 1"
	one := sqllex.OneStmt(sql)
	if one.Text != sql || one.Start != 0 || one.End != len(sql) {
		t.Errorf("OneStmt(%q) = %+v", sql, one.Statement)
	}
	if k := one.Kind(); k != sqllex.Other {
		t.Errorf("OneStmt(%q).Kind() = %v, want Other", sql, k)
	}
	if _, ok := one.Set(); ok {
		t.Errorf("OneStmt(%q).Set() is ok", sql)
	}
	if n := len(one.Tokens()); n != 8 {
		t.Errorf("OneStmt(%q) has %d tokens, want 8", sql, n)
	}
	var lx sqllex.Lexed
	lx.Lex(sql)
	if k := lx.Stmt(0).Kind(); k != sqllex.Set {
		t.Errorf("Lex(%q).Stmt(0).Kind() = %v, want Set", sql, k)
	}
}
