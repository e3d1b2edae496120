package scram

import (
	"strings"
	"unicode"
	"unicode/utf8"

	"golang.org/x/text/unicode/norm"
)

//go:generate python3 gen_saslprep_tables.py

// preparePassword returns the password bytes that go into SaltedPassword:
// the SASLprep (RFC 4013) form of password when it has one, and password
// unchanged otherwise. PostgreSQL does the same (pg_saslprep and its callers),
// because the encoding of a password is not known at authentication time: a
// password that is not valid UTF-8 or holds prohibited characters is taken as
// raw bytes rather than refused. libpq does the same on the client side, so
// verifiers made by PostgreSQL, by psql's \password and by this package agree.
func preparePassword(password string) string {
	if prepared, ok := saslprep(password); ok {
		return prepared
	}
	return password
}

// saslprep applies SASLprep to s exactly as PostgreSQL's pg_saslprep does and
// reports whether s has a SASLprep form. It follows PostgreSQL in three
// details that differ from a literal reading of RFC 3454:
//
//   - a string of ASCII bytes only is returned unchanged, control characters
//     included;
//   - a string that maps to nothing (for example only soft hyphens) has no
//     form;
//   - the prohibited-output, unassigned and bidirectional checks run on the
//     mapped string before NFKC, not on the normalized one.
//
// Since every character that reaches NFKC is assigned in Unicode 3.2 (the
// unassigned check refused the others), and Unicode's normalization stability
// policy fixes the NFKC form of an assigned character forever, the Unicode
// version of golang.org/x/text does not change the result.
func saslprep(s string) (string, bool) {
	if isASCII(s) {
		return s, true
	}
	if !utf8.ValidString(s) {
		return "", false
	}

	// 1. Map: non-ASCII spaces to U+0020, "commonly mapped to nothing" removed.
	var mapped strings.Builder
	mapped.Grow(len(s))
	for _, r := range s {
		switch {
		case unicode.Is(nonASCIISpace, r):
			mapped.WriteByte(' ')
		case unicode.Is(mappedToNothing, r):
		default:
			mapped.WriteRune(r)
		}
	}
	m := mapped.String()
	if m == "" {
		return "", false
	}

	// 3. Prohibit, and A.1 unassigned code points (stored strings).
	// 4. Bidirectional check: with any RandALCat character, no LCat character
	// at all, and RandALCat first and last.
	hasRandAL, hasL := false, false
	for _, r := range m {
		if unicode.Is(prohibitedOutput, r) || unicode.Is(unassigned, r) {
			return "", false
		}
		hasRandAL = hasRandAL || unicode.Is(randALCat, r)
		hasL = hasL || unicode.Is(lCat, r)
	}
	if hasRandAL {
		first, _ := utf8.DecodeRuneInString(m)
		last, _ := utf8.DecodeLastRuneInString(m)
		if hasL || !unicode.Is(randALCat, first) || !unicode.Is(randALCat, last) {
			return "", false
		}
	}

	// 2. Normalize (PostgreSQL checks before normalizing, see above).
	return norm.NFKC.String(m), true
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= utf8.RuneSelf {
			return false
		}
	}
	return true
}
