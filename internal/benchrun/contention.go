//go:build linux

package main

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/dsqlgate/dsqlgate/authbridge"
)

// The contention test: clients increment a few hot counter rows at once,
// so that DSQL's optimistic concurrency (the emulator's REPEATABLE READ
// with a 10 ms lock_timeout) fails some of them with 40001. It counts
// what the clients see, what the gateway retried (its
// dsqlgate_occ_retries_total counter, when the build has one), and checks
// that the rows add up to the updates the clients saw succeed.

// contentionRows is the number of hot counter rows; client i starts at
// row i mod contentionRows and moves to the next row after each operation.
const contentionRows = 4

// contentionTable is the table of hot rows, created in PostgreSQL.
const contentionTable = "counters"

// Contention workloads.
const (
	// workloadAutocommit is one autocommit UPDATE with a parameter
	// (pgx QueryExecModeExec: Parse, Bind, Describe, Execute and Sync
	// in one round trip).
	workloadAutocommit = "autocommit"
	// workloadTxOneUnit is BEGIN; UPDATE; COMMIT in one simple Query
	// message, the id inlined.
	workloadTxOneUnit = "tx-one-unit"
)

var contentionWorkloads = []string{workloadAutocommit, workloadTxOneUnit}

// Contention targets.
const (
	contentionGateway  = "gw-dsql-tx" // the gateway's transaction-mode dsql route
	contentionEmulator = "emulator"   // the emulator directly, with an IAM token
)

var contentionTargets = []string{contentionGateway, contentionEmulator}

// contentionClientCounts are the client counts of every contention cell,
// in the quick run too.
var contentionClientCounts = []int{16, 64}

// Names of the gateway's OCC retry counters (from a build that retries
// OCC failures; older builds have neither).
const (
	occRetriesMetric   = "dsqlgate_occ_retries_total"
	occExhaustedMetric = "dsqlgate_occ_retries_exhausted_total"
)

// contentionCell is a workload at a client count against a target.
type contentionCell struct {
	workload string
	target   string
	clients  int
}

func (c contentionCell) String() string {
	return fmt.Sprintf("%s, %s, %d clients", c.workload, c.target, c.clients)
}

// contentionCells is every workload at every client count against every
// target, in report order.
func contentionCells() []contentionCell {
	var cells []contentionCell
	for _, w := range contentionWorkloads {
		for _, n := range contentionClientCounts {
			for _, t := range contentionTargets {
				cells = append(cells, contentionCell{workload: w, target: t, clients: n})
			}
		}
	}
	return cells
}

// updateSQL is the statement or query string of workload w for row id:
// the autocommit UPDATE takes id as its parameter; the one-unit
// transaction has it inlined.
func updateSQL(workload string, id int) string {
	if workload == workloadTxOneUnit {
		return fmt.Sprintf("BEGIN; UPDATE %s SET n = n + 1 WHERE id = %d; COMMIT", contentionTable, id)
	}
	return "UPDATE " + contentionTable + " SET n = n + 1 WHERE id = $1"
}

// Kinds of OCC errors, as classifyError names them.
const (
	occData   = "OC000"
	occSchema = "OC001"
	occOther  = "40001" // a serialization failure without a DSQL code
)

// classifyError sorts an operation's error: an OCC conflict (SQLSTATE
// 40001) by its DSQL code, any other server error by its SQLSTATE, and a
// client-side or connection error as "client".
func classifyError(err error) (kind string, occ bool) {
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) {
		return "client", false
	}
	if pgErr.Code != "40001" {
		return pgErr.Code, false
	}
	switch {
	case strings.Contains(pgErr.Message, "(OC000)"):
		return occData, true
	case strings.Contains(pgErr.Message, "(OC001)"):
		return occSchema, true
	}
	return occOther, true
}

// contentionResult is one contention cell.
type contentionResult struct {
	cell    contentionCell
	elapsed time.Duration // from the first operation to the last client's end
	ok      int64         // successful updates
	// occ counts OCC errors by kind (occData, occSchema, occOther);
	// other counts every other error by SQLSTATE or "client".
	occ, other map[string]int64
	// sample is one message per kind of other error.
	sample map[string]string
	latUs  []float64 // latency of each successful operation, µs
	// retries and exhausted are the deltas of the gateway's OCC retry
	// counters over the cell; retriesKnown is false when the gateway's
	// metrics have no such counter (or the target is not the gateway).
	retries, exhausted float64
	retriesKnown       bool
	sum                int64 // the counters' sum after the cell
	err                error // the cell could not run or be checked
}

func (r contentionResult) occTotal() int64 { return sumInt64(r.occ) }

func (r contentionResult) otherTotal() int64 { return sumInt64(r.other) }

func (r contentionResult) throughput() float64 {
	if r.elapsed <= 0 {
		return 0
	}
	return float64(r.ok) / r.elapsed.Seconds()
}

func sumInt64(m map[string]int64) int64 {
	var n int64
	for _, v := range m {
		n += v
	}
	return n
}

// merge adds one client's tallies to r.
func (r *contentionResult) merge(c *contentionTally) {
	r.ok += c.ok
	r.latUs = append(r.latUs, c.latUs...)
	for k, v := range c.occ {
		r.occ[k] += v
	}
	for k, v := range c.other {
		r.other[k] += v
		if _, ok := r.sample[k]; !ok {
			r.sample[k] = c.sample[k]
		}
	}
}

// contentionTally is what one client saw.
type contentionTally struct {
	ok         int64
	latUs      []float64
	occ, other map[string]int64
	sample     map[string]string
}

func newTally() *contentionTally {
	return &contentionTally{occ: map[string]int64{}, other: map[string]int64{}, sample: map[string]string{}}
}

// record counts one operation's outcome.
func (t *contentionTally) record(err error, took time.Duration) {
	if err == nil {
		t.ok++
		t.latUs = append(t.latUs, float64(took.Microseconds()))
		return
	}
	kind, occ := classifyError(err)
	if occ {
		t.occ[kind]++
		return
	}
	t.other[kind]++
	if _, ok := t.sample[kind]; !ok {
		t.sample[kind] = err.Error()
	}
}

// measureContention creates the counters table and runs every cell for d.
// A cell that fails is reported in its result; only a failure to set up
// the table or a cancelled ctx is an error.
func measureContention(ctx context.Context, env *environment, cells []contentionCell, d time.Duration, logf func(string, ...any)) ([]contentionResult, error) {
	create := fmt.Sprintf("DROP TABLE IF EXISTS %[1]s; CREATE TABLE %[1]s (id int PRIMARY KEY, n bigint NOT NULL); INSERT INTO %[1]s SELECT g, 0 FROM generate_series(1, %[2]d) g",
		contentionTable, contentionRows)
	if _, err := env.pg.Psql(ctx, "postgres", "-qc", create); err != nil {
		return nil, fmt.Errorf("create %s: %w", contentionTable, err)
	}
	var out []contentionResult
	for i, c := range cells {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		r := runContentionCell(ctx, env, c, d)
		out = append(out, r)
		if r.err != nil {
			logf("[%d/%d] contention  %-40s FAILED: %v", i+1, len(cells), c, r.err)
			continue
		}
		retries := "n/a"
		if r.retriesKnown {
			retries = fmt.Sprintf("%.0f", r.retries)
		}
		logf("[%d/%d] contention  %-40s %6d ok (%.0f/s)  %5d OCC  %d other  retries %s  sum %d",
			i+1, len(cells), c, r.ok, r.throughput(), r.occTotal(), r.otherTotal(), retries, r.sum)
	}
	return out, nil
}

// runContentionCell resets the rows, connects the clients, lets them
// update for d, and reads the gateway's retry counters around the run and
// the rows' sum after it.
func runContentionCell(ctx context.Context, env *environment, c contentionCell, d time.Duration) contentionResult {
	r := contentionResult{cell: c, occ: map[string]int64{}, other: map[string]int64{}, sample: map[string]string{}}
	if _, err := env.pg.Psql(ctx, "postgres", "-qc", "UPDATE "+contentionTable+" SET n = 0"); err != nil {
		r.err = fmt.Errorf("reset the rows: %w", err)
		return r
	}
	conns, err := connectContentionClients(ctx, env, c.target, c.clients)
	defer func() {
		for _, conn := range conns {
			conn.Close(context.Background())
		}
	}()
	if err != nil {
		r.err = err
		return r
	}

	var before retryCounters
	if c.target == contentionGateway {
		before, err = scrapeRetryCounters(ctx, env.gatewayMetricsURL, routeDSQLTx)
		if err != nil {
			r.err = err
			return r
		}
	}

	tallies := make([]*contentionTally, len(conns))
	start := time.Now()
	deadline := start.Add(d)
	var wg sync.WaitGroup
	for i, conn := range conns {
		tallies[i] = newTally()
		wg.Add(1)
		go func() {
			defer wg.Done()
			runContentionClient(ctx, conn, c.workload, i, deadline, tallies[i])
		}()
	}
	wg.Wait()
	r.elapsed = time.Since(start)
	for _, t := range tallies {
		r.merge(t)
	}

	if c.target == contentionGateway {
		after, err := scrapeRetryCounters(ctx, env.gatewayMetricsURL, routeDSQLTx)
		if err != nil {
			r.err = err
			return r
		}
		r.retries, r.exhausted, r.retriesKnown = after.since(before)
	}
	sum, err := env.pg.Psql(ctx, "postgres", "-Atc", "SELECT coalesce(sum(n), 0) FROM "+contentionTable)
	if err != nil {
		r.err = fmt.Errorf("read the sum: %w", err)
		return r
	}
	if r.sum, err = strconv.ParseInt(strings.TrimSpace(sum), 10, 64); err != nil {
		r.err = fmt.Errorf("read the sum: %q: %w", sum, err)
	}
	return r
}

// runContentionClient updates until deadline: client i starts at row
// i mod contentionRows and moves to the next row after each operation.
// After a failed operation that leaves the connection in a transaction (a
// one-unit transaction whose UPDATE failed) it sends ROLLBACK. It stops
// early when the connection breaks. Operations run under ctx, not the
// deadline, so that none is cut off half way.
func runContentionClient(ctx context.Context, conn *pgx.Conn, workload string, i int, deadline time.Time, t *contentionTally) {
	for k := 0; time.Now().Before(deadline); k++ {
		if ctx.Err() != nil {
			return
		}
		id := (i+k)%contentionRows + 1
		start := time.Now()
		err := contentionOp(ctx, conn, workload, id)
		t.record(err, time.Since(start))
		if err == nil {
			continue
		}
		if conn.IsClosed() {
			return
		}
		if conn.PgConn().TxStatus() != 'I' {
			if _, rerr := conn.Exec(ctx, "ROLLBACK", pgx.QueryExecModeSimpleProtocol); rerr != nil {
				t.record(fmt.Errorf("ROLLBACK after a failed transaction: %w", rerr), 0)
				return
			}
		}
	}
}

// contentionOp runs one operation of workload on row id. The one-unit
// transaction has no arguments, so pgx sends it as one Query message; the
// autocommit UPDATE goes as Parse, Bind, Describe, Execute and Sync in one
// round trip (TestContentionOpMessages checks both).
func contentionOp(ctx context.Context, conn *pgx.Conn, workload string, id int) error {
	var err error
	if workload == workloadTxOneUnit {
		_, err = conn.Exec(ctx, updateSQL(workload, id), pgx.QueryExecModeSimpleProtocol)
	} else {
		_, err = conn.Exec(ctx, updateSQL(workload, id), pgx.QueryExecModeExec, id)
	}
	return err
}

// connectContentionClients opens n pgx connections to target, eight at a
// time. On error it returns the ones it opened with the first error.
func connectContentionClients(ctx context.Context, env *environment, target string, n int) ([]*pgx.Conn, error) {
	cfg, err := contentionConnConfig(env, target)
	if err != nil {
		return nil, err
	}
	var minter *authbridge.TokenMinter
	if target == contentionEmulator {
		creds := credentials.NewStaticCredentialsProvider(env.awsKeyID, env.awsSecret, "")
		minter = authbridge.NewTokenMinter(emulatorHost, emulatorRegion, authbridge.AdminRole, 15*time.Minute, creds)
	}
	conns := make([]*pgx.Conn, n)
	errs := make([]error, n)
	sem := make(chan struct{}, 8)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			dctx, cancel := context.WithTimeout(ctx, 30*time.Second)
			defer cancel()
			c := cfg.Copy()
			if minter != nil {
				// A fresh IAM token per connection, as the gateway does.
				if c.Password, errs[i] = minter.Mint(dctx); errs[i] != nil {
					return
				}
			}
			conns[i], errs[i] = pgx.ConnectConfig(dctx, c)
		}()
	}
	wg.Wait()
	var opened []*pgx.Conn
	for _, c := range conns {
		if c != nil {
			opened = append(opened, c)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return opened, fmt.Errorf("connect %d clients to %s: %w", n, target, firstError(errs))
	}
	return opened, nil
}

func firstError(errs []error) error {
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

// contentionConnConfig is the pgx configuration of a client of target:
// the gateway's transaction-mode dsql route as the benchmark user, or the
// emulator as admin over TLS (the password, an IAM token, is set per
// connection).
func contentionConnConfig(env *environment, target string) (*pgx.ConnConfig, error) {
	var addr, user, password, database string
	switch target {
	case contentionGateway:
		addr, user, password, database = env.gatewayAddr, gatewayUser, env.gatewayPassword, routeDSQLTx
	case contentionEmulator:
		addr, user, database = env.emulatorAddr, authbridge.AdminRole, "postgres"
	default:
		return nil, fmt.Errorf("unknown contention target %q", target)
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, err
	}
	cfg, err := pgx.ParseConfig(fmt.Sprintf("host=%s port=%s user=%s dbname=%s sslmode=disable application_name=benchrun", host, port, user, database))
	if err != nil {
		return nil, err
	}
	cfg.Password = password
	cfg.DefaultQueryExecMode = pgx.QueryExecModeExec
	if target == contentionEmulator {
		pem, err := os.ReadFile(env.caFile)
		if err != nil {
			return nil, fmt.Errorf("emulator CA: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("emulator CA %s: no certificate", env.caFile)
		}
		cfg.TLSConfig = &tls.Config{ServerName: emulatorHost, RootCAs: pool, MinVersion: tls.VersionTLS12}
	}
	return cfg, nil
}

// retryCounters are the gateway's OCC retry counters for one route;
// present is false when its metrics have no dsqlgate_occ_retries_total.
type retryCounters struct {
	retries, exhausted float64
	present            bool
}

// since is the counters' growth from before to c. known is false when the
// counter is absent after the cell. A counter with labels has no series
// until its first increment, so one absent before and present after grew
// from zero.
func (c retryCounters) since(before retryCounters) (retries, exhausted float64, known bool) {
	if !c.present {
		return 0, 0, false
	}
	return c.retries - before.retries, c.exhausted - before.exhausted, true
}

// scrapeRetryCounters reads the OCC retry counters of route from the
// gateway's metrics page.
func scrapeRetryCounters(ctx context.Context, url, route string) (retryCounters, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return retryCounters{}, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return retryCounters{}, fmt.Errorf("scrape %s: %w", url, err)
	}
	defer resp.Body.Close()
	return parseRetryCounters(resp.Body, route)
}

// parseRetryCounters reads a Prometheus text page: the sum of the series
// of occRetriesMetric and occExhaustedMetric whose route label is route
// (or that have no route label). The counter counts as present when the
// page has a series or a TYPE line for occRetriesMetric.
func parseRetryCounters(page io.Reader, route string) (retryCounters, error) {
	var c retryCounters
	sc := bufio.NewScanner(page)
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for sc.Scan() {
		line := sc.Text()
		if rest, ok := strings.CutPrefix(line, "# TYPE "); ok {
			if name, _, _ := strings.Cut(rest, " "); name == occRetriesMetric {
				c.present = true
			}
			continue
		}
		if strings.HasPrefix(line, "#") {
			continue
		}
		name, labels, value, ok := parseSample(line)
		if !ok || (name != occRetriesMetric && name != occExhaustedMetric) {
			continue
		}
		if r, has := labels["route"]; has && r != route {
			continue
		}
		if name == occRetriesMetric {
			c.present = true
			c.retries += value
		} else {
			c.exhausted += value
		}
	}
	if err := sc.Err(); err != nil {
		return retryCounters{}, fmt.Errorf("read metrics: %w", err)
	}
	return c, nil
}

// parseSample splits a Prometheus text sample line, name{a="x",b="y"} 12
// (with an optional timestamp after the value). Label values with escaped
// quotes are read as they stand.
func parseSample(line string) (name string, labels map[string]string, value float64, ok bool) {
	labels = map[string]string{}
	rest := line
	if i := strings.IndexAny(line, "{ "); i < 0 {
		return "", nil, 0, false
	} else {
		name, rest = line[:i], line[i:]
	}
	if strings.HasPrefix(rest, "{") {
		end := strings.LastIndex(rest, "}")
		if end < 0 {
			return "", nil, 0, false
		}
		for _, pair := range splitLabels(rest[1:end]) {
			k, v, found := strings.Cut(pair, "=")
			if !found {
				return "", nil, 0, false
			}
			labels[strings.TrimSpace(k)] = strings.Trim(strings.TrimSpace(v), `"`)
		}
		rest = rest[end+1:]
	}
	f := strings.Fields(rest)
	if len(f) == 0 {
		return "", nil, 0, false
	}
	v, err := strconv.ParseFloat(f[0], 64)
	if err != nil {
		return "", nil, 0, false
	}
	return name, labels, v, true
}

// splitLabels splits a="x",b="y" at the commas outside quotes.
func splitLabels(s string) []string {
	var parts []string
	inQuote, escaped, begin := false, false, 0
	for i, r := range s {
		switch {
		case escaped:
			escaped = false
		case r == '\\':
			escaped = true
		case r == '"':
			inQuote = !inQuote
		case r == ',' && !inQuote:
			parts = append(parts, s[begin:i])
			begin = i + 1
		}
	}
	if strings.TrimSpace(s[begin:]) != "" {
		parts = append(parts, s[begin:])
	}
	return parts
}

// writeContention writes the contention section of the report.
func writeContention(w func(string, ...any), results []contentionResult, d time.Duration, poolSize int) {
	w("## Contention: hot rows under optimistic concurrency\n\n")
	w("N clients increment %d counter rows for %s per cell: client i starts at row i mod %d and moves to the next row after each operation, so about N/%d clients write each row at once. The DSQL emulator runs its backend sessions at REPEATABLE READ with a 10 ms `lock_timeout`, so of two transactions writing one row one fails at once with SQLSTATE 40001, as on DSQL. The rows are reset to 0 before each cell.\n\n",
		contentionRows, d, contentionRows, contentionRows)
	w("- `%s`: `%s` with the id as a parameter, one autocommit statement (pgx `QueryExecModeExec`: Parse, Bind, Describe, Execute, Sync in one round trip).\n", workloadAutocommit, updateSQL(workloadAutocommit, 0))
	w("- `%s`: `%s`, the id inlined, sent as one simple Query message (pgx `Exec` in `QueryExecModeSimpleProtocol` with no arguments). When its UPDATE fails the transaction is left aborted and the client sends `ROLLBACK` (not counted as an operation).\n", workloadTxOneUnit, updateSQL(workloadTxOneUnit, 1))
	w("- Targets: `%s` is the gateway's transaction-mode dsql route (`pool.size: %d`) to the emulator; `%s` is the emulator directly, over TLS as `admin` with a fresh IAM token per connection.\n\n", contentionGateway, poolSize, contentionEmulator)
	w("OCC errors are those the clients saw (40001, by DSQL code; \"40001\" alone is one without a code). Gateway retries are the growth of `%s{route=\"%s\"}` over the cell (`%s` beside it); n/a: the gateway's metrics have no such counter (a build without OCC retries, or one whose counter has no series before its first retry); — : the target is not the gateway. Latency is per successful operation, from sending it to its result. \"sum = successes\" checks that the counters' final sum equals the updates the clients saw succeed: a lost or doubled update, or one that committed although its client saw an error, shows there.\n\n",
		occRetriesMetric, routeDSQLTx, occExhaustedMetric)
	w("| workload | target | clients | successful updates | updates/s | p50 ms | p99 ms | OCC errors | other errors | gateway retries | retries exhausted | sum = successes |\n")
	w("|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|---|\n")
	var notes []string
	for _, r := range results {
		c := r.cell
		w("| %s | `%s` | %d |", c.workload, c.target, c.clients)
		if r.err != nil {
			w(" failed | | | | | | | | |\n")
			notes = append(notes, fmt.Sprintf("- %s: %v", c, r.err))
			continue
		}
		p50, p99 := "—", "—"
		if len(r.latUs) > 0 {
			p50 = millis(percentile(slices.Clone(r.latUs), 0.5) / 1000)
			p99 = millis(percentile(slices.Clone(r.latUs), 0.99) / 1000)
		}
		retries, exhausted := "—", "—"
		if c.target == contentionGateway {
			retries, exhausted = "n/a", "n/a"
			if r.retriesKnown {
				retries, exhausted = thousands(r.retries), thousands(r.exhausted)
			}
		}
		check := "yes"
		if r.sum != r.ok {
			check = fmt.Sprintf("**no**: sum %d", r.sum)
		}
		w(" %s | %s | %s | %s | %s | %s | %s | %s | %s |\n", thousands(float64(r.ok)), thousands(r.throughput()), p50, p99,
			kindCounts(r.occ), kindCounts(r.other), retries, exhausted, check)
		for _, kind := range sortedKeys(r.other) {
			notes = append(notes, fmt.Sprintf("- %s: %d × %s, e.g. %s", c, r.other[kind], kind, r.sample[kind]))
		}
	}
	w("\n")
	if len(notes) > 0 {
		w("Other errors and failed cells:\n\n%s\n\n", strings.Join(notes, "\n"))
	}
}

// kindCounts is a total with its parts: "12 (OC000 10, 40001 2)", or "0".
func kindCounts(m map[string]int64) string {
	total := sumInt64(m)
	if total == 0 {
		return "0"
	}
	var parts []string
	for _, k := range sortedKeys(m) {
		if m[k] > 0 {
			parts = append(parts, fmt.Sprintf("%s %s", k, thousands(float64(m[k]))))
		}
	}
	return fmt.Sprintf("%s (%s)", thousands(float64(total)), strings.Join(parts, ", "))
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
