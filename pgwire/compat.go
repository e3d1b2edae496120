package pgwire

import (
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/dsqlgate/dsqlgate/pgwire/sqllex"
)

// This file is the DSQL compatibility layer's statement side (README,
// "DSQL compatibility"): settings DSQL refuses but tools send are
// emulated by the gateway, TRUNCATE becomes DELETE, and refusals that cannot
// be emulated get a hint. It never alters a statement it does not fully
// recognise: anything else goes upstream as it came.
//
// The gateway does not answer emulated statements itself; it sends a
// stand-in that the server runs in the statement's place (in the same
// transaction, with the same ordering and error semantics), and rewrites
// the stand-in's reply: the rows of a placeholder are hidden, the command
// tag is the original's, an error becomes the error PostgreSQL would give.

// rewrite is what the compatibility layer does with one statement. The zero
// value changes nothing. Immutable once made.
type rewrite struct {
	// text replaces the statement upstream ("" keeps it).
	text string
	// tag replaces the CommandComplete tag ("" keeps it).
	tag string
	// hideRows: the stand-in is a placeholder whose rows the client must
	// not see; a Describe of it answers NoData.
	hideRows bool
	// emu is an emulated SET/RESET applied when the stand-in completes.
	emu *emuChange
	// err, when set, is the error the stand-in provokes on purpose (it
	// fails at parse time, with a real error's transaction semantics); the
	// client sees err instead of the server's.
	err *pgError
	// hint is added to an error the server reports for the statement (a
	// DSQL refusal the gateway cannot emulate), of SQLSTATE hintCode
	// (0A000 when empty).
	hint     string
	hintCode string
	// local is answered by the gateway itself (an advisory-lock call, or
	// the value of an emulated setting), never sent upstream.
	local localAnswer
	// dealloc is a SQL DEALLOCATE of the client's protocol-level
	// statements, applied when the placeholder completes.
	dealloc *deallocation
	// sqlPrepare is the name a SQL PREPARE gives, in transaction pool
	// mode on a PostgreSQL route: deallocated when its transaction ends.
	sqlPrepare string
	// sqlDeallocate is the name a SQL DEALLOCATE passed to PostgreSQL
	// drops (a statement of the client's SQL PREPARE).
	sqlDeallocate string
	// unlistenAll: UNLISTEN * (the session stops listening).
	unlistenAll bool
}

// deallocation is DEALLOCATE [PREPARE] {name | ALL}.
type deallocation struct {
	name string
	all  bool
}

// localAnswer is a statement the gateway answers itself, in both
// protocols: it describes its parameters and its one result column, and
// executes to a DataRow and CommandComplete.
type localAnswer interface {
	appendParameterDescription(dst []byte) []byte
	appendRowDescription(dst []byte, format int16) []byte
	// execute runs in the client goroutine; it may block (a lock wait).
	execute(s *session, params [][]byte, paramFormats []int16, resultFormat int16, inTx bool) ([]byte, *pgError)
}

// showCall answers SHOW name or SELECT current_setting('name') for an
// emulated setting with its value at execution time.
type showCall struct {
	name   string
	column string
	tag    string // "SHOW" or "SELECT 1"
}

func (c *showCall) appendParameterDescription(dst []byte) []byte {
	return append(dst, 't', 0, 0, 0, 6, 0, 0)
}

func (c *showCall) appendRowDescription(dst []byte, format int16) []byte {
	dst, start := beginMessage(dst, 'T')
	dst = appendInt16(dst, 1)
	dst = appendCString(dst, c.column)
	dst = appendInt32(dst, 0)
	dst = appendInt16(dst, 0)
	dst = appendInt32(dst, oidText)
	dst = appendInt16(dst, -1)
	dst = appendInt32(dst, -1)
	dst = appendInt16(dst, format) // text's binary form is its bytes
	return finishMessage(dst, start)
}

func (c *showCall) execute(s *session, _ [][]byte, _ []int16, _ int16, _ bool) ([]byte, *pgError) {
	v, _ := s.emulatedValue(c.name)
	out, start := beginMessage(nil, 'D')
	out = appendInt16(out, 1)
	out = appendInt32(out, int32(len(v)))
	out = append(out, v...)
	out = finishMessage(out, start)
	return append(out, commandComplete(c.tag)...), nil
}

const oidText = 25

// placeholderSQL runs in place of an emulated statement: it is accepted
// everywhere, changes nothing and returns no row.
const placeholderSQL = "SELECT 1 WHERE false"

// failingSQL runs in place of a statement the gateway refuses: it fails at
// parse time (no such relation), and the client is shown the gateway's
// error instead. The name cannot clash with a real relation.
const failingSQL = `SELECT 1 FROM "dsqlgate: refused statement"`

// failingSQLCode is the error failingSQL raises (undefined_table).
const failingSQLCode = "42P01"

// syntaxErrorSQL fails at the first step of parsing (it ends where a
// table name must come), before the server looks at the transaction's
// state: a stand-in whose error must be the gateway's even in a failed
// transaction.
const syntaxErrorSQL = "SELECT syntax_error FROM"

// syntaxErrorCode is the error syntaxErrorSQL raises (syntax_error).
const syntaxErrorCode = "42601"

// emuChange is a change to an emulated setting.
// emuChangeOf returns the change rw makes to the emulated setting name, or
// nil (rw may be nil).
func (rw *rewrite) emuChangeOf(name string) *emuChange {
	if rw == nil || rw.emu == nil || rw.emu.name != name {
		return nil
	}
	return rw.emu
}

type emuChange struct {
	kind  sqllex.SetKind // SetValue, SetDefault, ResetParam
	scope sqllex.Scope
	name  string
	value string // display value, for SetValue
}

// emulatedSetting is a setting DSQL refuses that the gateway keeps itself.
type emulatedSetting struct {
	def string // display value of PostgreSQL's default
	// normalize checks a SET's values and returns the display value, or
	// the error PostgreSQL (or DSQL, for values it cannot honour) gives.
	normalize func(name string, v []sqllex.Value) (string, *pgError)
}

var emulatedSettings = map[string]emulatedSetting{
	"statement_timeout":                   {def: "0", normalize: normalizeMillis},
	"idle_in_transaction_session_timeout": {def: "0", normalize: normalizeMillis},
	"lock_timeout":                        {def: "0", normalize: normalizeMillis},
	"client_min_messages":                 {def: "notice", normalize: normalizeMessageLevel},
	"synchronous_commit":                  {def: "on", normalize: normalizeSynchronousCommit},
	"standard_conforming_strings":         {def: "on", normalize: normalizeStandardConformingStrings},
	"default_transaction_isolation":       {def: "repeatable read", normalize: normalizeIsolation},
}

func invalidValue(name, value, hint string) *pgError {
	return &pgError{Severity: severityError, Code: "22023", Hint: hint,
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
func normalizeMillis(name string, vals []sqllex.Value) (string, *pgError) {
	v, ok := single(vals)
	if !ok {
		return "", &pgError{Severity: severityError, Code: "22023", Message: fmt.Sprintf("SET %s takes only one argument", name)}
	}
	ms, ok := parseMillis(v.Str)
	if !ok {
		return "", invalidValue(name, v.Str, `Valid units for this parameter are "us", "ms", "s", "min", "h", and "d".`)
	}
	if ms < 0 || ms > 2147483647 {
		return "", &pgError{Severity: severityError, Code: "22023",
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

func normalizeMessageLevel(name string, vals []sqllex.Value) (string, *pgError) {
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

func normalizeSynchronousCommit(name string, vals []sqllex.Value) (string, *pgError) {
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

func normalizeStandardConformingStrings(name string, vals []sqllex.Value) (string, *pgError) {
	v, _ := single(vals)
	b, ok := boolValue(v.Str)
	if !ok || len(vals) != 1 {
		return "", &pgError{Severity: severityError, Code: "22023", Message: fmt.Sprintf("parameter %q requires a Boolean value", name)}
	}
	if !b {
		return "", &pgError{Severity: severityError, Code: codeFeatureNotSupported,
			Message: "standard_conforming_strings = off is not supported: Aurora DSQL always treats backslashes in ordinary string literals as ordinary characters",
			Hint:    "Write escapes as E'...' strings, or leave standard_conforming_strings on (the default)."}
	}
	return "on", nil
}

var isolationLevels = map[string]bool{"serializable": true, "repeatable read": true, "read committed": true, "read uncommitted": true}

func normalizeIsolation(name string, vals []sqllex.Value) (string, *pgError) {
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

// beginIsolation returns the isolation level a BEGIN or START TRANSACTION
// statement asks for, lower case ("" when none, or not one PostgreSQL
// knows: its own error then).
func beginIsolation(text string) string {
	if !containsFoldASCII(text, "isolation") {
		return "" // every plain BEGIN: no scan, no allocation
	}
	var sc sqllex.Scanner
	sc.Init(text)
	var words []string
	for t := sc.Next(); t.Kind != sqllex.EOF; t = sc.Next() {
		if t.Kind == sqllex.Comment {
			continue
		}
		words = append(words, strings.ToLower(t.Text))
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
		if i+3 < len(words) && isolationLevels[words[i+2]+" "+words[i+3]] {
			return words[i+2] + " " + words[i+3]
		}
	}
	return ""
}

func isolationUnsupported(level string) *pgError {
	return &pgError{Severity: severityError, Code: codeFeatureNotSupported,
		Message: fmt.Sprintf("isolation level %s is not supported: Aurora DSQL runs every transaction at REPEATABLE READ", strings.ToUpper(level)),
		Hint:    "Use REPEATABLE READ (DSQL's snapshot isolation with optimistic concurrency), and retry transactions that fail with SQLSTATE 40001."}
}

// refusalHints name the alternative for what DSQL refuses and the gateway
// cannot emulate.
var refusalHints = map[sqllex.Kind]string{
	sqllex.Savepoint: "Aurora DSQL has no savepoints: retry the whole transaction instead of rolling back to a savepoint (in an ORM, turn nested transactions off).",
	sqllex.Listen:    "Aurora DSQL has no LISTEN/NOTIFY: poll a table, or use a queue or event service.",
	sqllex.Notify:    "Aurora DSQL has no LISTEN/NOTIFY: poll a table, or use a queue or event service.",
	sqllex.Unlisten:  "Aurora DSQL has no LISTEN/NOTIFY: poll a table, or use a queue or event service.",
	sqllex.Declare:   "Aurora DSQL has no cursors: page with LIMIT and a key (keyset pagination), or let the driver fetch rows in batches.",
	sqllex.Fetch:     "Aurora DSQL has no cursors: page with LIMIT and a key (keyset pagination), or let the driver fetch rows in batches.",
	sqllex.Move:      "Aurora DSQL has no cursors: page with LIMIT and a key (keyset pagination), or let the driver fetch rows in batches.",
	sqllex.Prepare:   "Aurora DSQL has no SQL-level PREPARE: use the driver's prepared statements (protocol-level Parse/Bind), which the gateway keeps across connections.",
	sqllex.Execute:   "Aurora DSQL has no SQL-level PREPARE: use the driver's prepared statements (protocol-level Parse/Bind), which the gateway keeps across connections.",
	sqllex.Discard:   "Aurora DSQL does not support DISCARD, and through the gateway it is not needed: sessions are reset when an upstream changes hands.",
	sqllex.Lock:      "Aurora DSQL has no explicit table locks: it uses optimistic concurrency; retry transactions that fail with SQLSTATE 40001.",
	sqllex.TwoPhase:  "Aurora DSQL does not support two-phase commit.",
}

const (
	tempTableHint = "Aurora DSQL has no temporary tables: use a regular table (with a session key column) and delete its rows afterwards."
	truncateHint  = "The gateway rewrites TRUNCATE of plain tables to DELETE; TRUNCATE ... CASCADE or RESTART IDENTITY cannot be emulated."
	lockCallHint  = "The gateway answers advisory-lock functions only when the call is the whole statement, with constant or parameter arguments: SELECT pg_advisory_lock($1)."
)

// compatRewrite decides what the compatibility layer does with one
// statement of kind k, given the session's current emulated settings.
// It returns nil for the (common) statements it leaves alone.
func (e *engine) compatRewrite(text string, k sqllex.Kind, params []uint32) *rewrite {
	if k == sqllex.Deallocate {
		// Not a compatibility option: the client's statements have
		// gateway-owned names upstream, so the gateway must answer.
		return e.deallocateRewrite(text)
	}
	if e.plainRoute {
		if rw := e.plainRewrite(text, k); rw != nil {
			return rw
		}
	}
	if !e.compat.enabled {
		return nil
	}
	switch k {
	case sqllex.Set, sqllex.Reset:
		if !e.compat.settings {
			return nil
		}
		st, ok := sqllex.ParseSet(text)
		if !ok {
			return nil
		}
		return e.setRewrite(&st)
	case sqllex.Show:
		if !e.compat.settings {
			return nil
		}
		name, ok := sqllex.ParseShow(text)
		if !ok {
			return nil
		}
		if v, ok := e.emulatedValueLocked(name); ok {
			return &rewrite{text: "SELECT " + sqllex.QuoteLiteral(v) + "::text AS " + sqllex.QuoteIdent(name), tag: "SHOW",
				local: &showCall{name: name, column: name, tag: "SHOW"}}
		}
	case sqllex.Select:
		call, ok := sqllex.ParseSelectCall(text)
		if !ok || (call.Schema != "" && call.Schema != "pg_catalog") {
			return nil
		}
		if call.Name == "current_setting" && e.compat.settings {
			return e.currentSettingRewrite(call)
		}
		if e.compat.advisoryLocks {
			if lc, ok := parseLockCall(call, params); ok {
				return &rewrite{local: lc}
			}
			if isLockFunction(call.Name) {
				return &rewrite{hint: lockCallHint}
			}
		}
	case sqllex.Begin:
		// DSQL refuses other levels at BEGIN too; a transaction it ran
		// at another level would contradict SHOW transaction_isolation.
		if l := beginIsolation(text); e.compat.settings && l != "" && l != "repeatable read" {
			return &rewrite{text: failingSQL, err: isolationUnsupported(l)}
		}
	case sqllex.Truncate:
		if !e.compat.truncate {
			return nil
		}
		ts, ok := sqllex.ParseTruncate(text)
		if !ok || ts.Cascade || ts.RestartIdentity || len(ts.Tables) != 1 {
			return &rewrite{hint: truncateHint}
		}
		tbl := ts.Tables[0]
		del := "DELETE FROM "
		if tbl.Only {
			del += "ONLY "
		}
		return &rewrite{text: del + tbl.Name, tag: "TRUNCATE TABLE"}
	case sqllex.Other:
		if isCreateTemp(text) {
			return &rewrite{hint: tempTableHint}
		}
	default:
		if h, ok := refusalHints[k]; ok {
			return &rewrite{hint: h}
		}
	}
	return nil
}

// deallocateRewrite answers SQL DEALLOCATE, which drivers send to drop a
// protocol-level prepared statement (psycopg when its statement cache
// rotates, some ORMs on close) and which DSQL refuses for a name. Upstream
// statements are shared by every client preparing the same text, so only
// the client's own names go (as Close does); the upstream LRU reclaims the
// rest. Not transactional, as in PostgreSQL: it takes effect when it runs,
// and whether the statement exists is checked then too (deallocateMissing),
// not when a DEALLOCATE is prepared.
func (e *engine) deallocateRewrite(text string) *rewrite {
	name, all, ok := sqllex.ParseDeallocate(text)
	if !ok {
		return nil // not something PostgreSQL accepts either: its error
	}
	if all {
		return &rewrite{text: placeholderSQL, tag: "DEALLOCATE ALL", hideRows: true, dealloc: &deallocation{all: true}}
	}
	if e.plainRoute && e.sqlPreparedLocked(name) {
		// A statement of the client's own SQL PREPARE: PostgreSQL's.
		return &rewrite{sqlDeallocate: name}
	}
	return &rewrite{text: placeholderSQL, tag: "DEALLOCATE", hideRows: true, dealloc: &deallocation{name: name}}
}

// deallocation is the DEALLOCATE rw stands for (nil: none).
func (rw *rewrite) deallocation() *deallocation {
	if rw == nil {
		return nil
	}
	return rw.dealloc
}

// deallocateMissing is the error of a DEALLOCATE of a statement the client
// does not have, or nil.
func (e *engine) deallocateMissing(d *deallocation) *pgError {
	if d.all || e.stmts.get(d.name) != nil {
		return nil
	}
	return statementMissing(d.name)
}

func statementMissing(name string) *pgError {
	return &pgError{Severity: severityError, Code: codeInvalidSQLStatementName,
		Message: fmt.Sprintf("prepared statement %q does not exist", name)}
}

// applyLocked drops what d names from the client's prepared statements and
// returns them (to put back if the DEALLOCATE does not run after all).
func (d *deallocation) applyLocked(e *engine) (dropped []*preparedStmt) {
	if d.all {
		dropped = slices.Collect(maps.Values(e.stmts.byName))
		e.stmts.clear() // the unnamed statement stays, as in PostgreSQL
	} else if st := e.stmts.get(d.name); st != nil {
		dropped = append(dropped, st)
		e.stmts.del(d.name)
	}
	if e.ownNames() {
		for _, st := range dropped {
			e.closeLaterLocked(st.name)
		}
	}
	return dropped
}

// setRewrite handles SET and RESET of emulated settings and the
// transaction-isolation forms DSQL refuses.
func (e *engine) setRewrite(st *sqllex.SetStmt) *rewrite {
	refuse := func(e *pgError) *rewrite { return &rewrite{text: failingSQL, err: e} }
	switch st.Kind {
	case sqllex.SetTransaction, sqllex.SetSessionCharacteristics:
		for _, m := range st.TransactionModes {
			level, isLevel := strings.CutPrefix(m, "isolation level ")
			switch {
			case isLevel && level != "repeatable read":
				return refuse(isolationUnsupported(level))
			case !isLevel:
				return nil // READ ONLY and the like: DSQL's own answer
			}
		}
		rw := &rewrite{text: placeholderSQL, tag: "SET", hideRows: true}
		if st.Kind == sqllex.SetSessionCharacteristics {
			rw.emu = &emuChange{kind: sqllex.SetValue, name: "default_transaction_isolation", value: "repeatable read"}
		}
		return rw
	case sqllex.SetValue, sqllex.SetDefault, sqllex.ResetParam:
	default:
		return nil
	}
	es, ok := emulatedSettings[st.Name]
	if !ok {
		return nil
	}
	tag := "SET"
	if st.Kind == sqllex.ResetParam {
		tag = "RESET"
	}
	ch := &emuChange{kind: st.Kind, scope: st.Scope, name: st.Name}
	if st.Kind == sqllex.SetValue {
		v, err := es.normalize(st.Name, st.Values)
		if err != nil {
			return refuse(err)
		}
		ch.value = v
	}
	return &rewrite{text: placeholderSQL, tag: tag, hideRows: true, emu: ch}
}

// currentSettingRewrite answers current_setting('<emulated>'[, missing_ok])
// with the session's value.
func (e *engine) currentSettingRewrite(call sqllex.Call) *rewrite {
	if len(call.Args) < 1 || len(call.Args) > 2 {
		return nil
	}
	name, ok := stringConstant(call.Args[0])
	if !ok {
		return nil
	}
	v, ok := e.emulatedValueLocked(strings.ToLower(name))
	if !ok {
		return nil
	}
	alias := call.Alias
	if alias == "" {
		alias = "current_setting"
	}
	return &rewrite{text: "SELECT " + sqllex.QuoteLiteral(v) + "::text AS " + sqllex.QuoteIdent(alias),
		local: &showCall{name: strings.ToLower(name), column: alias, tag: "SELECT 1"}}
}

// stringConstant decodes a lone SQL string constant ('x', E'x').
func stringConstant(text string) (string, bool) {
	var sc sqllex.Scanner
	sc.Init(text)
	tok := sc.Next()
	if tok.Kind != sqllex.String || sc.Next().Kind != sqllex.EOF {
		return "", false
	}
	return tok.StringValue()
}

// emulatedValue is the session's current value of an emulated setting
// (transaction_isolation is always repeatable read on DSQL).
func (s *session) emulatedValue(name string) (string, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.emulatedValueLocked(name)
}

func (e *engine) emulatedValueLocked(name string) (string, bool) {
	if name == "transaction_isolation" {
		return "repeatable read", true
	}
	es, ok := emulatedSettings[name]
	if !ok {
		return "", false
	}
	if v, ok := e.gucs.emu[name]; ok {
		return v, true
	}
	return es.def, true
}

// isCreateTemp recognises CREATE [GLOBAL|LOCAL] {TEMP|TEMPORARY} TABLE.
func isCreateTemp(text string) bool {
	var sc sqllex.Scanner
	sc.Init(text)
	if !sc.Next().IsKeyword("create") {
		return false
	}
	tok := sc.Next()
	if tok.IsKeyword("global") || tok.IsKeyword("local") {
		tok = sc.Next()
	}
	return tok.IsKeyword("temp") || tok.IsKeyword("temporary")
}

// startupEmulated splits the emulated settings out of a client's startup
// parameters, checking their values as PostgreSQL would.
func startupEmulated(params map[string]string) (map[string]string, *pgError) {
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

// rewriteError shows the client the error the compatibility layer stands
// for: the gateway's own (forced, or rw.err) instead of the stand-in's,
// or the server's with a hint added to a DSQL refusal. standIn is the
// SQLSTATE the stand-in raises (failingSQLCode, syntaxErrorCode): any other
// error is the server's to report, as PostgreSQL reports it before the
// statement's own (25P02 in a failed transaction, a syntax error elsewhere
// in the query).
func rewriteError(msg []byte, rw *rewrite, forced *pgError, standIn string) []byte {
	if forced == nil && rw != nil {
		forced = rw.err
	}
	if forced != nil {
		if sqlstateOf(msg) == standIn {
			return appendErrorResponse(nil, forced)
		}
		return msg
	}
	if rw == nil || rw.hint == "" {
		return msg
	}
	er, err := decodeError(msg)
	want := rw.hintCode
	if want == "" {
		want = codeFeatureNotSupported
	}
	if err != nil || er.Code != want || er.Hint != "" {
		return msg
	}
	er.Hint = rw.hint
	out, err := er.Encode(nil)
	if err != nil {
		return msg
	}
	return out
}

// belowMinMessagesLocked reports whether a NoticeResponse is below the
// session's client_min_messages and must be dropped. INFO is always sent,
// as PostgreSQL does.
func (e *engine) belowMinMessagesLocked(msg []byte) bool {
	level, ok := e.gucs.emu["client_min_messages"]
	if !ok || !e.compat.settings {
		return false
	}
	sev := strings.ToLower(severityOf(msg))
	if sev == "info" {
		return false
	}
	got, known := messageLevels[sev]
	return known && got < messageLevels[level]
}

// statementTimeout is the session's statement_timeout (0: none).
func (s *session) statementTimeout() time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.statementTimeoutLocked()
}

func (e *engine) statementTimeoutLocked() time.Duration {
	return e.emulatedMillisLocked("statement_timeout")
}

func (e *engine) emulatedMillisLocked(name string) time.Duration {
	if !e.compat.settings {
		return 0
	}
	return millis(e.gucs.emu[name])
}

// millis is an emulated duration setting's display value as a duration
// (0 when empty or not one).
func millis(v string) time.Duration {
	ms, _ := parseMillis(v)
	return time.Duration(ms) * time.Millisecond
}
