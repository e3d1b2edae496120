package sqllex

// Lexed is a simple Query string lexed once: its statements, as
// SplitStatements cuts them, and the tokens of each, which every statement
// parser reads (Stmt.Kind, Stmt.Set, Stmt.Show, ...) instead of scanning
// the text again. A Lexed is reused from query to query: Lex keeps its
// buffers, so a session that lexes every query allocates only while its
// queries grow.
//
//	var lx sqllex.Lexed
//	lx.Lex(query)
//	for i := range lx.Len() {
//		st := lx.Stmt(i)
//		switch st.Kind() {
//		...
//		}
//	}
type Lexed struct {
	src   string
	stmts []Statement
	ends  []stmtEnd // per statement: where its tokens end in toks
	toks  []Token   // the tokens of every statement, comments and the semicolons between statements left out
	// scan: the query was longer than MaxTokenized, so no tokens were
	// kept; each statement is scanned as its parsers read it.
	scan bool
}

// MaxTokenized is the longest query whose tokens Lex keeps. A token takes
// several times the bytes of its text (a query of one-character tokens,
// 1,1,1,..., would take about 25 bytes of tokens per byte), so the
// tokens of a long query, which a client may send up to the gateway's
// message size limit, are not kept: its statements are scanned as their
// parsers read them, as the string functions do, and only the statements
// are kept.
const MaxTokenized = 64 << 10

// stmtEnd is where the tokens of a statement end in Lexed.toks, and whether
// the statement ends in a /* comment that is never closed (which the
// parsers must see, as they would at the end of the statement's text).
type stmtEnd struct {
	tok        int
	endComment bool
}

// Lex lexes text, replacing what l held. Token positions and texts, and
// the Start, End and Text of each statement, are those in text. The tokens
// of a text longer than MaxTokenized are not kept (see there).
func (l *Lexed) Lex(text string) {
	l.lexMode(text, len(text) <= MaxTokenized)
}

// lexMode is Lex, keeping the tokens or not.
func (l *Lexed) lexMode(text string, tokens bool) {
	l.lex(text, tokens)
	l.scan = !tokens
}

// Text is the string last given to Lex.
func (l *Lexed) Text() string { return l.src }

// Reset forgets the last query, keeping the buffers' capacity: a Lexed
// kept for reuse then holds no reference to the query's text (which may
// be a password in an ALTER ROLE, or someone's data).
func (l *Lexed) Reset() {
	l.src, l.scan = "", false
	clear(l.stmts)
	clear(l.toks)
	l.stmts, l.ends, l.toks = l.stmts[:0], l.ends[:0], l.toks[:0]
}

// Len is the number of statements (0 for a string of only whitespace and
// comments, which the server answers with EmptyQueryResponse).
func (l *Lexed) Len() int { return len(l.stmts) }

// Stmt returns statement i, 0 <= i < Len(). It is valid until the next
// Lex.
func (l *Lexed) Stmt(i int) Stmt {
	if l.scan {
		st := l.stmts[i]
		return Stmt{Statement: st, src: st.Text, scan: true}
	}
	lo := 0
	if i > 0 {
		lo = l.ends[i-1].tok
	}
	e := l.ends[i]
	return Stmt{Statement: l.stmts[i], src: l.src, toks: l.toks[lo:e.tok:e.tok], endComment: e.endComment}
}

// lex splits sql into l.stmts and, with tokens set, keeps each statement's
// significant tokens. SplitStatements uses it without tokens, so that the
// statement boundaries have one implementation.
func (l *Lexed) lex(sql string, tokens bool) {
	l.src = sql
	l.stmts = l.stmts[:0]
	l.ends = l.ends[:0]
	l.toks = l.toks[:0]
	s := Scanner{KeepComments: true}
	s.Init(sql)
	var sp splitter
	for {
		t := s.Next()
		switch t.Kind {
		case EOF:
			l.flush(&sp, tokens)
			return
		case Comment:
			if !t.Unterminated {
				continue
			}
		case Semicolon:
			if sp.atomic == 0 {
				l.flush(&sp, tokens)
				continue
			}
		}
		sp.add(&t)
		if tokens && t.Kind != Comment {
			l.toks = append(l.toks, t)
		}
	}
}

// flush ends the statement collected so far, if any, and starts afresh.
func (l *Lexed) flush(sp *splitter, tokens bool) {
	if sp.n > 0 {
		l.stmts = append(l.stmts, Statement{
			Text:         l.src[sp.start:sp.end],
			Start:        sp.start,
			End:          sp.end,
			Unterminated: sp.unterminated,
		})
		if tokens {
			l.ends = append(l.ends, stmtEnd{tok: len(l.toks), endComment: sp.endComment})
		}
	}
	*sp = splitter{}
}

// Stmt is one statement of a Lexed, with its tokens, or a string given
// to OneStmt. Its methods answer as the functions of the same name do for
// the statement's Text (Stmt.Kind as Classify, Stmt.Set as ParseSet, ...):
// from the tokens Lex kept, without scanning the text again, or for a
// OneStmt by scanning its text as far as each needs.
type Stmt struct {
	Statement
	src        string  // the whole query string: Token.Pos counts in it
	toks       []Token // the statement's tokens, comments left out
	endComment bool    // it ends in a /* comment that is never closed
	scan       bool    // made by OneStmt, or of a Lexed that kept no tokens: Text is scanned
}

// OneStmt returns text as one statement, not lexed beforehand: each method
// scans text as far as it needs, which is what the string functions do.
// It suits the extended protocol's Parse, which carries one statement and
// is mostly asked about its first words, where lexing all of it first
// would cost more than it saves. Unlike a statement of a Lexed, the whole
// text is one statement whatever semicolons it holds, and Unterminated is
// not worked out (it is false).
func OneStmt(text string) Stmt {
	return Stmt{Statement: Statement{Text: text, End: len(text)}, src: text, scan: true}
}

// Tokens returns the statement's tokens, comments left out, in order. Pos
// is an offset in the whole query string (Lexed.Text), not in Text. The
// slice belongs to the Lexed: it must not be changed, and it is valid
// until the next Lex. For a statement that is scanned (a OneStmt, or one
// of a query longer than MaxTokenized) it scans Text into a new slice,
// and Pos is an offset in Text.
func (st Stmt) Tokens() []Token {
	if !st.scan {
		return st.toks
	}
	var toks []Token
	var s Scanner
	s.Init(st.Text)
	for t := s.Next(); t.Kind != EOF; t = s.Next() {
		toks = append(toks, t)
	}
	return toks
}

func (st *Stmt) reader(r *tokenReader) *tokenReader {
	if st.scan {
		r.init(st.Text)
	} else {
		r.initStmt(st)
	}
	return r
}

// Lexed reports whether st is a statement of a Lexed that kept its
// tokens (a simple Query's, under MaxTokenized): not a OneStmt (a Parse's).
func (st Stmt) Lexed() bool { return !st.scan }

// Kind is Classify(st.Text).
func (st Stmt) Kind() Kind {
	var r tokenReader
	return classify(st.reader(&r))
}

// Set is ParseSet(st.Text).
func (st Stmt) Set() (SetStmt, bool) {
	var r tokenReader
	return parseSet(st.reader(&r))
}

// Show is ParseShow(st.Text).
func (st Stmt) Show() (name string, ok bool) {
	var r tokenReader
	return parseShow(st.reader(&r))
}

// Deallocate is ParseDeallocate(st.Text).
func (st Stmt) Deallocate() (name string, all bool, ok bool) {
	var r tokenReader
	return parseDeallocate(st.reader(&r))
}

// SelectCall is ParseSelectCall(st.Text).
func (st Stmt) SelectCall() (Call, bool) {
	var r tokenReader
	return parseSelectCall(st.reader(&r))
}

// Truncate is ParseTruncate(st.Text).
func (st Stmt) Truncate() (TruncateStmt, bool) {
	var r tokenReader
	return parseTruncate(st.reader(&r))
}
