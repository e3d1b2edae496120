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
	if msg := refusalOfAdvisoryLock(w); msg != "" {
		return msg
	}
	return refusalOfSetConfig(w)
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
	case "begin":
		return refusalOfIsolationLevel(w, 1)
	case "start":
		if w.keyword(1, "transaction") {
			return refusalOfIsolationLevel(w, 2)
		}
	case "vacuum":
		return "VACUUM not supported"
	case "do":
		return "DO not supported" // DO runs PL/pgSQL (or another procedural language)
	case "alter":
		return refusalOfAlterOrDrop(w, "ALTER")
	case "drop":
		return refusalOfAlterOrDrop(w, "DROP")
	case "copy":
		return refusalOfCopy(w)
	case "refresh":
		if w.keyword(1, "materialized") && w.keyword(2, "view") {
			return "REFRESH MATERIALIZED VIEW not supported"
		}
	}
	return ""
}

// refusalOfIsolationLevel refuses BEGIN or START TRANSACTION with an
// isolation level other than REPEATABLE READ, DSQL's only one. The
// transaction modes start at token i (after BEGIN [WORK | TRANSACTION]);
// they may come in any order, with or without commas. An unknown level is
// a syntax error that PostgreSQL reports.
func refusalOfIsolationLevel(w statementWords, i int) string {
	if w.keyword(i, "work") || w.keyword(i, "transaction") {
		i++
	}
	for ; i < len(w.tokens); i++ {
		if !w.keyword(i, "isolation") || !w.keyword(i+1, "level") {
			continue
		}
		var level string
		switch {
		case w.keyword(i+2, "serializable"):
			level = "SERIALIZABLE"
		case w.keyword(i+2, "repeatable") && w.keyword(i+3, "read"):
			i += 3
			continue
		case w.keyword(i+2, "read") && w.keyword(i+3, "committed"):
			level = "READ COMMITTED"
		case w.keyword(i+2, "read") && w.keyword(i+3, "uncommitted"):
			level = "READ UNCOMMITTED"
		default:
			return ""
		}
		return "Unsupported isolation level: " + level
	}
	return ""
}

// refusalOfAlterOrDrop refuses ALTER SYSTEM and ALTER or DROP of the
// objects DSQL cannot have: extensions, databases, tablespaces, triggers,
// event triggers, materialized views (verb is "ALTER" or "DROP").
func refusalOfAlterOrDrop(w statementWords, verb string) string {
	switch {
	case verb == "ALTER" && w.keyword(1, "system"):
		return "ALTER SYSTEM not supported"
	case w.keyword(1, "extension"), w.keyword(1, "database"), w.keyword(1, "tablespace"), w.keyword(1, "trigger"):
		return verb + " " + strings.ToUpper(w.word(1)) + " not supported"
	case w.keyword(1, "event") && w.keyword(2, "trigger"):
		return verb + " EVENT TRIGGER not supported"
	case w.keyword(1, "materialized") && w.keyword(2, "view"):
		return verb + " MATERIALIZED VIEW not supported"
	}
	return ""
}

// refusalOfCopy refuses COPY to or from a server-side file or a program:
// DSQL only has COPY ... FROM STDIN and COPY ... TO STDOUT. The direction is
// the first FROM or TO outside parentheses (a column list or a query).
func refusalOfCopy(w statementWords) string {
	depth := 0
	for i, t := range w.tokens {
		switch t.kind {
		case tokOpenParen:
			depth++
			continue
		case tokCloseParen:
			depth--
			continue
		}
		if depth != 0 || i == 0 || !(w.keyword(i, "from") || w.keyword(i, "to")) {
			continue
		}
		dir := strings.ToUpper(w.word(i))
		switch {
		case w.keyword(i+1, "stdin"), w.keyword(i+1, "stdout"):
			return ""
		case w.keyword(i+1, "program"):
			return "COPY " + dir + " PROGRAM not supported"
		case i+1 < len(w.tokens) && w.tokens[i+1].kind == tokString:
			return "COPY " + dir + " a file not supported"
		}
		return "" // a syntax error: PostgreSQL reports it
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

// refusalOfCreate refuses what DSQL cannot create:
//
//	CREATE [OR REPLACE] [GLOBAL | LOCAL] { TEMP | TEMPORARY | UNLOGGED } ...
//	CREATE EXTENSION | DATABASE | TABLESPACE | MATERIALIZED VIEW ...
//	CREATE TABLE ... { INHERITS (...) | PARTITION BY ... | PARTITION OF ... }
//	CREATE [OR REPLACE] [CONSTRAINT] TRIGGER ... | CREATE EVENT TRIGGER ...
//	CREATE [OR REPLACE] FUNCTION | PROCEDURE ... LANGUAGE <not sql>
func refusalOfCreate(w statementWords) string {
	i := 1
	if w.keyword(i, "or") && w.keyword(i+1, "replace") {
		i += 2
	}
	switch {
	case w.keyword(i, "extension"), w.keyword(i, "database"), w.keyword(i, "tablespace"):
		return "CREATE " + strings.ToUpper(w.word(i)) + " not supported"
	case w.keyword(i, "materialized") && w.keyword(i+1, "view"):
		return "CREATE MATERIALIZED VIEW not supported"
	case w.keyword(i, "trigger"), w.keyword(i, "constraint") && w.keyword(i+1, "trigger"):
		return "CREATE TRIGGER not supported"
	case w.keyword(i, "event") && w.keyword(i+1, "trigger"):
		return "CREATE EVENT TRIGGER not supported"
	case w.keyword(i, "function"), w.keyword(i, "procedure"):
		return refusalOfRoutineLanguage(w, i)
	}
	if w.keyword(i, "global") || w.keyword(i, "local") {
		i++
	}
	switch {
	case w.keyword(i, "temp") || w.keyword(i, "temporary"):
		return "CREATE TEMPORARY " + strings.ToUpper(w.word(i+1)) + " not supported"
	case w.keyword(i, "unlogged"):
		return "CREATE UNLOGGED " + strings.ToUpper(w.word(i+1)) + " not supported"
	case w.keyword(i, "table"):
		return refusalOfTableClauses(w, i+1)
	}
	return ""
}

// refusalOfTableClauses refuses the CREATE TABLE clauses that make
// partitions or inheritance, which DSQL does not have: INHERITS (...),
// PARTITION BY ... and PARTITION OF parent. They are looked for outside
// parentheses (column definitions, a window's PARTITION BY) and before the
// AS of a CREATE TABLE ... AS query.
func refusalOfTableClauses(w statementWords, i int) string {
	return w.firstTopLevel(i, func(i int) (string, bool) {
		switch {
		case w.keyword(i, "as"):
			return "", true
		case w.keyword(i, "inherits") && i+1 < len(w.tokens) && w.tokens[i+1].kind == tokOpenParen:
			return "CREATE TABLE with INHERITS not supported", true
		case w.keyword(i, "partition") && (w.keyword(i+1, "by") || w.keyword(i+1, "of")):
			return "CREATE TABLE with PARTITION " + strings.ToUpper(w.word(i+1)) + " not supported", true
		}
		return "", false
	})
}

// firstTopLevel calls f with each token from i on that is outside
// parentheses (and is not one), until f says it is done, and returns what
// f returned then; "" when f never did.
func (w statementWords) firstTopLevel(i int, f func(i int) (result string, done bool)) string {
	depth := 0
	for ; i < len(w.tokens); i++ {
		switch w.tokens[i].kind {
		case tokOpenParen:
			depth++
		case tokCloseParen:
			depth--
		default:
			if depth != 0 {
				continue
			}
			if result, done := f(i); done {
				return result
			}
		}
	}
	return ""
}

// refusalOfRoutineLanguage refuses a CREATE FUNCTION or PROCEDURE (the word
// at token kind) whose LANGUAGE is not SQL: DSQL runs SQL-language routines
// only. The clause is looked for outside parentheses and before a
// SQL-standard body (BEGIN ATOMIC ... END or RETURN expr), which is SQL and
// may use "language" as a name; a string body ($$...$$) is one token. With
// no LANGUAGE clause the body is SQL-standard, or PostgreSQL reports the
// missing language.
func refusalOfRoutineLanguage(w statementWords, kind int) string {
	return w.firstTopLevel(kind+1, func(i int) (string, bool) {
		if w.keyword(i, "begin") || w.keyword(i, "return") {
			return "", true
		}
		if !w.keyword(i, "language") || i+1 >= len(w.tokens) {
			return "", false
		}
		var lang string
		switch t := w.tokens[i+1]; t.kind {
		case tokIdent, tokQuotedIdent:
			lang = w.word(i + 1)
		case tokString:
			lang = stringLiteral(w.src[t.start:t.end])
		default:
			return "", true // a syntax error: PostgreSQL reports it
		}
		if strings.EqualFold(lang, "sql") {
			return "", true
		}
		return "CREATE " + strings.ToUpper(w.word(kind)) + " with LANGUAGE " + lang + " not supported", true
	})
}

// stringLiteral returns the value of a standard '...' string or a
// $tag$...$tag$ string token, or "" for anything else (an E'...' string
// with escapes, an unterminated string).
func stringLiteral(text string) string {
	switch {
	case text == "":
		return ""
	case len(text) >= 2 && text[0] == '\'' && text[len(text)-1] == '\'':
		return strings.ReplaceAll(text[1:len(text)-1], "''", "'")
	case (text[0] == 'e' || text[0] == 'E') && len(text) >= 3 && text[1] == '\'' && text[len(text)-1] == '\'' &&
		!strings.Contains(text, "\\"):
		return strings.ReplaceAll(text[2:len(text)-1], "''", "'")
	case text[0] == '$':
		end := strings.IndexByte(text[1:], '$')
		if end < 0 {
			return ""
		}
		delim := text[:end+2]
		if len(text) < 2*len(delim) || !strings.HasSuffix(text, delim) {
			return ""
		}
		return text[len(delim) : len(text)-len(delim)]
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

// refusalOfSetConfig keeps set_config() from getting round the SET
// allow-list: a call anywhere in the statement to set_config or
// pg_catalog.set_config whose first argument is a string literal naming a
// parameter DSQL does not let a session change is refused as SET would be.
// A first argument that is anything else (a $n parameter, an expression,
// a column) cannot be checked here and is refused too. A call in the body
// of a function, which is a string, is not seen.
func refusalOfSetConfig(w statementWords) string {
	for i, t := range w.tokens {
		if t.kind != tokIdent && t.kind != tokQuotedIdent || w.word(i) != "set_config" {
			continue
		}
		if i+1 >= len(w.tokens) || w.tokens[i+1].kind != tokOpenParen {
			continue // a column or table named set_config
		}
		if i >= 1 && w.tokens[i-1].kind == tokOther && w.word(i-1) == "." {
			if i < 2 || w.tokens[i-2].kind != tokIdent && w.tokens[i-2].kind != tokQuotedIdent || w.word(i-2) != "pg_catalog" {
				continue // another schema's set_config
			}
		}
		name, ok := setConfigName(w, i+2)
		if !ok {
			return "set_config() with a parameter name that is not a string literal not supported"
		}
		if !allowedSetting(name) {
			return unsupportedSettingMessage(name)
		}
	}
	return ""
}

// setConfigName reads the first argument of a set_config call, starting at
// token i (after the open parenthesis): one string literal, optionally cast
// with ::text (or another type name), followed by "," or ")".
func setConfigName(w statementWords, i int) (string, bool) {
	if i >= len(w.tokens) || w.tokens[i].kind != tokString {
		return "", false
	}
	t := w.tokens[i]
	name := stringLiteral(w.src[t.start:t.end])
	if name == "" {
		return "", false
	}
	i++
	if w.word(i) == ":" && w.word(i+1) == ":" && i+2 < len(w.tokens) && w.tokens[i+2].kind == tokIdent {
		i += 3 // 'name'::text
	}
	if i >= len(w.tokens) || w.word(i) != "," && w.tokens[i].kind != tokCloseParen {
		return "", false
	}
	return name, true
}
