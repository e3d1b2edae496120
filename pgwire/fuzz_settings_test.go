package pgwire

import (
	"slices"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/dsqlgate/dsqlgate/pgwire/sqllex"
)

// Fuzz targets for what the gateway does with a client's settings: the
// startup "options" value and the SET statements that carry startup
// settings to an upstream (state.go). The settings the compatibility layer
// emulates have theirs in internal/compat.

// escapeOption escapes s for an options value as libpq's clients must:
// a backslash before every space (as PostgreSQL's pg_split_opts reads
// isspace) and before every backslash.
func escapeOption(s string) string {
	var b strings.Builder
	for _, c := range s {
		if strings.ContainsRune(" \t\n\r\v\f\\", c) {
			b.WriteByte('\\')
		}
		b.WriteRune(c)
	}
	return b.String()
}

// FuzzParseOptions checks parseOptions on any startup options value: the
// names it returns are folded (lower case, "_" for "-") and hold no "=";
// and settings written the ways clients write them (-c name=value,
// -cname=value, --name=value, escaped) are read back exactly, the later of
// two for the same name winning.
func FuzzParseOptions(f *testing.F) {
	f.Add(`-c search_path=a,b --statement-timeout=5s -cTimeZone=UTC -c application_name=my\ app junk`, "application_name", `my app\`, "DateStyle", "ISO, MDY", uint8(0))
	f.Add(`-c`, "a.b", "", "x-y", "=", uint8(1))
	f.Add(`--=x -c= \`, "search_path", `"$user", public`, "search_path", "other", uint8(2))
	f.Fuzz(func(t *testing.T, opts, name1, value1, name2, value2 string, styles uint8) {
		for name := range parseOptions(opts) {
			if strings.ContainsAny(name, "=-") || name != strings.ToLower(name) {
				t.Fatalf("parseOptions(%q) returned the unfolded name %q", opts, name)
			}
		}

		// Settings written by a client.
		ok := func(name, value string) bool {
			return name != "" && !strings.ContainsAny(name, "=\x00") && !strings.Contains(value, "\x00") &&
				utf8.ValidString(name) && utf8.ValidString(value)
		}
		if !ok(name1, value1) || !ok(name2, value2) {
			return
		}
		fold := func(name string) string { return strings.ToLower(strings.ReplaceAll(name, "-", "_")) }
		write := func(style uint8, name, value string) string {
			kv := escapeOption(name) + "=" + escapeOption(value)
			switch style % 3 {
			case 0:
				return "-c " + kv
			case 1:
				return "-c" + kv
			}
			return "--" + kv
		}
		sep := []string{" ", "\t", "  \n", " \r\v\f "}[styles>>4%4]
		written := write(styles, name1, value1) + sep + "plain" + sep + write(styles>>2, name2, value2)
		want := map[string]string{fold(name1): value1}
		want[fold(name2)] = value2
		got := parseOptions(written)
		for name, value := range want {
			if got[name] != value {
				t.Fatalf("parseOptions(%q)[%q] = %q, want %q (all: %q)", written, name, got[name], value, got)
			}
		}
		if len(got) != len(want) {
			t.Fatalf("parseOptions(%q) = %q, want %q", written, got, want)
		}
	})
}

// setStatements splits what syncSQL wrote into its statements.
func setStatements(t *testing.T, sql string) []sqllex.SetStmt {
	t.Helper()
	var out []sqllex.SetStmt
	for _, st := range sqllex.SplitStatements(sql) {
		if strings.TrimSpace(st.Text) == "" {
			continue
		}
		set, ok := sqllex.ParseSet(st.Text)
		if !ok {
			out = append(out, sqllex.SetStmt{Kind: 255, Name: st.Text}) // not a SET at all
			continue
		}
		out = append(out, set)
	}
	return out
}

// identPartsFit reports whether no dot-separated part of name is longer
// than PostgreSQL's identifier limit (63 bytes), beyond which the server
// truncates what it is sent.
func identPartsFit(name string) bool {
	for _, p := range strings.Split(name, ".") {
		if len(p) > 63 {
			return false
		}
	}
	return true
}

// setsName reports whether st is a SET of parameter name to a value: the
// generic form, or the forms sqllex names after the parameter they set
// (SET role TO x is SET ROLE x).
func setsName(st sqllex.SetStmt, name string) bool {
	if identPartsFit(name) && st.Name != name {
		return false
	}
	switch st.Kind {
	case sqllex.SetValue:
		return true
	case sqllex.SetRole:
		return name == "role"
	case sqllex.SetSessionAuthorization:
		return name == "session_authorization"
	}
	return false
}

// resetsName is setsName for RESET.
func resetsName(st sqllex.SetStmt, name string) bool {
	if identPartsFit(name) && st.Name != name {
		return false
	}
	switch st.Kind {
	case sqllex.ResetParam:
		return true
	case sqllex.ResetRole:
		return name == "role"
	case sqllex.ResetSessionAuthorization:
		return name == "session_authorization"
	}
	return false
}

// FuzzStartupSettingSQL follows a client's startup parameter the way
// newSession and syncSQL carry it to an upstream: the name written by
// gucNameSQL (quoted where PostgreSQL needs it: reserved words too), its
// value as SQL by startupValueSQL. What
// reaches the upstream must be one statement per setting that sets (or
// resets) exactly that parameter to exactly that value, whatever the
// client sent: a statement that reads as something else (another
// parameter, RESET ALL, a second statement) is a bug. A name PostgreSQL's
// grammar refuses unquoted only makes the statement fail, which the sync
// reports as a warning.
func FuzzStartupSettingSQL(f *testing.F) {
	f.Add("search_path", `"$user", public`)
	f.Add("TimeZone", "Europe/Paris")
	f.Add("application_name", `it's a \ test`)
	f.Add("myapp.tenant", "7; DROP TABLE t; --")
	f.Add("search_path", `"unterminated`)
	f.Add("search_path", "")
	f.Add("x", "$$")
	f.Fuzz(func(t *testing.T, rawName, raw string) {
		if strings.Contains(rawName+raw, "\x00") {
			return // a startup packet cannot carry NUL in a name or value
		}
		name := strings.ToLower(rawName)
		valid := validGUCName(name)
		sqlName := gucNameSQL(name)
		if name != "" && !strings.Contains(name, ".") && utf8.ValidString(name) && len(name) <= 63 {
			// A name written quoted is read back whole.
			sts := setStatements(t, "RESET "+sqlName+";")
			reset := len(sts) == 1 && sts[0].Name == name &&
				(sts[0].Kind == sqllex.ResetParam || (name == "role" && sts[0].Kind == sqllex.ResetRole) ||
					(name == "session_authorization" && sts[0].Kind == sqllex.ResetSessionAuthorization))
			if !reset {
				t.Fatalf("RESET of %q is written %q, which reads as %+v", name, sqlName, sts)
			}
		}
		if !valid {
			return // newSession drops the parameter
		}
		value, ok := startupValueSQL(name, raw)
		if !ok {
			if name != "search_path" {
				t.Fatalf("startupValueSQL(%q, %q) refused a value", name, raw)
			}
			if _, err := sqllex.ParseListGUCValue(raw); err == nil {
				t.Fatalf("startupValueSQL refused the search_path %q, which ParseListGUCValue reads", raw)
			}
			return
		}

		other := "zz_other.setting"
		if name == other {
			other = "zz_other.setting2"
		}
		sql := syncSQL(map[string]string{}, map[string]string{name: value, other: "'x'"}, false)
		sts := setStatements(t, sql)
		if len(sts) != 2 {
			t.Fatalf("setting %q to %q is sent as %q: %d statements, want 2", name, raw, sql, len(sts))
		}
		// syncSQL writes names in order: find ours.
		st := sts[0]
		if name > other {
			st = sts[1]
		}
		// A statement the grammar refuses (Kind 255) only fails upstream.
		if st.Kind != 255 && (!setsName(st, name) || st.Scope != sqllex.ScopeSession) {
			t.Fatalf("setting %q is sent as %q, which reads as %v %v of %q", name, sql, st.Kind, st.Scope, st.Name)
		}
		if st.Kind != 255 && utf8.ValidString(raw) {
			var want []string
			if name == "search_path" {
				want, _ = sqllex.ParseListGUCValue(raw)
				if len(want) == 0 {
					want = []string{""}
				}
			} else {
				want = []string{raw}
			}
			var got []string
			for _, v := range st.Values {
				got = append(got, v.Str)
			}
			if !slices.Equal(got, want) {
				t.Fatalf("%q = %q is sent as %q, which sets %q", name, raw, sql, got)
			}
		}

		sql = syncSQL(map[string]string{name: value}, map[string]string{}, false)
		sts = setStatements(t, sql)
		if len(sts) != 1 {
			t.Fatalf("resetting %q is sent as %q: %d statements, want 1", name, sql, len(sts))
		}
		if st := sts[0]; st.Kind != 255 && !resetsName(st, name) {
			t.Fatalf("resetting %q is sent as %q, which reads as %v of %q", name, sql, st.Kind, st.Name)
		}
	})
}
