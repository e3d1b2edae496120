package compat

import (
	"strings"

	"github.com/dsqlgate/dsqlgate/pgwire/sqllex"
)

// fixedSetting is a parameter Aurora DSQL pins to one value that a session
// cannot change (SET and set_config() of it are refused).
type fixedSetting struct {
	value string // the display value DSQL has
	// same reports whether a requested value is that value.
	same func(v string) bool
}

// fixedSettings are the parameters DSQL pins. set_config() of one to the
// value it already has is answered with that value (pgAdmin asks for
// bytea_output 'hex' when it connects); any other value keeps DSQL's
// refusal.
var fixedSettings = map[string]fixedSetting{
	"bytea_output":          {value: "hex", same: func(v string) bool { return strings.EqualFold(v, "hex") }},
	"transaction_isolation": {value: "repeatable read", same: func(v string) bool { return strings.EqualFold(v, "repeatable read") }},
}

const setConfigHint = "Aurora DSQL lets set_config() change only the parameters SET may change. The gateway emulates set_config() of " +
	"the settings it emulates (statement_timeout, client_min_messages, ...) when the call is the whole statement with literal arguments, " +
	"SELECT set_config('statement_timeout', '5s', false), and answers a call that sets a parameter DSQL pins (bytea_output) to the value it has."

// setConfigRewrite decides what to do with a statement that may call
// set_config(): nil when it calls none, or only for parameters DSQL lets a
// session set (DSQL runs those). A call that sets a parameter DSQL pins to
// the value it already has is replaced by that value; a call of an
// emulated setting that is the whole statement is answered with the new
// value and changes the setting as SET (is_local false) or SET LOCAL (is_local
// true) does. Anything else (a call with other than literal arguments, a
// parameter neither allowed, pinned nor emulated, an emulated setting
// changed inside a larger statement) is left to DSQL's refusal, with a
// hint; so is any statement the lexer does not fully recognise.
func setConfigRewrite(st sqllex.Stmt) *Rewrite {
	if !mayCallSetConfig(st.Text) {
		return nil // the common case, without a walk of the tokens
	}
	calls, ok := st.SetConfigCalls()
	switch {
	case !ok:
		return &Rewrite{Hint: setConfigHint}
	case len(calls) == 0:
		return nil
	}
	var out strings.Builder
	last, replaced := 0, false
	for _, c := range calls {
		if !c.Literal {
			return &Rewrite{Hint: setConfigHint}
		}
		name := strings.ToLower(c.Name)
		if dsqlSettable[name] || strings.HasPrefix(name, "enable_") {
			continue
		}
		if fs, ok := fixedSettings[name]; ok && fs.same(c.Value) {
			// A scalar subquery keeps the column name PostgreSQL gives
			// the call (set_config) wherever it stands.
			out.WriteString(st.Text[last:c.Start])
			out.WriteString("(SELECT " + sqllex.QuoteLiteral(fs.value) + "::text AS set_config)")
			last, replaced = c.End, true
			continue
		}
		if _, ok := emulatedSettings[name]; ok && len(calls) == 1 {
			if rw := emulatedSetConfig(st, c, name); rw != nil {
				return rw
			}
		}
		return &Rewrite{Hint: setConfigHint}
	}
	if !replaced {
		return nil
	}
	out.WriteString(st.Text[last:])
	return &Rewrite{Text: out.String()}
}

// emulatedSetConfig answers SELECT set_config('<emulated>', 'value',
// is_local) [[AS] alias] with the value the setting gets, recorded as SET
// [LOCAL] name = 'value' would be; nil when the call is not the whole
// statement.
func emulatedSetConfig(st sqllex.Stmt, c sqllex.SetConfigCall, name string) *Rewrite {
	call, ok := st.SelectCall()
	if !ok || call.Name != "set_config" || (call.Schema != "" && call.Schema != "pg_catalog") {
		return nil
	}
	v, err := emulatedSettings[name].normalize(name, []sqllex.Value{{Kind: sqllex.ValueString, Text: sqllex.QuoteLiteral(c.Value), Str: c.Value}})
	if err != nil {
		return refuse(err)
	}
	scope := sqllex.ScopeSession
	if c.Local {
		scope = sqllex.ScopeLocal
	}
	alias := call.Alias
	if alias == "" {
		alias = "set_config"
	}
	return &Rewrite{Text: "SELECT " + sqllex.QuoteLiteral(v) + "::text AS " + sqllex.QuoteIdent(alias), Tag: "SELECT 1",
		Change: &SettingChange{Kind: sqllex.SetValue, Scope: scope, Name: name, Value: v}}
}

// mayCallSetConfig is a quick test, without lexing, that text could call
// set_config: it contains the name in any ASCII case, or a U&"..."
// identifier (which can spell it with escapes).
func mayCallSetConfig(text string) bool {
	return containsFoldASCII(text, "set_config") || strings.Contains(text, `&"`)
}
