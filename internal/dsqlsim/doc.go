// Package dsqlsim is a local stand-in for Amazon Aurora DSQL: a server that
// speaks the PostgreSQL wire protocol the way a DSQL cluster does at its
// edge, and forwards each session to a real PostgreSQL. The gateway's tests,
// `dsqlgate emulate` and `dsqlgate demo` run against it. It is real
// software, not a mock: what it accepts and refuses is what a gateway meets
// on DSQL.
//
// # What a client meets
//
//   - TLS only, 1.2 or newer: the classic SSLRequest ('S', then TLS) and
//     direct TLS (a ClientHello first, ALPN "postgresql" required, as in
//     PostgreSQL 17). Start generates a self-signed ECDSA P-256 CA and a leaf
//     certificate whose SANs are Config.Hostnames, "localhost" and
//     127.0.0.1, and writes the CA to Config.CAFile. A GSSENCRequest gets
//     'N'. A StartupMessage without TLS gets FATAL 28000 "TLS is required".
//   - SNI required: none gets FATAL 08P01 "unable to accept connection, sni
//     was not received"; a name not in Config.Hostnames gets FATAL 08P01
//     "unable to accept connection, unknown server name".
//   - Limits, decided when a connection arrives and answered after its
//     StartupMessage: over Config.ConnRate/ConnBurst (default 100/s, burst
//     1000) FATAL 53400 "Unable to accept connection, rate exceeded."; over
//     Config.MaxConns open connections (default 10000) FATAL 53300
//     "Unable to accept connection, too many open connections.".
//   - Startup: database must be "postgres" (else FATAL 3D000); the user is
//     the DSQL role. Only user, database and the settings DSQL lets a
//     session change (application_name, client_encoding, DateStyle,
//     extra_float_digits, IntervalStyle, TimeZone, search_path, enable_*)
//     are accepted as startup parameters; any other gets FATAL 0A000
//     `setting configuration parameter "x" not supported`. Protocol 3.2 and
//     "_pq_." options are answered with NegotiateProtocolVersion (3.0).
//   - Authentication: AuthenticationCleartextPassword; the password is an IAM
//     token, checked by VerifyToken against Config.Credentials,
//     Config.Region, the SNI name and the role, on the Config.Now clock. A
//     refused token gets FATAL 28000 "IAM authentication failed" with the
//     failed check (a TokenReason) as the detail; the token is never echoed
//     or logged. (DSQL's exact code is not documented; 28000 is our choice.)
//   - The session: the emulator connects to the real PostgreSQL over its
//     trusted unix socket as the same role, to Config.BackendDatabase, with
//     the client's allowed startup parameters, and relays everything from
//     AuthenticationOk on, both ways, as raw messages: simple and extended
//     query, pipelining, COPY in and out, notices, errors. A CancelRequest
//     over TLS whose key is one a session's client was given is forwarded to
//     the backend; others are dropped.
//   - Refusals: statements DSQL does not support fail with 0A000 and a
//     DSQL-like message, in a simple Query (just that statement, in order)
//     and at Parse: SET/RESET of any parameter outside the list above, SET
//     TRANSACTION, SET SESSION CHARACTERISTICS, SET ROLE/SESSION
//     AUTHORIZATION/CONSTRAINTS, DISCARD, SAVEPOINT, RELEASE, ROLLBACK TO,
//     two-phase commit, SQL-level PREPARE and EXECUTE, DEALLOCATE of a name
//     (DEALLOCATE ALL and RESET ALL work), LISTEN, NOTIFY, UNLISTEN,
//     TRUNCATE, LOCK, DECLARE, CREATE TEMP/TEMPORARY/UNLOGGED, and calls to
//     pg_advisory_* and pg_try_advisory_*. They behave as real errors do (the
//     refused statement is replaced by one that the real PostgreSQL fails,
//     and that error is rewritten): a transaction block is aborted (25P02
//     until ROLLBACK), a session outside one goes on, an extended-protocol
//     batch skips to Sync.
//   - Connection duration: every connection is closed abruptly (TCP close,
//     no message, no TLS close_notify) when it reaches Config.MaxConnDuration
//     (default 1 h), which SetMaxConnDuration changes at run time. As on
//     DSQL, a transaction that began before that age may finish first: the
//     connection closes right after the ReadyForQuery that ends it (status
//     'I', nothing outstanding), or when the transaction reaches
//     Config.MaxTxnDuration (default 5 min). An idle connection past the cap
//     is closed by a reaper every 100 ms, or at once when the client sends
//     anything. Kill, KillAll and KillOlderThan close sessions at once, the
//     same way, on demand.
//   - Concurrency: backend sessions run at REPEATABLE READ, as DSQL's only
//     isolation, with a 10 ms lock_timeout, so a writer never waits: of two
//     transactions that write or lock one row (UPDATE, DELETE, SELECT ...
//     FOR UPDATE/SHARE, an insert of the same key, a foreign-key check
//     against a row being deleted), the second to touch it fails with 40001
//     "change conflicts with another transaction, please retry: (OC000)",
//     as does a write of a row changed after the transaction's snapshot;
//     a statement that meets a table another open transaction altered or
//     used while it alters it fails with 40001 "... (OC001)". The loser's
//     COMMIT then fails with the same 40001 (simple or extended protocol;
//     ReadyForQuery 'I' follows), where PostgreSQL would answer "ROLLBACK";
//     a ROLLBACK stays a ROLLBACK. Read-only transactions never conflict.
//     Unlike DSQL, the loser fails at the statement that meets the other's
//     write rather than at its COMMIT, and a schema change fails itself
//     rather than the transactions it meets (see occ.go).
//   - Transaction limits: a statement that takes the transaction over
//     Config.MaxTxnRows changed rows (default 3000) fails with 54000
//     "transaction row limit exceeded", over Config.MaxTxnBytes changed
//     (default 10 MiB, the rows' size as PostgreSQL stores them) with 54000
//     "transaction size limit 10mb exceeded": in a transaction block it is
//     aborted (25P02 until ROLLBACK), an autocommit statement is rolled
//     back. This holds for simple and extended protocol and COPY FROM
//     STDIN. A statement sent in a transaction block older than
//     Config.MaxTxnDuration (default 5 min) fails with 54000 "transaction
//     age limit of 300s exceeded" (the configured age) and aborts it; a
//     COMMIT there fails and ends it; a ROLLBACK works.
//   - DDL rules: a second DDL statement in a transaction fails with 0A000
//     "multiple ddl statements not supported in a transaction", DDL and
//     DML (INSERT, UPDATE, DELETE, COPY FROM) in one transaction with 0A000
//     "ddl and dml are not supported in the same transaction". A
//     multi-statement simple Query is one transaction; autocommit DDL
//     statements one after another work.
//
// The limits and the DDL rules are enforced inside the real PostgreSQL:
// Start connects to it as Config.BackendSuperuser (default "admin") and
// installs, idempotently, a schema "dsqlsim" with triggers on every table
// and two event triggers (see limits.go). They act only in the emulator's
// sessions; a direct connection to the backend is not limited. Anything
// else DSQL does and this list does not name is left to the real
// PostgreSQL's own behaviour.
//
// # Control API
//
// ControlHandler serves a small HTTP API for when the emulator runs as a
// separate process (`dsqlgate emulate`). It has no authentication; bind it
// to loopback.
//
//	GET  /sessions                        JSON array of {"id", "role", "started", "backend_pid"}
//	GET  /stats                           JSON object of the Stats counters
//	POST /kill?id=N                       close session N abruptly; {"killed": 0|1}
//	POST /kill?all=1                      close every session abruptly; {"killed": n}
//	POST /kill?older_than=30s             close sessions at least that old; {"killed": n}
//	POST /max-conn-duration?value=90s     change the duration cap; {"max_conn_duration": "1m30s"}
//
// Errors are {"error": "..."} with status 400; a wrong method gets 405.
//
// # Logs
//
// Logs go to Config.Logger with fixed lowercase messages and a conn_id
// field per connection. Tokens, secret keys and signatures never reach a log
// line or an error string.
package dsqlsim
