package sqllex

import (
	"errors"
	"fmt"
	"strings"
)

// QuoteIdent returns s as an SQL identifier, the way PostgreSQL's
// quote_ident does: unchanged when it is a lower-case name that needs no
// quotes (a-z, 0-9 and _, not starting with a digit, not a keyword that
// would be read as one), otherwise in double quotes with " doubled.
// s must not contain NUL, which no SQL text can carry.
func QuoteIdent(s string) string {
	if isSafeIdent(s) {
		return s
	}
	return `"` + strings.ReplaceAll(s, `"`, `""`) + `"`
}

func isSafeIdent(s string) bool {
	if s == "" || isDigit(s[0]) {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z') && !isDigit(c) && c != '_' {
			return false
		}
	}
	return categoryOf(s) == notReserved
}

// QuoteLiteral returns s as an SQL string constant, the way PostgreSQL's
// quote_literal does: in single quotes with ' and \ doubled, and with an E
// prefix when s holds a backslash, so that the constant means s whatever
// standard_conforming_strings is. s must not contain NUL.
func QuoteLiteral(s string) string {
	var b strings.Builder
	b.Grow(len(s) + 3)
	if strings.IndexByte(s, '\\') >= 0 {
		b.WriteByte('E')
	}
	b.WriteByte('\'')
	for i := 0; i < len(s); i++ {
		if s[i] == '\'' || s[i] == '\\' {
			b.WriteByte(s[i])
		}
		b.WriteByte(s[i])
	}
	b.WriteByte('\'')
	return b.String()
}

// ErrInvalidList is returned (wrapped) by ParseListGUCValue for text that
// PostgreSQL's SplitIdentifierString rejects.
var ErrInvalidList = errors.New("invalid list syntax")

// ParseListGUCValue splits the raw value of a list parameter (a startup
// search_path such as `"$user", public`) into its names the way the server
// does (SplitIdentifierString with ','): items are separated by commas with
// optional whitespace; an unquoted item runs to the next comma or
// whitespace and is case-folded; a double-quoted item keeps its case and
// may hold "" for a quote; each is truncated to 63 bytes. An empty or
// all-whitespace value is an empty list. Render the result with QuoteIdent
// and ", " to get a value that SET name TO ... accepts.
func ParseListGUCValue(raw string) ([]string, error) {
	p := skipListSpace(raw, 0)
	if p == len(raw) {
		return nil, nil
	}
	var names []string
	for {
		var name string
		if raw[p] == '"' {
			end, unterminated := scanQuotedIdent(raw, p+1)
			if unterminated {
				return nil, fmt.Errorf("%w: unterminated quoted name", ErrInvalidList)
			}
			name = strings.ReplaceAll(raw[p+1:end-1], `""`, `"`)
			p = end
		} else {
			start := p
			for p < len(raw) && raw[p] != ',' && !isListSpace(raw[p]) {
				p++
			}
			if p == start {
				return nil, fmt.Errorf("%w: empty name", ErrInvalidList)
			}
			name = foldIdent(raw[start:p])
		}
		names = append(names, truncateIdent(name))
		p = skipListSpace(raw, p)
		if p == len(raw) {
			return names, nil
		}
		if raw[p] != ',' {
			return nil, fmt.Errorf("%w: expected a comma after name %d", ErrInvalidList, len(names))
		}
		p = skipListSpace(raw, p+1)
		if p == len(raw) {
			return nil, fmt.Errorf("%w: empty name", ErrInvalidList)
		}
	}
}

// isListSpace is scanner_isspace, which SplitIdentifierString uses.
func isListSpace(c byte) bool { return isSpace(c) }

func skipListSpace(s string, p int) int {
	for p < len(s) && isListSpace(s[p]) {
		p++
	}
	return p
}
