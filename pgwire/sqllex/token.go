package sqllex

// TokenKind tells what a Token is.
type TokenKind uint8

// The kinds of token. The comment after each shows examples of its Text.
const (
	EOF         TokenKind = iota // end of input; Text is empty
	Ident                        // select, My_Table, a$b, café (unquoted identifier or keyword)
	QuotedIdent                  // "My Table", U&"d\0061t", U&"d!0061t" UESCAPE '!'
	String                       // 'a''b', E'a\'b', N'x', U&'\0041', $$a$$, $fn$a$fn$, 'a'<newline>'b'
	BitString                    // B'0101', X'1F'
	Number                       // 42, 1.5, .5, 1e-3, 0x1F, 0o17, 0b101, 1_000 (and PG16's "trailing junk", 12abc)
	Param                        // $1
	Op                           // + - * / < <= <> != = => :: := .. ->> @> and other operators
	LParen                       // (
	RParen                       // )
	LBracket                     // [
	RBracket                     // ]
	Comma                        // ,
	Semicolon                    // ;
	Colon                        // :
	Dot                          // .
	Comment                      // -- to end of line, or /* nested */; only when Scanner.KeepComments is set
	OtherChar                    // any other single byte: a lone $, a backslash, {, }, a control byte, NUL
)

var tokenKindNames = [...]string{
	EOF: "EOF", Ident: "Ident", QuotedIdent: "QuotedIdent", String: "String", BitString: "BitString",
	Number: "Number", Param: "Param", Op: "Op", LParen: "LParen", RParen: "RParen",
	LBracket: "LBracket", RBracket: "RBracket", Comma: "Comma", Semicolon: "Semicolon",
	Colon: "Colon", Dot: "Dot", Comment: "Comment", OtherChar: "OtherChar",
}

func (k TokenKind) String() string {
	if int(k) < len(tokenKindNames) {
		return tokenKindNames[k]
	}
	return "TokenKind(?)"
}

// Token is one lexical token. Text is a substring of the input given to
// Scanner.Init (never a copy), so a Token holds no memory of its own.
type Token struct {
	Kind TokenKind
	// Text is the token's source text exactly as written: quotes, prefixes
	// (E, U&, B, ...), doubled quotes, a UESCAPE clause and the whitespace of
	// a continued string constant all included.
	Text string
	// Pos is the byte offset of Text in the input.
	Pos int
	// Unterminated is set on a QuotedIdent, String, BitString or Comment that
	// runs to the end of the input without its closing delimiter; PostgreSQL
	// rejects such input. On the EOF token it reports that the input ended
	// inside a /* comment that Next skipped.
	Unterminated bool
}

// End is the byte offset just past the token.
func (t Token) End() int { return t.Pos + len(t.Text) }

// IsKeyword reports whether t is the unquoted word kw, compared the way
// PostgreSQL matches keywords (ASCII case-insensitively). kw must be lower
// case. A quoted identifier is never a keyword: "select" is a name.
func (t Token) IsKeyword(kw string) bool {
	return t.Kind == Ident && equalFoldASCII(t.Text, kw)
}

// Ident returns the name an Ident or QuotedIdent token stands for, as
// PostgreSQL's lexer makes it: an unquoted word has A-Z downcased (other
// bytes kept); a quoted one loses its quotes and has "" undoubled and U&
// escapes decoded. Both are truncated to 63 bytes (NAMEDATALEN-1) at a
// character boundary. ok is false for any other kind of token, for an
// unterminated or zero-length quoted identifier, and for invalid escapes.
func (t Token) Ident() (name string, ok bool) {
	switch {
	case t.Unterminated:
		return "", false
	case t.Kind == Ident:
		return foldIdent(t.Text), true
	case t.Kind == QuotedIdent:
		return decodeQuotedIdent(t.Text)
	}
	return "", false
}

// StringValue returns the value of a String token: quotes removed, doubled
// quotes undoubled, E'...' backslash escapes and U&'...' escapes (with their UESCAPE
// character) decoded, continued constants joined. ok is false for other
// kinds of token, unterminated strings, invalid escapes, and values that
// are not valid UTF-8 or contain NUL, all of which PostgreSQL rejects.
// The result shares memory with Text when no decoding was needed.
func (t Token) StringValue() (value string, ok bool) {
	if t.Kind != String || t.Unterminated {
		return "", false
	}
	return decodeString(t.Text)
}

// equalFoldASCII compares s with the lower-case ASCII word kw, folding only
// A-Z in s. strings.EqualFold is not used because it folds Unicode too (the
// Kelvin sign would match "k"), which PostgreSQL does not.
func equalFoldASCII(s, kw string) bool {
	if len(s) != len(kw) {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != kw[i] {
			return false
		}
	}
	return true
}
