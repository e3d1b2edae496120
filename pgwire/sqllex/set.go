package sqllex

import (
	"strconv"
	"strings"
)

// SetKind is the form of a SET or RESET statement. It follows PostgreSQL's
// own reading (VariableSetStmt's kind), with the special forms named.
type SetKind uint8

const (
	SetValue                  SetKind = iota // SET name {TO | =} value [, ...]; also SET TIME ZONE x, SET NAMES 'x', SET SCHEMA 'x', SET XML OPTION x
	SetDefault                               // SET name {TO | =} DEFAULT; also SET TIME ZONE {DEFAULT | LOCAL}, SET NAMES [DEFAULT], SET SESSION AUTHORIZATION DEFAULT
	SetFromCurrent                           // SET name FROM CURRENT
	SetTransaction                           // SET TRANSACTION modes, SET TRANSACTION SNAPSHOT 'id'
	SetSessionCharacteristics                // SET SESSION CHARACTERISTICS AS TRANSACTION modes
	SetRole                                  // SET ROLE x (Name "role")
	SetSessionAuthorization                  // SET SESSION AUTHORIZATION x (Name "session_authorization")
	SetConstraints                           // SET CONSTRAINTS {ALL | name [, ...]} {DEFERRED | IMMEDIATE}
	ResetParam                               // RESET name; also RESET TIME ZONE, RESET TRANSACTION ISOLATION LEVEL
	ResetAll                                 // RESET ALL
	ResetRole                                // RESET ROLE
	ResetSessionAuthorization                // RESET SESSION AUTHORIZATION
)

var setKindNames = [...]string{
	SetValue: "SetValue", SetDefault: "SetDefault", SetFromCurrent: "SetFromCurrent",
	SetTransaction: "SetTransaction", SetSessionCharacteristics: "SetSessionCharacteristics",
	SetRole: "SetRole", SetSessionAuthorization: "SetSessionAuthorization",
	SetConstraints: "SetConstraints", ResetParam: "ResetParam", ResetAll: "ResetAll",
	ResetRole: "ResetRole", ResetSessionAuthorization: "ResetSessionAuthorization",
}

func (k SetKind) String() string {
	if int(k) < len(setKindNames) {
		return setKindNames[k]
	}
	return "SetKind(?)"
}

// Scope is how long a SET lasts.
type Scope uint8

const (
	ScopeSession Scope = iota // SET or SET SESSION: until changed (if the transaction commits)
	ScopeLocal                // SET LOCAL: until the end of the transaction
)

func (s Scope) String() string {
	if s == ScopeLocal {
		return "ScopeLocal"
	}
	return "ScopeSession"
}

// SetStmt is a SET or RESET statement taken apart by ParseSet.
type SetStmt struct {
	Kind  SetKind
	Scope Scope
	// Name is the parameter, in canonical lower case (PostgreSQL compares
	// parameter names case-insensitively): "timezone" for SET TIME ZONE,
	// "search_path" for SET SCHEMA, "client_encoding" for SET NAMES,
	// "xmloption" for SET XML OPTION, "role", "session_authorization",
	// "transaction_isolation" for RESET TRANSACTION ISOLATION LEVEL; custom
	// names keep their dots ("myapp.tenant"). Empty for RESET ALL and the
	// TRANSACTION, SESSION CHARACTERISTICS and CONSTRAINTS forms.
	Name string
	// ValueText is the value list as written (`a, "B"`, `'UTC'`, `-1`),
	// trimmed, so that SET <name> TO <ValueText> sets the same value; see
	// Replay. It is "DEFAULT" for SetDefault. For SET TIME ZONE INTERVAL
	// '...' it is not the source but an equivalent string constant, because
	// an INTERVAL is valid only in the TIME ZONE form. For SET CONSTRAINTS
	// it is everything after CONSTRAINTS; for SET TRANSACTION SNAPSHOT, the
	// snapshot id constant.
	ValueText string
	// Values are the items of ValueText.
	Values []Value
	// TransactionModes are the modes of SET TRANSACTION and SET SESSION
	// CHARACTERISTICS AS TRANSACTION, in order, each one of
	// "isolation level serializable", "isolation level repeatable read",
	// "isolation level read committed", "isolation level read uncommitted",
	// "read only", "read write", "deferrable", "not deferrable", and
	// "snapshot" for SET TRANSACTION SNAPSHOT.
	TransactionModes []string
}

// ValueKind is how a SET value was written.
type ValueKind uint8

const (
	ValueWord        ValueKind = iota // an unquoted word, keywords included: on, off, true, utf8, local
	ValueQuotedIdent                  // a quoted identifier: "My Schema"
	ValueString                       // a string constant: 'UTC', E'\t', $$x$$
	ValueNumber                       // a number with an optional sign: 200, -1, 1.5e3
)

var valueKindNames = [...]string{
	ValueWord: "ValueWord", ValueQuotedIdent: "ValueQuotedIdent", ValueString: "ValueString", ValueNumber: "ValueNumber",
}

func (k ValueKind) String() string {
	if int(k) < len(valueKindNames) {
		return valueKindNames[k]
	}
	return "ValueKind(?)"
}

// Value is one item of a SET value list.
type Value struct {
	Kind ValueKind
	// Text is the item as written.
	Text string
	// Str is the item as the server's SET sees it: a word case-folded, a
	// quoted identifier or string constant decoded, an integer that fits in
	// 32 bits in canonical decimal ("007" is "7", "0x10" is "16"), any other
	// number as written with its sign.
	Str string
}

// ParseSet takes apart a SET or RESET statement (one statement; leading
// comments and a trailing semicolon are fine). ok is false when stmt is not
// one of the forms listed under SetKind, or is not well formed: the caller
// must then treat the statement as unknown and forward it untouched.
func ParseSet(stmt string) (SetStmt, bool) {
	return OneStmt(stmt).Set()
}

func parseSet(r *tokenReader) (st SetStmt, ok bool) {
	switch t := r.next(); {
	case t.IsKeyword("set"):
		ok = r.parseSet(&st)
	case t.IsKeyword("reset"):
		ok = r.parseReset(&st)
	}
	if !ok || !r.atEnd() {
		return SetStmt{}, false
	}
	return st, true
}

// Replay returns a statement that puts a session into the state st
// describes, with the name quoted as needed: SET [LOCAL] name TO value,
// SET [LOCAL] name TO DEFAULT, RESET name or RESET ALL. It returns "" for
// the forms that cannot be replayed from the statement alone
// (SetFromCurrent, SetTransaction, SetSessionCharacteristics,
// SetConstraints).
func (st SetStmt) Replay() string {
	var b strings.Builder
	switch st.Kind {
	case SetValue, SetDefault, SetRole, SetSessionAuthorization:
		b.WriteString("SET ")
		if st.Scope == ScopeLocal {
			b.WriteString("LOCAL ")
		}
		writeParamName(&b, st.Name)
		b.WriteString(" TO ")
		b.WriteString(st.ValueText)
	case ResetParam, ResetRole, ResetSessionAuthorization:
		b.WriteString("RESET ")
		writeParamName(&b, st.Name)
	case ResetAll:
		return "RESET ALL"
	default:
		return ""
	}
	return b.String()
}

// writeParamName writes a parameter name as SQL, quoting each dotted part
// that needs it. PostgreSQL joins the parts of a dotted name with dots, so
// "a.b" names the same parameter as a.b; a name with an empty part (from
// a quoted part holding a dot) is written as one quoted identifier.
func writeParamName(b *strings.Builder, name string) {
	parts := strings.Split(name, ".")
	for _, part := range parts {
		if part == "" {
			b.WriteString(QuoteIdent(name))
			return
		}
	}
	for i, part := range parts {
		if i > 0 {
			b.WriteByte('.')
		}
		b.WriteString(QuoteIdent(part))
	}
}

// isNameFollower reports whether t can follow a parameter name in a generic
// SET (TO, =, a dot, FROM CURRENT). PostgreSQL reads a special word such as
// LOCAL, SESSION, TIME or NAMES as a parameter name when one follows it:
// SET local = 1 sets a parameter called "local".
func isNameFollower(t Token) bool {
	return t.IsKeyword("to") || isOp(t, "=") || t.Kind == Dot || t.IsKeyword("from")
}

func (r *tokenReader) parseSet(st *SetStmt) bool {
	if r.kw(0, "constraints") && !isNameFollower(r.peek(1)) {
		r.next()
		return r.parseSetConstraints(st)
	}
	switch {
	case r.kw(0, "local") && !isNameFollower(r.peek(1)):
		r.next()
		st.Scope = ScopeLocal
	case r.kw(0, "session") && !isNameFollower(r.peek(1)) && !r.kw(1, "authorization") &&
		!(r.kw(1, "characteristics") && r.kw(2, "as")):
		r.next()
	}

	switch {
	case r.kw(0, "transaction") && !isNameFollower(r.peek(1)):
		r.next()
		st.Kind = SetTransaction
		if r.accept("snapshot") {
			st.TransactionModes = []string{"snapshot"}
			return r.parseSconstValue(st)
		}
		return r.parseTransactionModes(st)
	case r.kw(0, "session") && r.kw(1, "characteristics") && r.kw(2, "as") && r.kw(3, "transaction"):
		for range 4 {
			r.next()
		}
		st.Kind = SetSessionCharacteristics
		return r.parseTransactionModes(st)
	case r.kw(0, "session") && r.kw(1, "authorization"):
		r.next()
		r.next()
		st.Name = "session_authorization"
		if r.accept("default") {
			setDefault(st)
			return true
		}
		st.Kind = SetSessionAuthorization
		return r.parseNonReservedValue(st)
	case r.kw(0, "time") && r.kw(1, "zone"):
		r.next()
		r.next()
		st.Name = "timezone"
		return r.parseZoneValue(st)
	case r.kw(0, "schema") && !isNameFollower(r.peek(1)):
		r.next()
		st.Name = "search_path"
		return r.parseSconstValue(st)
	case r.kw(0, "names") && !isNameFollower(r.peek(1)):
		r.next()
		st.Name = "client_encoding"
		if r.atStmtEnd(0) || r.accept("default") {
			setDefault(st)
			return true
		}
		return r.parseSconstValue(st)
	case r.kw(0, "role") && !isNameFollower(r.peek(1)):
		r.next()
		st.Kind = SetRole
		st.Name = "role"
		return r.parseNonReservedValue(st)
	case r.kw(0, "xml") && r.kw(1, "option"):
		r.next()
		r.next()
		st.Name = "xmloption"
		t := r.next()
		if !t.IsKeyword("document") && !t.IsKeyword("content") {
			return false
		}
		st.ValueText = t.Text
		st.Values = []Value{{Kind: ValueWord, Text: t.Text, Str: foldIdent(t.Text)}}
		return true
	case r.kw(0, "catalog") && !isNameFollower(r.peek(1)):
		return false // SET CATALOG is always an error
	}

	name, ok := r.parseParamName()
	if !ok {
		return false
	}
	st.Name = name
	switch {
	case r.kw(0, "from") && r.kw(1, "current"):
		r.next()
		r.next()
		st.Kind = SetFromCurrent
		return true
	case r.kw(0, "to") || isOp(r.peek(0), "="):
		r.next()
	default:
		return false
	}
	if r.accept("default") {
		setDefault(st)
		return true
	}
	return r.parseValueList(st)
}

func setDefault(st *SetStmt) {
	st.Kind = SetDefault
	st.ValueText = "DEFAULT"
}

func (r *tokenReader) parseReset(st *SetStmt) bool {
	switch {
	case r.accept("all"):
		st.Kind = ResetAll
		return true
	case r.kw(0, "time") && r.kw(1, "zone"):
		r.next()
		r.next()
		st.Kind = ResetParam
		st.Name = "timezone"
		return true
	case r.kw(0, "transaction") && r.kw(1, "isolation") && r.kw(2, "level"):
		for range 3 {
			r.next()
		}
		st.Kind = ResetParam
		st.Name = "transaction_isolation"
		return true
	case r.kw(0, "session") && r.kw(1, "authorization"):
		r.next()
		r.next()
		st.Kind = ResetSessionAuthorization
		st.Name = "session_authorization"
		return true
	}
	name, ok := r.parseParamName()
	if !ok {
		return false
	}
	st.Kind = ResetParam
	if name == "role" {
		st.Kind = ResetRole
	}
	st.Name = name
	return true
}

// parseParamName reads var_name: ColId ('.' ColId)*, in canonical lower
// case. A name written as plain words and dots with nothing between them
// is cut from the source rather than built, to save allocations.
func (r *tokenReader) parseParamName() (string, bool) {
	first := r.next()
	part, ok := colID(first)
	if !ok {
		return "", false
	}
	var b strings.Builder // the name so far, once it is not plain
	plain := first.Kind == Ident && len(first.Text) <= maxIdentLen
	if !plain {
		b.WriteString(part)
	}
	last := first
	for r.peek(0).Kind == Dot {
		dot := r.next()
		t := r.next()
		if part, ok = colID(t); !ok {
			return "", false
		}
		if plain && !(t.Kind == Ident && len(t.Text) <= maxIdentLen && last.End() == dot.Pos && dot.End() == t.Pos) {
			plain = false
			b.WriteString(r.src[first.Pos:last.End()])
		}
		if !plain {
			b.WriteByte('.')
			b.WriteString(part)
		}
		last = t
	}
	if plain {
		return lowerASCII(r.src[first.Pos:last.End()]), true
	}
	return lowerASCII(b.String()), true
}

// lowerASCII downcases A-Z, allocating only when there is one.
func lowerASCII(s string) string {
	for i := 0; i < len(s); i++ {
		if 'A' <= s[i] && s[i] <= 'Z' {
			b := []byte(s)
			for j := i; j < len(b); j++ {
				if 'A' <= b[j] && b[j] <= 'Z' {
					b[j] += 'a' - 'A'
				}
			}
			return string(b)
		}
	}
	return s
}

// parseValueList reads var_list: var_value (',' var_value)*.
func (r *tokenReader) parseValueList(st *SetStmt) bool {
	start := r.peek(0).Pos
	end := start
	for {
		v, last, ok := r.parseValue()
		if !ok {
			return false
		}
		st.Values = append(st.Values, v)
		end = last.End()
		if r.peek(0).Kind != Comma {
			break
		}
		r.next()
	}
	st.ValueText = r.src[start:end]
	return true
}

// parseValue reads var_value: a word that is not reserved (TRUE, FALSE and
// ON excepted), a quoted identifier, a string constant or a signed number.
// last is the value's last token.
func (r *tokenReader) parseValue() (v Value, last Token, ok bool) {
	t := r.next()
	switch t.Kind {
	case Ident:
		if categoryOf(t.Text) == reservedKeyword && !t.IsKeyword("true") && !t.IsKeyword("false") && !t.IsKeyword("on") {
			return Value{}, t, false
		}
		return Value{Kind: ValueWord, Text: t.Text, Str: foldIdent(t.Text)}, t, true
	case QuotedIdent:
		name, ok := t.Ident()
		return Value{Kind: ValueQuotedIdent, Text: t.Text, Str: name}, t, ok
	case String:
		if !isSconst(t) {
			return Value{}, t, false
		}
		s, ok := t.StringValue()
		return Value{Kind: ValueString, Text: t.Text, Str: s}, t, ok
	case Number, Op:
		return r.parseNumber(t)
	}
	return Value{}, t, false
}

// isSconst reports whether t is a string constant the grammar accepts
// where it wants Sconst: not N'...' (NCHAR), not B'...' or X'...'.
func isSconst(t Token) bool {
	return t.Kind == String && t.Text[0] != 'n' && t.Text[0] != 'N'
}

// parseNumber reads NumericOnly: a number with an optional + or - before
// it; t is its first token.
func (r *tokenReader) parseNumber(t Token) (Value, Token, bool) {
	first := t
	sign := ""
	if t.Kind == Op {
		if t.Text != "+" && t.Text != "-" {
			return Value{}, t, false
		}
		if t.Text == "-" {
			sign = "-"
		}
		t = r.next()
	}
	if t.Kind != Number {
		return Value{}, t, false
	}
	str, ok := numberString(sign, t.Text)
	return Value{Kind: ValueNumber, Text: r.src[first.Pos:t.End()], Str: str}, t, ok
}

// numberString renders a numeric constant with its sign the way the
// server's SET does: integers that fit in 32 bits in decimal, anything
// else as written. ok is false for a number with trailing junk.
func numberString(sign, text string) (string, bool) {
	if scanNumeric(text, 0) != len(text) {
		return "", false
	}
	if !strings.ContainsAny(text, ".eE") || isBasePrefixed(text) {
		digits := strings.ReplaceAll(text, "_", "")
		base := 10
		if isBasePrefixed(text) {
			base = 0
		}
		if v, err := strconv.ParseInt(sign+digits, base, 32); err == nil {
			return strconv.FormatInt(v, 10), true
		}
	}
	return sign + text, true
}

func isBasePrefixed(text string) bool {
	if len(text) < 2 || text[0] != '0' {
		return false
	}
	switch text[1] {
	case 'x', 'X', 'o', 'O', 'b', 'B':
		return true
	}
	return false
}

// parseSconstValue reads a single string constant value.
func (r *tokenReader) parseSconstValue(st *SetStmt) bool {
	t := r.next()
	if !isSconst(t) {
		return false
	}
	s, ok := t.StringValue()
	st.ValueText = t.Text
	st.Values = []Value{{Kind: ValueString, Text: t.Text, Str: s}}
	return ok
}

// parseNonReservedValue reads NonReservedWord_or_Sconst, the value of SET
// ROLE and SET SESSION AUTHORIZATION.
func (r *tokenReader) parseNonReservedValue(st *SetStmt) bool {
	t := r.peek(0)
	if t.Kind == Ident && categoryOf(t.Text) == reservedKeyword {
		return false
	}
	if t.Kind != Ident && t.Kind != QuotedIdent && !isSconst(t) {
		return false
	}
	v, _, ok := r.parseValue()
	st.ValueText = t.Text
	st.Values = []Value{v}
	return ok
}

// parseZoneValue reads the value of SET TIME ZONE: a string constant, an
// identifier, a signed number, DEFAULT or LOCAL, or an INTERVAL.
func (r *tokenReader) parseZoneValue(st *SetStmt) bool {
	t := r.peek(0)
	switch {
	case t.IsKeyword("default") || t.IsKeyword("local"):
		r.next()
		setDefault(st)
		return true
	case t.IsKeyword("interval"):
		r.next()
		return r.parseZoneInterval(st, t)
	case t.Kind == Ident || t.Kind == QuotedIdent || isSconst(t) || t.Kind == Number || isOp(t, "+") || isOp(t, "-"):
		v, last, ok := r.parseValue()
		if !ok {
			return false
		}
		st.ValueText = r.src[t.Pos:last.End()]
		st.Values = []Value{v}
		return true
	}
	return false
}

// parseZoneInterval reads the rest of SET TIME ZONE INTERVAL 'x' [HOUR |
// MINUTE | HOUR TO MINUTE] or INTERVAL(p) 'x' and turns it into the string
// INTERVAL 'x', as a string constant, that SET timezone TO accepts with the same meaning,
// applying what the fields do to x: a bare number counts hours (HOUR) or
// minutes (MINUTE, HOUR TO MINUTE), and the value is truncated to whole
// hours or minutes. Inputs outside that simple subset are refused.
func (r *tokenReader) parseZoneInterval(st *SetStmt, interval Token) bool {
	precision := false
	if r.peek(0).Kind == LParen {
		r.next()
		if r.next().Kind != Number || r.next().Kind != RParen {
			return false
		}
		precision = true
	}
	t := r.next()
	if !isSconst(t) {
		return false
	}
	x, ok := t.StringValue()
	if !ok {
		return false
	}
	last := t
	unit := ""
	if !precision {
		switch {
		case r.kw(0, "hour") && r.kw(1, "to") && r.kw(2, "minute"):
			r.next()
			r.next()
			last = r.next()
			unit = "minute"
		case r.kw(0, "hour"), r.kw(0, "minute"):
			last = r.next()
			unit = strings.ToLower(last.Text)
		}
	}
	x, ok = zoneInterval(x, unit, precision)
	if !ok {
		return false
	}
	str := "INTERVAL '" + x + "'"
	st.ValueText = QuoteLiteral(str)
	st.Values = []Value{{Kind: ValueString, Text: r.src[interval.Pos:last.End()], Str: str}}
	return true
}

// zoneInterval rewrites the interval text x of SET TIME ZONE INTERVAL so
// that it means the same without the fields (unit is "", "hour" or
// "minute", the smallest field kept).
func zoneInterval(x, unit string, precision bool) (string, bool) {
	if strings.ContainsRune(x, '\'') {
		return "", false
	}
	if unit == "" {
		if precision && strings.ContainsRune(x, '.') {
			return "", false // fractional seconds would be rounded
		}
		return x, true
	}
	s := strings.TrimSpace(x)
	sign := ""
	if s != "" && (s[0] == '+' || s[0] == '-') {
		sign, s = s[:1], s[1:]
	}
	parts := strings.Split(s, ":")
	if len(parts) > 3 {
		return "", false
	}
	for i, p := range parts {
		if p == "" || len(p) > 9 || strings.Trim(p, "0123456789") != "" {
			return "", false
		}
		if n, _ := strconv.Atoi(p); i > 0 && n > 59 {
			return "", false
		}
	}
	switch len(parts) {
	case 1: // a bare number counts the smallest field
		if unit == "hour" {
			return sign + parts[0] + " hours", true
		}
		return sign + parts[0] + " minutes", true
	case 2, 3: // h:m[:s]
		if unit == "hour" {
			return sign + parts[0] + " hours", true
		}
		return sign + parts[0] + ":" + parts[1], true
	}
	return "", false
}

// parseTransactionModes reads transaction_mode_list: modes separated by
// commas or just spaces.
func (r *tokenReader) parseTransactionModes(st *SetStmt) bool {
	for {
		var mode string
		switch {
		case r.accept("isolation"):
			if !r.accept("level") {
				return false
			}
			switch {
			case r.kw(0, "read") && r.kw(1, "uncommitted"):
				mode = "isolation level read uncommitted"
			case r.kw(0, "read") && r.kw(1, "committed"):
				mode = "isolation level read committed"
			case r.kw(0, "repeatable") && r.kw(1, "read"):
				mode = "isolation level repeatable read"
			case r.kw(0, "serializable"):
				r.next()
				mode = "isolation level serializable"
			default:
				return false
			}
			if mode != "isolation level serializable" {
				r.next()
				r.next()
			}
		case r.kw(0, "read") && r.kw(1, "only"):
			r.next()
			r.next()
			mode = "read only"
		case r.kw(0, "read") && r.kw(1, "write"):
			r.next()
			r.next()
			mode = "read write"
		case r.accept("deferrable"):
			mode = "deferrable"
		case r.kw(0, "not") && r.kw(1, "deferrable"):
			r.next()
			r.next()
			mode = "not deferrable"
		default:
			return false
		}
		st.TransactionModes = append(st.TransactionModes, mode)
		if r.peek(0).Kind == Comma {
			r.next()
			continue
		}
		if r.atStmtEnd(0) {
			return true
		}
	}
}

// parseSetConstraints reads the rest of SET CONSTRAINTS {ALL | name [,
// ...]} {DEFERRED | IMMEDIATE}.
func (r *tokenReader) parseSetConstraints(st *SetStmt) bool {
	st.Kind = SetConstraints
	start := r.peek(0).Pos
	if !r.accept("all") {
		for {
			if _, ok := r.parseQualifiedName(); !ok {
				return false
			}
			if r.peek(0).Kind != Comma {
				break
			}
			r.next()
		}
	}
	t := r.next()
	if !t.IsKeyword("deferred") && !t.IsKeyword("immediate") {
		return false
	}
	st.ValueText = r.src[start:t.End()]
	return true
}
