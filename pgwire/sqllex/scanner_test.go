package sqllex_test

import (
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/dsqlgate/dsqlgate/pgwire/sqllex"
)

// tok is a compact expected token: kind and text, plus "!" in Flag for an
// unterminated one.
type tok struct {
	Kind sqllex.TokenKind
	Text string
	Flag string `cmp:"omitempty"`
}

// scanAll returns every token of src, comments included.
func scanAll(src string) []tok {
	var s sqllex.Scanner
	s.KeepComments = true
	s.Init(src)
	var out []tok
	for t := s.Next(); t.Kind != sqllex.EOF; t = s.Next() {
		flag := ""
		if t.Unterminated {
			flag = "!"
		}
		out = append(out, tok{t.Kind, t.Text, flag})
	}
	return out
}

const (
	I  = sqllex.Ident
	QI = sqllex.QuotedIdent
	S  = sqllex.String
	BS = sqllex.BitString
	N  = sqllex.Number
	P  = sqllex.Param
	O  = sqllex.Op
	C  = sqllex.Comment
	X  = sqllex.OtherChar
)

func TestScanner(t *testing.T) {
	tests := []struct {
		name string
		src  string
		want []tok
	}{
		{"empty", "", nil},
		{"whitespace only", " \t\r\n\f\v ", nil},
		{"words", "SELECT My_Table, a$b, _x1, café", []tok{{I, "SELECT", ""}, {I, "My_Table", ""}, {sqllex.Comma, ",", ""}, {I, "a$b", ""}, {sqllex.Comma, ",", ""}, {I, "_x1", ""}, {sqllex.Comma, ",", ""}, {I, "café", ""}}},
		{"punctuation", "( ) [ ] , ; : .", []tok{{sqllex.LParen, "(", ""}, {sqllex.RParen, ")", ""}, {sqllex.LBracket, "[", ""}, {sqllex.RBracket, "]", ""}, {sqllex.Comma, ",", ""}, {sqllex.Semicolon, ";", ""}, {sqllex.Colon, ":", ""}, {sqllex.Dot, ".", ""}}},
		{"typecast and friends", "a::int b:=1 c..d e=>f", []tok{{I, "a", ""}, {O, "::", ""}, {I, "int", ""}, {I, "b", ""}, {O, ":=", ""}, {N, "1", ""}, {I, "c", ""}, {O, "..", ""}, {I, "d", ""}, {I, "e", ""}, {O, "=>", ""}, {I, "f", ""}}},
		{"array slice colon", "a[1:2]", []tok{{I, "a", ""}, {sqllex.LBracket, "[", ""}, {N, "1", ""}, {sqllex.Colon, ":", ""}, {N, "2", ""}, {sqllex.RBracket, "]", ""}}},
		{"multi-char operators", "a<=b c->>'k' d@>e f<>g h!=i j||k", []tok{{I, "a", ""}, {O, "<=", ""}, {I, "b", ""}, {I, "c", ""}, {O, "->>", ""}, {S, "'k'", ""}, {I, "d", ""}, {O, "@>", ""}, {I, "e", ""}, {I, "f", ""}, {O, "<>", ""}, {I, "g", ""}, {I, "h", ""}, {O, "!=", ""}, {I, "i", ""}, {I, "j", ""}, {O, "||", ""}, {I, "k", ""}}},
		{"trailing minus split off", "a=-1", []tok{{I, "a", ""}, {O, "=", ""}, {O, "-", ""}, {N, "1", ""}}},
		{"trailing plus split off", "a<+1", []tok{{I, "a", ""}, {O, "<", ""}, {O, "+", ""}, {N, "1", ""}}},
		{"trailing minus kept after special", "a@-1 b?-c", []tok{{I, "a", ""}, {O, "@-", ""}, {N, "1", ""}, {I, "b", ""}, {O, "?-", ""}, {I, "c", ""}}},
		{"all trailing signs stripped", "a*-+-1", []tok{{I, "a", ""}, {O, "*", ""}, {O, "-", ""}, {O, "+", ""}, {O, "-", ""}, {N, "1", ""}}},
		{"sign run", "+-+", []tok{{O, "+", ""}, {O, "-", ""}, {O, "+", ""}}},
		{"sign run then operator", "+-<", []tok{{O, "+-<", ""}}},
		{"operator stops at comment", "a+/*c*/b c*--x\nd", []tok{{I, "a", ""}, {O, "+", ""}, {C, "/*c*/", ""}, {I, "b", ""}, {I, "c", ""}, {O, "*", ""}, {C, "--x", ""}, {I, "d", ""}}},
		{"numbers", "42 1.5 .5 1. 1e-3 1E+10 2e5 0x1F 0X_ff 0o17 0b101 1_000 1_000.000_1", []tok{{N, "42", ""}, {N, "1.5", ""}, {N, ".5", ""}, {N, "1.", ""}, {N, "1e-3", ""}, {N, "1E+10", ""}, {N, "2e5", ""}, {N, "0x1F", ""}, {N, "0X_ff", ""}, {N, "0o17", ""}, {N, "0b101", ""}, {N, "1_000", ""}, {N, "1_000.000_1", ""}}},
		{"number then dot dot", "1..10", []tok{{N, "1", ""}, {O, "..", ""}, {N, "10", ""}}},
		{"number trailing junk kept", "12abc 1e 0x 1_", []tok{{N, "12abc", ""}, {N, "1e", ""}, {N, "0x", ""}, {N, "1_", ""}}},
		{"number exponent without digits", "1e-x", []tok{{N, "1e", ""}, {O, "-", ""}, {I, "x", ""}}},
		{"number then method-ish dot", "1.foo", []tok{{N, "1.foo", ""}}},
		{"params", "$1 $23, $1abc", []tok{{P, "$1", ""}, {P, "$23", ""}, {sqllex.Comma, ",", ""}, {P, "$1abc", ""}}},
		{"param then dollar quote", "$1$$x$$", []tok{{P, "$1", ""}, {S, "$$x$$", ""}}},
		{"lone dollar", "$ $a b", []tok{{X, "$", ""}, {X, "$", ""}, {I, "a", ""}, {I, "b", ""}}},
		{"identifier with dollars is not a quote", "a$$ b$x$", []tok{{I, "a$$", ""}, {I, "b$x$", ""}}},
		{"dollar quote", "$$a;'b$$", []tok{{S, "$$a;'b$$", ""}}},
		{"tagged dollar quote", "$fn$ $$ $f $fn $fn$", []tok{{S, "$fn$ $$ $f $fn $fn$", ""}}},
		{"dollar quote tag is case sensitive", "$a$ $A$ $a$", []tok{{S, "$a$ $A$ $a$", ""}}},
		{"dollar quote nested tags", "$outer$ $inner$ x $inner$ $outer$;", []tok{{S, "$outer$ $inner$ x $inner$ $outer$", ""}, {sqllex.Semicolon, ";", ""}}},
		{"dollar quote close overlaps", "$a$x$b$a$", []tok{{S, "$a$x$b$a$", ""}}},
		{"dollar tag with digits and high bytes", "$a1é$z$a1é$", []tok{{S, "$a1é$z$a1é$", ""}}},
		{"dollar tag cannot start with digit", "$1$x", []tok{{P, "$1", ""}, {X, "$", ""}, {I, "x", ""}}},
		{"param junk takes dollars", "$1a$", []tok{{P, "$1a$", ""}}},
		{"string", "'a;b' 'it''s'", []tok{{S, "'a;b'", ""}, {S, "'it''s'", ""}}},
		{"standard string backslash is literal", `'a\' 'b'`, []tok{{S, `'a\'`, ""}, {S, "'b'", ""}}},
		{"escape string", `E'\'' e'a\\' E'\n'`, []tok{{S, `E'\''`, ""}, {S, `e'a\\'`, ""}, {S, `E'\n'`, ""}}},
		{"escape string doubled quote", `E'a''b'`, []tok{{S, `E'a''b'`, ""}}},
		{"national string", "N'x' n'y'", []tok{{S, "N'x'", ""}, {S, "n'y'", ""}}},
		{"bit strings", "B'0101' x'1F' B'1''0'", []tok{{BS, "B'0101'", ""}, {BS, "x'1F'", ""}, {BS, "B'1'", ""}, {S, "'0'", ""}}},
		{"prefix only at token start", "abce'x' xb'1'", []tok{{I, "abce", ""}, {S, "'x'", ""}, {I, "xb", ""}, {S, "'1'", ""}}},
		{"unicode string", `U&'d\0061t' u&'x'`, []tok{{S, `U&'d\0061t'`, ""}, {S, "u&'x'", ""}}},
		{"unicode string with uescape", "U&'d!0061t' UESCAPE '!' x", []tok{{S, "U&'d!0061t' UESCAPE '!'", ""}, {I, "x", ""}}},
		{"uescape across comments", "U&'a' /* c */ uescape -- d\n '#'", []tok{{S, "U&'a' /* c */ uescape -- d\n '#'", ""}}},
		{"uescape without string is not joined", "U&'a' UESCAPE x", []tok{{S, "U&'a'", ""}, {I, "UESCAPE", ""}, {I, "x", ""}}},
		{"u ampersand alone", "u&x", []tok{{I, "u", ""}, {O, "&", ""}, {I, "x", ""}}},
		{"quoted identifier", `"My ""Table""" "a;b"`, []tok{{QI, `"My ""Table"""`, ""}, {QI, `"a;b"`, ""}}},
		{"unicode identifier with uescape", `U&"d!0061t" UESCAPE '!'`, []tok{{QI, `U&"d!0061t" UESCAPE '!'`, ""}}},
		{"quoted identifiers are not continued", "\"a\"\n\"b\"", []tok{{QI, `"a"`, ""}, {QI, `"b"`, ""}}},
		{"string continued across newline", "'a'\n'b'", []tok{{S, "'a'\n'b'", ""}}},
		{"string continued across comment and blank lines", "'a' -- c\n\n  'b' x", []tok{{S, "'a' -- c\n\n  'b'", ""}, {I, "x", ""}}},
		{"escape string continued", "E'a\\''\n'\\''", []tok{{S, "E'a\\''\n'\\''", ""}}},
		{"string not continued on one line", "'a' 'b'", []tok{{S, "'a'", ""}, {S, "'b'", ""}}},
		{"string not continued across block comment", "'a' /*\n*/ 'b'", []tok{{S, "'a'", ""}, {C, "/*\n*/", ""}, {S, "'b'", ""}}},
		{"bit string continued", "B'1'\n'0'", []tok{{BS, "B'1'\n'0'", ""}}},
		{"line comment", "a -- b; 'c\nd", []tok{{I, "a", ""}, {C, "-- b; 'c", ""}, {I, "d", ""}}},
		{"line comment ends at carriage return", "a --b\r+2", []tok{{I, "a", ""}, {C, "--b", ""}, {O, "+", ""}, {N, "2", ""}}},
		{"nested block comment", "/* a /* b; */ c */ d", []tok{{C, "/* a /* b; */ c */", ""}, {I, "d", ""}}},
		{"block comment closed by stars", "/***/x", []tok{{C, "/***/", ""}, {I, "x", ""}}},
		{"block comment slash star slash", "/*/ x */y", []tok{{C, "/*/ x */", ""}, {I, "y", ""}}},
		{"other bytes", "\\ { } \x00 \x7f", []tok{{X, "\\", ""}, {X, "{", ""}, {X, "}", ""}, {X, "\x00", ""}, {X, "\x7f", ""}}},
		{"invalid utf-8 is an identifier byte", "\xff\xfe", []tok{{I, "\xff\xfe", ""}}},
		{"unterminated string", "SELECT 'abc; SELECT 2", []tok{{I, "SELECT", ""}, {S, "'abc; SELECT 2", "!"}}},
		{"unterminated escape string ending in backslash", `E'abc\`, []tok{{S, `E'abc\`, "!"}}},
		{"unterminated escaped quote", `E'\'`, []tok{{S, `E'\'`, "!"}}},
		{"unterminated quoted identifier", `"abc`, []tok{{QI, `"abc`, "!"}}},
		{"unterminated dollar quote", "$x$ abc $x", []tok{{S, "$x$ abc $x", "!"}}},
		{"unterminated comment", "a /* b /* c */", []tok{{I, "a", ""}, {C, "/* b /* c */", "!"}}},
		{"unterminated slash star slash", "/*/", []tok{{C, "/*/", "!"}}},
		{"unterminated bit string", "X'1", []tok{{BS, "X'1", "!"}}},
		{"unterminated unicode string", "U&'a", []tok{{S, "U&'a", "!"}}},
		{"unterminated continuation", "'a'\n'b", []tok{{S, "'a'\n'b", "!"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if diff := cmp.Diff(tt.want, scanAll(tt.src)); diff != "" {
				t.Errorf("tokens of %q (-want +got):\n%s", tt.src, diff)
			}
		})
	}
}

func TestScannerSkipsComments(t *testing.T) {
	tests := []struct {
		name             string
		src              string
		want             []string
		wantUnterminated bool
	}{
		{"comments skipped", "/* a */ b -- c\n d", []string{"b", "d"}, false},
		{"unterminated comment reported on EOF", "b /* c", []string{"b"}, true},
		{"unterminated string is a token", "b 'c", []string{"b", "'c"}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var s sqllex.Scanner
			s.Init(tt.src)
			var got []string
			var eof sqllex.Token
			for {
				tok := s.Next()
				if tok.Kind == sqllex.EOF {
					eof = tok
					break
				}
				got = append(got, tok.Text)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("tokens (-want +got):\n%s", diff)
			}
			if eof.Unterminated != tt.wantUnterminated || eof.Pos != len(tt.src) {
				t.Errorf("EOF = %+v, want Unterminated %v at %d", eof, tt.wantUnterminated, len(tt.src))
			}
			if again := s.Next(); again.Kind != sqllex.EOF {
				t.Errorf("Next after EOF = %+v", again)
			}
		})
	}
}

var (
	long     = strings.Repeat("a", 70)
	longUTF8 = strings.Repeat("a", 62) + "é" // 64 bytes; é must not be split
)

// identCases are shared with the test against a real PostgreSQL, which
// checks each name that is ok against the column name SELECT 1 AS <src>
// gets, and checks that the others are rejected.
var identCases = []struct {
	name   string
	src    string
	want   string
	wantOK bool
}{
	{"unquoted folds ascii", "MyTable", "mytable", true},
	{"unquoted keeps non-ascii", "CAFÉ", "cafÉ", true},
	{"unquoted kelvin sign not folded", "\u212a", "\u212a", true},
	{"quoted keeps case", `"MyTable"`, "MyTable", true},
	{"quoted undoubles", `"a""b"`, `a"b`, true},
	{"zero-length quoted", `""`, "", false},
	{"unicode quoted", `U&"d\0061t\+000061"`, "data", true},
	{"unicode quoted uescape", `U&"d!0061t" UESCAPE '!'`, "dat", true},
	{"unicode quoted bad escape", `U&"d\00"`, "", false},
	{"truncated to 63 bytes", long, long[:63], true},
	{"truncation keeps characters whole", `"` + longUTF8 + `"`, longUTF8[:62], true},
	{"truncation keeps 3-byte characters whole", strings.Repeat("a", 61) + "日", strings.Repeat("a", 61), true},
	{"truncation keeps 4-byte characters whole", `"` + strings.Repeat("a", 60) + "😀" + `"`, strings.Repeat("a", 60), true},
	{"truncation at a 4-byte boundary", `"` + strings.Repeat("a", 59) + "😀😀" + `"`, strings.Repeat("a", 59) + "😀", true},
	{"string is not an identifier", "'a'", "", false},
	{"unterminated", `"abc`, "", false},
}

func TestTokenIdent(t *testing.T) {
	for _, tt := range identCases {
		t.Run(tt.name, func(t *testing.T) {
			var s sqllex.Scanner
			s.Init(tt.src)
			got, ok := s.Next().Ident()
			if got != tt.want || ok != tt.wantOK {
				t.Errorf("Ident() of %q = %q, %v; want %q, %v", tt.src, got, ok, tt.want, tt.wantOK)
			}
		})
	}
}

// stringCases are shared with the test against a real PostgreSQL, which
// checks each constant that is ok against SELECT <src>, and checks that the
// others are rejected.
var stringCases = []struct {
	name   string
	src    string
	want   string
	wantOK bool
}{
	{"plain", "'abc'", "abc", true},
	{"empty", "''", "", true},
	{"doubled quote", "'it''s'", "it's", true},
	{"backslash is literal", `'a\nb'`, `a\nb`, true},
	{"national", "N'x'", "x", true},
	{"continued", "'a'\n'b' -- c\n'c'", "abc", true},
	{"continued with doubled quotes", "'a'''\n'''b'", "a''b", true},
	{"escape simple", `E'a\nb\tc\\d\'e\qf'`, "a\nb\tc\\d'e" + "qf", true},
	{"escape all singles", `E'\b\f\n\r\t\v'`, "\b\f\n\r\tv", true},
	{"escape octal", `E'\101\60\1x'`, "A0\x01x", true},
	{"escape hex", `E'\x41\x4a\x4G'`, "AJ\x04G", true},
	{"escape x without digits", `E'\xg'`, "xg", true},
	{"escape unicode", `E'\u00e9\U0001F600'`, "é😀", true},
	{"escape surrogate pair", `E'\uD83D\uDE00'`, "😀", true},
	{"escape lone high surrogate", `E'\uD83Dx'`, "", false},
	{"escape lone low surrogate", `E'\uDE00'`, "", false},
	{"escape short unicode", `E'\u12'`, "", false},
	{"escape nul", `E'\0'`, "", false},
	{"escape invalid utf-8", `E'\xff'`, "", false},
	{"escape continued keeps escapes", "E'a\\n'\n'\\n'", "a\n\n", true},
	{"unicode default escape", `U&'d\0061t\+000061'`, "data", true},
	{"unicode backslash doubled", `U&'a\\b'`, `a\b`, true},
	{"unicode uescape", `U&'d!0061t!!' UESCAPE '!'`, "dat!", true},
	{"unicode uescape e string", `U&'d!0061t' UESCAPE E'!'`, "dat", true},
	{"unicode surrogate pair", `U&'\D83D\DE00'`, "😀", true},
	{"unicode bad escape", `U&'\00'`, "", false},
	{"unicode invalid uescape char", `U&'a' UESCAPE '+'`, "", false},
	{"unicode zero code point", `U&'\0000'`, "", false},
	{"dollar", "$$a'b$$", "a'b", true},
	{"dollar tagged", "$x$a$$b$x$", "a$$b", true},
	{"dollar empty", "$$$$", "", true},
	{"invalid utf-8 source", "'\xff'", "", false},
	{"nul in source", "'a\x00'", "", false},
	{"unterminated", "'abc", "", false},
	{"bit string is not a string value", "B'01'", "", false},
}

func TestTokenStringValue(t *testing.T) {
	for _, tt := range stringCases {
		t.Run(tt.name, func(t *testing.T) {
			var s sqllex.Scanner
			s.Init(tt.src)
			tok := s.Next()
			if tok.Text != tt.src && tt.wantOK {
				t.Fatalf("%q scanned as %q, not one token", tt.src, tok.Text)
			}
			got, ok := tok.StringValue()
			if got != tt.want || ok != tt.wantOK {
				t.Errorf("StringValue() of %q = %q, %v; want %q, %v", tt.src, got, ok, tt.want, tt.wantOK)
			}
		})
	}
}

func TestStringValueDoesNotCopyPlainStrings(t *testing.T) {
	var s sqllex.Scanner
	s.Init("'plain text'")
	tok := s.Next()
	allocs := testing.AllocsPerRun(100, func() {
		if _, ok := tok.StringValue(); !ok {
			t.Fatal("not ok")
		}
	})
	if allocs != 0 {
		t.Errorf("StringValue of a plain string allocates %v times", allocs)
	}
}

func TestScannerDoesNotAllocate(t *testing.T) {
	src := "SELECT a, \"B\", 'c''d', E'\\n', $$x$$, $1, 1.5e3 FROM t /* c */ WHERE x <= -1 -- e\n;"
	var s sqllex.Scanner
	allocs := testing.AllocsPerRun(100, func() {
		s.Init(src)
		for s.Next().Kind != sqllex.EOF {
		}
	})
	if allocs != 0 {
		t.Errorf("scanning allocates %v times", allocs)
	}
}

// TestLinearTime feeds 1 MiB inputs built to hit every place where a lexer
// can go quadratic: lookahead that fails and is repeated, runs of operator
// bytes, unterminated constructs, deep nesting. Each must take about as
// long as a plain 1 MiB input of many short statements, measured in the
// same run (so that -race, -cover and a busy machine do not matter); a
// quadratic case takes thousands of times longer.
func TestLinearTime(t *testing.T) {
	const size = 1 << 20
	rep := func(s string) string { return strings.Repeat(s, size/len(s)+1)[:size] }
	work := func(src string) time.Duration {
		start := time.Now()
		var s sqllex.Scanner
		s.KeepComments = true
		s.Init(src)
		for s.Next().Kind != sqllex.EOF {
		}
		sqllex.SplitStatements(src)
		sqllex.Classify(src)
		sqllex.ParseSet(src)
		sqllex.ParseSet("SET x = " + src)
		sqllex.ParseSelectCall("SELECT f(" + src)
		sqllex.ParseTruncate("TRUNCATE " + src)
		return time.Since(start)
	}
	reference := work(rep("SELECT 1; "))
	tests := []struct {
		name string
		src  string
	}{
		{"sign run", rep("+-")},
		{"sign run then operator", rep("+-") + "<"},
		{"operator before comments", rep("+/**/")},
		{"line comments", rep("--\n")},
		{"nested comment openers", rep("/*")},
		{"comment open close", rep("/**/")},
		{"quotes", rep("'")},
		{"escape quotes", "E'" + rep(`\'`)},
		{"string continuation lookahead", rep("'a' \n x ")},
		{"long continuation", rep("'a'\n")},
		{"failing continuation whitespace", rep("'' ") + strings.Repeat(" ", size)},
		{"uescape lookahead", rep("U&'a' ")},
		{"uescape lookahead with comments", rep("U&'a' /* c */ UESCAPE ")},
		{"dollar tags", rep("$a$")},
		{"unterminated dollar tags", rep("$a") + "$"},
		{"dollar quote never closed", "$abc$" + rep("$ab")},
		{"lone dollars", rep("$")},
		{"params", rep("$1 ")},
		{"semicolons", rep(";")},
		{"parentheses", rep("(")},
		{"begin atomic bodies", "CREATE FUNCTION f() BEGIN ATOMIC " + rep("CASE ")},
		{"quoted identifiers", rep(`"a""`)},
		{"numbers", rep("1.e5_")},
		{"identifier", rep("a")},
		{"multi-byte", rep("é;")},
		{"nul bytes", rep("\x00")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if d := work(tt.src); d > 20*reference+time.Second {
				t.Errorf("took %v, a plain input of the same size %v", d, reference)
			}
		})
	}
}
