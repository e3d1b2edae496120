package dsqlsim

import "strings"

// This file is the emulator's own SQL lexer and statement splitter. It knows
// just enough of PostgreSQL's lexical rules to find where statements end and
// what their leading words are: standard strings ('' doubles a quote; the
// emulator never lets standard_conforming_strings be turned off), E'...' strings
// with backslash escapes, dollar quotes, quoted identifiers, -- comments and
// nested /* */ comments. It never fails: unterminated input runs to the end.

// sqlTokenKind classifies a token.
type sqlTokenKind uint8

const (
	tokIdent       sqlTokenKind = iota // unquoted identifier or keyword
	tokQuotedIdent                     // "..." (or U&"...")
	tokString                          // '...', E'...', $tag$...$tag$
	tokNumber                          // 42, 1.5e3
	tokParam                           // $1
	tokSemicolon                       // ;
	tokOpenParen                       // (
	tokCloseParen                      // )
	tokOther                           // any other single character: operators, punctuation
)

// sqlToken is a token's kind and its byte range [start, end) in the source.
type sqlToken struct {
	kind       sqlTokenKind
	start, end int
}

// sqlScanner yields the tokens of src one at a time, skipping whitespace and
// comments. The zero value scans the empty string.
type sqlScanner struct {
	src string
	pos int
}

// next returns the next token, or false at the end of the input.
func (s *sqlScanner) next() (sqlToken, bool) {
	s.skipSpaceAndComments()
	if s.pos >= len(s.src) {
		return sqlToken{}, false
	}
	start := s.pos
	c := s.src[s.pos]
	kind := tokOther
	switch {
	case c == '\'':
		s.scanQuoted('\'', false)
		kind = tokString
	case c == '"':
		s.scanQuoted('"', false)
		kind = tokQuotedIdent
	case c == '$':
		kind = s.scanDollar()
	case isIdentStart(c):
		s.pos++
		for s.pos < len(s.src) && isIdentCont(s.src[s.pos]) {
			s.pos++
		}
		kind = tokIdent
		// E'...' is a string with backslash escapes; it starts a token only
		// when the identifier is the single letter E.
		if s.pos-start == 1 && (c == 'e' || c == 'E') && s.pos < len(s.src) && s.src[s.pos] == '\'' {
			s.scanQuoted('\'', true)
			kind = tokString
		}
	case isDigit(c) || c == '.' && s.pos+1 < len(s.src) && isDigit(s.src[s.pos+1]):
		s.scanNumber()
		kind = tokNumber
	case c == ';':
		s.pos++
		kind = tokSemicolon
	case c == '(':
		s.pos++
		kind = tokOpenParen
	case c == ')':
		s.pos++
		kind = tokCloseParen
	default:
		s.pos++
	}
	return sqlToken{kind: kind, start: start, end: s.pos}, true
}

func (s *sqlScanner) skipSpaceAndComments() {
	for s.pos < len(s.src) {
		c := s.src[s.pos]
		switch {
		case c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v':
			s.pos++
		case c == '-' && strings.HasPrefix(s.src[s.pos:], "--"):
			end := strings.IndexAny(s.src[s.pos:], "\r\n")
			if end < 0 {
				s.pos = len(s.src)
				return
			}
			s.pos += end + 1
		case c == '/' && strings.HasPrefix(s.src[s.pos:], "/*"):
			s.skipBlockComment()
		default:
			return
		}
	}
}

// skipBlockComment skips a /* */ comment, which nests in PostgreSQL.
func (s *sqlScanner) skipBlockComment() {
	depth := 0
	for s.pos < len(s.src) {
		switch {
		case strings.HasPrefix(s.src[s.pos:], "/*"):
			depth++
			s.pos += 2
		case strings.HasPrefix(s.src[s.pos:], "*/"):
			depth--
			s.pos += 2
			if depth == 0 {
				return
			}
		default:
			s.pos++
		}
	}
}

// scanQuoted scans from the opening quote at s.pos to just past the closing
// one. A doubled quote stands for itself; with backslashes, a backslash
// escapes the byte after it (E'...' strings).
func (s *sqlScanner) scanQuoted(quote byte, backslashes bool) {
	s.pos++ // opening quote
	for s.pos < len(s.src) {
		c := s.src[s.pos]
		switch {
		case backslashes && c == '\\':
			s.pos += 2
		case c == quote:
			if s.pos+1 < len(s.src) && s.src[s.pos+1] == quote {
				s.pos += 2
				continue
			}
			s.pos++
			// 'a'<newline>'b' is one literal; for an E'...' string the
			// continuation keeps the backslash rules, so it matters here.
			if next, ok := s.quoteContinuation(); ok && backslashes {
				s.pos = next + 1
				continue
			}
			return
		default:
			s.pos++
		}
	}
	s.pos = len(s.src) // an escape at the very end may have stepped past it
}

// scanNumber scans digits, a fraction and an exponent; what follows starts
// a new token. (PostgreSQL 15 and later reject a number followed directly by
// identifier characters, such as 1abc or 1e'x', as a syntax error of the
// whole query string, so the split there only has to stay well-formed.)
func (s *sqlScanner) scanNumber() {
	digits := func() {
		for s.pos < len(s.src) && isDigit(s.src[s.pos]) {
			s.pos++
		}
	}
	digits()
	if s.pos < len(s.src) && s.src[s.pos] == '.' && !strings.HasPrefix(s.src[s.pos:], "..") {
		s.pos++
		digits()
	}
	if s.pos < len(s.src) && (s.src[s.pos] == 'e' || s.src[s.pos] == 'E') {
		exp := s.pos + 1
		if exp < len(s.src) && (s.src[exp] == '+' || s.src[exp] == '-') {
			exp++
		}
		if exp < len(s.src) && isDigit(s.src[exp]) {
			s.pos = exp
			digits()
		}
	}
}

// quoteContinuation reports whether a string literal that ended at s.pos
// continues, and where its next opening quote is: PostgreSQL joins literals
// separated by whitespace that holds a newline (-- comments count as
// whitespace).
func (s *sqlScanner) quoteContinuation() (int, bool) {
	src, i := s.src, s.pos
	skipComment := func() {
		for i < len(src) && src[i] != '\n' && src[i] != '\r' {
			i++
		}
	}
	for i < len(src) {
		if c := src[i]; c == ' ' || c == '\t' || c == '\f' {
			i++
		} else if strings.HasPrefix(src[i:], "--") {
			skipComment()
		} else {
			break
		}
	}
	if i >= len(src) || src[i] != '\n' && src[i] != '\r' {
		return 0, false
	}
	for i < len(src) {
		if c := src[i]; c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' {
			i++
		} else if strings.HasPrefix(src[i:], "--") {
			skipComment()
			if i >= len(src) {
				return 0, false
			}
		} else {
			break
		}
	}
	if i < len(src) && src[i] == '\'' {
		return i, true
	}
	return 0, false
}

// scanDollar scans a $n parameter, a $tag$...$tag$ string, or a lone "$".
func (s *sqlScanner) scanDollar() sqlTokenKind {
	rest := s.src[s.pos+1:]
	if len(rest) > 0 && isDigit(rest[0]) {
		s.pos++
		for s.pos < len(s.src) && isDigit(s.src[s.pos]) {
			s.pos++
		}
		return tokParam
	}
	// The tag is empty or an identifier without "$"; then comes "$".
	n := 0
	if len(rest) > 0 && isIdentStart(rest[0]) {
		n = 1
		for n < len(rest) && isIdentCont(rest[n]) && rest[n] != '$' {
			n++
		}
	}
	if n >= len(rest) || rest[n] != '$' {
		s.pos++
		return tokOther
	}
	delim := s.src[s.pos : s.pos+n+2] // "$tag$"
	bodyStart := s.pos + len(delim)
	end := strings.Index(s.src[bodyStart:], delim)
	if end < 0 {
		s.pos = len(s.src)
	} else {
		s.pos = bodyStart + end + len(delim)
	}
	return tokString
}

func isDigit(c byte) bool { return '0' <= c && c <= '9' }

func isIdentStart(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || c == '_' || c >= 0x80
}

func isIdentCont(c byte) bool { return isIdentStart(c) || isDigit(c) || c == '$' }

// sqlStatement is one statement of a query string: its byte range
// [start, end) in the source, from just after the previous top-level ";" to
// just before its own (or the end), and its tokens without that ";".
// Consecutive statements' ranges are separated by exactly one ";".
type sqlStatement struct {
	start, end int
	tokens     []sqlToken
}

// splitStatements splits src at top-level semicolons the way psql does: not
// inside parentheses, and not inside the BEGIN ... END (or CASE ... END) of
// a CREATE FUNCTION/PROCEDURE body written in SQL-standard form. It always
// returns at least one statement, which may have no tokens.
func splitStatements(src string) []sqlStatement {
	var (
		stmts      []sqlStatement
		cur        = sqlStatement{start: 0}
		parenDepth int
		beginDepth int
		routine    bool // the statement is CREATE [OR REPLACE] FUNCTION|PROCEDURE
		s          = sqlScanner{src: src}
	)
	for {
		tok, ok := s.next()
		if !ok {
			break
		}
		switch tok.kind {
		case tokSemicolon:
			if parenDepth == 0 && beginDepth == 0 {
				cur.end = tok.start
				stmts = append(stmts, cur)
				cur = sqlStatement{start: tok.end}
				routine = false
				continue
			}
		case tokOpenParen:
			parenDepth++
		case tokCloseParen:
			if parenDepth > 0 {
				parenDepth--
			}
		case tokIdent:
			if len(cur.tokens) < 4 {
				routine = routine || isRoutineHead(src, cur.tokens, tok)
			}
			if routine {
				word := src[tok.start:tok.end]
				switch {
				case strings.EqualFold(word, "begin"), strings.EqualFold(word, "case"):
					beginDepth++
				case strings.EqualFold(word, "end") && beginDepth > 0:
					beginDepth--
				}
			}
		}
		cur.tokens = append(cur.tokens, tok)
	}
	cur.end = len(src)
	return append(stmts, cur)
}

// isRoutineHead reports whether the tokens so far plus tok read
// CREATE FUNCTION, CREATE PROCEDURE, or the same with OR REPLACE.
func isRoutineHead(src string, before []sqlToken, tok sqlToken) bool {
	word := func(t sqlToken) string { return strings.ToLower(src[t.start:t.end]) }
	last := word(tok)
	if last != "function" && last != "procedure" {
		return false
	}
	for _, t := range before {
		if t.kind != tokIdent {
			return false
		}
	}
	switch len(before) {
	case 1:
		return word(before[0]) == "create"
	case 3:
		return word(before[0]) == "create" && word(before[1]) == "or" && word(before[2]) == "replace"
	}
	return false
}
