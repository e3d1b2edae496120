package sqllex

import "testing"

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
