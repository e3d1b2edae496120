package compat

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgerrcode"

	"github.com/dsqlgate/dsqlgate/pgwire/sqllex"
)

// SettingChange is a SET or RESET of an emulated setting, to record in the
// session's settings when its stand-in completes.
type SettingChange struct {
	Kind  sqllex.SetKind // SetValue, SetDefault or ResetParam
	Scope sqllex.Scope
	Name  string
	Value string // display value, for SetValue
}

// emulatedSetting is a setting DSQL refuses that the gateway keeps itself.
type emulatedSetting struct {
	def string // display value of PostgreSQL's default
	// normalize checks a SET's values and returns the display value, or
	// the error PostgreSQL (or DSQL, for values it cannot honour) gives.
	normalize func(name string, v []sqllex.Value) (string, *Error)
}

// emulatedSettings are the settings the gateway keeps for the session
// (their effect, where they have one, is the session's: statement
// timeouts, notice filtering). A new one is an entry here.
var emulatedSettings = map[string]emulatedSetting{
	"statement_timeout":                   {def: "0", normalize: normalizeMillis},
	"idle_in_transaction_session_timeout": {def: "0", normalize: normalizeMillis},
	"lock_timeout":                        {def: "0", normalize: normalizeMillis},
	"client_min_messages":                 {def: "notice", normalize: normalizeMessageLevel},
	"synchronous_commit":                  {def: "on", normalize: normalizeSynchronousCommit},
	"standard_conforming_strings":         {def: "on", normalize: normalizeStandardConformingStrings},
	"default_transaction_isolation":       {def: "repeatable read", normalize: normalizeIsolation},
}

// Emulated reports whether the gateway keeps the setting name itself.
func Emulated(name string) bool {
	_, ok := emulatedSettings[name]
	return ok
}

// Value is the session's value of an emulated setting, given the values
// it has set (emu, by name; a setting absent there has its default), and
// whether name is one the gateway answers for. transaction_isolation is
// always repeatable read on DSQL.
func Value(emu map[string]string, name string) (string, bool) {
	if name == "transaction_isolation" {
		return "repeatable read", true
	}
	es, ok := emulatedSettings[name]
	if !ok {
		return "", false
	}
	if v, ok := emu[name]; ok {
		return v, true
	}
	return es.def, true
}

// StartupSettings splits the emulated settings out of a client's startup
// parameters, checking their values as PostgreSQL would (and refusing a
// client_encoding the gateway cannot read: StartupClientEncoding).
func StartupSettings(params map[string]string) (map[string]string, *Error) {
	if err := StartupClientEncoding(params); err != nil {
		return nil, err
	}
	out := map[string]string{}
	for name, raw := range params {
		es, ok := emulatedSettings[name]
		if !ok {
			continue
		}
		var vals []sqllex.Value
		for _, w := range strings.Fields(raw) {
			vals = append(vals, sqllex.Value{Kind: sqllex.ValueWord, Text: w, Str: w})
		}
		if name != "default_transaction_isolation" && len(vals) > 1 {
			vals = []sqllex.Value{{Kind: sqllex.ValueString, Text: raw, Str: raw}}
		}
		if len(vals) == 0 {
			vals = []sqllex.Value{{Kind: sqllex.ValueString, Str: ""}}
		}
		v, err := es.normalize(name, vals)
		if err != nil {
			return nil, err
		}
		out[name] = v
	}
	return out, nil
}

// Millis is the duration of a time setting's display value (0 when empty
// or not one).
func Millis(v string) time.Duration {
	ms, _ := parseMillis(v)
	return time.Duration(ms) * time.Millisecond
}

// BelowMinMessages reports whether a notice of severity is below the
// client_min_messages level and must not reach the client. INFO is always
// sent, as PostgreSQL does.
func BelowMinMessages(level, severity string) bool {
	sev := strings.ToLower(severity)
	if sev == "info" {
		return false
	}
	got, known := messageLevels[sev]
	return known && got < messageLevels[level]
}

func invalidValue(name, value, hint string) *Error {
	return &Error{Code: pgerrcode.InvalidParameterValue, Hint: hint,
		Message: fmt.Sprintf("invalid value for parameter %q: %q", name, value)}
}

// single returns the one value of a SET, or ok false.
func single(v []sqllex.Value) (sqllex.Value, bool) {
	if len(v) != 1 {
		return sqllex.Value{}, false
	}
	return v[0], true
}

// normalizeMillis parses a time setting in milliseconds ("200", "200ms",
// '5s', '1min') and returns PostgreSQL's display form.
func normalizeMillis(name string, vals []sqllex.Value) (string, *Error) {
	v, ok := single(vals)
	if !ok {
		return "", &Error{Code: pgerrcode.InvalidParameterValue, Message: fmt.Sprintf("SET %s takes only one argument", name)}
	}
	ms, ok := parseMillis(v.Str)
	if !ok {
		return "", invalidValue(name, v.Str, `Valid units for this parameter are "us", "ms", "s", "min", "h", and "d".`)
	}
	if ms < 0 || ms > 2147483647 {
		return "", &Error{Code: pgerrcode.InvalidParameterValue,
			Message: fmt.Sprintf("%d ms is outside the valid range for parameter %q (0 .. 2147483647)", ms, name)}
	}
	return formatMillis(ms), nil
}

// parseMillis reads a number with an optional unit (default ms), as
// PostgreSQL reads GUC_UNIT_MS values, rounding to whole milliseconds.
func parseMillis(s string) (int64, bool) {
	s = strings.TrimSpace(s)
	i := 0
	for i < len(s) && (s[i] == '-' || s[i] == '+' || s[i] == '.' || (s[i] >= '0' && s[i] <= '9')) {
		i++
	}
	num, unit := s[:i], strings.TrimSpace(s[i:])
	f, err := strconv.ParseFloat(num, 64)
	if err != nil {
		return 0, false
	}
	mult := map[string]float64{"": 1, "us": 0.001, "ms": 1, "s": 1000, "min": 60000, "h": 3600000, "d": 86400000}[unit]
	if mult == 0 {
		return 0, false
	}
	v := f * mult
	if v > 0 && v < 1 {
		v = 1
	}
	return int64(v + 0.5*sign(v)), true
}

func sign(f float64) float64 {
	if f < 0 {
		return -1
	}
	return 1
}

// formatMillis shows ms in the largest unit that divides it, as SHOW does.
func formatMillis(ms int64) string {
	if ms == 0 {
		return "0"
	}
	for _, u := range []struct {
		name string
		ms   int64
	}{{"d", 86400000}, {"h", 3600000}, {"min", 60000}, {"s", 1000}} {
		if ms%u.ms == 0 {
			return strconv.FormatInt(ms/u.ms, 10) + u.name
		}
	}
	return strconv.FormatInt(ms, 10) + "ms"
}

// messageLevels orders client_min_messages values (and notice severities).
var messageLevels = map[string]int{
	"debug5": 10, "debug4": 11, "debug3": 12, "debug2": 13, "debug1": 14, "debug": 13,
	"log": 15, "notice": 18, "warning": 19, "error": 21,
}

func normalizeMessageLevel(name string, vals []sqllex.Value) (string, *Error) {
	v, ok := single(vals)
	l := strings.ToLower(v.Str)
	if _, known := messageLevels[l]; !ok || !known {
		return "", invalidValue(name, v.Str, "Available values: debug5, debug4, debug3, debug2, debug1, log, notice, warning, error.")
	}
	if l == "debug" {
		l = "debug2"
	}
	return l, nil
}

// boolValue reads PostgreSQL's spellings of a boolean.
func boolValue(s string) (bool, bool) {
	switch strings.ToLower(s) {
	case "on", "true", "yes", "1", "t", "y":
		return true, true
	case "off", "false", "no", "0", "f", "n":
		return false, true
	}
	return false, false
}

func normalizeSynchronousCommit(name string, vals []sqllex.Value) (string, *Error) {
	v, _ := single(vals)
	l := strings.ToLower(v.Str)
	switch l {
	case "local", "remote_write", "remote_apply", "on", "off":
		return l, nil
	}
	if b, ok := boolValue(l); ok && len(vals) == 1 {
		if b {
			return "on", nil
		}
		return "off", nil
	}
	return "", invalidValue(name, v.Str, "Available values: local, remote_write, remote_apply, on, off.")
}

func normalizeStandardConformingStrings(name string, vals []sqllex.Value) (string, *Error) {
	v, _ := single(vals)
	b, ok := boolValue(v.Str)
	if !ok || len(vals) != 1 {
		return "", &Error{Code: pgerrcode.InvalidParameterValue, Message: fmt.Sprintf("parameter %q requires a Boolean value", name)}
	}
	if !b {
		return "", unsupported("standard_conforming_strings = off is not supported: Aurora DSQL always treats backslashes in ordinary string literals as ordinary characters",
			"Write escapes as E'...' strings, or leave standard_conforming_strings on (the default).")
	}
	return "on", nil
}

var isolationLevels = map[string]bool{"serializable": true, "repeatable read": true, "read committed": true, "read uncommitted": true}

func normalizeIsolation(name string, vals []sqllex.Value) (string, *Error) {
	words := make([]string, len(vals))
	for i, v := range vals {
		words[i] = strings.ToLower(v.Str)
	}
	l := strings.Join(words, " ")
	if !isolationLevels[l] {
		return "", invalidValue(name, l, "Available values: serializable, repeatable read, read committed, read uncommitted.")
	}
	if l != "repeatable read" {
		return "", isolationUnsupported(l)
	}
	return l, nil
}

func isolationUnsupported(level string) *Error {
	return unsupported(fmt.Sprintf("isolation level %s is not supported: Aurora DSQL runs every transaction at REPEATABLE READ", strings.ToUpper(level)),
		"Use REPEATABLE READ (DSQL's snapshot isolation with optimistic concurrency), and retry transactions that fail with SQLSTATE 40001.")
}

// dsqlSettable lists the parameters Aurora DSQL accepts in SET and in the
// startup message, as it documents them; its enable_* planner toggles are
// accepted too.
var dsqlSettable = map[string]bool{
	"application_name":   true,
	"client_encoding":    true,
	"datestyle":          true,
	"extra_float_digits": true,
	"intervalstyle":      true,
	"timezone":           true,
	"search_path":        true,
}

// RefuseStartupParameter is the error for a client's startup parameter
// (lower-cased name) that Aurora DSQL refuses and the gateway does not
// emulate, or nil when DSQL accepts it. Such a parameter is refused as
// DSQL refuses it, never dropped: a dropped default_transaction_read_only
// would make a read-only session write.
func RefuseStartupParameter(name string) *Error {
	if dsqlSettable[name] || strings.HasPrefix(name, "enable_") {
		return nil
	}
	return unsupported(fmt.Sprintf("startup parameter %q is not supported on Aurora DSQL", name),
		"Remove it from the connection's parameters (or options); the parameters DSQL accepts, and the ones the gateway emulates, are listed in the README.")
}
