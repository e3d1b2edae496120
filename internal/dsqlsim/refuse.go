package dsqlsim

import (
	"strings"
)

// allowedSetting reports whether DSQL lets a session change the
// configuration parameter name (in SET, RESET or the StartupMessage).
// Parameter names are case-insensitive, as in PostgreSQL.
func allowedSetting(name string) bool {
	name = strings.ToLower(name)
	switch name {
	case "application_name", "client_encoding", "datestyle", "extra_float_digits",
		"intervalstyle", "timezone", "search_path":
		return true
	}
	return strings.HasPrefix(name, "enable_")
}

// unsupportedSettingMessage is DSQL's message for a refused parameter.
func unsupportedSettingMessage(name string) string {
	return `setting configuration parameter "` + name + `" not supported`
}

// statementWords gives the normalized words of one statement: unquoted
// identifiers lower-cased, quoted identifiers unquoted, anything else as
// written. Out-of-range words are "".
type statementWords struct {
	src    string
	tokens []sqlToken
}

func (w statementWords) word(i int) string {
	if i < 0 || i >= len(w.tokens) {
		return ""
	}
	t := w.tokens[i]
	text := w.src[t.start:t.end]
	switch t.kind {
	case tokIdent:
		return strings.ToLower(text)
	case tokQuotedIdent:
		return unquoteIdent(text)
	}
	return text
}

// keyword reports whether token i is the unquoted keyword kw (lower case).
func (w statementWords) keyword(i int, kw string) bool {
	return i < len(w.tokens) && w.tokens[i].kind == tokIdent && w.word(i) == kw
}

func unquoteIdent(text string) string {
	text = strings.TrimPrefix(text, `"`)
	text = strings.TrimSuffix(text, `"`)
	return strings.ReplaceAll(text, `""`, `"`)
}

// refusalOf returns DSQL's error message for a statement that DSQL refuses
// with 0A000, or "" when DSQL runs it (or when it is no statement at all).
func refusalOf(src string, st sqlStatement) string {
	w := statementWords{src: src, tokens: st.tokens}
	if msg := refusalOfCommand(w); msg != "" {
		return msg
	}
	return refusalOfAdvisoryLock(w)
}

func refusalOfCommand(w statementWords) string {
	if len(w.tokens) == 0 || w.tokens[0].kind != tokIdent {
		return ""
	}
	switch w.word(0) {
	case "set":
		return refusalOfSet(w)
	case "reset":
		return refusalOfReset(w)
	case "discard":
		return "DISCARD not supported"
	case "savepoint":
		return "SAVEPOINT not supported"
	case "release":
		return "RELEASE SAVEPOINT not supported"
	case "rollback", "abort":
		i := 1
		if w.keyword(i, "work") || w.keyword(i, "transaction") {
			i++
		}
		if w.keyword(i, "to") {
			return "ROLLBACK TO SAVEPOINT not supported"
		}
		if w.keyword(1, "prepared") {
			return "ROLLBACK PREPARED not supported"
		}
	case "commit":
		if w.keyword(1, "prepared") {
			return "COMMIT PREPARED not supported"
		}
	case "prepare":
		if w.keyword(1, "transaction") {
			return "PREPARE TRANSACTION not supported"
		}
		return "PREPARE not supported"
	case "execute":
		return "EXECUTE not supported"
	case "deallocate":
		i := 1
		if w.keyword(i, "prepare") {
			i++
		}
		if i < len(w.tokens) && !w.keyword(i, "all") {
			return "DEALLOCATE not supported"
		}
	case "listen":
		return "LISTEN not supported"
	case "unlisten":
		return "UNLISTEN not supported"
	case "notify":
		return "NOTIFY not supported"
	case "truncate":
		return "TRUNCATE not supported"
	case "lock":
		return "LOCK not supported"
	case "declare":
		return "DECLARE CURSOR not supported"
	case "create":
		return refusalOfCreate(w)
	}
	return ""
}

// refusalOfSet covers every form of SET:
//
//	SET [SESSION | LOCAL] name { TO | = } ...
//	SET [SESSION | LOCAL] TIME ZONE ... | SCHEMA '...' | NAMES '...' | ROLE ... |
//	    SESSION AUTHORIZATION ... | TRANSACTION ... | XML OPTION ...
//	SET SESSION CHARACTERISTICS AS TRANSACTION ...
//	SET CONSTRAINTS ...
func refusalOfSet(w statementWords) string {
	i := 1
	switch {
	case w.keyword(1, "session") && w.keyword(2, "characteristics"):
		return "SET SESSION CHARACTERISTICS not supported"
	case w.keyword(1, "session") && w.keyword(2, "authorization"):
		return unsupportedSettingMessage("session_authorization")
	case w.keyword(1, "session") || w.keyword(1, "local"):
		i = 2
	}
	// "SET name TO" / "SET name =" is always a parameter, even when name is
	// one of the keywords below.
	isAssignment := w.keyword(i+1, "to") || w.word(i+1) == "="
	if !isAssignment && i < len(w.tokens) && w.tokens[i].kind == tokIdent {
		switch w.word(i) {
		case "transaction":
			return "SET TRANSACTION not supported"
		case "time":
			if w.keyword(i+1, "zone") {
				return "" // TimeZone
			}
		case "schema":
			return "" // search_path
		case "names":
			return "" // client_encoding
		case "role":
			return unsupportedSettingMessage("role")
		case "xml":
			return unsupportedSettingMessage("xmloption")
		case "constraints":
			return "SET CONSTRAINTS not supported"
		}
	}
	name := settingName(w, i)
	if name == "" || allowedSetting(name) {
		return "" // no name is a syntax error: PostgreSQL reports it
	}
	return unsupportedSettingMessage(name)
}

// refusalOfReset covers RESET name, RESET ALL, RESET TIME ZONE,
// RESET SESSION AUTHORIZATION and RESET ROLE.
func refusalOfReset(w statementWords) string {
	switch {
	case w.keyword(1, "all"):
		return ""
	case w.keyword(1, "time") && w.keyword(2, "zone"):
		return ""
	case w.keyword(1, "session") && w.keyword(2, "authorization"):
		return unsupportedSettingMessage("session_authorization")
	}
	name := settingName(w, 1)
	if name == "" || allowedSetting(name) {
		return ""
	}
	return unsupportedSettingMessage(name)
}

// settingName reads a possibly dotted parameter name ("search_path",
// "myapp.tenant") starting at token i.
func settingName(w statementWords, i int) string {
	var b strings.Builder
	for ; i < len(w.tokens); i += 2 {
		kind := w.tokens[i].kind
		if kind != tokIdent && kind != tokQuotedIdent {
			break
		}
		b.WriteString(w.word(i))
		if w.word(i+1) != "." {
			break
		}
		b.WriteByte('.')
	}
	return b.String()
}

// refusalOfCreate refuses temporary and unlogged relations:
// CREATE [OR REPLACE] [GLOBAL | LOCAL] { TEMP | TEMPORARY | UNLOGGED } ...
func refusalOfCreate(w statementWords) string {
	i := 1
	if w.keyword(i, "or") && w.keyword(i+1, "replace") {
		i += 2
	}
	if w.keyword(i, "global") || w.keyword(i, "local") {
		i++
	}
	switch {
	case w.keyword(i, "temp") || w.keyword(i, "temporary"):
		return "CREATE TEMPORARY " + strings.ToUpper(w.word(i+1)) + " not supported"
	case w.keyword(i, "unlogged"):
		return "CREATE UNLOGGED " + strings.ToUpper(w.word(i+1)) + " not supported"
	}
	return ""
}

// refusalOfAdvisoryLock refuses a call anywhere in the statement to one of
// the pg_advisory_* or pg_try_advisory_* functions.
func refusalOfAdvisoryLock(w statementWords) string {
	for i, t := range w.tokens {
		if t.kind != tokIdent && t.kind != tokQuotedIdent {
			continue
		}
		name := w.word(i) // a quoted name keeps its case, as PostgreSQL's lookup does
		if (strings.HasPrefix(name, "pg_advisory_") || strings.HasPrefix(name, "pg_try_advisory_")) &&
			i+1 < len(w.tokens) && w.tokens[i+1].kind == tokOpenParen {
			return "function " + name + " not supported"
		}
	}
	return ""
}
