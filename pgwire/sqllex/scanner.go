package sqllex

import "strings"

// Scanner splits SQL text into Tokens. The zero value is ready after Init.
// A Scanner allocates nothing; each call to Next does work proportional to
// the token it returns (and to a bounded look past it), so scanning a whole
// input is linear in its length.
//
//	var s sqllex.Scanner
//	s.Init(query)
//	for t := s.Next(); t.Kind != sqllex.EOF; t = s.Next() {
//		...
//	}
type Scanner struct {
	// KeepComments makes Next return comments as Comment tokens instead of
	// skipping them. With it set, the bytes between tokens are whitespace
	// only (space, \t, \n, \r, \f, \v).
	KeepComments bool

	src string
	pos int

	// pmEnd caches the end of a run of + and - that is known to lex as one
	// token per byte (see scanOperator), so that a long run costs linear
	// rather than quadratic time.
	pmEnd int

	// noUescape is set on the throwaway copies used to look for a UESCAPE
	// clause, so that such a look never starts another.
	noUescape bool
}

// Init makes s scan src from its start. KeepComments is left as it is.
func (s *Scanner) Init(src string) {
	s.src = src
	s.pos = 0
	s.pmEnd = 0
	s.noUescape = false
}

// Next returns the next token, or a token of kind EOF at the end of input
// (and on every call after that).
func (s *Scanner) Next() Token {
	for {
		s.skipSpace()
		if s.pos >= len(s.src) {
			return Token{Kind: EOF, Pos: len(s.src)}
		}
		start := s.pos
		kind, end, unterminated := s.scan(start)
		s.pos = end
		if kind == Comment && !s.KeepComments {
			if unterminated {
				return Token{Kind: EOF, Pos: len(s.src), Unterminated: true}
			}
			continue
		}
		return Token{Kind: kind, Text: s.src[start:end], Pos: start, Unterminated: unterminated}
	}
}

func (s *Scanner) skipSpace() {
	for s.pos < len(s.src) && isSpace(s.src[s.pos]) {
		s.pos++
	}
}

// scan lexes the token that starts at p, which is not whitespace, and
// returns its kind and end.
func (s *Scanner) scan(p int) (kind TokenKind, end int, unterminated bool) {
	src := s.src
	n := len(src)
	c := src[p]
	var next byte
	if p+1 < n {
		next = src[p+1]
	}
	switch {
	case c == '-' && next == '-':
		return Comment, lineCommentEnd(src, p), false
	case c == '/' && next == '*':
		end, ok := blockCommentEnd(src, p)
		return Comment, end, !ok
	case c == '\'':
		end, unterminated = scanQuoted(src, p+1, quoteStandard)
		return String, end, unterminated
	case c == '"':
		end, unterminated = scanQuotedIdent(src, p+1)
		return QuotedIdent, end, unterminated
	case isIdentStart(c):
		return s.scanWord(p)
	case isDigit(c):
		return Number, scanNumber(src, p), false
	case c == '.':
		if isDigit(next) {
			return Number, scanNumber(src, p), false
		}
		if next == '.' {
			return Op, p + 2, false
		}
		return Dot, p + 1, false
	case c == '$':
		return scanDollar(src, p)
	case c == ':':
		if next == ':' || next == '=' {
			return Op, p + 2, false
		}
		return Colon, p + 1, false
	case isOpChar(c):
		return Op, s.scanOperator(p), false
	case c == '(':
		return LParen, p + 1, false
	case c == ')':
		return RParen, p + 1, false
	case c == '[':
		return LBracket, p + 1, false
	case c == ']':
		return RBracket, p + 1, false
	case c == ',':
		return Comma, p + 1, false
	case c == ';':
		return Semicolon, p + 1, false
	}
	return OtherChar, p + 1, false
}

// scanWord lexes a token that starts with an identifier byte: a word, or a
// string or identifier with a prefix (B'...', X'...', E'...', N'...', U&'...', U&"...").
// As in PostgreSQL, a prefix counts only at the start of a token: in
// abce'x' the word is abce and 'x' is a plain string.
func (s *Scanner) scanWord(p int) (TokenKind, int, bool) {
	src := s.src
	n := len(src)
	if p+1 < n {
		next := src[p+1]
		switch src[p] {
		case 'b', 'B', 'x', 'X':
			if next == '\'' {
				end, unterminated := scanQuoted(src, p+2, quoteBits)
				return BitString, end, unterminated
			}
		case 'e', 'E':
			if next == '\'' {
				end, unterminated := scanQuoted(src, p+2, quoteEscape)
				return String, end, unterminated
			}
		case 'n', 'N':
			// PostgreSQL lexes N'x' as the keyword NCHAR followed by 'x'; it
			// is one String token here.
			if next == '\'' {
				end, unterminated := scanQuoted(src, p+2, quoteStandard)
				return String, end, unterminated
			}
		case 'u', 'U':
			if next == '&' && p+2 < n {
				switch src[p+2] {
				case '\'':
					end, unterminated := scanQuoted(src, p+3, quoteStandard)
					if !unterminated {
						end = s.uescapeEnd(end)
					}
					return String, end, unterminated
				case '"':
					end, unterminated := scanQuotedIdent(src, p+3)
					if !unterminated {
						end = s.uescapeEnd(end)
					}
					return QuotedIdent, end, unterminated
				}
			}
		}
	}
	q := p + 1
	for q < n && isIdentCont(src[q]) {
		q++
	}
	return Ident, q, false
}

// uescapeEnd looks past a U&'...' or U&"..." token that ends at end for a
// UESCAPE clause (UESCAPE followed by a string constant, comments allowed
// between) and returns the end of the clause, or end when there is none.
// PostgreSQL's grammar joins the three tokens; keeping them as one token
// lets Token.StringValue and Token.Ident decode the escapes by themselves.
func (s *Scanner) uescapeEnd(end int) int {
	if s.noUescape {
		return end
	}
	look := Scanner{src: s.src, pos: end, noUescape: true}
	if t := look.Next(); !t.IsKeyword("uescape") {
		return end
	}
	t := look.Next()
	if t.Kind != String || t.Unterminated || !isPlainStringConst(t.Text) {
		return end
	}
	return t.End()
}

// isPlainStringConst reports whether the text of a String token is what
// PostgreSQL's grammar calls an SCONST: not U&'...' (USCONST) and not N'...'
// (NCHAR followed by a string).
func isPlainStringConst(text string) bool {
	switch text[0] {
	case 'u', 'U', 'n', 'N':
		return false
	}
	return true
}

// quoteMode is how the body of a '...' constant is read.
type quoteMode uint8

const (
	quoteStandard quoteMode = iota // '' is a quote; backslash is an ordinary byte
	quoteEscape                    // E'': '' is a quote, and a backslash escapes the byte after it
	quoteBits                      // B'' and X'': the first quote ends the body ('' is not an escape)
)

// scanQuoted finds the end of a string constant whose body starts at body,
// just after the opening quote, joining constants continued across
// whitespace holding a newline. It returns the end of the last closing
// quote, or len(src) and true when the constant is unterminated.
func scanQuoted(src string, body int, mode quoteMode) (end int, unterminated bool) {
	stops := "'"
	if mode == quoteEscape {
		stops = `'\`
	}
	p := body
	for {
		for {
			i := strings.IndexAny(src[p:], stops)
			if i < 0 {
				return len(src), true
			}
			p += i
			if src[p] == '\\' {
				p += 2
				if p >= len(src) {
					return len(src), true
				}
				continue
			}
			if mode != quoteBits && p+1 < len(src) && src[p+1] == '\'' {
				p += 2
				continue
			}
			break
		}
		p++ // the closing quote
		q, ok := continuedQuote(src, p)
		if !ok {
			return p, false
		}
		p = q + 1
	}
}

// continuedQuote reports whether the string constant that ended just before
// p continues: scan.l's quotecontinue, a run of whitespace and -- comments
// that holds at least one newline, followed by a quote. It returns the
// position of that quote.
func continuedQuote(src string, p int) (int, bool) {
	newline := false
	for p < len(src) {
		switch c := src[p]; {
		case c == '\n' || c == '\r':
			newline = true
			p++
		case isSpace(c):
			p++
		case c == '-' && p+1 < len(src) && src[p+1] == '-':
			p = lineCommentEnd(src, p)
		case c == '\'' && newline:
			return p, true
		default:
			return 0, false
		}
	}
	return 0, false
}

// scanQuotedIdent finds the end of a quoted identifier whose body starts
// at body. Unlike string constants, quoted identifiers are never continued.
func scanQuotedIdent(src string, body int) (end int, unterminated bool) {
	p := body
	for {
		i := strings.IndexByte(src[p:], '"')
		if i < 0 {
			return len(src), true
		}
		p += i + 1
		if p < len(src) && src[p] == '"' {
			p++
			continue
		}
		return p, false
	}
}

// lineCommentEnd returns the end of the -- comment at p: the next newline
// (not included) or the end of input.
func lineCommentEnd(src string, p int) int {
	if i := strings.IndexAny(src[p:], "\n\r"); i >= 0 {
		return p + i
	}
	return len(src)
}

// blockCommentEnd returns the end of the /* comment at p. PostgreSQL nests
// block comments, so /* /* */ */ is one comment. ok is false when the
// comment is never closed.
func blockCommentEnd(src string, p int) (end int, ok bool) {
	depth := 0
	for p < len(src) {
		i := strings.IndexAny(src[p:], "/*")
		if i < 0 {
			break
		}
		p += i
		if p+1 < len(src) {
			switch {
			case src[p] == '/' && src[p+1] == '*':
				depth++
				p += 2
				continue
			case src[p] == '*' && src[p+1] == '/':
				depth--
				p += 2
				if depth == 0 {
					return p, true
				}
				continue
			}
		}
		p++
	}
	return len(src), false
}

// scanDollar lexes a token starting with $: a parameter ($1), a
// dollar-quoted string ($$...$$ or $tag$...$tag$), or a lone $.
func scanDollar(src string, p int) (TokenKind, int, bool) {
	n := len(src)
	q := p + 1
	if q < n && isDigit(src[q]) {
		return Param, scanJunk(src, scanDigits(src, q, isDigit)), false
	}
	if q < n && isIdentStart(src[q]) {
		q++
		for q < n && isDollarTagCont(src[q]) {
			q++
		}
	}
	if q >= n || src[q] != '$' {
		// scan.l's dolqfailed: the $ is a token by itself.
		return OtherChar, p + 1, false
	}
	tag := src[p : q+1]
	body := q + 1
	i := strings.Index(src[body:], tag)
	if i < 0 {
		return String, n, true
	}
	return String, body + i + len(tag), false
}

// scanNumber lexes a numeric constant at p (a digit, or a dot followed by
// a digit). Letters that follow directly are PostgreSQL 16's "trailing
// junk" error (12abc); they are kept in the token so that the text is not
// cut where the server does not cut it.
func scanNumber(src string, p int) int {
	return scanJunk(src, scanNumeric(src, p))
}

// scanNumeric returns the end of the number at p as PostgreSQL 16 reads
// it: decimal integers and fractions with an optional exponent, 0x/0o/0b
// integers, _ between digits.
func scanNumeric(src string, p int) int {
	n := len(src)
	if src[p] == '0' && p+1 < n {
		var isBaseDigit func(byte) bool
		switch src[p+1] {
		case 'x', 'X':
			isBaseDigit = isHexDigit
		case 'o', 'O':
			isBaseDigit = isOctDigit
		case 'b', 'B':
			isBaseDigit = isBinDigit
		}
		if isBaseDigit != nil {
			start := p + 2
			q := start
			for q < n {
				if isBaseDigit(src[q]) {
					q++
				} else if src[q] == '_' && q+1 < n && isBaseDigit(src[q+1]) {
					q += 2
				} else {
					break
				}
			}
			if q > start {
				return q
			}
		}
	}
	q := p
	if src[q] != '.' {
		q = scanDigits(src, q, isDigit)
		if q < n && src[q] == '.' {
			if q+1 < n && src[q+1] == '.' {
				return q // 1..2 is 1 followed by ..
			}
			q = scanDigits(src, q+1, isDigit)
		}
	} else {
		q = scanDigits(src, q+1, isDigit)
	}
	if q < n && (src[q] == 'e' || src[q] == 'E') {
		r := q + 1
		if r < n && (src[r] == '+' || src[r] == '-') {
			r++
		}
		if r < n && isDigit(src[r]) {
			q = scanDigits(src, r, isDigit)
		}
	}
	return q
}

// scanDigits skips digit(_?digit)* from q; it returns q unchanged when
// there is no digit at q.
func scanDigits(src string, q int, isD func(byte) bool) int {
	if q >= len(src) || !isD(src[q]) {
		return q
	}
	q++
	for q < len(src) {
		if isD(src[q]) {
			q++
		} else if src[q] == '_' && q+1 < len(src) && isD(src[q+1]) {
			q += 2
		} else {
			break
		}
	}
	return q
}

// scanJunk skips an identifier that directly follows a number or parameter.
func scanJunk(src string, q int) int {
	if q < len(src) && isIdentStart(src[q]) {
		q++
		for q < len(src) && isIdentCont(src[q]) {
			q++
		}
	}
	return q
}

// scanOperator lexes an operator at p following scan.l's {operator} rule:
// the longest run of operator bytes, cut before a comment start (/* or --),
// and, unless the operator holds one of ~ ! @ # ^ & | ` ? %, with any
// trailing + and - removed (so that 1=-1 is 1 = -1, while @- stays one
// operator).
func (s *Scanner) scanOperator(p int) int {
	src := s.src
	n := len(src)
	if p < s.pmEnd {
		return p + 1
	}
	q := p
	special := false
	pmOnly := true
	for q < n && isOpChar(src[q]) {
		c := src[q]
		if q > p && q+1 < n && ((c == '/' && src[q+1] == '*') || (c == '-' && src[q+1] == '-')) {
			break
		}
		switch c {
		case '~', '!', '@', '#', '^', '&', '|', '`', '?', '%':
			special = true
		}
		if c != '+' && c != '-' {
			pmOnly = false
		}
		q++
	}
	if q-p > 1 && (src[q-1] == '+' || src[q-1] == '-') {
		// The last byte cannot be special, so "special" says whether any
		// byte before it is.
		if !special {
			if pmOnly {
				// Every byte of this run lexes as a token of its own; remember
				// that, because rescanning the run from each byte would be
				// quadratic.
				s.pmEnd = q
				return p + 1
			}
			for q-p > 1 && (src[q-1] == '+' || src[q-1] == '-') {
				q--
			}
		}
	}
	return q
}

func isSpace(c byte) bool {
	return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v'
}

func isDigit(c byte) bool    { return '0' <= c && c <= '9' }
func isOctDigit(c byte) bool { return '0' <= c && c <= '7' }
func isBinDigit(c byte) bool { return c == '0' || c == '1' }
func isHexDigit(c byte) bool {
	return isDigit(c) || ('a' <= c && c <= 'f') || ('A' <= c && c <= 'F')
}

// isIdentStart is scan.l's ident_start (and dolq_start): [A-Za-z\200-\377_].
func isIdentStart(c byte) bool {
	return ('a' <= c && c <= 'z') || ('A' <= c && c <= 'Z') || c == '_' || c >= 0x80
}

// isIdentCont is ident_cont: ident_start, digits and $.
func isIdentCont(c byte) bool { return isIdentStart(c) || isDigit(c) || c == '$' }

// isDollarTagCont is dolq_cont: ident_start and digits, but not $.
func isDollarTagCont(c byte) bool { return isIdentStart(c) || isDigit(c) }

// isOpChar is scan.l's op_chars: ~ ! @ # ^ & | ` ? + - * / % < > =
func isOpChar(c byte) bool {
	switch c {
	case '~', '!', '@', '#', '^', '&', '|', '`', '?', '+', '-', '*', '/', '%', '<', '>', '=':
		return true
	}
	return false
}
