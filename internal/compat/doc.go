// Package compat is dsqlgate's compatibility layer for Aurora DSQL: the
// rules that let PostgreSQL clients and tools use a cluster that refuses
// some of what PostgreSQL accepts.
//
// It decides; it does no I/O. For each statement a client sends, the
// session engine (package pgwire) asks Decide (or Deallocate) and gets
// back a *Rewrite, or nil for the common statement it leaves alone. A
// Rewrite is data: a stand-in text to send instead (PlaceholderSQL for an
// emulated SET, FailingSQL for a refusal, DELETE for a TRUNCATE), the
// command tag the client sees, rows to hide, the error to show instead of
// the stand-in's, a hint to add to DSQL's own refusal, an emulated setting
// that changes when the stand-in completes, or a call the gateway answers
// itself (Show, LockCall). The engine carries it out in the statement's
// place, with the statement's transaction and error semantics, and keeps
// the session's emulated settings (read back through Value).
//
// Errors are *Error (SQLSTATE, message, detail, hint), which pgwire turns
// into ErrorResponses.
//
// Advisory locks, which DSQL lacks, are kept in a table on the cluster
// itself (LockManager, one per route, made by authbridge through the
// LockUpstream it implements) so that they hold across every gateway
// serving that cluster; SessionLocks gives one client session
// PostgreSQL's semantics over it (reentrant counts, session and
// transaction scope). Every statement on the table is retried after a
// write conflict (40001, OC000/OC001) and fails safe (locktable.go);
// renewal stays under DSQL's 3,000 rows per transaction in batches. Client
// statements that name the table are refused with 42501
// (protect.go): a lexical check, sound on DSQL, which has no dynamic SQL
// (no PL/pgSQL, no DO, no triggers), so a statement reaches a table only
// by naming it.
//
// TRUNCATE becomes DELETE under DSQL's limits (truncate.go): a DELETE
// guarded by a count in the client's transaction (over 3,000 rows it fails
// at once with 54000), or, outside a transaction block, a TruncatePlan the
// session runs in batches keyed on the primary key.
//
// # Adding a refusal or an emulation
//
// A new refusal or emulation is a change in this package and its tests
// only:
//
//   - a statement kind DSQL refuses and the gateway cannot emulate: an
//     entry in refusalHints (the server's 0A000 gets the hint);
//   - a statement the gateway refuses itself: a case in Decide returning
//     refuse(&Error{...}) (FailingSQL runs in its place, so the refusal has
//     a real error's transaction semantics);
//   - a setting DSQL refuses: an entry in emulatedSettings with its
//     PostgreSQL default and a normaliser that returns the display value
//     SHOW gives, or the error SET gives. SET, RESET, SHOW,
//     current_setting() and the startup packet then work for it; an
//     effect beyond its value (as statement_timeout has) is the session's;
//   - a parameter DSQL pins to one value: an entry in fixedSettings
//     (set_config() of it to that value is then answered with it);
//   - a statement rewritten to another: a case in Decide returning the
//     text to send and the tag to show (see setRewrite, truncateRewrite).
//
// Add a row to the table tests in rewrite_test.go for each.
package compat
