package sqllex_test

import (
	"strings"
	"testing"

	"github.com/dsqlgate/dsqlgate/pgwire/sqllex"
)

func TestHasIdent(t *testing.T) {
	isLock := func(name string) bool { return name == "pg_advisory_lock" }
	for _, tt := range []struct {
		stmt string
		want bool
	}{
		{"SELECT pg_advisory_lock(1)", true},
		{"select 1, PG_ADVISORY_LOCK(2)", true},
		{`select "pg_advisory_lock"(3)`, true},
		{"select 'pg_advisory_lock(1)'", false},
		{"select 1 /* pg_advisory_lock */", false},
		{"select pg_advisory_lock_shared(1)", false},
		{"", false},
	} {
		if got := sqllex.HasIdent(tt.stmt, isLock); got != tt.want {
			t.Errorf("HasIdent(%q) = %v, want %v", tt.stmt, got, tt.want)
		}
	}
}

func TestHasKeywords(t *testing.T) {
	for _, tt := range []struct {
		stmt  string
		words []string
		want  bool
	}{
		{"create temp table t (x int) on commit drop", []string{"on", "commit", "drop"}, true},
		{"create temp table t (x int) ON /* c */ Commit -- d\n DROP", []string{"on", "commit", "drop"}, true},
		{"create temp table t (x int) on on commit drop", []string{"on", "commit", "drop"}, true},
		{"create temp table t (x int) on commit delete rows", []string{"on", "commit", "drop"}, false},
		{`create temp table t (x int) on commit "drop"`, []string{"on", "commit", "drop"}, false},
		{"declare c cursor with hold for select 1", []string{"with", "hold"}, true},
		{"declare c cursor without hold for select 1", []string{"with", "hold"}, false},
	} {
		if got := sqllex.HasKeywords(tt.stmt, tt.words...); got != tt.want {
			t.Errorf("HasKeywords(%q, %q) = %v, want %v", tt.stmt, tt.words, got, tt.want)
		}
	}
}

func TestPrepareName(t *testing.T) {
	for _, tt := range []struct {
		stmt   string
		want   string
		wantOK bool
	}{
		{"PREPARE q1 AS SELECT 1", "q1", true},
		{"/* c */ prepare Q1 (int) AS SELECT $1", "q1", true},
		{`PREPARE "Q1" AS SELECT 1`, "Q1", true},
		{"PREPARE 'x' AS SELECT 1", "", false},
		{"PREPARE", "", false},
		{"EXECUTE q1", "", false},
	} {
		got, ok := sqllex.PrepareName(tt.stmt)
		if got != tt.want || ok != tt.wantOK {
			t.Errorf("PrepareName(%q) = %q, %v; want %q, %v", tt.stmt, got, ok, tt.want, tt.wantOK)
		}
	}
}

var isolationCases = []struct{ stmt, want string }{
	{"BEGIN", ""},
	{"BEGIN ISOLATION LEVEL SERIALIZABLE", "serializable"},
	{"start transaction read only, isolation level read committed", "read committed"},
	{"BEGIN TRANSACTION ISOLATION /* c */ LEVEL Repeatable Read", "repeatable read"},
	{"BEGIN ISOLATION LEVEL READ UNCOMMITTED", "read uncommitted"},
	{"BEGIN ISOLATION LEVEL READ", ""},
	{"BEGIN ISOLATION LEVEL bogus", ""},
	{`BEGIN "isolation" LEVEL SERIALIZABLE`, ""},
	{"BEGIN ISOLATION LEVEL 'serializable'", ""},
	{"BEGIN" + strings.Repeat(" READ WRITE,", 20) + " ISOLATION LEVEL SERIALIZABLE", "serializable"},
	{"BEGIN" + strings.Repeat(" READ WRITE,", 21) + " ISOLATION LEVEL SERIALIZABLE", ""},
	{"BEGIN" + strings.Repeat(" READ WRITE,", 20) + " DEFERRABLE ISOLATION LEVEL READ COMMITTED", ""},
}

func TestIsolationLevel(t *testing.T) {
	for _, tt := range isolationCases {
		if got := sqllex.IsolationLevel(tt.stmt); got != tt.want {
			t.Errorf("IsolationLevel(%q) = %q, want %q", tt.stmt, got, tt.want)
		}
		if got := isolationLevelByWords(tt.stmt); got != tt.want {
			t.Errorf("isolationLevelByWords(%q) = %q, want %q", tt.stmt, got, tt.want)
		}
	}
}

// isolationLevelByWords is how the gateway first read a BEGIN's isolation
// level, with a slice of the first 65 tokens' texts in lower case:
// FuzzIsolationLevel checks IsolationLevel against it. (It lowered with
// strings.ToLower, which folds a few non-ASCII letters to ASCII: İ to i,
// the Kelvin sign to k. PostgreSQL does not, and neither does this copy.)
func isolationLevelByWords(text string) string {
	levels := map[string]bool{"serializable": true, "repeatable read": true, "read committed": true, "read uncommitted": true}
	var sc sqllex.Scanner
	sc.Init(text)
	var words []string
	for t := sc.Next(); t.Kind != sqllex.EOF; t = sc.Next() {
		words = append(words, lowerASCII(t.Text))
		if len(words) > 64 {
			break
		}
	}
	for i := 0; i+2 < len(words); i++ {
		if words[i] != "isolation" || words[i+1] != "level" {
			continue
		}
		if l := words[i+2]; l == "serializable" {
			return l
		}
		if i+3 < len(words) && levels[words[i+2]+" "+words[i+3]] {
			return words[i+2] + " " + words[i+3]
		}
	}
	return ""
}

func lowerASCII(s string) string {
	b := []byte(s)
	for i, c := range b {
		if 'A' <= c && c <= 'Z' {
			b[i] = c + 'a' - 'A'
		}
	}
	return string(b)
}

func FuzzIsolationLevel(f *testing.F) {
	for _, c := range isolationCases {
		f.Add(c.stmt)
	}
	f.Fuzz(func(t *testing.T, stmt string) {
		if got, want := sqllex.IsolationLevel(stmt), isolationLevelByWords(stmt); got != want {
			t.Fatalf("IsolationLevel(%q) = %q, by words %q", stmt, got, want)
		}
	})
}

func TestStartsWith(t *testing.T) {
	for _, tt := range []struct {
		stmt, word string
		want       bool
	}{
		{"CALL p()", "call", true},
		{"/* c */ -- d\n call p(1)", "call", true},
		{"DO $$BEGIN COMMIT; END$$", "do", true},
		{"do language plpgsql 'begin null; end'", "do", true},
		{`"call" p()`, "call", false},
		{"SELECT 'call'", "call", false},
		{"select call_me()", "call", false},
		{"document", "do", false},
		{"", "do", false},
	} {
		if got := sqllex.StartsWith(tt.stmt, tt.word); got != tt.want {
			t.Errorf("StartsWith(%q, %q) = %v, want %v", tt.stmt, tt.word, got, tt.want)
		}
		var lx sqllex.Lexed
		lx.Lex(tt.stmt)
		if lx.Len() == 1 {
			if got := lx.Stmt(0).StartsWith(tt.word); got != tt.want {
				t.Errorf("lexed StartsWith(%q, %q) = %v, want %v", tt.stmt, tt.word, got, tt.want)
			}
		}
	}
}
