package compat

import (
	"strings"
	"testing"

	"github.com/jackc/pgerrcode"

	"github.com/dsqlgate/dsqlgate/pgwire/sqllex"
)

// TestClientEncodingRefusal: setting client_encoding to an encoding in
// which a multibyte character can contain a backslash or quote (under any
// of PostgreSQL's names for it, in any case, with any punctuation) is
// refused with 0A000 and the hint, however it is written: SET [SESSION |
// LOCAL], SET NAMES, set_config() anywhere in a statement. So is a
// set_config() whose parameter, or whose client_encoding value, is known
// only at run time. It is refused by Decide whatever the compat options,
// as by ClientEncodingRefusal (what plain routes use), in a simple Query
// as in a Parse. Other encodings, DEFAULT, RESET and other parameters go
// on.
func TestClientEncodingRefusal(t *testing.T) {
	for _, tc := range []struct {
		sql     string
		refused bool
	}{
		{"SET client_encoding = 'SJIS'", true},
		{"set client_encoding to sjis", true},
		{"SET SESSION client_encoding = 'Shift-JIS'", true},
		{"SET LOCAL CLIENT_ENCODING TO 'big5'", true},
		{`SET client_encoding = "UHC"`, true},
		{`SET client_encoding = E'windows\x39\x34\x39'`, true},
		{"SET client_encoding = 'gb-18030'", true},
		{"SET client_encoding = 'JOHAB'", true},
		{"SET client_encoding = 'SHIFT_JIS_2004'", true},
		{"SET client_encoding = 'mskanji'", true},
		{"SET client_encoding = $$win950$$", true},
		{"SET client_encoding = 'Windows_932'", true},
		{"SET client_encoding = 'GBK', 'UTF8'", true},
		{"SET NAMES 'GBK'", true},
		{"set names 'win936'", true},
		{"SELECT set_config('client_encoding', 'SJIS', false)", true},
		{"select pg_catalog.set_config('CLIENT_ENCODING', 'big5', true) AS x", true},
		{"SELECT 1, set_config('client_encoding', 'uhc', false) FROM t", true},
		{`SELECT "set_config"(E'client\x5fencoding', 'sjis', false)`, true},
		{`SELECT U&"set\005fconfig"('client_encoding', 'sjis', false)`, true},
		{"EXPLAIN SELECT set_config('client_encoding', 'sjis', false)", true},
		{"INSERT INTO t VALUES (set_config('client_encoding', 'SJIS', false))", true},
		// Known only at run time.
		{"SELECT set_config('client_encoding', $1, false)", true},
		{"SELECT set_config('client_encoding', 'S' || 'JIS', false)", true},
		{"SELECT set_config($1, $2, false)", true},
		{"SELECT set_config('client_' || 'encoding', 'SJIS', false)", true},
		// Go on.
		{"SET client_encoding = 'UTF8'", false},
		{"SET client_encoding = 'utf-8'", false},
		{"SET client_encoding TO LATIN1", false},
		{"SET client_encoding = 'EUC_JP'", false},
		{"SET client_encoding TO DEFAULT", false},
		{"SET NAMES 'UTF8'", false},
		{"SET NAMES", false},
		{"RESET client_encoding", false},
		{"SHOW client_encoding", false},
		{"SET application_name = 'SJIS'", false},
		{"SELECT set_config('client_encoding', 'UTF8', false)", false},
		{"SELECT set_config('application_name', 'SJIS', false)", false},
		{"SELECT set_config('app.tenant', $1, false)", false},
		{"SELECT 'set_config(''client_encoding'', ''SJIS'', false)'", false},
		{"SELECT app.set_config('client_encoding', 'SJIS', false)", false},
		{"SELECT 'SJIS' AS client_encoding", false},
	} {
		for _, st := range []sqllex.Stmt{lexedStmt(tc.sql), sqllex.OneStmt(tc.sql)} {
			err := ClientEncodingRefusal(st, st.Kind())
			if (err != nil) != tc.refused {
				t.Errorf("ClientEncodingRefusal(%s) = %+v, want refused %v", tc.sql, err, tc.refused)
				continue
			}
			if err != nil && (err.Code != pgerrcode.FeatureNotSupported || !strings.Contains(err.Hint, clientEncodingHint) || err.Message == "") {
				t.Errorf("%s: %+v, want 0A000 with the hint", tc.sql, err)
			}
			for _, opt := range []Options{allOn, {}, {AdvisoryLocks: true}} {
				rw := Decide(st, st.Kind(), nil, opt, nil)
				refused := rw != nil && rw.Err != nil && rw.Err.Code == pgerrcode.FeatureNotSupported && rw.Text == FailingSQL
				if tc.refused && (!refused || rw.Err.Hint != err.Hint) {
					t.Errorf("Decide(%s, %+v) = %+v, want the refusal", tc.sql, opt, rw)
				}
				if !tc.refused && refused {
					t.Errorf("Decide(%s, %+v) = %+v, refused", tc.sql, opt, rw)
				}
			}
		}
	}
}

// TestClientEncodingName: encoding names are compared as PostgreSQL
// compares them (ASCII letters and digits only, any case), and every
// client-only encoding whose multibyte characters can hold a backslash or
// quote is refused under each of its names; the others are not.
func TestClientEncodingName(t *testing.T) {
	for _, name := range []string{"SJIS", "sjis", "Shift_JIS", "shift-jis", "MSKANJI", "win932", "Windows932", "WINDOWS-932",
		"SHIFT_JIS_2004", "Shift-JIS-2004", "BIG5", "big-5", "win950", "windows950", "GBK", "win936", "windows936",
		"GB18030", "gb_18030", "UHC", "win949", "windows949", "JOHAB", " sjis "} {
		if !unsafeClientEncoding(name) {
			t.Errorf("%q: accepted", name)
		}
	}
	for _, name := range []string{"UTF8", "utf-8", "Unicode", "LATIN1", "ISO-8859-1", "EUC_JP", "EUC_KR", "EUC_CN", "EUC_TW",
		"EUC_JIS_2004", "WIN1252", "KOI8R", "SQL_ASCII", "", "default", "sjis2", "big"} {
		if unsafeClientEncoding(name) {
			t.Errorf("%q: refused", name)
		}
	}
}

// TestStartupClientEncoding: a client_encoding the gateway cannot read in
// the startup parameters (the packet's own or options' -c, which reach
// compat as the same map) is refused with 0A000 and the hint, by
// StartupClientEncoding (every route) and by StartupSettings (the
// emulated settings' path); the caller makes it FATAL.
func TestStartupClientEncoding(t *testing.T) {
	for _, tc := range []struct {
		params  map[string]string
		refused bool
	}{
		{map[string]string{"client_encoding": "SJIS"}, true},
		{map[string]string{"client_encoding": "Shift-JIS", "application_name": "x"}, true},
		{map[string]string{"client_encoding": "big5", "statement_timeout": "5s"}, true},
		{map[string]string{"client_encoding": "windows949"}, true},
		{map[string]string{"client_encoding": "UTF8"}, false},
		{map[string]string{"client_encoding": "LATIN1", "statement_timeout": "5s"}, false},
		{map[string]string{"application_name": "SJIS"}, false},
		{map[string]string{}, false},
	} {
		err := StartupClientEncoding(tc.params)
		_, err2 := StartupSettings(tc.params)
		for _, e := range []*Error{err, err2} {
			if (e != nil) != tc.refused {
				t.Errorf("%v: %+v, want refused %v", tc.params, e, tc.refused)
				continue
			}
			if e != nil && (e.Code != pgerrcode.FeatureNotSupported || e.Hint != clientEncodingHint) {
				t.Errorf("%v: %+v, want 0A000 with the hint", tc.params, e)
			}
		}
	}
}
