// Command benchrun measures dsqlgate side by side with PostgreSQL and
// PgBouncer on one machine and writes the results to BENCHMARKS.md. It is
// what `make bench` and `make bench-quick` run:
//
//	go run ./internal/benchrun [-quick] [-dsqlgate bin/dsqlgate] [-out BENCHMARKS.md] [-only PARTS]
//
// It starts one private PostgreSQL (pgtest), initialises it with pgbench,
// and runs every program under test as its own process, so that each one's
// CPU time and resident memory can be read from /proc: the DSQL emulator
// (`dsqlgate emulate`), a gateway (`dsqlgate serve`) with three benchmark
// routes, and PgBouncer with the same pool size. pgbench then drives five
// targets in turn:
//
//	postgres      PostgreSQL directly
//	pgbouncer     PgBouncer, transaction pooling → PostgreSQL
//	gw-pg         dsqlgate transaction mode → PostgreSQL (kind postgres)
//	gw-dsql-tx    dsqlgate transaction mode → emulator → PostgreSQL
//	gw-dsql-sess  dsqlgate session mode → emulator → PostgreSQL
//
// With -baseline BIN, a second gateway process runs an earlier build with
// gw-pg's route and pool, as target gw-pg-base, and the report compares
// the two builds cell by cell.
//
// Every cell (a workload at a client count) runs every target once per
// round, in an order rotated from cell to cell and round to round, so that
// machine noise falls on all targets alike; the report takes medians over
// the rounds. Latencies come from pgbench's per-transaction logs, CPU from
// /proc/<pid>/stat around each run. After the rounds, fresh gateway and
// PgBouncer processes hold idle authenticated clients to measure memory per
// client, and a session-mode client measures what an upstream replacement
// adds to its next query.
//
// Last comes the contention test: 16 and 64 clients increment four hot
// counter rows for -contention-duration per cell (3 s, 2 s with -quick),
// so that the emulator's optimistic concurrency (REPEATABLE READ, a 10 ms
// lock_timeout) fails some of them with 40001. Two workloads, an
// autocommit UPDATE and BEGIN; UPDATE; COMMIT sent as one simple Query,
// each through the gateway's transaction-mode dsql route (gw-dsql-tx) and
// straight to the emulator (pgx over TLS with an IAM token). Each cell
// counts successful updates, their latency, the OCC errors the clients
// saw, the growth of the gateway's dsqlgate_occ_retries_total when its
// metrics have it, and checks that the rows' sum equals the successful
// updates.
//
// -only runs some of the parts (pgbench, memory, replacement, contention),
// comma-separated; the report then has only their sections. For example:
//
//	go run ./internal/benchrun -quick -only contention -out /tmp/contention.md
//
// benchrun changes nothing in the gateway; it only configures it. It needs
// the PostgreSQL server binaries with pgbench and PgBouncer (make deps-bench).
//
// It runs on Linux only: it reads /proc and ties each child's life to its
// own (the parent-death signal). Built elsewhere, it says so and exits.
package main
