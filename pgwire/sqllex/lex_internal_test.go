package sqllex

import (
	"reflect"
	"runtime"
	"strings"
	"testing"
)

// TestLexedReset: a Lexed kept for reuse holds nothing of its last query.
func TestLexedReset(t *testing.T) {
	var lx Lexed
	lx.Lex("ALTER ROLE r PASSWORD 'hunter2'; SELECT 1")
	lx.Reset()
	if lx.Text() != "" || lx.Len() != 0 {
		t.Fatalf("after Reset: text %q, %d statements", lx.Text(), lx.Len())
	}
	for _, tok := range lx.toks[:cap(lx.toks)] {
		if tok.Text != "" {
			t.Fatalf("after Reset a token still holds %q", tok.Text)
		}
	}
	for _, st := range lx.stmts[:cap(lx.stmts)] {
		if st.Text != "" {
			t.Fatalf("after Reset a statement still holds %q", st.Text)
		}
	}
	lx.Lex("SELECT 2")
	if lx.Len() != 1 || lx.Stmt(0).Kind() != Select {
		t.Fatalf("Lex after Reset: %d statements", lx.Len())
	}
}

// FuzzLexScanMode: a query whose tokens are not kept (longer than
// MaxTokenized) answers every question as the same query lexed with its
// tokens does.
func FuzzLexScanMode(f *testing.F) {
	for _, q := range []string{
		"BEGIN; SET search_path = a, \"B\"; SHOW TimeZone; COMMIT",
		"select pg_advisory_lock($1) as l; truncate only t; deallocate all",
		"begin isolation level serializable; prepare p as select 1; /* open",
		"create temp table t (x int) on commit drop; select * into temp u from t",
		"do $$ begin; end $$; select 'a;b'; ;; reset all",
	} {
		f.Add(q)
	}
	f.Fuzz(func(t *testing.T, q string) {
		var lexed, scanned Lexed
		lexed.lexMode(q, true)
		scanned.lexMode(q, false)
		if lexed.Len() != scanned.Len() {
			t.Fatalf("%q: %d statements lexed, %d scanned", q, lexed.Len(), scanned.Len())
		}
		for i := range lexed.Len() {
			a, b := lexed.Stmt(i), scanned.Stmt(i)
			if a.Statement != b.Statement {
				t.Fatalf("%q #%d: statement %+v lexed, %+v scanned", q, i, a.Statement, b.Statement)
			}
			same := func(what string, x, y any) {
				t.Helper()
				if !reflect.DeepEqual(x, y) {
					t.Fatalf("%q #%d: %s %+v lexed, %+v scanned", q, i, what, x, y)
				}
			}
			same("Kind", a.Kind(), b.Kind())
			s1, ok1 := a.Set()
			s2, ok2 := b.Set()
			same("Set", []any{s1, ok1}, []any{s2, ok2})
			n1, ok1 := a.Show()
			n2, ok2 := b.Show()
			same("Show", []any{n1, ok1}, []any{n2, ok2})
			d1, all1, ok1 := a.Deallocate()
			d2, all2, ok2 := b.Deallocate()
			same("Deallocate", []any{d1, all1, ok1}, []any{d2, all2, ok2})
			c1, ok1 := a.SelectCall()
			c2, ok2 := b.SelectCall()
			same("SelectCall", []any{c1, ok1}, []any{c2, ok2})
			tr1, ok1 := a.Truncate()
			tr2, ok2 := b.Truncate()
			same("Truncate", []any{tr1, ok1}, []any{tr2, ok2})
			same("IsolationLevel", a.IsolationLevel(), b.IsolationLevel())
			p1, ok1 := a.PrepareName()
			p2, ok2 := b.PrepareName()
			same("PrepareName", []any{p1, ok1}, []any{p2, ok2})
			same("HasKeywords", a.HasKeywords("on", "commit", "drop"), b.HasKeywords("on", "commit", "drop"))
			isTemp := func(name string) bool { return name == "pg_temp" || name == "t" }
			same("HasIdent", a.HasIdent(isTemp), b.HasIdent(isTemp))
			// What a rule reads of the leading tokens: their kinds and
			// texts (positions count in the query lexed, in Text scanned).
			l1, l2 := a.Leading(3), b.Leading(3)
			for j := range 3 {
				same("Leading", []any{l1[j].Kind, l1[j].Text}, []any{l2[j].Kind, l2[j].Text})
			}
		}
	})
}

// TestLexLongQueryKeepsNoTokens: a long query of tiny tokens, which a
// client may send up to the message size limit, costs its statements, not
// tokens many times its size.
func TestLexLongQueryKeepsNoTokens(t *testing.T) {
	q := "select " + strings.Repeat("1,", 4<<20) + "1"
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	var lx Lexed
	lx.Lex(q)
	runtime.ReadMemStats(&after)
	if grown := after.TotalAlloc - before.TotalAlloc; grown > uint64(len(q)) {
		t.Fatalf("lexing %d bytes allocated %d bytes", len(q), grown)
	}
	if lx.Len() != 1 || lx.Stmt(0).Kind() != Select {
		t.Fatalf("%d statements", lx.Len())
	}
}
