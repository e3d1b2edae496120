package sqllex

// tokenReader gives the statement parsers the significant tokens (comments
// skipped) of one statement with a few tokens of lookahead, without
// allocating. Its tokens come from a statement Lexed already lexed (the
// gateway's path: each query is lexed once, whatever reads it), or from a
// Scanner run over a string as far as the parser reads (the string entry
// points such as ParseSet, which often need only the first few tokens).
// Either way the parsers see the same tokens, so each grammar is written
// once, against the reader.
type tokenReader struct {
	src string // the text Token.Pos counts in

	lexed bool
	toks  []Token // lexed: the tokens not yet read
	eof   Token   // lexed: what follows them

	s   Scanner  // scanning: the rest of src
	buf [4]Token // scanning: the tokens peeked at
	n   int      // tokens in buf
}

// init makes r read the string stmt by scanning it.
func (r *tokenReader) init(stmt string) {
	r.src = stmt
	r.lexed = false
	r.s.Init(stmt)
	r.n = 0
}

// initStmt makes r read the tokens of a lexed statement.
func (r *tokenReader) initStmt(st *Stmt) {
	r.src = st.src
	r.lexed = true
	r.toks = st.toks
	r.eof = Token{Kind: EOF, Pos: st.End, Unterminated: st.endComment}
}

// peek returns the token i places ahead (0 is the next one); i < len(buf).
func (r *tokenReader) peek(i int) Token {
	if r.lexed {
		if i < len(r.toks) {
			return r.toks[i]
		}
		return r.eof
	}
	for r.n <= i {
		r.buf[r.n] = r.s.Next()
		r.n++
	}
	return r.buf[i]
}

func (r *tokenReader) next() Token {
	t := r.peek(0)
	if r.lexed {
		if len(r.toks) > 0 {
			r.toks = r.toks[1:]
		}
		return t
	}
	copy(r.buf[:], r.buf[1:r.n])
	r.n--
	return t
}

// kw reports whether the token i places ahead is the keyword w.
func (r *tokenReader) kw(i int, w string) bool { return r.peek(i).IsKeyword(w) }

// accept consumes the next token if it is the keyword w.
func (r *tokenReader) accept(w string) bool {
	if r.kw(0, w) {
		r.next()
		return true
	}
	return false
}

// atStmtEnd reports whether the token i places ahead ends the statement
// (a semicolon or the end of input).
func (r *tokenReader) atStmtEnd(i int) bool {
	k := r.peek(i).Kind
	return k == EOF || k == Semicolon
}

// atEnd consumes trailing semicolons and reports whether nothing but them
// remains: the statement the parser read was all there is. An unterminated
// comment at the end is not an end (the server rejects it).
func (r *tokenReader) atEnd() bool {
	for r.peek(0).Kind == Semicolon {
		r.next()
	}
	t := r.peek(0)
	return t.Kind == EOF && !t.Unterminated
}

// colID reads a name PostgreSQL's grammar calls ColId: an identifier,
// quoted or not, that is not a reserved or type/function-name keyword.
func colID(t Token) (string, bool) {
	switch t.Kind {
	case Ident:
		if c := categoryOf(t.Text); c == reservedKeyword || c == typeFuncKeyword {
			return "", false
		}
	case QuotedIdent:
	default:
		return "", false
	}
	return t.Ident()
}

// colLabel reads a name the grammar calls ColLabel (after AS, or after a
// dot in a qualified name): any identifier, keywords included.
func colLabel(t Token) (string, bool) {
	if t.Kind != Ident && t.Kind != QuotedIdent {
		return "", false
	}
	return t.Ident()
}

func isOp(t Token, op string) bool { return t.Kind == Op && t.Text == op }

// parseQualifiedName reads qualified_name: ColId, then up to two more
// parts after dots, and returns its source text.
func (r *tokenReader) parseQualifiedName() (string, bool) {
	first := r.next()
	if _, ok := colID(first); !ok {
		return "", false
	}
	last := first
	for i := 0; i < 2 && r.peek(0).Kind == Dot; i++ {
		r.next()
		last = r.next()
		if _, ok := colLabel(last); !ok {
			return "", false
		}
	}
	return r.src[first.Pos:last.End()], true
}
