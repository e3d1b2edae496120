package pgwire

import (
	"maps"
	"slices"
	"strings"

	"github.com/jackc/pgerrcode"

	"github.com/dsqlgate/dsqlgate/internal/compat"
	"github.com/dsqlgate/dsqlgate/pgwire/sqllex"
)

// In transaction pool mode a client's next transaction may run on another
// upstream, and the one it leaves serves other clients of the same user.
// On a PostgreSQL route some objects outlive their transaction on the
// backend that made them, where the client will not find them again and
// the next client of that upstream would. Each gets one of three answers:
//
//   - refused, with an error that names the pool mode: LISTEN (a
//     notification would go to whichever client holds the upstream), a
//     temporary table or other object without ON COMMIT DROP, a cursor
//     WITH HOLD, a session-level advisory lock (the lock would stay with
//     the upstream, and an unlock could reach another backend);
//   - cleaned up when the transaction ends: SQL PREPARE (a PREPARE and its
//     EXECUTEs in one transaction keep working; an EXECUTE in a later
//     transaction gets PostgreSQL's "does not exist" with a hint);
//   - left alone: what ends with its transaction (ON COMMIT DROP, a cursor
//     without HOLD, pg_advisory_xact_lock, NOTIFY).
//
// Session mode keeps the upstream for the client, and DSQL routes refuse
// all of these themselves (advisory locks are the gateway's own there).

// deallocateAllSQL drops every prepared statement of an upstream.
const deallocateAllSQL = "DEALLOCATE ALL"

// txPoolHint is the way out every refusal offers.
const txPoolHint = " or set pool.mode: session for this route, which keeps one upstream connection per client."

// txPoolRefusal is the error for a statement of kind k that transaction
// pooling cannot carry on a PostgreSQL route, or nil.
func txPoolRefusal(st sqllex.Stmt, k sqllex.Kind) *pgError {
	refuse := func(what, instead string) *pgError {
		return &pgError{Severity: severityError, Code: pgerrcode.FeatureNotSupported,
			Message: what + " is not supported in transaction pool mode: the next transaction may run on another upstream connection",
			Hint:    instead + txPoolHint}
	}
	switch k {
	case sqllex.Listen:
		return refuse("LISTEN", "Listen on a connection of its own in a route with pool.mode: session,")
	case sqllex.Declare:
		if st.HasKeywords("with", "hold") {
			return refuse("DECLARE ... WITH HOLD", "Use a cursor without HOLD inside a transaction,")
		}
	case sqllex.Other:
		if (compat.IsCreateTemp(st) || isCreateInTempSchema(st)) && !st.HasKeywords("on", "commit", "drop") {
			return refuse("a temporary object that outlives its transaction", "Create temporary tables with ON COMMIT DROP inside a transaction,")
		}
	case sqllex.Select, sqllex.With:
		if containsFoldASCII(st.Text, "temp") && (st.HasKeywords("into", "temp") || st.HasKeywords("into", "temporary")) {
			return refuse("SELECT INTO TEMP", "Create temporary tables with ON COMMIT DROP inside a transaction,")
		}
	}
	if callsSessionLock(st) {
		return refuse("a session-level advisory lock", "Use pg_advisory_xact_lock or pg_try_advisory_xact_lock (released when the transaction ends),")
	}
	return nil
}

// txPoolExecuteHint is added to the error of an EXECUTE in transaction
// pool mode (most likely of a statement a PREPARE in an earlier
// transaction made, which was deallocated when that one ended).
const txPoolExecuteHint = "In transaction pool mode a SQL PREPARE lasts until the end of its transaction: PREPARE and EXECUTE in one transaction, use the driver's protocol-level prepared statements (which the gateway carries between connections)," + txPoolHint

// sessionLockFuncs are PostgreSQL's session-level advisory lock functions.
var sessionLockFuncs = map[string]bool{
	"pg_advisory_lock": true, "pg_advisory_lock_shared": true,
	"pg_try_advisory_lock": true, "pg_try_advisory_lock_shared": true,
	"pg_advisory_unlock": true, "pg_advisory_unlock_shared": true, "pg_advisory_unlock_all": true,
}

// callsSessionLock reports whether text calls a session-level advisory
// lock function anywhere (not inside a string, so not in a function body
// being defined).
func callsSessionLock(st sqllex.Stmt) bool {
	if !containsFoldASCII(st.Text, "advisory") {
		return false // the common case, without reading its tokens
	}
	return st.HasIdent(func(name string) bool { return sessionLockFuncs[name] })
}

// isCreateInTempSchema recognises a CREATE of an object in pg_temp (CREATE
// TABLE pg_temp.t, CREATE FUNCTION pg_temp.f, ...).
func isCreateInTempSchema(st sqllex.Stmt) bool {
	if !containsFoldASCII(st.Text, "pg_temp") || !st.Leading(1)[0].IsKeyword("create") {
		return false
	}
	return st.HasIdent(func(name string) bool { return name == "pg_temp" })
}

// preparedName is the name a SQL PREPARE statement gives, folded as
// PostgreSQL folds it ("" when text is not one).
func preparedName(st sqllex.Stmt) string {
	name, _ := st.PrepareName()
	return name
}

// plainRewrite is what the gateway does with a statement of kind k on a
// PostgreSQL route (nil: nothing): in transaction pool mode, what that
// mode cannot carry; in both modes, it notes SQL PREPAREs (so that a SQL
// DEALLOCATE of one reaches PostgreSQL).
func (e *engine) plainRewrite(st sqllex.Stmt, k sqllex.Kind) *rewrite {
	if e.txPooling {
		if pe := txPoolRefusal(st, k); pe != nil {
			return &rewrite{text: failingSQL, err: pe}
		}
		if k == sqllex.Execute {
			return &rewrite{hint: txPoolExecuteHint, hintCode: pgerrcode.InvalidSQLStatementName}
		}
	}
	switch k {
	case sqllex.Prepare:
		if name := preparedName(st); name != "" {
			return &rewrite{sqlPrepare: name}
		}
	case sqllex.Unlisten:
		if strings.Contains(st.Text, "*") {
			return &rewrite{unlistenAll: true}
		}
	}
	return nil
}

// sqlPreparedLocked reports whether name is (as far as the gateway saw)
// a statement of the client's SQL PREPARE and not one of its
// protocol-level statements.
func (e *engine) sqlPreparedLocked(name string) bool {
	if e.stmts.get(name) != nil || !e.ownNames() && strings.HasPrefix(name, upstreamNamePrefix) {
		return false
	}
	return e.sqlPrepared[name] || e.sqlPreparedAll
}

// notePreparedLocked records a SQL PREPARE that completed on a
// PostgreSQL route; in transaction pool mode it is deallocated when its
// transaction ends. Past the client's statement limit the gateway stops
// counting: DEALLOCATE ALL cleans up instead, and every SQL DEALLOCATE of
// a name not among the client's protocol-level statements goes upstream.
func (e *engine) notePreparedLocked(name string) {
	if e.sqlPrepared == nil {
		e.sqlPrepared = map[string]bool{}
	}
	if max := e.host.limits().MaxClientStatements; max > 0 && len(e.sqlPrepared) >= max {
		e.sqlPreparedAll = true
		return
	}
	e.sqlPrepared[name] = true
}

// takePreparedLocked returns the statement that deallocates what SQL
// PREPAREs left on the upstream (or ""), and forgets them.
func (e *engine) takePreparedLocked() string {
	if len(e.sqlPrepared) == 0 && !e.sqlPreparedAll {
		return ""
	}
	var b strings.Builder
	if e.sqlPreparedAll {
		b.WriteString(deallocateAllSQL)
	} else {
		for _, name := range slices.Sorted(maps.Keys(e.sqlPrepared)) {
			b.WriteString("DEALLOCATE ")
			b.WriteString(sqllex.QuoteIdent(name))
			b.WriteString(";")
		}
	}
	clear(e.sqlPrepared)
	e.sqlPreparedAll = false
	return b.String()
}

// containsFoldASCII reports whether s contains word (lower case ASCII),
// ignoring ASCII case.
func containsFoldASCII(s, word string) bool {
	for i := 0; i+len(word) <= len(s); i++ {
		j := 0
		for j < len(word) {
			c := s[i+j]
			if 'A' <= c && c <= 'Z' {
				c += 'a' - 'A'
			}
			if c != word[j] {
				break
			}
			j++
		}
		if j == len(word) {
			return true
		}
	}
	return false
}
