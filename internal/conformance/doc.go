//go:build conformance

// Package conformance is the pgx conformance suite (`make
// test-conformance`): pgx's own test suite, from the Go module cache at the
// version go.mod names (pgxVersion), run against four targets, each on a
// fresh stack (internal/harness):
//
//	direct          the stack's private PostgreSQL, straight (the baseline)
//	pg-session      the gateway, a kind postgres route, pool mode session
//	pg-transaction  the gateway, a kind postgres route, pool mode transaction
//	emulator        the gateway, the route to the DSQL emulator, pool mode transaction
//
// It holds test files only, all behind the build tag `conformance`, so `go
// test ./...` skips it.
//
// # Setup
//
// Each target's database (postgres) is set up as pgx's CI sets up pgx_test:
// testsetup/postgresql_setup.sql (the hstore and ltree extensions, the
// uint64 domain, the pgx_* roles and the "tricky" role that an aclitem test
// needs), run with psql on the backend as the superuser, also for the
// gateway targets (on DSQL itself none of it could be created). Then pgx's
// tests run, one package after another, each with
//
//	go test -json -count=1 -p 1 -parallel 4 -vet=off -timeout 4m [-skip ...] PACKAGE
//
// in pgx's module directory (-parallel 4: most of pgx's tests are parallel
// and many of them wait rather than compute), with every PG* variable
// removed from the environment and these set:
//
//	PGX_TEST_DATABASE                    the target (gateway targets: client TLS, verify-full, SCRAM)
//	PGX_TEST_TCP_CONN_STRING             the same
//	PGX_TEST_SCRAM_PASSWORD_CONN_STRING  the same (PostgreSQL and the gateway both use SCRAM)
//	PGX_TEST_UNIX_SOCKET_CONN_STRING     direct only: the server's unix socket
//	PGX_TEST_PGBOUNCER_CONN_STRING       gateway targets only: the gateway (pgx's tests for poolers)
//
// Left unset, so their tests skip: the MD5 and plain-password strings (the
// harness's PostgreSQL takes SCRAM only, as does the gateway by default),
// the TLS, SCRAM-PLUS and client-certificate strings (the harness's
// PostgreSQL has no TLS; through the gateway, TestConnectTLS's check of
// pg_stat_ssl for pg_backend_pid() sees the upstream's connection, not the
// client's; client certificates are pgx's own), and PGX_TEST_OAUTH.
//
// direct runs every package of the module; the gateway targets run only
// the packages whose tests reach a server (gatewayPackages): the others
// (internal/..., pgconn/ctxwatch, pgconn/internal/bgreader, multitracer)
// test pgx by itself and would only repeat direct's counts. Of pgproto3
// they run only TestTrace (gatewayRun says why).
//
// # Expected failures
//
// testdata/expected-failures.txt lists the tests expected to fail, one a
// line:
//
//	<target> <package> <TestName> # reason
//
// target is direct, pg-session, pg-transaction, emulator, or * for the
// three gateway targets; package is the package's import path relative to
// pgx's module (. for the root package; the full import path works too);
// TestName is a top-level test; the reason is required. Blank lines and
// lines starting with # are comments. A test whose reason starts with
// "hangs" or "flaky" is not run at all (go test -skip, in its package
// only): it would stop its package for the whole -timeout, or fail or pass
// by chance. It counts as an expected
// failure, and the suite cannot tell when it starts to pass.
//
// Results are decided per top-level test (a failed subtest fails its
// top-level test; a top-level test that skips is a skip). The suite fails
// when a test not on the list fails (the error shows the test's first 8
// and last 20 output lines), when a listed test passes ("now passes, remove it from
// the list"), when a listed test did not run at all, when the list does not
// parse, and when a package did not finish cleanly: a build failure, a
// panic, or go test's timeout (the message names the test that was running
// then; the package's remaining tests do not run, so fix or list a hang
// first).
//
// # Output
//
// A table per run (target | pass | fail | skip | expected failures, fail
// counting only the unexpected ones, expected failures including the
// hanging tests not run) is logged, with each target's wall time; with
// CONFORMANCE_WRITE=1 on a full run (no CONFORMANCE_TARGETS, CONFORMANCE_RUN
// or CONFORMANCE_SKIP) it is written to README.md between the conformance
// markers.
//
// # Knobs
//
//	CONFORMANCE_TARGETS=direct,emulator  run only these targets
//	CONFORMANCE_RUN=regexp               go test -run for pgx's tests (turns off the
//	                                     check for listed tests that did not run)
//	CONFORMANCE_SKIP=regexp              go test -skip for pgx's tests, on top of the
//	                                     hanging ones (to see past a new hang)
//	CONFORMANCE_LOG_DIR=dir              keep, per target, go test's JSON
//	                                     (<target>.json), the gateway's and emulator's
//	                                     logs (<target>-stack.log), PostgreSQL's log
//	                                     (<target>-postgres.log) and a summary of the
//	                                     failures (<target>-failures.txt)
//	CONFORMANCE_WRITE=1                  write the README table (see above)
//	GO=path                              the go command that runs pgx's tests
package conformance
