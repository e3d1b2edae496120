package compat

import (
	"math"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/jackc/pgerrcode"

	"github.com/dsqlgate/dsqlgate/pgwire/sqllex"
)

// Fuzz targets for the settings the gateway emulates (settings.go).

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
			if perr.Code != pgerrcode.InvalidParameterValue || v != "" {
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
		check := func(how string, v string, perr *Error) {
			t.Helper()
			if perr != nil {
				if v != "" || (perr.Code != pgerrcode.InvalidParameterValue && perr.Code != pgerrcode.FeatureNotSupported) || perr.Message == "" {
					t.Fatalf("%s %s to %q: %q, %+v", how, name, value, v, perr)
				}
				return
			}
			if !emulatedDomain(name, v) {
				t.Fatalf("%s %s to %q displays %q, not a value of the setting", how, name, value, v)
			}
			again, aerr := StartupSettings(map[string]string{name: v})
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
		got, perr := StartupSettings(map[string]string{name: value, "application_name": "x"})
		if perr == nil && len(got) != 1 {
			t.Fatalf("StartupSettings kept %q", got)
		}
		check("startup", got[name], perr)
	})
}
