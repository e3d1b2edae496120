package sqllex_test

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/dsqlgate/dsqlgate/pgwire/sqllex"
)

// The seed corpora live in testdata/fuzz/<FuzzName>/ (as go test reads
// them); TestWriteFuzzSeeds rewrites them from the test tables when
// SQLLEX_WRITE_SEEDS=1.

func isWhitespace(s string) bool {
	return strings.Trim(s, " \t\n\r\f\v") == ""
}

// FuzzScanner checks that the tokens of any input, with comments kept,
// cover it exactly: each token is a non-empty substring at its Pos, in
// order, with only whitespace between; an unterminated token runs to the
// end; and that skipping comments gives the same tokens less the comments.
func FuzzScanner(f *testing.F) {
	f.Add("SELECT 'a;b', $$x$$, E'\\'' /* c */ -- d\n")
	f.Fuzz(func(t *testing.T, src string) {
		var s sqllex.Scanner
		s.KeepComments = true
		s.Init(src)
		var kept []sqllex.Token
		var rebuilt strings.Builder
		pos := 0
		for {
			tok := s.Next()
			if tok.Kind == sqllex.EOF {
				if tok.Pos != len(src) || tok.Text != "" || tok.Unterminated {
					t.Fatalf("EOF token %+v for input of %d bytes", tok, len(src))
				}
				break
			}
			if tok.Text == "" || tok.Pos < pos || tok.End() > len(src) || src[tok.Pos:tok.End()] != tok.Text {
				t.Fatalf("token %+v does not fit the input after offset %d", tok, pos)
			}
			if gap := src[pos:tok.Pos]; !isWhitespace(gap) {
				t.Fatalf("skipped %q before token %+v", gap, tok)
			}
			if tok.Unterminated && tok.End() != len(src) {
				t.Fatalf("unterminated token %+v ends before the input", tok)
			}
			rebuilt.WriteString(src[pos:tok.Pos])
			rebuilt.WriteString(tok.Text)
			pos = tok.End()
			kept = append(kept, tok)
			tok.Ident()
			tok.StringValue()
		}
		if gap := src[pos:]; !isWhitespace(gap) {
			t.Fatalf("skipped trailing %q", gap)
		}
		rebuilt.WriteString(src[pos:])
		if rebuilt.String() != src {
			t.Fatalf("tokens and whitespace rebuild %q, not the input", rebuilt.String())
		}

		s.KeepComments = false
		s.Init(src)
		i := 0
		for {
			tok := s.Next()
			for i < len(kept) && kept[i].Kind == sqllex.Comment {
				i++
			}
			if tok.Kind == sqllex.EOF {
				if i != len(kept) {
					t.Fatalf("skipping comments lost token %+v", kept[i])
				}
				lastComment := len(kept) > 0 && kept[len(kept)-1].Kind == sqllex.Comment && kept[len(kept)-1].Unterminated
				if tok.Unterminated != lastComment {
					t.Fatalf("EOF Unterminated = %v, but the input ends in an unterminated comment: %v", tok.Unterminated, lastComment)
				}
				break
			}
			if i >= len(kept) || tok != kept[i] {
				t.Fatalf("skipping comments gives %+v where keeping them gave %+v", tok, kept[min(i, len(kept)-1)])
			}
			i++
		}
	})
}

// FuzzSplitStatements checks that statements are ordered, trimmed
// substrings separated only by whitespace, comments and semicolons, that a
// statement splits back into itself, and that the statement parsers never
// panic on them.
func FuzzSplitStatements(f *testing.F) {
	f.Add("SET a = 1; ; SELECT 'a;b'")
	f.Fuzz(func(t *testing.T, sql string) {
		stmts := sqllex.SplitStatements(sql)
		pos := 0
		for _, st := range stmts {
			if st.Text == "" || st.Start < pos || st.End > len(sql) || sql[st.Start:st.End] != st.Text {
				t.Fatalf("statement %+v does not fit the input after offset %d", st, pos)
			}
			if !onlySeparators(sql[pos:st.Start]) {
				t.Fatalf("%q between statements", sql[pos:st.Start])
			}
			// The end of an unterminated statement is inside its last token.
			if st.Text != strings.TrimLeft(st.Text, " \t\n\r\f\v") ||
				(!st.Unterminated && st.Text != strings.TrimRight(st.Text, " \t\n\r\f\v")) {
				t.Fatalf("statement %q is not trimmed", st.Text)
			}
			if st.Unterminated && st.End != len(sql) {
				t.Fatalf("unterminated statement %+v ends before the input", st)
			}
			again := sqllex.SplitStatements(st.Text)
			if len(again) != 1 || again[0].Text != st.Text || again[0].Unterminated != st.Unterminated {
				t.Fatalf("statement %q splits again into %+v", st.Text, again)
			}
			pos = st.End
			sqllex.Classify(st.Text)
			sqllex.ParseSet(st.Text)
			sqllex.ParseShow(st.Text)
			sqllex.ParseDeallocate(st.Text)
			sqllex.ParseSelectCall(st.Text)
			sqllex.ParseTruncate(st.Text)
		}
		if !onlySeparators(sql[pos:]) {
			t.Fatalf("%q after the last statement", sql[pos:])
		}
	})
}

// onlySeparators reports whether s holds nothing but whitespace, complete
// comments and semicolons.
func onlySeparators(s string) bool {
	var sc sqllex.Scanner
	sc.KeepComments = true
	sc.Init(s)
	for t := sc.Next(); t.Kind != sqllex.EOF; t = sc.Next() {
		if t.Kind != sqllex.Semicolon && (t.Kind != sqllex.Comment || t.Unterminated) {
			return false
		}
	}
	return true
}

// FuzzParseSet checks that a SET or RESET that parses replays to a
// statement that parses to the same setting.
func FuzzParseSet(f *testing.F) {
	f.Add("SET search_path = \"My Schema\", public")
	f.Fuzz(func(t *testing.T, stmt string) {
		st, ok := sqllex.ParseSet(stmt)
		if !ok {
			if st.Name != "" || st.ValueText != "" || st.Values != nil {
				t.Fatalf("ParseSet(%q) not ok but returned %+v", stmt, st)
			}
			return
		}
		if st.Kind == sqllex.SetValue && (len(st.Values) == 0 || st.ValueText == "") {
			t.Fatalf("ParseSet(%q) = %+v: a value without values", stmt, st)
		}
		replay := st.Replay()
		if replay == "" {
			return
		}
		again, ok := sqllex.ParseSet(replay)
		if !ok {
			t.Fatalf("ParseSet(%q) = %+v replays as %q, which does not parse", stmt, st, replay)
		}
		if again.Name != st.Name || again.Scope != st.Scope || again.ValueText != st.ValueText || len(again.Values) != len(st.Values) {
			t.Fatalf("ParseSet(%q) = %+v replays as %q = %+v", stmt, st, replay, again)
		}
		for i := range st.Values {
			if again.Values[i].Str != st.Values[i].Str {
				t.Fatalf("value %d of %q is %q, of its replay %q", i, stmt, st.Values[i].Str, again.Values[i].Str)
			}
		}
	})
}

// FuzzQuote checks that QuoteLiteral and QuoteIdent read back as their
// input, and that a list rendered with QuoteIdent splits back into itself.
func FuzzQuote(f *testing.F) {
	f.Add(`a"b'c\d`)
	f.Fuzz(func(t *testing.T, s string) {
		valid := utf8.ValidString(s) && strings.IndexByte(s, 0) < 0
		lit := sqllex.QuoteLiteral(s)
		var sc sqllex.Scanner
		sc.Init(lit)
		tok := sc.Next()
		if tok.Text != lit {
			t.Fatalf("QuoteLiteral(%q) = %s scans as %q", s, lit, tok.Text)
		}
		if v, ok := tok.StringValue(); valid && (!ok || v != s) {
			t.Fatalf("QuoteLiteral(%q) = %s reads back as %q, %v", s, lit, v, ok)
		}

		id := sqllex.QuoteIdent(s)
		sc.Init(id)
		tok = sc.Next()
		if tok.Text != id {
			t.Fatalf("QuoteIdent(%q) = %s scans as %q", s, id, tok.Text)
		}
		if v, ok := tok.Ident(); valid && s != "" && len(s) <= 63 && (!ok || v != s) {
			t.Fatalf("QuoteIdent(%q) = %s reads back as %q, %v", s, id, v, ok)
		}

		names, err := sqllex.ParseListGUCValue(s)
		if err != nil || len(names) == 0 {
			return
		}
		quoted := make([]string, len(names))
		for i, n := range names {
			quoted[i] = sqllex.QuoteIdent(n)
		}
		again, err := sqllex.ParseListGUCValue(strings.Join(quoted, ", "))
		if err != nil || strings.Join(again, "\x00") != strings.Join(names, "\x00") {
			t.Fatalf("list %q = %q renders as %q, which splits into %q (%v)", s, names, quoted, again, err)
		}
	})
}

func TestWriteFuzzSeeds(t *testing.T) {
	if os.Getenv("SQLLEX_WRITE_SEEDS") != "1" {
		t.Skip("set SQLLEX_WRITE_SEEDS=1 to rewrite testdata/fuzz from the test tables")
	}
	var sqls []string
	for _, c := range splitCases {
		sqls = append(sqls, c.sql)
	}
	for _, c := range classifyCases {
		sqls = append(sqls, c.stmt)
	}
	var sets []string
	for _, c := range setCases {
		sets = append(sets, c.stmt)
	}
	var tokens []string
	for _, c := range stringCases {
		tokens = append(tokens, c.src)
	}
	for _, c := range identCases {
		tokens = append(tokens, c.src)
	}
	var quotes []string
	for _, c := range quoteIdentCases {
		quotes = append(quotes, c.in)
	}
	for _, c := range listCases {
		quotes = append(quotes, c.raw)
	}
	write := func(fuzz string, inputs []string) {
		dir := filepath.Join("testdata", "fuzz", fuzz)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		for i, in := range inputs {
			body := "go test fuzz v1\nstring(" + strconv.Quote(in) + ")\n"
			if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("seed-%03d", i)), []byte(body), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	write("FuzzScanner", append(append([]string{}, tokens...), sqls...))
	write("FuzzSplitStatements", sqls)
	write("FuzzParseSet", sets)
	write("FuzzQuote", quotes)
}
