package compat

import (
	"strconv"
	"strings"

	"github.com/jackc/pgerrcode"

	"github.com/dsqlgate/dsqlgate/pgwire/sqllex"
)

// TRUNCATE, which DSQL refuses, under DSQL's limits.
//
// TRUNCATE [TABLE] [ONLY] name [, ...] [CONTINUE IDENTITY] [RESTRICT]
// deletes every row of the tables. DSQL lets one transaction change at
// most 3,000 rows (and 10 MiB), so a DELETE of a bigger table fails, half
// way for the client's purposes. So:
//
//   - outside a transaction block (a simple Query of the TRUNCATE alone,
//     when the session is idle), the gateway runs it itself (TruncatePlan):
//     it finds each table's primary key in the catalog (DSQL has no ctid),
//     then deletes TruncateBatch rows at a time, each batch an autocommit
//     DELETE keyed on the primary key, retried after a write conflict
//     (40001), the batch halved after a size limit (54000). It is not
//     atomic: rows inserted meanwhile may survive, and a failure half way
//     leaves the rest (the error says how many rows went). A table without
//     a primary key (not possible on DSQL) is deleted in one statement,
//     which fails as below when over the limit;
//   - anywhere else (in a transaction block, among other statements of a
//     Query, through the extended protocol) it runs as one DELETE guarded
//     by a count: over DSQLRowLimit rows the guard fails before anything
//     is deleted and the client gets 54000 saying why and what to do,
//     rather than DSQL's row limit half way. Several tables at once are
//     refused there (0A000): one statement can delete from one table only.
//   - RESTART IDENTITY (sequences cannot be reset in a transaction that
//     changes rows, on DSQL) and CASCADE (the referencing tables are not
//     known here) are refused with 0A000 and a hint.

// DSQLRowLimit is the most rows one DSQL transaction may change.
const DSQLRowLimit = 3000

// TruncateBatch is how many rows each DELETE of a batched TRUNCATE
// removes: well under DSQLRowLimit, and under 10 MiB for rows under
// 10 KiB (a batch that meets the size limit is halved).
const TruncateBatch = 1000

// TruncatePlan is a TRUNCATE the gateway runs itself outside a
// transaction block (see above).
type TruncatePlan struct {
	// Tables are the tables as written (qualified and quoted as in the
	// statement), with ONLY.
	Tables []sqllex.TruncateTable
	// Batch is the rows per DELETE (TruncateBatch).
	Batch int
}

// The SQLSTATE of the guard's failure: the guarded DELETE divides by zero
// when the table is over the limit, and cannot otherwise.
const truncateGuardCode = pgerrcode.DivisionByZero

const (
	truncateLimitHint = "Aurora DSQL changes at most 3,000 rows per transaction. Run TRUNCATE outside a transaction block, " +
		"alone in a simple query (the gateway then deletes in batches), or delete the rows in batches of fewer than 3,000 yourself."
	truncateManyHint    = "Truncate one table per statement inside a transaction block, or run the TRUNCATE outside a transaction block, alone in a simple query."
	truncateCascadeHint = "Aurora DSQL has no TRUNCATE: the gateway deletes the rows instead, and cannot tell which tables CASCADE would reach; truncate the referencing tables first, in the same statement or before."
	truncateRestartHint = "Aurora DSQL has no TRUNCATE: the gateway deletes the rows instead, and cannot reset sequences in the same transaction; use CONTINUE IDENTITY (the default) and restart the sequences with ALTER SEQUENCE ... RESTART in a transaction of its own."
)

// truncateRewrite decides TRUNCATE (see above).
func truncateRewrite(st sqllex.Stmt) *Rewrite {
	ts, ok := st.Truncate()
	if !ok {
		return &Rewrite{Hint: truncateHint}
	}
	switch {
	case ts.Cascade:
		return refuse(unsupported("TRUNCATE ... CASCADE is not supported", truncateCascadeHint))
	case ts.RestartIdentity:
		return refuse(unsupported("TRUNCATE ... RESTART IDENTITY is not supported", truncateRestartHint))
	}
	plan := &TruncatePlan{Tables: ts.Tables, Batch: TruncateBatch}
	if len(ts.Tables) > 1 {
		rw := refuse(unsupported("TRUNCATE of several tables is supported only outside a transaction block", truncateManyHint))
		rw.Truncate = plan
		return rw
	}
	tbl := ts.Tables[0]
	return &Rewrite{Text: GuardedDelete(tbl), Tag: "TRUNCATE TABLE", Err: TruncateOverLimit(tbl.Name),
		ErrCode: truncateGuardCode, Truncate: plan}
}

// GuardedDelete is a DELETE of every row of tbl that fails with 22012
// (division by zero), before deleting anything, when the table has more
// than DSQLRowLimit rows: the uncorrelated subquery runs once, first.
func GuardedDelete(tbl sqllex.TruncateTable) string {
	from := tableRef(tbl)
	return "DELETE FROM " + from + " WHERE (SELECT 1 / (CASE WHEN count(*) > " + strconv.Itoa(DSQLRowLimit) +
		" THEN 0 ELSE 1 END) FROM " + from + ") = 1"
}

// TruncateOverLimit is the error of a TRUNCATE of a table over the limit
// where it cannot be run in batches.
func TruncateOverLimit(table string) *Error {
	return &Error{Code: pgerrcode.ProgramLimitExceeded,
		Message: "cannot TRUNCATE " + table + " here: it has more than 3,000 rows, more than one Aurora DSQL transaction may delete",
		Detail:  "Inside a transaction block (or with other statements) the gateway runs TRUNCATE as a single DELETE.",
		Hint:    truncateLimitHint}
}

// TruncateBatchDelete is the DELETE of at most batch rows of tbl, keyed
// on its primary key columns keys (at least one).
func TruncateBatchDelete(tbl sqllex.TruncateTable, keys []string, batch int) string {
	from := tableRef(tbl)
	cols := make([]string, len(keys))
	for i, k := range keys {
		cols[i] = sqllex.QuoteIdent(k)
	}
	list := strings.Join(cols, ", ")
	if len(cols) > 1 {
		list = "(" + list + ")"
	}
	return "DELETE FROM " + from + " WHERE " + list + " IN (SELECT " + strings.Join(cols, ", ") + " FROM " + from +
		" LIMIT " + strconv.Itoa(batch) + ")"
}

// TruncateKeysQuery lists the primary key columns of tbl, in key order
// (no row: no primary key; an error if there is no such table). Read
// only, so it neither conflicts nor counts against the limits.
func TruncateKeysQuery(tbl sqllex.TruncateTable) string {
	return "SELECT a.attname FROM pg_catalog.pg_index i JOIN pg_catalog.pg_attribute a " +
		"ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey) " +
		"WHERE i.indrelid = " + sqllex.QuoteLiteral(tbl.Name) + "::regclass AND i.indisprimary " +
		"ORDER BY array_position(i.indkey::int2[], a.attnum)"
}

// IsTruncateGuard reports whether an error's SQLSTATE is the guard's: the
// table is over the limit.
func IsTruncateGuard(code string) bool { return code == truncateGuardCode }

func tableRef(tbl sqllex.TruncateTable) string {
	if tbl.Only {
		return "ONLY " + tbl.Name
	}
	return tbl.Name
}
