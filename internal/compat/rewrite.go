package compat

import (
	"strings"

	"github.com/jackc/pgerrcode"

	"github.com/dsqlgate/dsqlgate/pgwire/sqllex"
)

// Rewrite is what the compatibility layer does with one statement: data
// that the session engine carries out. The zero value changes nothing.
// Immutable once made.
//
// The gateway does not answer emulated statements itself (Show and Lock
// aside); it sends a stand-in (Text) that the server runs in the
// statement's place, in the same transaction with the same ordering and
// error semantics, and the engine rewrites the stand-in's reply: the rows
// of a placeholder are hidden, the command tag is the original's, an error
// becomes the error PostgreSQL would give.
type Rewrite struct {
	// Text replaces the statement upstream ("" keeps it).
	Text string
	// Tag replaces the CommandComplete tag ("" keeps it).
	Tag string
	// HideRows: Text is a placeholder whose rows the client must not
	// see; a Describe of it answers NoData.
	HideRows bool
	// Change is an emulated SET or RESET, applied when the stand-in
	// completes.
	Change *SettingChange
	// Err, when set, is the error the stand-in provokes on purpose (Text
	// is FailingSQL: it fails at parse time, with a real error's
	// transaction semantics); the client sees Err instead of the
	// server's.
	Err *Error
	// Hint is added to an error of SQLSTATE HintCode (0A000 when empty)
	// that the server reports for the statement: a DSQL refusal the
	// gateway cannot emulate.
	Hint     string
	HintCode string
	// Show is answered by the gateway itself with the value of an
	// emulated setting at execution time. Text, then, is the same answer
	// with the value at decision time, for where the statement must go
	// upstream (a Query of several statements).
	Show *Show
	// Lock is an advisory-lock call the gateway answers itself, never
	// sent upstream.
	Lock *LockCall
	// Dealloc is a SQL DEALLOCATE of the client's protocol-level
	// statements, applied when the placeholder completes.
	Dealloc *Deallocation
	// ErrCode is the SQLSTATE of the stand-in's deliberate failure that
	// Err replaces (FailingSQLCode when empty): a stand-in that fails
	// only when a condition holds at run time (see TruncatePlan).
	ErrCode string
	// Truncate is a TRUNCATE that, outside a transaction block, the
	// gateway may run itself in batches (see TruncatePlan); Text is what
	// runs in its place anywhere else.
	Truncate *TruncatePlan
}

// Show is SHOW name or SELECT current_setting('name') of an emulated
// setting: one text column named Column, one row, command tag Tag.
type Show struct {
	Name   string // the setting
	Column string
	Tag    string // "SHOW" or "SELECT 1"
}

// Deallocation is DEALLOCATE [PREPARE] {name | ALL}.
type Deallocation struct {
	Name string
	All  bool
}

// The stand-ins the server runs in place of a statement.
const (
	// PlaceholderSQL runs in place of an emulated statement: it is
	// accepted everywhere, changes nothing and returns no row.
	PlaceholderSQL = "SELECT 1 WHERE false"

	// FailingSQL runs in place of a statement the gateway refuses: it
	// fails at parse time (no such relation, FailingSQLCode), and the
	// client is shown the gateway's error instead. The name cannot clash
	// with a real relation.
	FailingSQL     = `SELECT 1 FROM "dsqlgate: refused statement"`
	FailingSQLCode = pgerrcode.UndefinedTable

	// SyntaxErrorSQL fails at the first step of parsing (it ends where a
	// table name must come, SyntaxErrorCode), before the server looks at
	// the transaction's state: a stand-in whose error must be the
	// gateway's even in a failed transaction.
	SyntaxErrorSQL  = "SELECT syntax_error FROM"
	SyntaxErrorCode = pgerrcode.SyntaxError
)

// Options say which parts of the compatibility layer a session uses (the
// route's compat configuration).
type Options struct {
	Settings      bool // emulated settings, isolation refusals
	AdvisoryLocks bool // advisory-lock calls answered by the gateway
	Truncate      bool // TRUNCATE as DELETE
}

// refusalHints name the alternative for what DSQL refuses and the gateway
// cannot emulate. A new refusal of a statement kind is an entry here.
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
	truncateHint  = "The gateway runs TRUNCATE [TABLE] [ONLY] name [, ...] [CONTINUE IDENTITY] [RESTRICT] as DELETE; other forms cannot be emulated."
	lockCallHint  = "The gateway answers advisory-lock functions only when the call is the whole statement, with constant or parameter arguments: SELECT pg_advisory_lock($1)."
)

// Decide returns what the compatibility layer does with one statement of
// kind k (st, lexed once by the caller; its parsers read its tokens, with
// the parameter types paramOIDs a Parse declared),
// given the session's emulated settings emu (see Value). It returns nil
// for the (common) statements it leaves alone, and never alters a
// statement it does not fully recognise. DEALLOCATE is not decided here
// (see Deallocate): it is answered whatever the options.
func Decide(st sqllex.Stmt, k sqllex.Kind, paramOIDs []uint32, opt Options, emu map[string]string) *Rewrite {
	if err := touchesLockTable(st); err != nil {
		return refuse(err)
	}
	if err := ClientEncodingRefusal(st, k); err != nil {
		return refuse(err)
	}
	switch k {
	case sqllex.Select, sqllex.With, sqllex.Values, sqllex.Insert, sqllex.Update, sqllex.Delete:
		// set_config() may stand anywhere in a query.
		if opt.Settings {
			if rw := setConfigRewrite(st); rw != nil {
				return rw
			}
		}
	case sqllex.Other:
		// Nor is a call rewritten in other statements (EXPLAIN, CREATE
		// VIEW or FUNCTION, ...), where a rewrite could outlive the
		// session: DSQL's refusal, with the hint.
		if opt.Settings && setConfigRewrite(st) != nil {
			return &Rewrite{Hint: setConfigHint}
		}
	}
	switch k {
	case sqllex.Set, sqllex.Reset:
		if !opt.Settings {
			return nil
		}
		set, ok := st.Set()
		if !ok {
			return nil
		}
		return setRewrite(&set)
	case sqllex.Show:
		if !opt.Settings {
			return nil
		}
		name, ok := st.Show()
		if !ok {
			return nil
		}
		if v, ok := Value(emu, name); ok {
			return &Rewrite{Text: "SELECT " + sqllex.QuoteLiteral(v) + "::text AS " + sqllex.QuoteIdent(name), Tag: "SHOW",
				Show: &Show{Name: name, Column: name, Tag: "SHOW"}}
		}
	case sqllex.Select:
		call, ok := st.SelectCall()
		if !ok || (call.Schema != "" && call.Schema != "pg_catalog") {
			return nil
		}
		if call.Name == "current_setting" && opt.Settings {
			return currentSettingRewrite(call, emu)
		}
		if opt.AdvisoryLocks {
			if lc, ok := ParseLockCall(call, paramOIDs); ok {
				return &Rewrite{Lock: lc}
			}
			if isLockFunction(call.Name) {
				return &Rewrite{Hint: lockCallHint}
			}
		}
	case sqllex.Begin:
		// DSQL refuses other levels at BEGIN too; a transaction it ran
		// at another level would contradict SHOW transaction_isolation.
		if l := st.IsolationLevel(); opt.Settings && l != "" && l != "repeatable read" {
			return refuse(isolationUnsupported(l))
		}
	case sqllex.Truncate:
		if !opt.Truncate {
			return nil
		}
		return truncateRewrite(st)
	case sqllex.Other:
		if IsCreateTemp(st) {
			return &Rewrite{Hint: tempTableHint}
		}
	default:
		if h, ok := refusalHints[k]; ok {
			return &Rewrite{Hint: h}
		}
	}
	return nil
}

// refuse sends FailingSQL in the statement's place and shows the client
// err instead of its error.
func refuse(err *Error) *Rewrite { return &Rewrite{Text: FailingSQL, Err: err} }

// Deallocate answers SQL DEALLOCATE, which drivers send to drop a
// protocol-level prepared statement (psycopg when its statement cache
// rotates, some ORMs on close) and which DSQL refuses for a name: a
// placeholder whose completion drops the client's statements. Upstream
// statements are shared by every client preparing the same text, so only
// the client's own names go (as Close does). Not transactional, as in
// PostgreSQL: whether the statement exists is checked when it runs. It
// returns nil for a text PostgreSQL would not accept either (its error).
func Deallocate(st sqllex.Stmt) *Rewrite {
	name, all, ok := st.Deallocate()
	switch {
	case !ok:
		return nil
	case all:
		return &Rewrite{Text: PlaceholderSQL, Tag: "DEALLOCATE ALL", HideRows: true, Dealloc: &Deallocation{All: true}}
	}
	return &Rewrite{Text: PlaceholderSQL, Tag: "DEALLOCATE", HideRows: true, Dealloc: &Deallocation{Name: name}}
}

// setRewrite handles SET and RESET of emulated settings and the
// transaction-isolation forms DSQL refuses.
func setRewrite(st *sqllex.SetStmt) *Rewrite {
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
		rw := &Rewrite{Text: PlaceholderSQL, Tag: "SET", HideRows: true}
		if st.Kind == sqllex.SetSessionCharacteristics {
			rw.Change = &SettingChange{Kind: sqllex.SetValue, Name: "default_transaction_isolation", Value: "repeatable read"}
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
	ch := &SettingChange{Kind: st.Kind, Scope: st.Scope, Name: st.Name}
	if st.Kind == sqllex.SetValue {
		v, err := es.normalize(st.Name, st.Values)
		if err != nil {
			return refuse(err)
		}
		ch.Value = v
	}
	return &Rewrite{Text: PlaceholderSQL, Tag: tag, HideRows: true, Change: ch}
}

// currentSettingRewrite answers current_setting('<emulated>'[, missing_ok])
// with the session's value.
func currentSettingRewrite(call sqllex.Call, emu map[string]string) *Rewrite {
	if len(call.Args) < 1 || len(call.Args) > 2 {
		return nil
	}
	name, ok := stringConstant(call.Args[0])
	if !ok {
		return nil
	}
	name = strings.ToLower(name)
	v, ok := Value(emu, name)
	if !ok {
		return nil
	}
	alias := call.Alias
	if alias == "" {
		alias = "current_setting"
	}
	return &Rewrite{Text: "SELECT " + sqllex.QuoteLiteral(v) + "::text AS " + sqllex.QuoteIdent(alias),
		Show: &Show{Name: name, Column: alias, Tag: "SELECT 1"}}
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

// IsCreateTemp recognises CREATE [GLOBAL|LOCAL] {TEMP|TEMPORARY} TABLE.
func IsCreateTemp(st sqllex.Stmt) bool {
	t := st.Leading(3)
	if !t[0].IsKeyword("create") {
		return false
	}
	i := 1
	if t[i].IsKeyword("global") || t[i].IsKeyword("local") {
		i++
	}
	return t[i].IsKeyword("temp") || t[i].IsKeyword("temporary")
}
