package dsqlsim

import (
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
// waiting for a row or a transaction is a data conflict: PostgreSQL gives
// it a context ("while updating tuple (0,1) in relation ...", localized
// with lc_messages). One waiting for a table lock is a schema conflict: it
// has no context of its own (a wait inside a function, which DSQL clients
// cannot define, would have the function's and count as data).
func conflictError(e *pgproto3.ErrorResponse) *pgproto3.ErrorResponse {
	var msg string
	switch e.Code {
	case pgerrcode.SerializationFailure, pgerrcode.DeadlockDetected:
		msg = msgConflictData
	case pgerrcode.LockNotAvailable:
		msg = msgConflictData
		if e.Where == "" {
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
