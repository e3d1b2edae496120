package scram

import (
	"testing"
	"unicode"
)

func TestSASLprep(t *testing.T) {
	tests := []struct {
		name   string
		in     string
		want   string
		wantOK bool
	}{
		// RFC 4013 section 3 examples, with PostgreSQL's answer where it differs.
		{"RFC 4013 1: soft hyphen mapped to nothing", "I\u00adX", "IX", true},
		{"RFC 4013 2: no transformation", "user", "user", true},
		{"RFC 4013 3: case preserved", "USER", "USER", true},
		{"RFC 4013 4: output is NFKC", "\u00aa", "a", true},
		{"RFC 4013 5: output is NFKC", "\u2168", "IX", true},
		{"RFC 4013 6: ASCII control kept, as PostgreSQL does", "\u0007", "\u0007", true},
		{"RFC 4013 7: bidi check", "\u0627\u0031", "", false},

		{"empty", "", "", true},
		{"ASCII unchanged", "p@ss w0rd!", "p@ss w0rd!", true},
		{"no-break space", "pass\u00a0word", "pass word", true},
		{"ogham space mark", "a\u1680b", "a b", true},
		{"em space", "a\u2003b", "a b", true},
		{"ideographic space", "a\u3000b", "a b", true},
		{"zero width space maps to space, not to nothing", "a\u200bb", "a b", true},
		{"soft hyphen", "soft\u00adhyphen", "softhyphen", true},
		{"zero width joiner", "a\u200db", "ab", true},
		{"variation selector", "a\ufe0fb", "ab", true},
		{"byte order mark", "\ufeffab", "ab", true},
		{"fi ligature", "\ufb01nance", "finance", true},
		{"fullwidth", "\uff50\uff41\uff53\uff53", "pass", true},
		{"combining sequence composed", "cafe\u0301", "caf\u00e9", true},
		{"precomposed kept", "caf\u00e9", "caf\u00e9", true},
		{"angstrom sign", "\u212b", "\u00c5", true},
		{"superscript two", "x\u00b2", "x2", true},
		{"Greek", "\u03c0\u03b1\u03c3\u03c3", "\u03c0\u03b1\u03c3\u03c3", true},
		{"Hebrew only", "\u05d0\u05d1", "\u05d0\u05d1", true},
		{"Arabic with digit inside", "\u0627\u0031\u0628", "\u0627\u0031\u0628", true},

		{"only mapped to nothing", "\u00ad\u200d", "", false},
		{"non-ASCII with ASCII control", "\u00e9\u0007", "", false},
		{"C1 control", "p\u00e4ss\u0085", "", false},
		{"line separator", "a\u2028b", "", false},
		{"private use", "\ue000x", "", false},
		{"non-character", "\u00e9\ufdd0", "", false},
		{"replacement character", "\u00e9\ufffd", "", false},
		{"ideographic description", "\u2ff0\u00e9", "", false},
		{"left-to-right mark", "\u00e9\u200e", "", false},
		{"tag character", "\u00e9\U000e0001", "", false},
		{"tone mark prohibited before NFKC, as PostgreSQL checks", "a\u0340", "", false},
		{"unassigned in Unicode 3.2", "pass\u0221", "", false},
		{"emoji, unassigned in Unicode 3.2", "pass\U0001F600", "", false},
		{"mixed direction", "\u05d0a", "", false},
		{"right-to-left not first", "1\u05d0", "", false},
		{"right-to-left not last", "\u05d01", "", false},
		{"invalid UTF-8", "\xff\xfepass", "", false},
		{"surrogate encoded in UTF-8", "\xed\xa0\x80", "", false},
		{"truncated UTF-8", "caf\xc3", "", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := saslprep(tt.in)
			if got != tt.want || ok != tt.wantOK {
				t.Fatalf("saslprep(%+q) = %+q, %v; want %+q, %v", tt.in, got, ok, tt.want, tt.wantOK)
			}
			wantPrepared := tt.want
			if !tt.wantOK {
				wantPrepared = tt.in
			}
			if got := preparePassword(tt.in); got != wantPrepared {
				t.Fatalf("preparePassword(%+q) = %+q, want %+q", tt.in, got, wantPrepared)
			}
		})
	}
}

// TestSASLprepTables spot-checks the generated tables against RFC 3454.
func TestSASLprepTables(t *testing.T) {
	tests := []struct {
		name  string
		table *unicode.RangeTable
		in    []rune
		out   []rune
	}{
		{"C.1.2", nonASCIISpace, []rune{0x00a0, 0x1680, 0x2000, 0x200b, 0x202f, 0x205f, 0x3000}, []rune{' ', 0x200c, 0x2060}},
		{"B.1", mappedToNothing, []rune{0x00ad, 0x034f, 0x1806, 0x180b, 0x200b, 0x200d, 0x2060, 0xfe00, 0xfe0f, 0xfeff}, []rune{'a', 0x200e, 0xfe10}},
		{"prohibited", prohibitedOutput, []rune{0x00, 0x1f, 0x7f, 0x9f, 0x00a0, 0x0340, 0x06dd, 0x2028, 0xd800, 0xe000, 0xf8ff, 0xfdd0, 0xfffd, 0x1d173, 0x1fffe, 0xe0001, 0xe0020, 0xf0000, 0x10ffff}, []rune{' ', 'a', 0x00e9, 0x0300, 0xfb01, 0x1d17b}},
		{"A.1", unassigned, []rune{0x0221, 0x0234, 0x1f600, 0xe0080}, []rune{'a', 0x0220, 0x00e9, 0x4e00}},
		{"D.1", randALCat, []rune{0x05be, 0x05d0, 0x0627, 0x200f, 0xfb1d, 0xfefc}, []rune{'a', '1', 0x0300}},
		{"D.2", lCat, []rune{'A', 'z', 0x00aa, 0x00e9, 0x4e00}, []rune{'1', ' ', 0x05d0, 0x0627}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, r := range tt.in {
				if !unicode.Is(tt.table, r) {
					t.Errorf("U+%04X not in table", r)
				}
			}
			for _, r := range tt.out {
				if unicode.Is(tt.table, r) {
					t.Errorf("U+%04X in table", r)
				}
			}
		})
	}
}
