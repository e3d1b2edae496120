package sqllex_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/dsqlgate/dsqlgate/pgwire/sqllex"
)

// quoteIdentCases are shared with the test against a real PostgreSQL,
// which checks each against quote_ident().
var quoteIdentCases = []struct {
	name string
	in   string
	want string
}{
	{"plain", "public", "public"},
	{"underscore digits", "_a1", "_a1"},
	{"upper case", "MySchema", `"MySchema"`},
	{"space", "My Schema", `"My Schema"`},
	{"dollar", "$user", `"$user"`},
	{"leading digit", "1a", `"1a"`},
	{"quote", `a"b`, `"a""b"`},
	{"reserved", "select", `"select"`},
	{"type func keyword", "left", `"left"`},
	{"col name keyword", "between", `"between"`},
	{"unreserved keyword", "search_path", "search_path"},
	{"unreserved keyword begin", "begin", "begin"},
	{"non-ascii", "café", `"café"`},
	{"empty", "", `""`},
}

func TestQuoteIdent(t *testing.T) {
	for _, tt := range quoteIdentCases {
		t.Run(tt.name, func(t *testing.T) {
			if got := sqllex.QuoteIdent(tt.in); got != tt.want {
				t.Errorf("QuoteIdent(%q) = %s, want %s", tt.in, got, tt.want)
			}
		})
	}
}

// quoteLiteralCases are shared with the test against a real PostgreSQL,
// which checks that each literal reads back as its input.
var quoteLiteralCases = []struct {
	name string
	in   string
	want string
}{
	{"plain", "UTC", "'UTC'"},
	{"empty", "", "''"},
	{"quote", "it's", "'it''s'"},
	{"backslash", `a\b`, `E'a\\b'`},
	{"both", `'\'`, `E'''\\'''`},
	{"newline and unicode", "a\nü😀", "'a\nü😀'"},
	{"dollar and semicolon", "$$;--", "'$$;--'"},
}

func TestQuoteLiteral(t *testing.T) {
	for _, tt := range quoteLiteralCases {
		t.Run(tt.name, func(t *testing.T) {
			got := sqllex.QuoteLiteral(tt.in)
			if got != tt.want {
				t.Errorf("QuoteLiteral(%q) = %s, want %s", tt.in, got, tt.want)
			}
			// The literal must read back as the input and be one token.
			var s sqllex.Scanner
			s.Init(got)
			tok := s.Next()
			v, ok := tok.StringValue()
			if !ok || v != tt.in || tok.Text != got {
				t.Errorf("QuoteLiteral(%q) = %s scans back as %q (%v)", tt.in, got, v, ok)
			}
		})
	}
}

// listCases are shared with the test against a real PostgreSQL.
var listCases = []struct {
	name    string
	raw     string
	want    []string
	wantErr bool
}{
	{name: "default search path", raw: `"$user", public`, want: []string{"$user", "public"}},
	{name: "folds unquoted", raw: "Public,PG_Catalog", want: []string{"public", "pg_catalog"}},
	{name: "keeps quoted", raw: ` "My ""Schema""" ,  x `, want: []string{`My "Schema"`, "x"}},
	{name: "empty", raw: "", want: nil},
	{name: "blank", raw: " \t\n", want: nil},
	{name: "single", raw: "a", want: []string{"a"}},
	{name: "non-ascii kept", raw: "Ünï", want: []string{"Ünï"}},
	{name: "truncated", raw: strings.Repeat("a", 70), want: []string{strings.Repeat("a", 63)}},
	{name: "unquoted stops at space", raw: "a b", wantErr: true},
	{name: "empty item", raw: "a,,b", wantErr: true},
	{name: "trailing comma", raw: "a,", wantErr: true},
	{name: "leading comma", raw: ",a", wantErr: true},
	{name: "unterminated quote", raw: `"a`, wantErr: true},
	{name: "junk after quote", raw: `"a"b`, wantErr: true},
}

func TestParseListGUCValue(t *testing.T) {
	for _, tt := range listCases {
		t.Run(tt.name, func(t *testing.T) {
			got, err := sqllex.ParseListGUCValue(tt.raw)
			if tt.wantErr {
				if !errors.Is(err, sqllex.ErrInvalidList) {
					t.Errorf("ParseListGUCValue(%q) error = %v, want ErrInvalidList", tt.raw, err)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseListGUCValue(%q): %v", tt.raw, err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("ParseListGUCValue(%q) (-want +got):\n%s", tt.raw, diff)
			}
		})
	}
}
