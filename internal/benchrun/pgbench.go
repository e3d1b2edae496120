//go:build linux

package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"math"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
)

// workload is one pgbench script and protocol.
type workload struct {
	name string
	// args are the pgbench arguments that make the workload.
	args []string
	// prepared needs protocol-level prepared statements (-M prepared).
	prepared bool
	// connect opens a new connection per transaction (-C).
	connect bool
	// writes: its transactions write rows, so on a dsql target they can
	// lose an optimistic-concurrency conflict, which pgbench retries.
	writes bool
}

// workloads in report order. The connection-per-transaction one runs only
// at 16 clients (planFor).
var workloads = []workload{
	{name: "select-only, simple", args: []string{"-S", "-M", "simple"}},
	{name: "select-only, extended", args: []string{"-S", "-M", "extended"}},
	{name: "select-only, prepared", args: []string{"-S", "-M", "prepared"}, prepared: true},
	{name: "tpcb-like, simple", args: []string{"-b", "tpcb-like", "-M", "simple"}, writes: true},
	{name: "select-only, simple, -C", args: []string{"-S", "-M", "simple", "-C"}, connect: true},
}

// cell is a workload at a client count.
type cell struct {
	workload workload
	clients  int
}

func (c cell) String() string { return fmt.Sprintf("%s, %d clients", c.workload.name, c.clients) }

// runResult is one pgbench run of one cell against one target.
type runResult struct {
	tps          float64
	transactions int64
	failed       int64   // pgbench's "number of failed transactions"
	avgMs, p99Ms float64 // from the per-transaction log
	connectMs    float64 // average connection time (-C), or the initial one
	// serverCPU is the CPU time the target's pooler (gateway or
	// PgBouncer) used during the run; emulatorCPU the emulator's.
	serverCPU, emulatorCPU time.Duration
	err                    error
}

// runRounds runs every cell against every target that supports it, once
// per round, rotating the order of the targets from cell to cell and from
// round to round. A warm-up run per target first fills every pool.
func runRounds(ctx context.Context, env *environment, o options, p plan, logf func(string, ...any)) ([]map[string][]*runResult, error) {
	logf("warming up: each pooler at %d clients", p.maxClients())
	warm := cell{workload: workloads[0], clients: p.maxClients()}
	for _, t := range env.targets {
		if t.server == nil {
			continue // nothing to fill
		}
		// A failed warm-up is not fatal: its runs in the rounds will
		// show whether the target works.
		if r := runPgbench(ctx, env, t, warm, 2*time.Second, "warmup"); r.err != nil {
			logf("warm-up of %s: %v", t.key, r.err)
		}
	}

	out := make([]map[string][]*runResult, len(p.cells))
	for i := range out {
		out[i] = map[string][]*runResult{}
	}
	total := 0
	for _, c := range p.cells {
		total += len(targetsFor(env.targets, c))
	}
	total *= o.rounds
	done := 0
	started := time.Now()
	for round := 0; round < o.rounds; round++ {
		for i, c := range p.cells {
			ts := targetsFor(env.targets, c)
			for j := range ts {
				t := ts[(j+i+round)%len(ts)]
				if err := ctx.Err(); err != nil {
					return nil, err
				}
				r := runPgbench(ctx, env, t, c, o.duration, fmt.Sprintf("r%dc%d-%s", round, i, t.key))
				out[i][t.key] = append(out[i][t.key], r)
				done++
				eta := time.Duration(float64(time.Since(started)) / float64(done) * float64(total-done))
				if r.err != nil {
					logf("[%d/%d] round %d  %-40s %-13s FAILED: %v", done, total, round+1, c, t.key, r.err)
				} else {
					logf("[%d/%d] round %d  %-40s %-13s %9.0f tps  avg %.3f ms  p99 %.3f ms  (%s left)",
						done, total, round+1, c, t.key, r.tps, r.avgMs, r.p99Ms, eta.Round(time.Second))
				}
			}
		}
	}
	return out, nil
}

// targetsFor are the targets that can run c: all but those without
// prepared statement support for -M prepared.
func targetsFor(targets []*target, c cell) []*target {
	var ts []*target
	for _, t := range targets {
		if c.workload.prepared && !t.prepared {
			continue
		}
		ts = append(ts, t)
	}
	return ts
}

// runPgbench runs one pgbench against t for d and reads its summary, its
// per-transaction log and the CPU the pooler and emulator used meanwhile.
// name makes the log files unique. Failures are in the result's err.
func runPgbench(ctx context.Context, env *environment, t *target, c cell, d time.Duration, name string) *runResult {
	host, port, _ := net.SplitHostPort(t.addr)
	logDir := filepath.Join(env.dir, "pgbench-logs")
	if err := os.MkdirAll(logDir, 0o755); err != nil {
		return &runResult{err: err}
	}
	prefix := filepath.Join(logDir, name)
	args := []string{"-n", "-h", host, "-p", port, "-U", t.user, "-d", t.database,
		"-c", strconv.Itoa(c.clients), "-j", strconv.Itoa(min(2, c.clients)),
		"-T", strconv.Itoa(int(d / time.Second)), "-l", "--log-prefix=" + prefix}
	args = append(args, c.workload.args...)
	if t.emulator != nil && c.workload.writes {
		// DSQL fails one of two transactions that write a row (40001)
		// and an interactive transaction is the application's to retry,
		// as pgbench does with --max-tries (0: until -T ends).
		args = append(args, "--max-tries=0")
	}
	cmd := exec.CommandContext(ctx, filepath.Join(env.pg.BinDir(), "pgbench"), args...)
	cmd.Env = append(inheritedEnv(), "PGPASSWORD="+t.password, "PGSSLMODE=disable", "PGAPPNAME=pgbench")
	var stdout, stderr strings.Builder
	cmd.Stdout, cmd.Stderr = &stdout, &stderr

	cpuBefore, emuBefore, err := cpuOf(t)
	if err != nil {
		return &runResult{err: err}
	}
	runErr := cmd.Run()
	cpuAfter, emuAfter, err := cpuOf(t)
	if err != nil {
		return &runResult{err: err}
	}
	defer removeLogs(prefix)
	if runErr != nil {
		return &runResult{err: fmt.Errorf("pgbench: %w: %s", runErr, lastLines(stderr.String(), 3))}
	}
	r, err := parsePgbenchOutput(stdout.String())
	if err != nil {
		return &runResult{err: err}
	}
	r.serverCPU, r.emulatorCPU = cpuAfter-cpuBefore, emuAfter-emuBefore
	lat, err := readLatencies(prefix)
	if err != nil {
		return &runResult{err: err}
	}
	if len(lat) == 0 {
		return &runResult{err: errors.New("pgbench logged no transactions")}
	}
	r.avgMs = mean(lat) / 1000
	r.p99Ms = percentile(lat, 0.99) / 1000
	return r
}

// cpuOf reads the CPU time of t's pooler and of its emulator (zero for
// those it does not have).
func cpuOf(t *target) (server, emulator time.Duration, err error) {
	if t.server != nil {
		if server, err = t.server.cpuTime(); err != nil {
			return 0, 0, err
		}
	}
	if t.emulator != nil {
		if emulator, err = t.emulator.cpuTime(); err != nil {
			return 0, 0, err
		}
	}
	return server, emulator, nil
}

var (
	reTPS       = regexp.MustCompile(`(?m)^tps = ([0-9.]+) \(`)
	reProcessed = regexp.MustCompile(`(?m)^number of transactions actually processed: (\d+)`)
	reFailed    = regexp.MustCompile(`(?m)^number of failed transactions: (\d+)`)
	reConnect   = regexp.MustCompile(`(?m)^(?:average|initial) connection time = ([0-9.]+) ms`)
)

// parsePgbenchOutput reads pgbench's summary: tps (PostgreSQL 14 and later
// print it once, "without initial connection time", or with -C "including
// reconnection times"), the transaction and failure counts, and the
// connection time.
func parsePgbenchOutput(out string) (*runResult, error) {
	r := &runResult{}
	m := reTPS.FindStringSubmatch(out)
	if m == nil {
		return nil, fmt.Errorf("no tps in pgbench output: %s", lastLines(out, 5))
	}
	r.tps, _ = strconv.ParseFloat(m[1], 64)
	if m := reProcessed.FindStringSubmatch(out); m != nil {
		r.transactions, _ = strconv.ParseInt(m[1], 10, 64)
	}
	if m := reFailed.FindStringSubmatch(out); m != nil {
		r.failed, _ = strconv.ParseInt(m[1], 10, 64)
	}
	if m := reConnect.FindStringSubmatch(out); m != nil {
		r.connectMs, _ = strconv.ParseFloat(m[1], 64)
	}
	if r.transactions == 0 {
		return nil, fmt.Errorf("pgbench processed no transactions: %s", lastLines(out, 5))
	}
	return r, nil
}

// readLatencies reads every per-transaction log pgbench wrote for prefix
// (one file per thread: prefix.PID, prefix.PID.1, ...) and returns the
// latencies in microseconds. A line is "client_id transaction_no time
// script_no time_epoch time_us"; time is "failed" or "skipped" for
// transactions that did not complete, which are left out.
func readLatencies(prefix string) ([]float64, error) {
	files, err := filepath.Glob(prefix + ".*")
	if err != nil || len(files) == 0 {
		return nil, fmt.Errorf("no pgbench log files %s.*", prefix)
	}
	var lat []float64
	for _, f := range files {
		if lat, err = appendLatencies(lat, f); err != nil {
			return nil, err
		}
	}
	return lat, nil
}

func appendLatencies(lat []float64, path string) ([]float64, error) {
	f, err := os.Open(path)
	if err != nil {
		return lat, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 3 {
			continue
		}
		us, err := strconv.ParseInt(fields[2], 10, 64)
		if err != nil {
			continue // failed or skipped
		}
		lat = append(lat, float64(us))
	}
	if err := sc.Err(); err != nil {
		return lat, fmt.Errorf("read %s: %w", path, err)
	}
	return lat, nil
}

func removeLogs(prefix string) {
	files, _ := filepath.Glob(prefix + ".*")
	for _, f := range files {
		os.Remove(f)
	}
}

// mean of xs; xs must not be empty.
func mean(xs []float64) float64 {
	s := 0.0
	for _, x := range xs {
		s += x
	}
	return s / float64(len(xs))
}

// percentile is the nearest-rank q-quantile of xs (0 < q <= 1); it sorts
// xs in place. xs must not be empty.
func percentile(xs []float64, q float64) float64 {
	slices.Sort(xs)
	rank := int(math.Ceil(q*float64(len(xs)))) - 1
	return xs[min(max(rank, 0), len(xs)-1)]
}

// median of xs without changing it; NaN-free input; 0 for none.
func median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, " | ")
}
