//go:build clients

// Package clients is the client compatibility suite (`make test-clients`):
// every client library or tool runs the same scenario through the gateway
// and the DSQL emulator to a real PostgreSQL, once per pool mode, and the
// results become the matrix in docs/CLIENTS.md. It holds test files only,
// all behind the build tag `clients`, so `go test ./...` skips it.
//
// # What runs
//
// TestClients starts two stacks (internal/harness): one whose route uses
// pool mode transaction and one with pool mode session, both with client
// TLS and the emulator's control API. Within one stack the clients run one
// after another, because the kill of the survive_replacement step cuts
// every upstream the emulator holds and would break a client running beside
// it; the two stacks run side by side. Each client × mode gets a fresh
// schema, which the runner creates before the run and drops after it.
//
// A client is either
//
//   - in-process Go, run by the runner itself (pgx through pgxpool in every
//     QueryExecMode, database/sql through pgx's stdlib, lib/pq, GORM); or
//   - a program: every directory testdata/clients/<name>/ (from the module
//     root) that holds an executable run.sh. The runner starts it as
//     `./run.sh` in that directory, with standard input closed, and kills
//     its whole process group when it exceeds its time (3 minutes). A
//     directory without run.sh (testdata/clients/pgx/ holds only a README)
//     is not a program.
//
// # The protocol between the runner and a program
//
// The program gets the runner's environment plus:
//
//	DSQLGATE_TEST_URL          postgres://USER:PASSWORD@127.0.0.1:PORT/postgres?sslmode=verify-full&sslrootcert=CA_FILE
//	DSQLGATE_TEST_HOST         127.0.0.1
//	DSQLGATE_TEST_PORT         the gateway's port
//	DSQLGATE_TEST_USER         the gateway user
//	DSQLGATE_TEST_PASSWORD     its password (SCRAM-SHA-256 by default)
//	DSQLGATE_TEST_DATABASE     postgres (the route name)
//	DSQLGATE_TEST_CA_FILE      PEM file that verifies the gateway's certificate (for 127.0.0.1 and localhost)
//	DSQLGATE_TEST_CONTROL_URL  the emulator's control API, http://127.0.0.1:PORT
//	DSQLGATE_TEST_MODE         transaction or session
//	DSQLGATE_TEST_SCHEMA       a schema that exists, is empty, and is this run's alone
//	DSQLGATE_TEST_PG_BINDIR    the PostgreSQL binaries (psql); also first in PATH
//
// `POST $DSQLGATE_TEST_CONTROL_URL/kill?all=1` cuts every upstream
// connection the emulator holds, abruptly, as DSQL's 60-minute cap does;
// it answers {"killed":N}. Nothing else runs on that stack while a program
// runs, so N >= 1 means the program's upstream was cut.
//
// The program prints one JSON object per line on standard output:
//
//	{"step":"connect_tls","ok":true,"detail":"TLSv1.3"}
//	{"step":"cancel","ok":true,"detail":"skipped: the client has no cancel"}
//	{"step":"bulk_insert","ok":false,"detail":"expected 1000 rows, got 999"}
//
// and optionally once {"version":"psycopg 3.1.7"}, which the matrix shows
// beside the client's name. Lines that are not JSON objects are ignored
// (and kept for the log), so a program may print other things too, but
// diagnostics belong on standard error: the runner shows its last lines
// when a step fails. A step reported more than once counts as failed if any
// report failed. A step that is not reported fails ("not reported"), and so
// does a non-zero exit status with every step reported ok (step "exit").
// Steps with other names than the ones below are allowed and get their own
// column.
//
// A step the client cannot do at all reports ok with a detail starting with
// "skipped: " and the reason; the matrix shows it as n/a and lists the
// reason. Never skip a step because it fails: a failure is ✗ and fails CI.
//
// # The steps, in this order, on one session
//
// A "session" is one client connection (for a pool: one connection the
// scenario holds from start to end). Tables go in DSQLGATE_TEST_SCHEMA,
// named with the schema until set_observed has set search_path.
//
//	connect_tls         connect with the password over TLS, verify-full against DSQLGATE_TEST_CA_FILE where the
//	                    client can; show that TLS is in use where the client can tell; create the scenario's tables
//	param_query         a query with bound parameters (several types, one NULL), results checked
//	prepared_reuse      a named or cached server-side prepared statement executed many times (>= 20), results
//	                    checked; keep it for survive_replacement
//	tx_commit           BEGIN, inserts with parameters, COMMIT; the rows are visible afterwards
//	tx_rollback         BEGIN, an insert (visible inside), ROLLBACK; the row is gone
//	error_recovery      a failing statement with the right SQLSTATE (e.g. 23505), then the session works; inside a
//	                    transaction the next statement gets 25P02, ROLLBACK, and the session works
//	set_observed        SET search_path TO <schema>, public and SET TimeZone TO 'America/New_York'; later
//	                    queries see them (an unqualified table name; '2024-01-15 12:00:00+00'::timestamptz::text
//	                    is '2024-01-15 07:00:00-05'; SHOW TimeZone)
//	bulk_insert         1000 rows in one go: COPY FROM STDIN where the client has it, else its batch insert;
//	                    count and sum checked
//	cancel              a long query (pg_sleep(30)) cancelled after a moment with the client's own cancel
//	                    (a CancelRequest); it ends with 57014 within seconds and the same session works on,
//	                    with its settings (a driver that closes a cancelled session by design, as lib/pq
//	                    does, goes on with a new session with the same settings, and says so in the detail)
//	survive_replacement a query; POST /kill?all=1 (killed >= 1); then, on the same session with no reconnect
//	                    and no retry, the next queries succeed and see the session's state: search_path,
//	                    TimeZone, and a server-side prepared statement made before the kill
//
// # Output
//
// Every row becomes a subtest TestClients/<mode>/<client>/<step> (failed,
// skipped or passed), the matrix is logged, and a full run (every client
// in both modes: no DSQLGATE_CLIENTS, no -run filter) writes
// docs/CLIENTS.md. DSQLGATE_CLIENTS=a,b
// runs only the named clients, for working on one.
package clients
