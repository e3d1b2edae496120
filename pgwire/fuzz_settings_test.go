package pgwire

import (
	"math"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/dsqlgate/dsqlgate/pgwire/sqllex"
)

// Fuzz targets for what the gateway does with a client's settings: the
// startup "options" value, the SET statements that carry startup settings
// to an upstream (state.go), and the settings the compatibility layer
// emulates (compat.go).

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

// millisRef is parseMillis's grammar: a decimal number, then (after
// optional space) an optional unit.
var millisRef = regexp.MustCompile(`(?s)^([+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+))(.*)$`)

var millisUnits = map[string]float64{"": 1, "us": 0.001, "ms": 1, "s": 1000, "min": 60000, "h": 3600000, "d": 86400000}

// FuzzParseMillis checks the time settings the gateway emulates
// (statement_timeout and friends): parseMillis reads a number with a unit
// and nothing else, to the nearest millisecond; formatMillis writes what
// parseMillis reads back; and normalizeMillis accepts exactly the values
// from 0 to 2147483647 ms, returning a display value that is a fixed point.
func FuzzParseMillis(f *testing.F) {
	for _, s := range []string{"200", "200ms", "5s", " 1.5 min ", "1h", "2d", "0.0001", "-1", "+.5s", "1e3", "9223372036854775807", "2147483647", "2147483648", "35791min", "1 d", "5S", ""} {
		f.Add(s, int64(len(s)*1000))
	}
	f.Fuzz(func(t *testing.T, s string, n int64) {
		// formatMillis reads back, for any count a float holds exactly.
		if n > -1<<51 && n < 1<<51 {
			if back, ok := parseMillis(formatMillis(n)); !ok || back != n {
				t.Fatalf("formatMillis(%d) = %q reads back as %d, %v", n, formatMillis(n), back, ok)
			}
		}

		ms, ok := parseMillis(s)
		m := millisRef.FindStringSubmatch(strings.TrimSpace(s))
		var want float64
		grammarOK := false
		if m != nil {
			mult, unitOK := millisUnits[strings.TrimSpace(m[2])]
			num, err := strconv.ParseFloat(m[1], 64) // fails beyond float64's range
			grammarOK, want = unitOK && err == nil, num*mult
		}
		if ok != grammarOK {
			t.Fatalf("parseMillis(%q) ok = %v, but the grammar says %v", s, ok, grammarOK)
		}
		if ok {
			// Beyond 2^51 adding a half is no longer exact.
			if math.Abs(want) < 1<<51 {
				switch {
				case want > 0 && want < 1:
					if ms != 1 {
						t.Fatalf("parseMillis(%q) = %d, want 1 (a positive time is at least 1 ms)", s, ms)
					}
				case math.Abs(float64(ms)-want) > 0.5:
					t.Fatalf("parseMillis(%q) = %d, want %v rounded", s, ms, want)
				}
			}
		}

		v, perr := normalizeMillis("statement_timeout", []sqllex.Value{{Kind: sqllex.ValueString, Str: s}})
		inRange := ok && want > -0.5 && want < 2147483647.5
		if want == -0.5 {
			return // PostgreSQL rounds half to even (0), the gateway away from zero (-1)
		}
		switch {
		case inRange && perr != nil:
			t.Fatalf("normalizeMillis(%q) refused %v ms: %v", s, want, perr)
		case !inRange && perr == nil:
			t.Fatalf("normalizeMillis(%q) = %q, but %q is not a time from 0 to 2147483647 ms", s, v, s)
		case perr != nil:
			if perr.Severity != severityError || perr.Code != "22023" || v != "" {
				t.Fatalf("normalizeMillis(%q) = %q, %+v", s, v, perr)
			}
		default:
			if back, ok := parseMillis(v); !ok || back != ms || formatMillis(ms) != v {
				t.Fatalf("normalizeMillis(%q) = %q, which reads back as %d, %v (want %d)", s, v, back, ok, ms)
			}
			if again, perr := normalizeMillis("statement_timeout", []sqllex.Value{{Str: v}}); perr != nil || again != v {
				t.Fatalf("normalizeMillis(%q) = %q, but that normalizes to %q, %v", s, v, again, perr)
			}
		}

	})
}

// emulatedDomain is what SHOW may display for each emulated setting.
func emulatedDomain(name, v string) bool {
	switch name {
	case "statement_timeout", "idle_in_transaction_session_timeout", "lock_timeout":
		ms, ok := parseMillis(v)
		return ok && ms >= 0 && ms <= math.MaxInt32 && formatMillis(ms) == v
	case "client_min_messages":
		_, ok := messageLevels[v]
		return ok && v != "debug"
	case "synchronous_commit":
		return slices.Contains([]string{"local", "remote_write", "remote_apply", "on", "off"}, v)
	case "standard_conforming_strings":
		return v == "on"
	case "default_transaction_isolation":
		return v == "repeatable read"
	}
	return false
}

// FuzzNormalizeSetting sets each emulated setting to any value, by SET and
// in the startup packet: a value is either refused with the error SET
// gives (22023 or 0A000) or accepted as a display value of the setting's
// domain that, set again, is accepted as itself (what SHOW displays can be
// SET back).
func FuzzNormalizeSetting(f *testing.F) {
	names := make([]string, 0, len(emulatedSettings))
	for name, es := range emulatedSettings {
		names = append(names, name)
		if v, err := es.normalize(name, []sqllex.Value{{Kind: sqllex.ValueString, Str: es.def}}); err != nil || v != es.def {
			f.Fatalf("%s's default %q normalizes to %q, %v", name, es.def, v, err)
		}
	}
	slices.Sort(names)
	f.Add(uint8(0), "'on'")
	f.Add(uint8(1), "DEBUG")
	f.Add(uint8(2), "serializable")
	f.Add(uint8(2), "REPEATABLE READ")
	f.Add(uint8(4), "'5s'")
	f.Add(uint8(5), "off")
	f.Add(uint8(6), "true")
	f.Fuzz(func(t *testing.T, which uint8, value string) {
		name := names[int(which)%len(names)]
		es := emulatedSettings[name]
		check := func(how string, v string, perr *pgError) {
			t.Helper()
			if perr != nil {
				if v != "" || perr.Severity != severityError || (perr.Code != "22023" && perr.Code != codeFeatureNotSupported) || perr.Message == "" {
					t.Fatalf("%s %s to %q: %q, %+v", how, name, value, v, perr)
				}
				return
			}
			if !emulatedDomain(name, v) {
				t.Fatalf("%s %s to %q displays %q, not a value of the setting", how, name, value, v)
			}
			again, aerr := startupEmulated(map[string]string{name: v})
			if aerr != nil || again[name] != v {
				t.Fatalf("%s %s to %q displays %q, which as a startup value gives %q, %v", how, name, value, v, again[name], aerr)
			}
			if st, ok := sqllex.ParseSet("SET " + name + " TO " + sqllex.QuoteLiteral(v)); !ok {
				t.Fatalf("SET of the display value %q does not parse", v)
			} else if back, berr := es.normalize(name, st.Values); berr != nil || back != v {
				t.Fatalf("%s %s to %q displays %q, which SET back gives %q, %v", how, name, value, v, back, berr)
			}
		}
		if st, ok := sqllex.ParseSet("SET " + name + " TO " + value); ok && st.Kind == sqllex.SetValue && st.Name == name {
			v, perr := es.normalize(name, st.Values)
			check("SET", v, perr)
		}
		if strings.Contains(value, "\x00") {
			return
		}
		got, perr := startupEmulated(map[string]string{name: value, "application_name": "x"})
		if perr == nil && len(got) != 1 {
			t.Fatalf("startupEmulated kept %q", got)
		}
		check("startup", got[name], perr)
	})
}
