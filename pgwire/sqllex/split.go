package sqllex

import "strings"

// Statement is one statement of a simple Query string.
type Statement struct {
	// Text is the statement without its terminating semicolon and without
	// the whitespace and complete comments around it: a substring of the
	// input, never empty.
	Text string
	// Start and End are the byte offsets of Text in the input:
	// sql[Start:End] == Text.
	Start, End int
	// Unterminated reports that the statement runs into a quote, dollar
	// quote or /* comment that is never closed. PostgreSQL then rejects the
	// whole Query string without running any of its statements.
	Unterminated bool
}

// SplitStatements cuts a simple Query string into its statements the way
// PostgreSQL does: at every semicolon that is not inside a quoted
// identifier, string constant, dollar quote or comment, whatever the
// nesting of parentheses (the server's grammar splits there too, and a
// semicolon inside parentheses is a syntax error that fails the whole
// string). The one exception is the body of
// CREATE [OR REPLACE] {FUNCTION|PROCEDURE} ... BEGIN ATOMIC ... END, whose
// semicolons belong to the body; like psql, the body is taken to end at the
// END that matches BEGIN ATOMIC, counting CASE ... END pairs outside
// parentheses.
//
// Statements that hold only whitespace and comments are dropped, as the
// server drops them: "SET a=1; ; SELECT 1" gives two statements (and two
// CommandCompletes), and a string of only whitespace and comments gives
// none (the server answers it with EmptyQueryResponse). A /* comment that
// is never closed is not dropped: it is, or ends, a statement marked
// Unterminated.
func SplitStatements(sql string) []Statement {
	// Most strings hold few statements: one allocation for up to 8.
	l := Lexed{stmts: make([]Statement, 0, min(strings.Count(sql, ";")+1, 8))}
	l.lex(sql, false)
	return l.stmts
}

// splitter holds what Lexed.lex knows about the statement it is in.
type splitter struct {
	n            int // tokens so far, comments not counted
	start, end   int
	unterminated bool
	endComment   bool // the last token is a /* comment that is never closed

	head     routineHead
	parens   int  // depth of parentheses, never below 0
	afterBeg bool // the last token was BEGIN outside parentheses
	atomic   int  // depth of BEGIN ATOMIC ... END and CASE ... END inside it
}

// routineHead tracks whether a statement starts with
// CREATE [OR REPLACE] FUNCTION or PROCEDURE.
type routineHead uint8

const (
	headStart routineHead = iota
	headCreate
	headOr
	headOrReplace
	headRoutine // the statement creates a function or procedure
	headOther   // it does not
)

func (sp *splitter) add(t *Token) {
	if sp.n == 0 {
		sp.start = t.Pos
	}
	sp.n++
	sp.end = t.End()
	sp.unterminated = sp.unterminated || t.Unterminated
	sp.endComment = t.Kind == Comment

	switch sp.head {
	case headStart:
		sp.head = headOther
		if t.IsKeyword("create") {
			sp.head = headCreate
		}
		return
	case headCreate:
		switch {
		case t.IsKeyword("or"):
			sp.head = headOr
		case t.IsKeyword("function") || t.IsKeyword("procedure"):
			sp.head = headRoutine
		default:
			sp.head = headOther
		}
		return
	case headOr:
		sp.head = headOther
		if t.IsKeyword("replace") {
			sp.head = headOrReplace
		}
		return
	case headOrReplace:
		sp.head = headOther
		if t.IsKeyword("function") || t.IsKeyword("procedure") {
			sp.head = headRoutine
		}
		return
	case headOther:
		return
	}

	// In CREATE FUNCTION or PROCEDURE.
	begin := false
	switch t.Kind {
	case LParen:
		sp.parens++
	case RParen:
		if sp.parens > 0 {
			sp.parens--
		}
	case Ident:
		if sp.parens > 0 {
			break
		}
		switch {
		case sp.afterBeg && t.IsKeyword("atomic"):
			sp.atomic++
		case sp.atomic > 0 && t.IsKeyword("case"):
			sp.atomic++
		case sp.atomic > 0 && t.IsKeyword("end"):
			sp.atomic--
		case t.IsKeyword("begin"):
			begin = true
		}
	}
	sp.afterBeg = begin
}
