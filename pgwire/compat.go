package pgwire

import (
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/dsqlgate/dsqlgate/internal/compat"
	"github.com/dsqlgate/dsqlgate/pgwire/sqllex"
	"github.com/jackc/pgerrcode"
)

// This file carries out the DSQL compatibility layer's decisions
// (internal/compat, README "DSQL compatibility"): compat says what to do
// with a statement (a stand-in to send, a tag to show, rows to hide, an
// error or hint to show, a setting that changes, a call to answer here),
// and the engine does it. The rules themselves, and their tests, are
// compat's; what is here is how a session applies them.

// rewrite is what the engine does with one statement instead of sending
// it as it came: compat's decision (rewriteOf), or the engine's own on a
// PostgreSQL route and in transaction pool mode (plainRewrite, the SQL
// PREPARE and UNLISTEN fields). The zero value changes nothing. Immutable
// once made.
type rewrite struct {
	// text replaces the statement upstream ("" keeps it).
	text string
	// tag replaces the CommandComplete tag ("" keeps it).
	tag string
	// hideRows: the stand-in is a placeholder whose rows the client must
	// not see; a Describe of it answers NoData.
	hideRows bool
	// emu is an emulated SET/RESET applied when the stand-in completes.
	emu *compat.SettingChange
	// err, when set, is the error the stand-in provokes on purpose (it
	// fails at parse time, with a real error's transaction semantics); the
	// client sees err instead of the server's.
	err *pgError
	// errCode is the SQLSTATE of the stand-in's failure that err replaces
	// ("": failingSQLCode, or the caller's standIn).
	errCode string
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
	dealloc *compat.Deallocation
	// sqlPrepare is the name a SQL PREPARE gives, in transaction pool
	// mode on a PostgreSQL route: deallocated when its transaction ends.
	sqlPrepare string
	// sqlDeallocate is the name a SQL DEALLOCATE passed to PostgreSQL
	// drops (a statement of the client's SQL PREPARE).
	sqlDeallocate string
	// unlistenAll: UNLISTEN * (the session stops listening).
	unlistenAll bool
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
type showCall struct{ *compat.Show }

func (c *showCall) appendParameterDescription(dst []byte) []byte {
	return append(dst, 't', 0, 0, 0, 6, 0, 0)
}

func (c *showCall) appendRowDescription(dst []byte, format int16) []byte {
	dst, start := beginMessage(dst, 'T')
	dst = appendInt16(dst, 1)
	dst = appendCString(dst, c.Column)
	dst = appendInt32(dst, 0)
	dst = appendInt16(dst, 0)
	dst = appendInt32(dst, oidText)
	dst = appendInt16(dst, -1)
	dst = appendInt32(dst, -1)
	dst = appendInt16(dst, format) // text's binary form is its bytes
	return finishMessage(dst, start)
}

func (c *showCall) execute(s *session, _ [][]byte, _ []int16, _ int16, _ bool) ([]byte, *pgError) {
	v, _ := s.emulatedValue(c.Name)
	out, start := beginMessage(nil, 'D')
	out = appendInt16(out, 1)
	out = appendInt32(out, int32(len(v)))
	out = append(out, v...)
	out = finishMessage(out, start)
	return append(out, commandComplete(c.Tag)...), nil
}

// oidText is the type of the value SHOW answers.
const oidText = compat.OIDText

// The stand-ins compat sends in a statement's place (see there).
const (
	placeholderSQL  = compat.PlaceholderSQL
	failingSQL      = compat.FailingSQL
	failingSQLCode  = compat.FailingSQLCode
	syntaxErrorSQL  = compat.SyntaxErrorSQL
	syntaxErrorCode = compat.SyntaxErrorCode
)

// emuChangeOf returns the change rw makes to the emulated setting name, or
// nil (rw may be nil).
func (rw *rewrite) emuChangeOf(name string) *compat.SettingChange {
	if rw == nil || rw.emu == nil || rw.emu.Name != name {
		return nil
	}
	return rw.emu
}

// compatRewrite decides what the compatibility layer does with one
// statement of kind k, given the session's current emulated settings.
// It returns nil for the (common) statements it leaves alone.
func (e *engine) compatRewrite(st sqllex.Stmt, k sqllex.Kind, params []uint32) *rewrite {
	if k == sqllex.Deallocate {
		// Not a compatibility option: the client's statements have
		// gateway-owned names upstream, so the gateway must answer.
		return e.deallocateRewrite(st)
	}
	if !e.compat.enabled {
		// On every route: the gateway reads statements as UTF-8 (compat
		// decides it with the rest where the layer is on).
		if err := compat.ClientEncodingRefusal(st, k); err != nil {
			return rewriteOf(&compat.Rewrite{Text: compat.FailingSQL, Err: err})
		}
	}
	if e.plainRoute {
		if rw := e.plainRewrite(st, k); rw != nil {
			return rw
		}
	}
	if !e.compat.enabled {
		return nil
	}
	opt := compat.Options{Settings: e.compat.settings, AdvisoryLocks: e.compat.advisoryLocks, Truncate: e.compat.truncate}
	d := compat.Decide(st, k, params, opt, e.gucs.emu)
	rw := rewriteOf(d)
	// A TRUNCATE in a simple Query (a lexed statement; a Parse's is not)
	// while the session is idle is run by the gateway in batches
	// (truncate.go), when it is the Query's only statement; anywhere else
	// (a transaction block, the extended protocol, whose statement may be
	// executed in one later) the stand-in runs.
	if d != nil && d.Truncate != nil && st.Lexed() && e.txStatus == 'I' {
		rw.local = &truncateCall{plan: d.Truncate}
	}
	return rw
}

// rewriteOf is the engine's form of compat's decision (nil: none).
func rewriteOf(d *compat.Rewrite) *rewrite {
	if d == nil {
		return nil
	}
	rw := &rewrite{text: d.Text, tag: d.Tag, hideRows: d.HideRows, emu: d.Change,
		hint: d.Hint, hintCode: d.HintCode, dealloc: d.Dealloc, errCode: d.ErrCode}
	if d.Err != nil {
		rw.err = errorOf(d.Err)
	}
	switch {
	case d.Show != nil:
		rw.local = &showCall{d.Show}
	case d.Lock != nil:
		rw.local = &lockCall{d.Lock}
	}
	return rw
}

// errorOf is compat's error as the ErrorResponse the client gets.
func errorOf(e *compat.Error) *pgError {
	return &pgError{Severity: severityError, Code: e.Code, Message: e.Message, Detail: e.Detail, Hint: e.Hint}
}

// deallocateRewrite answers SQL DEALLOCATE (compat.Deallocate), except a
// DEALLOCATE of a statement of the client's own SQL PREPARE on a
// PostgreSQL route, which is PostgreSQL's.
func (e *engine) deallocateRewrite(st sqllex.Stmt) *rewrite {
	d := compat.Deallocate(st)
	if d == nil {
		return nil // not something PostgreSQL accepts either: its error
	}
	if name := d.Dealloc.Name; !d.Dealloc.All && e.plainRoute && e.sqlPreparedLocked(name) {
		return &rewrite{sqlDeallocate: name}
	}
	return rewriteOf(d)
}

// deallocation is the DEALLOCATE rw stands for (nil: none).
func (rw *rewrite) deallocation() *compat.Deallocation {
	if rw == nil {
		return nil
	}
	return rw.dealloc
}

// deallocateMissing is the error of a DEALLOCATE of a statement the client
// does not have, or nil.
func (e *engine) deallocateMissing(d *compat.Deallocation) *pgError {
	if d.All || e.stmts.get(d.Name) != nil {
		return nil
	}
	return statementMissing(d.Name)
}

func statementMissing(name string) *pgError {
	return &pgError{Severity: severityError, Code: pgerrcode.InvalidSQLStatementName,
		Message: fmt.Sprintf("prepared statement %q does not exist", name)}
}

// deallocateLocked drops what d names from the client's prepared
// statements and returns them (to put back if the DEALLOCATE does not run
// after all).
func (e *engine) deallocateLocked(d *compat.Deallocation) (dropped []*preparedStmt) {
	if d.All {
		dropped = slices.Collect(maps.Values(e.stmts.byName))
		e.stmts.clear() // the unnamed statement stays, as in PostgreSQL
	} else if st := e.stmts.get(d.Name); st != nil {
		dropped = append(dropped, st)
		e.stmts.del(d.Name)
	}
	if e.ownNames() {
		for _, st := range dropped {
			e.closeLaterLocked(st.name)
		}
	}
	return dropped
}

// emulatedValue is the session's current value of an emulated setting
// (transaction_isolation is always repeatable read on DSQL).
func (s *session) emulatedValue(name string) (string, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.emulatedValueLocked(name)
}

func (e *engine) emulatedValueLocked(name string) (string, bool) {
	return compat.Value(e.gucs.emu, name)
}

// startupEmulated splits the emulated settings out of a client's startup
// parameters (compat.StartupSettings).
func startupEmulated(params map[string]string) (map[string]string, *pgError) {
	emu, err := compat.StartupSettings(params)
	if err != nil {
		return nil, errorOf(err)
	}
	return emu, nil
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
		if rw.errCode != "" {
			standIn = rw.errCode
		}
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
		want = pgerrcode.FeatureNotSupported
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
	return compat.BelowMinMessages(level, severityOf(msg))
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
	return compat.Millis(e.gucs.emu[name])
}
