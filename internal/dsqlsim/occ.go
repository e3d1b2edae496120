package dsqlsim

import (
	"slices"

	"github.com/jackc/pgerrcode"
	"github.com/jackc/pgx/v5/pgproto3"
)

// DSQL's optimistic concurrency, on a PostgreSQL backend.
//
// DSQL runs every transaction at REPEATABLE READ on a snapshot and never
// makes a writer wait: of two transactions that write (or lock) the same
// row, the first to commit wins and the other fails with 40001 "(OC000)";
// a transaction that meets a concurrent schema change fails with 40001
// "(OC001)". The backend sessions run at REPEATABLE READ (so a writer that
// meets a row changed after its snapshot fails with PostgreSQL's own
// 40001) with a lock_timeout of backendLockTimeout, so a writer that meets
// another transaction's uncommitted write, row lock or unique key fails
// at once instead of waiting. Those errors reach the client as DSQL's.
//
// Where it differs from DSQL: PostgreSQL cannot run a write of a row that
// another open transaction wrote without waiting for it, so the loser is
// the transaction that meets the other's write second, and it fails at that
// statement rather than at its COMMIT (the first writer's COMMIT wins, as
// on DSQL, when it commits first). The failed transaction is aborted; its
// COMMIT then fails with 40001 too, as the loser's COMMIT does on DSQL. A
// schema change that meets a transaction using its table fails itself
// with OC001, where DSQL would let it through and fail the other.

// backendLockTimeout is how long a backend statement may wait for a lock
// before it fails: short, because DSQL never waits, but not zero (which
// means no timeout in PostgreSQL).
const backendLockTimeout = "10ms"

// backendSessionParams are the settings every backend session starts with,
// whatever the client asked for.
var backendSessionParams = map[string]string{
	"default_transaction_isolation": "repeatable read",
	"lock_timeout":                  backendLockTimeout,
}

// DSQL's messages for optimistic concurrency conflicts.
const (
	msgConflictData   = "change conflicts with another transaction, please retry: (OC000)"
	msgConflictSchema = "schema has been updated by another transaction, please retry: (OC001)"
)

// conflictError returns the ErrorResponse DSQL sends in place of a backend
// error that stands for a concurrency conflict, or nil when e is none:
// PostgreSQL's serialization failure (a row changed after the snapshot), a
// deadlock, and a lock timeout (the wait DSQL never makes). A lock timeout
// is a schema conflict (OC001) when it was a wait for a table lock: its
// error has no context (a wait for a row or a transaction has one, "while
// updating tuple ..."), and the statement that met it takes no row locks
// (kind: DDL, or a read without FOR UPDATE/SHARE), since a writer queued
// behind another for a row's tuple lock has no context either. Any other
// is a data conflict (OC000).
func conflictError(e *pgproto3.ErrorResponse, kind stmtKind) *pgproto3.ErrorResponse {
	var msg string
	switch e.Code {
	case pgerrcode.SerializationFailure, pgerrcode.DeadlockDetected:
		msg = msgConflictData
	case pgerrcode.LockNotAvailable:
		msg = msgConflictData
		if kind != kindWrite && e.Where == "" {
			msg = msgConflictSchema
		}
	default:
		return nil
	}
	severity := e.Severity
	if severity == "" {
		severity = "ERROR"
	}
	return clientError(severity, pgerrcode.SerializationFailure, msg, "")
}

// stmtKind is what the statements of a Query or Parse do, as far as
// conflictError needs to know.
type stmtKind uint32

const (
	kindWrite stmtKind = iota // may take row locks (DML, FOR UPDATE, anything unknown)
	kindDDL                   // holds a DDL statement
	kindRead                  // only reads without row locks
)

// ddlWords are the leading keywords of the DDL statements kindOf looks for;
// readWords those of statements that read without row locks unless they
// say FOR UPDATE/SHARE.
var (
	ddlWords  = []string{"create", "alter", "drop", "comment", "grant", "revoke"}
	readWords = []string{"select", "table", "values", "show"}
)

// kindOf classifies the body of a Query or Parse message. A body that
// mentions none of ddlWords and readWords is not split into statements.
func kindOf(body []byte) stmtKind {
	mentions := false
	for _, w := range append(ddlWords[:len(ddlWords):len(ddlWords)], readWords...) {
		if bytesContainFold(body, w) {
			mentions = true
			break
		}
	}
	if !mentions {
		return kindWrite
	}
	src := string(body)
	kind := kindRead
	for _, st := range splitStatements(src) {
		words := statementWords{src: src, tokens: st.tokens}
		first := words.word(0)
		switch {
		case slices.Contains(ddlWords, first):
			return kindDDL
		case first == "" || first == "begin" || first == "start" || first == "commit" || first == "end" || first == "rollback":
		case slices.Contains(readWords, first) && !locksRows(src[st.start:st.end]):
		default:
			kind = kindWrite
		}
	}
	return kind
}

// locksRows reports whether a read statement's text asks for row locks.
func locksRows(text string) bool {
	b := []byte(text)
	return bytesContainFold(b, "for update") || bytesContainFold(b, "for share") ||
		bytesContainFold(b, "key share") || bytesContainFold(b, "key update")
}

// bytesContainFold reports whether b contains the lower-case ASCII word w
// in any case.
func bytesContainFold(b []byte, w string) bool {
	for i := 0; i+len(w) <= len(b); i++ {
		j := 0
		for j < len(w) && b[i+j]|0x20 == w[j] {
			j++
		}
		if j == len(w) {
			return true
		}
	}
	return false
}
