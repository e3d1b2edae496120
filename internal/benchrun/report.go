//go:build linux

package main

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"
)

// machine describes where the benchmark ran.
type machine struct {
	cpus                                   int
	model, memory, kernel, os              string
	goVersion                              string
	postgres, pgbench, pgbouncer, dsqlgate string
	// loadBefore and loadAfter are /proc/loadavg's 1-, 5- and 15-minute
	// load averages before benchrun started anything and after the
	// pgbench rounds: the part above what the benchmark itself runs is
	// other work sharing the machine.
	loadBefore, loadAfter string
}

// loadAverage is the first three fields of /proc/loadavg.
func loadAverage() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "unknown"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "unknown"
	}
	return strings.Join(f[:3], " ")
}

func describeMachine(ctx context.Context, env *environment) machine {
	m := machine{cpus: runtime.NumCPU(), goVersion: runtime.Version()}
	m.model = firstField("/proc/cpuinfo", "model name")
	if kb, err := strconv.ParseInt(strings.TrimSuffix(firstField("/proc/meminfo", "MemTotal"), " kB"), 10, 64); err == nil {
		m.memory = fmt.Sprintf("%.1f GiB", float64(kb)/(1<<20))
	}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m.kernel = "Linux " + strings.TrimSpace(string(b))
	}
	m.os = strings.Trim(firstFieldSep("/etc/os-release", "PRETTY_NAME", "="), `"`)
	m.postgres = firstLine(ctx, filepath.Join(env.pg.BinDir(), "postgres"), "--version")
	m.pgbench = firstLine(ctx, filepath.Join(env.pg.BinDir(), "pgbench"), "--version")
	m.pgbouncer = firstLine(ctx, env.pgbouncerBin, "--version")
	m.dsqlgate = firstLine(ctx, env.dsqlgateBin, "version")
	return m
}

// firstField is the value of the first "key : value" line of a /proc file.
func firstField(path, key string) string { return firstFieldSep(path, key, ":") }

func firstFieldSep(path, key, sep string) string {
	f, err := os.Open(path)
	if err != nil {
		return "unknown"
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), sep)
		if ok && strings.TrimSpace(k) == key {
			return strings.TrimSpace(v)
		}
	}
	return "unknown"
}

func firstLine(ctx context.Context, bin string, args ...string) string {
	out, err := exec.CommandContext(ctx, bin, args...).Output()
	if err != nil {
		return "unknown"
	}
	line, _, _ := strings.Cut(strings.TrimSpace(string(out)), "\n")
	return line
}

// report is everything BENCHMARKS.md shows.
type report struct {
	command     string
	began       time.Time
	elapsed     time.Duration
	opts        options
	plan        plan
	machine     machine
	env         setup
	results     []map[string][]*runResult
	memory      []memoryResult
	replacement []replacementResult
	contention  []contentionResult
}

// summary is the median over the rounds of one cell and target.
type summary struct {
	runs, failedRuns int
	tps, spread      float64 // spread: (max - min) / median of tps
	avgMs, p99Ms     float64
	connectMs        float64
	cpuPer1k         float64 // the pooler's CPU seconds per 1,000 transactions
	emuPer1k         float64 // the emulator's
	failedTx         int64
	errors           []string
}

func summarize(runs []*runResult) summary {
	var s summary
	var tps, avg, p99, conn, cpu, emu []float64
	for _, r := range runs {
		s.runs++
		if r.err != nil {
			s.failedRuns++
			s.errors = append(s.errors, r.err.Error())
			continue
		}
		tps = append(tps, r.tps)
		avg = append(avg, r.avgMs)
		p99 = append(p99, r.p99Ms)
		conn = append(conn, r.connectMs)
		cpu = append(cpu, r.serverCPU.Seconds()/float64(r.transactions)*1000)
		emu = append(emu, r.emulatorCPU.Seconds()/float64(r.transactions)*1000)
		s.failedTx += r.failed
	}
	if len(tps) == 0 {
		return s
	}
	s.tps, s.avgMs, s.p99Ms = median(tps), median(avg), median(p99)
	s.connectMs, s.cpuPer1k, s.emuPer1k = median(conn), median(cpu), median(emu)
	if s.tps > 0 {
		s.spread = (slices.Max(tps) - slices.Min(tps)) / s.tps
	}
	return s
}

// Target keys in report order: the baselines, then the fair comparison
// (the gateway straight to PostgreSQL), then the emulator routes.
var reportOrder = []string{"postgres", "pgbouncer", "gw-pg", "gw-dsql-tx", "gw-dsql-sess"}

var gatewayTargets = []string{"gw-pg", "gw-dsql-tx", "gw-dsql-sess"}

func (r report) markdown() string {
	var b strings.Builder
	w := func(format string, args ...any) { fmt.Fprintf(&b, format, args...) }
	sums := make([]map[string]summary, len(r.results))
	for i, byTarget := range r.results {
		sums[i] = map[string]summary{}
		for key, runs := range byTarget {
			sums[i][key] = summarize(runs)
		}
	}

	w("# Benchmarks\n\n")
	kind := "full run"
	if r.opts.quick {
		kind = "quick run (`make bench-quick`: fewer cells, one round; use `make bench` for numbers to quote)"
	}
	w("Written by `internal/benchrun` (%s) on %s UTC; the run took %s.\n\n",
		kind, r.began.UTC().Format("2006-01-02 15:04"), r.elapsed.Round(time.Second))
	w("Command: `%s`\n\n", r.command)

	w("## Machine\n\n| | |\n|---|---|\n")
	m := r.machine
	w("| CPU | %d × %s |\n| memory | %s |\n| OS | %s, %s |\n| Go | %s |\n| PostgreSQL | %s |\n| pgbench | %s |\n| PgBouncer | %s |\n| dsqlgate | %s |\n\n",
		m.cpus, m.model, m.memory, m.os, m.kernel, m.goVersion, m.postgres, m.pgbench, m.pgbouncer, m.dsqlgate)
	if len(r.plan.cells) > 0 {
		w("Load average (1, 5, 15 minutes) before the run: %s; after the pgbench rounds: %s.\n\n", m.loadBefore, m.loadAfter)
	} else {
		w("Load average (1, 5, 15 minutes) before the run: %s.\n\n", m.loadBefore)
	}
	w("Everything runs on this one machine and shares its cores: pgbench, PostgreSQL, the emulator, the gateway and PgBouncer. A load average well above what was idle before the run means other work shared the machine, and the spread of the rounds will show it.\n\n")

	if len(r.plan.cells) > 0 {
		r.writeSetup(w)
		r.writeHowToRead(w)
		r.writeThroughput(w, sums)
		r.writeRatios(w, sums)
		r.writeLatency(w, sums)
		r.writeCPU(w, sums)
		r.writeBaseline(w, sums)
		r.writeConnect(w, sums)
	}
	if len(r.plan.idleClients) > 0 {
		r.writeMemory(w)
	}
	if r.plan.replacements > 0 {
		r.writeReplacement(w)
	}
	if len(r.plan.contention) > 0 {
		writeContention(w, r.contention, r.opts.contentionDuration, r.env.poolSize)
	}
	r.writeFailures(w, sums)
	return b.String()
}

func (r report) writeSetup(w func(string, ...any)) {
	w("## Setup\n\n| target | what pgbench connects to |\n|---|---|\n")
	for _, key := range append(reportOrder[:len(reportOrder):len(reportOrder)], baselineKey) {
		if t := r.target(key); t != nil {
			w("| `%s` | %s |\n", t.key, t.desc)
		}
	}
	w("\n")
	w("- PostgreSQL: a private cluster (fsync off, shared_buffers 256MB, max_connections %d), `pgbench -i -s %d`. Every target reaches it over TCP on 127.0.0.1 with SCRAM-SHA-256; nothing uses TLS between benchrun's processes except the gateway ↔ emulator hop, which is TLS as DSQL is.\n",
		maxPostgresConnections, pgbenchScale)
	w("- Pools: PgBouncer 1.18 `pool_mode = transaction`, `default_pool_size = %d`; the gateway's transaction-mode routes `pool.size: %d` (the gateway's default, and the same as PgBouncer's). The session-mode route has `pool.size: %d`, more than the largest client count: in session mode each client holds an upstream for its whole connection, so a smaller pool would make clients queue for whole sessions, by design, and measure the queue rather than the gateway.\n",
		r.env.poolSize, r.env.poolSize, r.env.sessionPoolSize)
	w("- The gateway and the emulator run as their own processes (`dsqlgate serve`, `dsqlgate emulate`), as does PgBouncer (as the postgres user), so that /proc gives each one's CPU time and memory. Logging: the gateway at `warn`, PgBouncer with `log_connections = 0` and `log_disconnections = 0`, so neither pays for a log line per connection. Client TLS is off on both.\n")
	w("- DSQL's limit of 100 new connections per second is raised to %d in the emulator and in the gateway's `dial_rate`, so that filling the session-mode pool and the replacement test are not throttled; at steady state no cell dials.\n", dialRate)
	w("- pgbench: `-n` (no vacuum), `-j 2` (one thread with one client), `-T %d`, per-transaction log (`-l`); %d round(s). Each round runs every cell against every target once, the targets' order rotated from cell to cell and round to round; the tables show the median over the rounds. A warm-up run per target at %d clients fills the pools first. `-M prepared` does not run against PgBouncer 1.18, whose transaction mode does not support protocol-level prepared statements (that came in 1.21).\n\n",
		int(r.opts.duration/time.Second), r.opts.rounds, r.plan.maxClients())
}

func (r report) writeHowToRead(w func(string, ...any)) {
	w("## How to read this\n\n")
	w("Every number here was measured side by side in this one run, on a small shared machine: compare ratios within a table, not absolute numbers between machines. ")
	w("`gw-pg` against `pgbouncer` is the like-for-like comparison of two poolers in front of the same PostgreSQL; `gw-dsql-tx` adds the DSQL emulator hop (TLS, its own relay process), so `gw-dsql-tx` against `gw-pg` is the emulator's cost, not the gateway's. ")
	w("`postgres` has no pooler at all: at 1 client it is the floor for latency; at 256 clients it runs 256 backends where the poolers run %d. ", r.env.poolSize)
	w("On the dsql targets pgbench retries a tpcb-like transaction that lost an optimistic-concurrency conflict (`--max-tries=0`), as a DSQL application must for an interactive transaction: its TPS counts committed transactions, and the retries cost time. ")
	w("TPS excludes the initial connection time (with `-C` it includes every reconnection, which is the point of that cell). ")
	w("Latency is per transaction from pgbench's log: average and 99th percentile, medians over the rounds. ")
	w("CPU is the pooler process's user+system time during the run (connection set-up and tear-down included) per 1,000 transactions; the emulator's CPU is shown apart, because DSQL itself would not run on the gateway's machine. ")
	w("The ± after a TPS figure is the spread of the rounds ((max − min) / median); a ratio closer to 1 than that spread is not a difference. ")
	w("With two cores the client, the pooler and the server compete for CPU, so a pooler that burns more CPU per transaction also takes it from PostgreSQL and pgbench: CPU per transaction is the figure that carries over to bigger machines.\n\n")
}

// forEachCell calls fn for every cell in plan order.
func (r report) forEachCell(fn func(i int, c cell)) {
	for i, c := range r.plan.cells {
		fn(i, c)
	}
}

// cellTableHead writes the head of a table with a row per cell and a
// right-aligned column per head.
func cellTableHead(w func(string, ...any), heads []string) {
	w("| workload | clients | %s |\n|---|--:|%s\n", strings.Join(heads, " | "), strings.Repeat("--:|", len(heads)))
}

func (r report) writeThroughput(w func(string, ...any), sums []map[string]summary) {
	w("## Throughput (transactions per second)\n\n")
	r.writeTargetTable(w, sums, func(s summary, ok bool) string {
		switch {
		case !ok:
			return "—"
		case s.tps == 0:
			return "failed"
		}
		return fmt.Sprintf("%s ±%.0f%%", thousands(s.tps), 100*s.spread)
	})
}

// writeTargetTable writes a table with a row per cell and a column per
// target in report order; text gives an entry from the cell's summary for
// the target (ok: the target ran the cell).
func (r report) writeTargetTable(w func(string, ...any), sums []map[string]summary, text func(s summary, ok bool) string) {
	cellTableHead(w, backquote(reportOrder))
	r.forEachCell(func(i int, c cell) {
		w("| %s | %d |", c.workload.name, c.clients)
		for _, key := range reportOrder {
			s, ok := sums[i][key]
			w(" %s |", text(s, ok))
		}
		w("\n")
	})
	w("\n")
}

func (r report) writeRatios(w func(string, ...any), sums []map[string]summary) {
	w("## Ratios (TPS of dsqlgate ÷ TPS of the baseline)\n\n")
	w("Above 1: dsqlgate is faster.\n\n")
	var heads []string
	for _, base := range []string{"pgbouncer", "postgres"} {
		for _, g := range gatewayTargets {
			heads = append(heads, fmt.Sprintf("`%s` ÷ `%s`", g, base))
		}
	}
	cellTableHead(w, heads)
	r.forEachCell(func(i int, c cell) {
		w("| %s | %d |", c.workload.name, c.clients)
		for _, base := range []string{"pgbouncer", "postgres"} {
			for _, g := range gatewayTargets {
				w(" %s |", ratio(sums[i], g, base))
			}
		}
		w("\n")
	})
	w("\n")
}

func ratio(s map[string]summary, num, den string) string {
	a, okA := s[num]
	b, okB := s[den]
	if !okA || !okB || a.tps == 0 || b.tps == 0 {
		return "—"
	}
	return fmt.Sprintf("%.2f", a.tps/b.tps)
}

func (r report) writeLatency(w func(string, ...any), sums []map[string]summary) {
	w("## Latency per transaction (ms, average / p99)\n\n")
	r.writeTargetTable(w, sums, func(s summary, ok bool) string {
		if !ok || s.tps == 0 {
			return "—"
		}
		return millis(s.avgMs) + " / " + millis(s.p99Ms)
	})
}

func (r report) writeCPU(w func(string, ...any), sums []map[string]summary) {
	w("## CPU per 1,000 transactions (seconds of user+system time)\n\n")
	heads := []string{"`pgbouncer`", "dsqlgate in `gw-pg`", "dsqlgate in `gw-dsql-tx`", "dsqlgate in `gw-dsql-sess`", "emulator in `gw-dsql-tx`", "emulator in `gw-dsql-sess`"}
	cellTableHead(w, heads)
	r.forEachCell(func(i int, c cell) {
		w("| %s | %d |", c.workload.name, c.clients)
		for _, key := range []string{"pgbouncer", "gw-pg", "gw-dsql-tx", "gw-dsql-sess"} {
			w(" %s |", cpuCell(sums[i], key, false))
		}
		for _, key := range []string{"gw-dsql-tx", "gw-dsql-sess"} {
			w(" %s |", cpuCell(sums[i], key, true))
		}
		w("\n")
	})
	w("\n")
}

// target returns the run's target key, nil when the run had none.
func (r report) target(key string) *target {
	for _, t := range r.env.targets {
		if t.key == key {
			return t
		}
	}
	return nil
}

// writeBaseline compares this build (gw-pg) with the baseline build
// (gw-pg-base), when benchrun ran one.
func (r report) writeBaseline(w func(string, ...any), sums []map[string]summary) {
	if r.target(baselineKey) == nil {
		return
	}
	w("## This build against the baseline build\n\n")
	w("`gw-pg` (this build) and `%s` (the baseline build named in the setup) ran in the same rounds, each in its own gateway process with the same route and pool, so noise hit both alike. TPS ratio: this build ÷ the baseline, above 1 is faster; CPU ratio: this build ÷ the baseline, below 1 is cheaper.\n\n", baselineKey)
	cellTableHead(w, []string{"TPS baseline", "TPS this build", "TPS ratio", "p99 ms baseline", "p99 ms this build", "CPU/1k tx baseline", "CPU/1k tx this build", "CPU ratio"})
	r.forEachCell(func(i int, c cell) {
		base, okB := sums[i][baselineKey]
		cur, okC := sums[i]["gw-pg"]
		if !okB || !okC || base.tps == 0 || cur.tps == 0 {
			w("| %s | %d | — | — | — | — | — | — | — | — |\n", c.workload.name, c.clients)
			return
		}
		cpuRatio := "—"
		if base.cpuPer1k > 0 {
			cpuRatio = fmt.Sprintf("%.2f", cur.cpuPer1k/base.cpuPer1k)
		}
		w("| %s | %d | %s ±%.0f%% | %s ±%.0f%% | %s | %s | %s | %.3f | %.3f | %s |\n", c.workload.name, c.clients,
			thousands(base.tps), 100*base.spread, thousands(cur.tps), 100*cur.spread, ratio(sums[i], "gw-pg", baselineKey),
			millis(base.p99Ms), millis(cur.p99Ms), base.cpuPer1k, cur.cpuPer1k, cpuRatio)
	})
	w("\n")
}

func cpuCell(s map[string]summary, key string, emulator bool) string {
	v, ok := s[key]
	if !ok || v.tps == 0 {
		return "—"
	}
	if emulator {
		return fmt.Sprintf("%.3f", v.emuPer1k)
	}
	return fmt.Sprintf("%.3f", v.cpuPer1k)
}

func (r report) writeConnect(w func(string, ...any), sums []map[string]summary) {
	w("## Connection per transaction (`-C`)\n\n")
	w("Every transaction opens a new connection with SCRAM-SHA-256 (the serverless pattern). The connection time is pgbench's average per connection; the transaction latency excludes it.\n\n")
	w("| clients | target | TPS | connection ms | transaction ms, avg / p99 |\n|--:|---|--:|--:|--:|\n")
	r.forEachCell(func(i int, c cell) {
		if !c.workload.connect {
			return
		}
		for _, key := range reportOrder {
			s, ok := sums[i][key]
			if !ok || s.tps == 0 {
				continue
			}
			w("| %d | `%s` | %s | %s | %s / %s |\n", c.clients, key, thousands(s.tps), millis(s.connectMs), millis(s.avgMs), millis(s.p99Ms))
		}
	})
	w("\n")
}

func (r report) writeMemory(w func(string, ...any)) {
	w("## Memory per idle client\n\n")
	w("A fresh process per row (the gateway with one transaction-mode route to the emulator, or PgBouncer), warmed up by 10 clients that connect and leave; then N clients connect, authenticate (SCRAM-SHA-256, no TLS) and stay idle. Resident memory (VmRSS) is read after a warm-up and 2 s after the last client connected. For the gateway, the Go runtime's own figures from its /metrics are shown too: RSS also holds garbage not yet collected and memory not yet returned to the OS.\n\n")
	w("| server | idle clients | RSS before | RSS after | **RSS per client** | Go heap in use per client | Go stacks per client | goroutines per client |\n|---|--:|--:|--:|--:|--:|--:|--:|\n")
	for _, m := range r.memory {
		if m.skipped != "" {
			w("| %s | %s | skipped: %s | | | | | |\n", m.target, thousands(float64(m.clients)), m.skipped)
			continue
		}
		w("| %s | %s | %s | %s | **%s** |", m.target, thousands(float64(m.clients)), mib(m.rssBefore), mib(m.rssAfter), kib(m.perClient()))
		if m.goAfter == nil {
			w(" — | — | — |\n")
			continue
		}
		w(" %s | %s | %.2f |\n", kib(m.goPerClient("go_memstats_heap_inuse_bytes")), kib(m.goPerClient("go_memstats_stack_inuse_bytes")), m.goPerClient("go_goroutines"))
	}
	w("\nThe gateway's goal is at most 20 KiB per idle client.\n\n")
}

func (r report) writeReplacement(w func(string, ...any)) {
	w("## Session replacement cost\n\n")
	w("One client in session mode (route `%s`, kind dsql) runs `SELECT pg_backend_pid()`: once on its settled upstream, then its upstream is replaced, then after %s idle it runs the query again, which must run on a new backend. \"Added\" is the first query's latency minus the settled one's, pair by pair. The first query pays for the replacement upstream: TCP, TLS and an IAM token to the emulator, the emulator's own login to PostgreSQL (a new backend), and restoring the session's settings.\n\n",
		routeReplace, replaceGap)
	w("| replacement | replacements | settled query p50 / p99 | first query after p50 / p99 | **added p50 / p99** | failed first queries | not replaced |\n|---|--:|--:|--:|--:|--:|--:|\n")
	for _, rr := range r.replacement {
		if len(rr.addedUs) == 0 {
			w("| %s | 0 | | | | %s | %d |\n", rr.method, failedCodes(rr.failed), rr.notReplaced)
			continue
		}
		p := func(xs []float64, q float64) string {
			return millis(percentile(slices.Clone(xs), q) / 1000)
		}
		count := thousands(float64(len(rr.addedUs)))
		if len(rr.addedUs) < rr.wanted {
			count += fmt.Sprintf(" (of %s: time budget)", thousands(float64(rr.wanted)))
		}
		w("| %s | %s | %s / %s | %s / %s | **%s / %s** | %s | %d |\n", rr.method, count,
			p(rr.normalUs, 0.5), p(rr.normalUs, 0.99), p(rr.firstUs, 0.5), p(rr.firstUs, 0.99),
			p(rr.addedUs, 0.5), p(rr.addedUs, 0.99), failedCodes(rr.failed), rr.notReplaced)
	}
	w("\nTimes in ms.\n\n")
}

func failedCodes(m map[string]int) string {
	if len(m) == 0 {
		return "0"
	}
	var parts []string
	for code, n := range m {
		parts = append(parts, fmt.Sprintf("%d (%s)", n, code))
	}
	slices.Sort(parts)
	return strings.Join(parts, ", ")
}

func (r report) writeFailures(w func(string, ...any), sums []map[string]summary) {
	var lines []string
	r.forEachCell(func(i int, c cell) {
		for _, key := range reportOrder {
			s, ok := sums[i][key]
			if !ok {
				continue
			}
			if s.failedRuns > 0 {
				lines = append(lines, fmt.Sprintf("- %s, `%s`: %d of %d runs failed: %s", c, key, s.failedRuns, s.runs, s.errors[0]))
			}
			if s.failedTx > 0 {
				lines = append(lines, fmt.Sprintf("- %s, `%s`: pgbench counted %d failed transactions", c, key, s.failedTx))
			}
		}
	})
	if len(lines) == 0 {
		return
	}
	w("## Failures\n\n%s\n", strings.Join(lines, "\n"))
}

func backquote(keys []string) []string {
	out := make([]string, len(keys))
	for i, k := range keys {
		out[i] = "`" + k + "`"
	}
	return out
}

// thousands formats a non-negative number rounded to a whole, with commas.
func thousands(x float64) string {
	s := strconv.FormatInt(int64(x+0.5), 10)
	for i := len(s) - 3; i > 0; i -= 3 {
		s = s[:i] + "," + s[i:]
	}
	return s
}

// millis formats a latency in milliseconds with three significant digits
// at most.
func millis(ms float64) string {
	switch {
	case ms >= 100:
		return fmt.Sprintf("%.0f", ms)
	case ms >= 10:
		return fmt.Sprintf("%.1f", ms)
	case ms >= 1:
		return fmt.Sprintf("%.2f", ms)
	default:
		return fmt.Sprintf("%.3f", ms)
	}
}

func mib(b int64) string { return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20)) }

func kib(b float64) string { return fmt.Sprintf("%.1f KiB", b/1024) }
