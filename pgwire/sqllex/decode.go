package sqllex

import (
	"strings"
	"unicode/utf8"
)

// maxIdentLen is the longest identifier PostgreSQL keeps (NAMEDATALEN-1),
// in bytes; longer ones are truncated.
const maxIdentLen = 63

// foldIdent is downcase_truncate_identifier: ASCII A-Z to lower case, other
// bytes kept, then truncation. It allocates only when there is an upper-case
// letter.
func foldIdent(s string) string {
	s = truncateIdent(s)
	for i := 0; i < len(s); i++ {
		if 'A' <= s[i] && s[i] <= 'Z' {
			b := []byte(s)
			for j := i; j < len(b); j++ {
				if 'A' <= b[j] && b[j] <= 'Z' {
					b[j] += 'a' - 'A'
				}
			}
			return string(b)
		}
	}
	return s
}

// truncateIdent is truncate_identifier: cut to at most maxIdentLen bytes,
// stepping by UTF-8 sequence lengths the way pg_mbcliplen does so that no
// character is split.
func truncateIdent(s string) string {
	if len(s) <= maxIdentLen {
		return s
	}
	n := 0
	for n < len(s) {
		l := utf8SeqLen(s[n])
		if n+l > maxIdentLen {
			break
		}
		n += l
	}
	return s[:n]
}

// utf8SeqLen is pg_utf_mblen: the length of the sequence a lead byte
// announces (1 for anything that is not a lead byte).
func utf8SeqLen(c byte) int {
	switch {
	case c&0x80 == 0:
		return 1
	case c&0xe0 == 0xc0:
		return 2
	case c&0xf0 == 0xe0:
		return 3
	case c&0xf8 == 0xf0:
		return 4
	}
	return 1
}

// decodeQuotedIdent decodes the text of a terminated QuotedIdent token.
func decodeQuotedIdent(text string) (string, bool) {
	unicode := false
	if text[0] != '"' { // U&"..." [UESCAPE '?']
		unicode = true
		text = text[2:]
	}
	end, _ := scanQuotedIdent(text, 1)
	body := text[1 : end-1]
	rest := text[end:]
	if strings.Contains(body, `""`) {
		body = strings.ReplaceAll(body, `""`, `"`)
	}
	if unicode {
		esc, ok := uescapeChar(rest)
		if !ok {
			return "", false
		}
		if body, ok = decodeUnicodeEscapes(body, esc); !ok {
			return "", false
		}
	}
	if body == "" {
		return "", false // zero-length delimited identifier
	}
	return truncateIdent(body), true
}

// decodeString decodes the text of a terminated String token.
func decodeString(text string) (string, bool) {
	var v string
	var ok bool
	switch text[0] {
	case '$':
		i := strings.IndexByte(text[1:], '$') + 2 // length of the tag
		if i < 2 || len(text) < 2*i {
			return "", false
		}
		v, ok = text[i:len(text)-i], true
	case '\'':
		v, _, ok = decodeQuoted(text, 0, quoteStandard)
	case 'e', 'E':
		v, _, ok = decodeQuoted(text, 1, quoteEscape)
	case 'n', 'N':
		v, _, ok = decodeQuoted(text, 1, quoteStandard)
	case 'u', 'U':
		var end int
		v, end, ok = decodeQuoted(text, 2, quoteStandard)
		if ok {
			esc, escOK := uescapeChar(text[end:])
			if !escOK {
				return "", false
			}
			v, ok = decodeUnicodeEscapes(v, esc)
		}
	}
	if !ok || !validText(v) {
		return "", false
	}
	return v, true
}

// validText reports whether PostgreSQL would accept s as text in a UTF-8
// database: valid UTF-8 without NUL.
func validText(s string) bool {
	return utf8.ValidString(s) && strings.IndexByte(s, 0) < 0
}

// decodeQuoted decodes the '...' constant (with any continuations) that
// starts at text[p] and returns its value and the end of its last closing
// quote. The value shares memory with text when it needed no decoding.
func decodeQuoted(text string, p int, mode quoteMode) (value string, end int, ok bool) {
	end, unterminated := scanQuoted(text, p+1, mode)
	if unterminated {
		return "", 0, false
	}
	// Fast path: one segment with nothing to undo.
	body := text[p+1 : end-1]
	stops := "'"
	if mode == quoteEscape {
		stops = `'\`
	}
	if !strings.ContainsAny(body, stops) {
		return body, end, true
	}

	var b []byte
	var surrogate rune // a pending high surrogate from a \u escape
	q := p
	for q < end {
		// text[q] is an opening quote.
		segEnd, _ := scanQuotedSegment(text, q+1, mode)
		seg := text[q+1 : segEnd]
		var segOK bool
		if mode == quoteEscape {
			b, surrogate, segOK = appendEscaped(b, seg, surrogate)
		} else {
			b, segOK = appendUndoubled(b, seg), true
		}
		if !segOK {
			return "", 0, false
		}
		q = segEnd + 1
		if q < end {
			q, _ = continuedQuote(text, q)
		}
	}
	if surrogate != 0 {
		return "", 0, false
	}
	return string(b), end, true
}

// scanQuotedSegment returns the position of the quote that closes the one
// segment whose body starts at body (no continuation).
func scanQuotedSegment(src string, body int, mode quoteMode) (int, bool) {
	p := body
	for p < len(src) {
		switch {
		case src[p] == '\\' && mode == quoteEscape:
			p += 2
		case src[p] == '\'':
			if mode != quoteBits && p+1 < len(src) && src[p+1] == '\'' {
				p += 2
				continue
			}
			return p, true
		default:
			p++
		}
	}
	return len(src), false
}

func appendUndoubled(b []byte, seg string) []byte {
	for i := 0; i < len(seg); i++ {
		b = append(b, seg[i])
		if seg[i] == '\'' {
			i++ // the second quote of ''
		}
	}
	return b
}

// appendEscaped decodes the body of one E'...' segment: doubled quotes and the backslash
// escapes of PostgreSQL's xe state. surrogate carries a \u high surrogate
// that must be followed at once by its low half.
func appendEscaped(b []byte, seg string, surrogate rune) ([]byte, rune, bool) {
	for i := 0; i < len(seg); {
		c := seg[i]
		if c != '\\' {
			if surrogate != 0 {
				return nil, 0, false
			}
			b = append(b, c)
			if c == '\'' {
				i++
			}
			i++
			continue
		}
		if i+1 >= len(seg) {
			return nil, 0, false
		}
		d := seg[i+1]
		i += 2
		if d == 'u' || d == 'U' {
			digits := 4
			if d == 'U' {
				digits = 8
			}
			if i+digits > len(seg) {
				return nil, 0, false
			}
			r, ok := parseHex(seg[i : i+digits])
			if !ok {
				return nil, 0, false
			}
			i += digits
			if b, surrogate, ok = appendCodePoint(b, r, surrogate); !ok {
				return nil, 0, false
			}
			continue
		}
		if surrogate != 0 {
			return nil, 0, false
		}
		switch {
		case isOctDigit(d):
			v := int(d - '0')
			for k := 0; k < 2 && i < len(seg) && isOctDigit(seg[i]); k++ {
				v = v*8 + int(seg[i]-'0')
				i++
			}
			b = append(b, byte(v))
		case d == 'x' && i < len(seg) && isHexDigit(seg[i]):
			v := hexVal(seg[i])
			i++
			if i < len(seg) && isHexDigit(seg[i]) {
				v = v*16 + hexVal(seg[i])
				i++
			}
			b = append(b, byte(v))
		default:
			b = append(b, unescapeSingle(d))
		}
	}
	return b, surrogate, true
}

// unescapeSingle is scan.l's unescape_single_char.
func unescapeSingle(c byte) byte {
	switch c {
	case 'b':
		return '\b'
	case 'f':
		return '\f'
	case 'n':
		return '\n'
	case 'r':
		return '\r'
	case 't':
		return '\t'
	}
	return c
}

// appendCodePoint appends the code point r from a Unicode escape, pairing
// UTF-16 surrogates: high is a pending high surrogate (or 0).
func appendCodePoint(b []byte, r, high rune) ([]byte, rune, bool) {
	isHigh := 0xD800 <= r && r <= 0xDBFF
	isLow := 0xDC00 <= r && r <= 0xDFFF
	switch {
	case high != 0:
		if !isLow {
			return nil, 0, false
		}
		r = 0x10000 + (high-0xD800)<<10 + (r - 0xDC00)
		return utf8.AppendRune(b, r), 0, true
	case isHigh:
		return b, r, true
	case isLow, r <= 0, r > 0x10FFFF:
		return nil, 0, false
	}
	return utf8.AppendRune(b, r), 0, true
}

// uescapeChar reads the optional "UESCAPE 'c'" clause that follows a U&
// constant or identifier and returns the escape character (\ by default).
// The escape must be one byte and not a hex digit, +, a quote or space.
func uescapeChar(rest string) (byte, bool) {
	s := Scanner{src: rest, noUescape: true}
	t := s.Next()
	if t.Kind == EOF {
		return '\\', true
	}
	if !t.IsKeyword("uescape") {
		return 0, false
	}
	t = s.Next()
	if t.Kind != String || t.Unterminated || !isPlainStringConst(t.Text) || s.Next().Kind != EOF {
		return 0, false
	}
	v, ok := decodeString(t.Text)
	if !ok || len(v) != 1 {
		return 0, false
	}
	c := v[0]
	if isHexDigit(c) || c == '+' || c == '\'' || c == '"' || isSpace(c) || c >= 0x80 {
		return 0, false
	}
	return c, true
}

// decodeUnicodeEscapes is str_udeescape: esc esc is esc itself, esc
// followed by 4 hex digits or by + and 6 hex digits is a code point
// (UTF-16 surrogate pairs allowed), any other use of esc is an error.
func decodeUnicodeEscapes(s string, esc byte) (string, bool) {
	if strings.IndexByte(s, esc) < 0 {
		return s, true
	}
	b := make([]byte, 0, len(s))
	var high rune
	for i := 0; i < len(s); {
		if s[i] != esc {
			if high != 0 {
				return "", false
			}
			b = append(b, s[i])
			i++
			continue
		}
		var r rune
		var ok bool
		switch {
		case i+1 < len(s) && s[i+1] == esc:
			if high != 0 {
				return "", false
			}
			b = append(b, esc)
			i += 2
			continue
		case i+5 <= len(s) && allHex(s[i+1:i+5]):
			r, ok = parseHex(s[i+1 : i+5])
			i += 5
		case i+8 <= len(s) && s[i+1] == '+' && allHex(s[i+2:i+8]):
			r, ok = parseHex(s[i+2 : i+8])
			i += 8
		default:
			return "", false
		}
		if !ok {
			return "", false
		}
		if b, high, ok = appendCodePoint(b, r, high); !ok {
			return "", false
		}
	}
	if high != 0 {
		return "", false
	}
	return string(b), true
}

func allHex(s string) bool {
	for i := 0; i < len(s); i++ {
		if !isHexDigit(s[i]) {
			return false
		}
	}
	return true
}

// parseHex parses 1 to 8 hex digits.
func parseHex(s string) (rune, bool) {
	if len(s) == 0 || len(s) > 8 {
		return 0, false
	}
	var v uint32
	for i := 0; i < len(s); i++ {
		if !isHexDigit(s[i]) {
			return 0, false
		}
		v = v<<4 | uint32(hexVal(s[i]))
	}
	if v > 0x7fffffff {
		return 0, false
	}
	return rune(v), true
}

func hexVal(c byte) int {
	switch {
	case isDigit(c):
		return int(c - '0')
	case 'a' <= c && c <= 'f':
		return int(c-'a') + 10
	}
	return int(c-'A') + 10
}
