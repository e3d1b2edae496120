//go:build replicas && linux

package replicas

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/dsqlgate/dsqlgate/internal/harness"
)

// The rolling restart's timing: clients run for clientsFor; the restart
// begins after rollAfter and must be over (every old process gone, every
// successor in service) by rollBy, so that clients run on the new
// replicas too.
const (
	clientsFor = 45 * time.Second
	rollAfter  = 3 * time.Second
	rollBy     = 38 * time.Second
)

// How the rolling restart's counts are defined (the report uses the same
// words):
//
//   - COMMITTED: COMMIT succeeded.
//   - FAILED: a statement after BEGIN, or the COMMIT, got an error, or an
//     error left the transaction's outcome unknown. For pgbench, every
//     failed transaction and every aborted client.
//   - CONFLICT: 40001, DSQL's optimistic-concurrency failure (the
//     emulator's, from PostgreSQL's lock_timeout, on a busy machine): the
//     application retries the transaction, as DSQL asks; the restart has
//     no part in it, so it is counted apart (pgbench retries it itself,
//     --max-tries).
//   - RECONNECT: an error before the transaction began (FATAL 57P01 "the
//     gateway is shutting down", or the connection found closed at BEGIN
//     or at connect), after which the client retries on a new connection,
//     as pools do (HikariCP evicts on 57P01, node-postgres Pool drops a
//     client that errored, pgxpool destroys a closed connection).
type clientCounts struct {
	name                          string
	committed, failed, reconnects int64
	conflicts                     int64
	note                          string // how it ended, what it cannot count
	errs                          []string
	mu                            sync.Mutex
}

func (c *clientCounts) fail(format string, args ...any) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.errs) < 5 {
		c.errs = append(c.errs, fmt.Sprintf(format, args...))
	}
}

// rollingRestart replaces each replica in turn, as ECS or Kubernetes do,
// while pgbench -C, a pgxpool, a node-postgres Pool and one long-lived pgx
// connection run transactions through HAProxy: the load balancer stops
// sending the replica new connections (drain; without drain, only its
// failing health check tells it, as when Kubernetes removes a pod's
// endpoint while the pod already got SIGTERM), the old process gets
// SIGTERM, its successor starts on the same address (reuse_port), and
// once its /readyz answers 200 the balancer sends it connections again.
// Clients that reconnect, as pools do, must lose no transaction; the
// single connection is reported.
func (b *bed) rollingRestart(drain bool) func(t *testing.T) {
	return func(t *testing.T) { b.roll(t, drain) }
}

func (b *bed) roll(t *testing.T, drain bool) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	suffix := "_nodrain"
	if drain {
		suffix = "_drain"
	}
	tables := map[string]string{}
	setup := b.connect(t, b.lb)
	for _, kind := range []string{"pgbench", "pgx", "node", "single"} {
		tables[kind] = "rolling_" + kind + suffix
		if _, err := setup.Exec(ctx, "create table "+tables[kind]+" (id uuid primary key default gen_random_uuid(), client int, n int)"); err != nil {
			t.Fatalf("create %s: %v", tables[kind], err)
		}
	}
	setup.Close(ctx)

	root := harness.ModuleRootOf(t)
	start := time.Now()
	var wg sync.WaitGroup
	results := make([]*clientCounts, 4)
	run := func(i int, f func() *clientCounts) {
		wg.Add(1)
		go func() { defer wg.Done(); results[i] = f() }()
	}
	run(0, func() *clientCounts { return b.runPgbench(root, tables["pgbench"]) })
	run(1, func() *clientCounts { return b.runPgxpool(ctx, tables["pgx"], start.Add(clientsFor)) })
	run(2, func() *clientCounts { return b.runNodePool(root, tables["node"]) })
	run(3, func() *clientCounts { return b.runSingle(ctx, tables["single"], start.Add(clientsFor)) })

	time.Sleep(rollAfter)
	for i := range b.replicas {
		b.replace(t, i, drain)
		time.Sleep(time.Second)
	}
	if took := time.Since(start); took > rollBy {
		t.Errorf("the rolling restart ended %s after the clients started, past %s: the clients did not run on the new replicas long", took, rollBy)
	}
	t.Logf("rolling restart of %d replicas done %s after the clients started", len(b.replicas), time.Since(start).Round(time.Millisecond))
	wg.Wait()

	t.Logf("%-20s %10s %7s %11s %10s  %s", "client", "committed", "failed", "reconnects", "conflicts", "notes")
	for _, c := range results {
		recon := strconv.FormatInt(c.reconnects, 10)
		if c.reconnects < 0 {
			recon = "-"
		}
		t.Logf("%-20s %10d %7d %11s %10d  %s", c.name, c.committed, c.failed, recon, c.conflicts, c.note)
		for _, e := range c.errs {
			t.Logf("    %s", e)
		}
	}
	for _, c := range results[:3] {
		if c.failed != 0 {
			t.Errorf("%s: %d transactions failed during the rolling restart", c.name, c.failed)
		}
		if c.committed == 0 {
			t.Errorf("%s: no transaction committed", c.name)
		}
	}
	check := b.connect(t, b.lb)
	for table, c := range map[string]*clientCounts{tables["pgbench"]: results[0], tables["pgx"]: results[1], tables["node"]: results[2]} {
		var rows int64
		if err := check.QueryRow(ctx, "select count(*) from "+table).Scan(&rows); err != nil {
			t.Fatal(err)
		}
		if rows != c.committed {
			t.Errorf("%s: %d rows for %d committed transactions", table, rows, c.committed)
		}
	}
}

// replace replaces replica i as an orchestrator does: drain it in the
// balancer (when drain is set), SIGTERM, start the successor on the same
// address, wait for its /readyz, put it back in service.
func (b *bed) replace(t *testing.T, i int, drain bool) {
	old := b.replicas[i]
	began := time.Now()
	if drain {
		b.setState(old.n, "drain")
	}
	if err := old.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	// From this line on the old process has closed its share of the
	// health port, so a 200 on /readyz is the successor's.
	old.waitOutput(t, "draining: no new connections", 10*time.Second)
	next := b.startReplica(old.n)
	next.waitOutput(t, "dsqlgate listening", time.Minute)
	waitReady(t, next)
	b.replicas[i] = next
	if drain {
		b.setState(old.n, "ready")
	}
	b.waitServer(old.n, "UP", 10*time.Second)
	inService := time.Since(began)
	err, ok := old.waitExit(15 * time.Second)
	if !ok {
		t.Fatalf("r%d: the old process still runs 15s after SIGTERM (shutdown_timeout 10s)", old.n)
	}
	if err != nil {
		t.Errorf("r%d: the old process exited with %v", old.n, err)
	}
	out := old.out.String()
	drained := out[strings.Index(out, "draining: no new connections"):]
	t.Logf("r%d replaced: successor in service after %s, old process gone after %s (%d sessions ended during its drain)",
		old.n, inService.Round(time.Millisecond), time.Since(began).Round(time.Millisecond),
		strings.Count(drained, "client session ended"))
}

// pgbenchStatus reads pgbench's summary.
var (
	pgbenchProcessed = regexp.MustCompile(`number of transactions actually processed: (\d+)`)
	pgbenchFailed    = regexp.MustCompile(`number of failed transactions: (\d+)`)
	pgbenchAborted   = regexp.MustCompile(`client \d+ (script \d+ )?aborted`)
	pgbenchRetried   = regexp.MustCompile(`number of transactions retried: (\d+)`)
)

// runPgbench runs pgbench -C (a new connection for every transaction)
// with 4 clients through HAProxy for clientsFor.
func (b *bed) runPgbench(root, table string) *clientCounts {
	c := &clientCounts{name: "pgbench -C", reconnects: -1, note: "a new connection for every transaction; any aborted client counts as failed"}
	bin, err := findPgbench(b.st.PG.BinDir())
	if err != nil {
		c.failed = 1
		c.fail("%v", err)
		return c
	}
	var out bytes.Buffer
	cmd := exec.Command(bin, "-n", "-C", "--max-tries=10", "-c", "4", "-T", strconv.Itoa(int(clientsFor.Seconds())), "-D", "table="+table,
		"-f", filepath.Join(root, "testdata", "replicas", "pgbench.sql"), b.url(b.lb, ""))
	cmd.Stdout, cmd.Stderr = &out, &out
	runErr := cmd.Run()
	text := out.String()
	m := pgbenchProcessed.FindStringSubmatch(text)
	if m == nil {
		c.failed = 1
		c.fail("pgbench (%v): no summary:\n%s", runErr, tail(text, 3000))
		return c
	}
	c.committed, _ = strconv.ParseInt(m[1], 10, 64)
	if f := pgbenchFailed.FindStringSubmatch(text); f != nil {
		c.failed, _ = strconv.ParseInt(f[1], 10, 64)
	}
	if r := pgbenchRetried.FindStringSubmatch(text); r != nil {
		c.conflicts, _ = strconv.ParseInt(r[1], 10, 64)
	}
	aborted := pgbenchAborted.FindAllString(text, -1)
	c.failed += int64(len(aborted))
	if runErr != nil || len(aborted) > 0 {
		for _, line := range strings.Split(text, "\n") {
			if strings.Contains(line, "error") || strings.Contains(line, "aborted") || strings.Contains(line, "FATAL") {
				c.fail("%s", line)
			}
		}
		if runErr != nil {
			c.fail("pgbench exit: %v", runErr)
			if c.failed == 0 {
				c.failed = 1
			}
		}
	}
	return c
}

// findPgbench is the stack's PostgreSQL's pgbench, else any on the PATH.
func findPgbench(binDir string) (string, error) {
	if p := filepath.Join(binDir, "pgbench"); fileExists(p) {
		return p, nil
	}
	if ps, _ := filepath.Glob("/usr/lib/postgresql/*/bin/pgbench"); len(ps) > 0 {
		return ps[len(ps)-1], nil
	}
	return exec.LookPath("pgbench")
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

// runPgxpool runs 4 goroutines of transactions (an insert and a select)
// on one pgxpool through HAProxy until end, 5ms apart.
func (b *bed) runPgxpool(ctx context.Context, table string, end time.Time) *clientCounts {
	c := &clientCounts{name: "pgxpool"}
	pool, err := pgxpool.New(ctx, b.url(b.lb, "pool_max_conns=4"))
	if err != nil {
		c.failed = 1
		c.fail("pgxpool: %v", err)
		return c
	}
	defer pool.Close()
	var committed, failed, reconnects, conflicts atomic.Int64
	var wg sync.WaitGroup
	for id := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for n := 0; time.Now().Before(end); n++ {
				tx, err := pool.Begin(ctx)
				if err != nil {
					// Nothing began; the pool destroys a closed connection.
					reconnects.Add(1)
					time.Sleep(5 * time.Millisecond)
					continue
				}
				if err := transaction(ctx, tx, table, id, n); err != nil {
					if isConflict(err) {
						conflicts.Add(1)
						continue
					}
					failed.Add(1)
					c.fail("pgxpool client %d: %v", id, err)
					continue
				}
				committed.Add(1)
				time.Sleep(5 * time.Millisecond)
			}
		}()
	}
	wg.Wait()
	c.committed, c.failed, c.reconnects, c.conflicts = committed.Load(), failed.Load(), reconnects.Load(), conflicts.Load()
	return c
}

// isConflict reports DSQL's optimistic-concurrency failure, 40001.
func isConflict(err error) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && pgErr.Code == "40001"
}

// transaction is the rolling restart's transaction after BEGIN: an insert,
// a select, COMMIT (a rollback after an error).
func transaction(ctx context.Context, tx pgx.Tx, table string, id, n int) error {
	_, err := tx.Exec(ctx, "insert into "+table+" (client, n) values ($1, $2)", id, n)
	if err == nil {
		var rows int
		err = tx.QueryRow(ctx, "select count(*) from "+table+" where client = $1", id).Scan(&rows)
	}
	if err == nil {
		return tx.Commit(ctx)
	}
	tx.Rollback(context.Background())
	return err
}

// runSingle runs transactions on one pgx connection through HAProxy until
// end or its first error: it does not reconnect, so it shows what a client
// that holds one connection for ever sees.
func (b *bed) runSingle(ctx context.Context, table string, end time.Time) *clientCounts {
	c := &clientCounts{name: "single pgx conn", note: "does not reconnect"}
	conn, err := pgx.Connect(ctx, b.url(b.lb, ""))
	if err != nil {
		c.failed = 1
		c.fail("connect: %v", err)
		return c
	}
	defer conn.Close(context.Background())
	for n := 0; time.Now().Before(end); n++ {
		tx, err := conn.Begin(ctx)
		if err != nil {
			c.note = fmt.Sprintf("ended at BEGIN after %d transactions: %v", c.committed, err)
			return c
		}
		if err := transaction(ctx, tx, table, 0, n); err != nil {
			c.failed++
			c.note = fmt.Sprintf("ended in a transaction after %d: %v", c.committed, err)
			return c
		}
		c.committed++
		time.Sleep(5 * time.Millisecond)
	}
	c.note = "ran to the end without an error"
	return c
}

// nodeResult is testdata/replicas/pgpool.cjs's report.
type nodeResult struct {
	Committed, Failed, Reconnects, Conflicts, IdleErrors, ClientErrors int64
	Errors                                                             []string
}

// runNodePool runs testdata/replicas/pgpool.cjs: a node-postgres Pool of
// 4 clients through HAProxy for clientsFor.
func (b *bed) runNodePool(root, table string) *clientCounts {
	c := &clientCounts{name: "node-postgres Pool"}
	node, err := exec.LookPath("node")
	if err != nil {
		c.failed = 1
		c.fail("node not found: %v", err)
		return c
	}
	modules := filepath.Join(root, "testdata", "clients", "node-pg", "node_modules")
	cmd := exec.Command(node, filepath.Join(root, "testdata", "replicas", "pgpool.cjs"),
		b.url(b.lb, ""), table, strconv.Itoa(int(clientsFor.Seconds())), "4")
	cmd.Env = append(os.Environ(), "NODE_PATH="+modules)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	var res nodeResult
	if jerr := json.Unmarshal(bytes.TrimSpace(out), &res); err != nil || jerr != nil {
		c.failed = 1
		c.fail("pgpool.cjs (%v; is %s installed? make deps-replicas): %s %s", errors.Join(err, jerr), modules, out, tail(stderr.String(), 2000))
		return c
	}
	c.committed, c.failed, c.reconnects, c.conflicts = res.Committed, res.Failed, res.Reconnects, res.Conflicts
	c.note = fmt.Sprintf("clients closed outside a query (error events): %d, %d of them idle in the Pool", res.ClientErrors, res.IdleErrors)
	for _, e := range res.Errors {
		c.fail("%s", e)
	}
	return c
}
