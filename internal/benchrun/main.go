//go:build linux

package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"slices"
	"strings"
	"syscall"
	"time"
)

func main() {
	opts, err := parseFlags(os.Args[1:], os.Stderr)
	if err != nil {
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, opts, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "benchrun:", err)
		stop()
		os.Exit(1)
	}
}

// options are the command line. The zero value is not usable; parseFlags
// fills every field.
type options struct {
	quick bool
	// out is the Markdown file written at the end.
	out string
	// dsqlgate is the gateway binary; empty means build one into a
	// temporary directory with `go build`.
	dsqlgate string
	// baseline, when set, is an earlier gateway binary run beside
	// dsqlgate as target gw-pg-base, for a before/after in one run.
	baseline string
	// rounds is how many times each cell runs every target.
	rounds int
	// duration is the length of one pgbench run (-T, whole seconds).
	duration time.Duration
	// poolSize is the upstream pool size of the transaction-mode routes
	// and PgBouncer's default_pool_size.
	poolSize int
	// keep leaves the temporary directory (configurations, logs) in
	// place for inspection.
	keep bool
	// contentionDuration is the length of one contention cell.
	contentionDuration time.Duration
	// only is the set of parts to run (allParts when -only is empty).
	only map[string]bool
	// args is the command line as given, for the report.
	args []string
}

// The parts of a run, in the order they run; -only picks some.
const (
	partPgbench     = "pgbench"
	partMemory      = "memory"
	partReplacement = "replacement"
	partContention  = "contention"
)

// runs reports whether the run includes part (a zero only: every part).
func (o options) runs(part string) bool { return o.only == nil || o.only[part] }

var allParts = []string{partPgbench, partMemory, partReplacement, partContention}

// parseParts reads -only: a comma-separated list of parts, or "" for all.
func parseParts(s string) (map[string]bool, error) {
	parts := map[string]bool{}
	if strings.TrimSpace(s) == "" {
		for _, p := range allParts {
			parts[p] = true
		}
		return parts, nil
	}
	for _, p := range strings.Split(s, ",") {
		p = strings.TrimSpace(p)
		if !slices.Contains(allParts, p) {
			return nil, fmt.Errorf("unknown part %q (want some of %s)", p, strings.Join(allParts, ", "))
		}
		parts[p] = true
	}
	return parts, nil
}

func parseFlags(args []string, stderr io.Writer) (options, error) {
	fs := flag.NewFlagSet("benchrun", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var o options
	fs.BoolVar(&o.quick, "quick", false, "the short form: fewer cells, one round, 1,000 idle clients, fewer replacements (under 3 minutes)")
	fs.StringVar(&o.out, "out", "BENCHMARKS.md", "Markdown file to write")
	fs.StringVar(&o.dsqlgate, "dsqlgate", "", "dsqlgate binary to run (empty: go build ./cmd/dsqlgate into a temporary directory)")
	fs.StringVar(&o.baseline, "baseline", "", "an earlier dsqlgate binary to run beside -dsqlgate as target gw-pg-base (the same route and pool as gw-pg), for a before/after measured in one run")
	fs.IntVar(&o.rounds, "rounds", 0, "rounds per cell (0: 3, or 1 with -quick)")
	fs.DurationVar(&o.duration, "duration", 3*time.Second, "length of one pgbench run, whole seconds")
	fs.IntVar(&o.poolSize, "pool-size", 20, "upstream pool size of the transaction-mode routes and of PgBouncer (20 is the gateway's default)")
	fs.DurationVar(&o.contentionDuration, "contention-duration", 0, "length of one contention cell (0: 3s, or 2s with -quick)")
	only := fs.String("only", "", "run only these parts, comma-separated: "+strings.Join(allParts, ", ")+" (empty: all)")
	fs.BoolVar(&o.keep, "keep", false, "keep the temporary directory (configurations and logs) and print its path")
	if err := fs.Parse(args); err != nil {
		return options{}, err
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "benchrun: unexpected arguments %q\n", fs.Args())
		return options{}, flag.ErrHelp
	}
	var err error
	if o.only, err = parseParts(*only); err != nil {
		fmt.Fprintln(stderr, "benchrun: -only:", err)
		return options{}, flag.ErrHelp
	}
	if o.contentionDuration == 0 {
		o.contentionDuration = 3 * time.Second
		if o.quick {
			o.contentionDuration = 2 * time.Second
		}
	}
	if o.rounds == 0 {
		o.rounds = 3
		if o.quick {
			o.rounds = 1
		}
	}
	if o.duration < time.Second || o.duration%time.Second != 0 || o.rounds < 1 || o.poolSize < 1 || o.contentionDuration < 0 {
		fmt.Fprintln(stderr, "benchrun: -duration must be whole seconds (at least 1s), -rounds and -pool-size at least 1")
		return options{}, flag.ErrHelp
	}
	o.args = args
	return o, nil
}

// plan is what one invocation measures.
type plan struct {
	cells        []cell
	idleClients  []int // memory test sizes
	replacements int   // forced upstream replacements of each kind
	// replacementBudget bounds the time of each kind of replacement.
	replacementBudget time.Duration
	// contention are the contention cells (contentionCells: the same in
	// both forms).
	contention []contentionCell
}

// planFor picks the cells: the full matrix, or one cell per workload at 16
// clients for -quick; then drops the parts -only leaves out.
func planFor(o options) plan {
	p := fullOrQuickPlan(o)
	if !o.runs(partPgbench) {
		p.cells = nil
	}
	if !o.runs(partMemory) {
		p.idleClients = nil
	}
	if !o.runs(partReplacement) {
		p.replacements = 0
	}
	if o.runs(partContention) {
		p.contention = contentionCells()
	}
	return p
}

func fullOrQuickPlan(o options) plan {
	if o.quick {
		var cells []cell
		for _, w := range workloads {
			cells = append(cells, cell{workload: w, clients: 16})
		}
		return plan{cells: cells, idleClients: []int{1000}, replacements: 200, replacementBudget: 10 * time.Second}
	}
	var cells []cell
	for _, w := range workloads {
		if w.connect {
			cells = append(cells, cell{workload: w, clients: 16})
			continue
		}
		for _, c := range []int{1, 16, 64, 256} {
			cells = append(cells, cell{workload: w, clients: c})
		}
	}
	return plan{cells: cells, idleClients: []int{1000, 10000}, replacements: 1000, replacementBudget: 60 * time.Second}
}

// maxClients is the largest client count of any cell; the session-mode
// route's pool must hold that many upstreams.
func (p plan) maxClients() int {
	n := 0
	for _, c := range p.cells {
		n = max(n, c.clients)
	}
	return n
}

// run is the whole lifecycle: environment, rounds, memory, replacement,
// report. Everything it starts is stopped before it returns.
func run(ctx context.Context, o options, progress io.Writer) error {
	began := time.Now()
	loadBefore := loadAverage()
	if err := raiseOpenFileLimit(); err != nil {
		return err
	}
	p := planFor(o)
	logf := func(format string, args ...any) {
		fmt.Fprintf(progress, "%6.1fs  %s\n", time.Since(began).Seconds(), fmt.Sprintf(format, args...))
	}

	env, err := startEnvironment(ctx, o, p, logf)
	if err != nil {
		return err
	}
	defer env.Close()
	machine := describeMachine(ctx, env)

	var results []map[string][]*runResult
	if len(p.cells) > 0 {
		if results, err = runRounds(ctx, env, o, p, logf); err != nil {
			return err
		}
	}
	machine.loadBefore, machine.loadAfter = loadBefore, loadAverage()
	memory, err := measureMemory(ctx, env, p.idleClients, logf)
	if err != nil {
		return fmt.Errorf("memory test: %w", err)
	}
	var replacement []replacementResult
	if p.replacements > 0 {
		if replacement, err = measureReplacement(ctx, env, p.replacements, p.replacementBudget, logf); err != nil {
			return fmt.Errorf("replacement test: %w", err)
		}
	}
	var contention []contentionResult
	if len(p.contention) > 0 {
		if contention, err = measureContention(ctx, env, p.contention, o.contentionDuration, logf); err != nil {
			return fmt.Errorf("contention test: %w", err)
		}
	}

	r := report{
		command:     commandLine(o),
		began:       began,
		elapsed:     time.Since(began),
		opts:        o,
		plan:        p,
		machine:     machine,
		env:         env.describe(),
		results:     results,
		memory:      memory,
		replacement: replacement,
		contention:  contention,
	}
	md := r.markdown() + keptNotes(o.out)
	if err := os.WriteFile(o.out, []byte(md), 0o644); err != nil {
		return fmt.Errorf("write report: %w", err)
	}
	logf("wrote %s in %s", o.out, time.Since(began).Round(time.Second))
	return nil
}

// notesMarker starts the hand-written part of the report (targets, what was
// profiled and changed, before and after): a run keeps it as it is.
const notesMarker = "<!-- benchrun keeps everything below this line -->"

// keptNotes is the hand-written part of the report at path, from
// notesMarker to the end, or "" when there is none.
func keptNotes(path string) string {
	old, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	if i := strings.Index(string(old), notesMarker); i >= 0 {
		return "\n" + string(old[i:])
	}
	return ""
}

// commandLine is the command as a person would type it, for the report.
func commandLine(o options) string {
	cmd := "go run ./internal/benchrun"
	if len(o.args) > 0 {
		cmd += " " + strings.Join(o.args, " ")
	}
	if os.Getenv("MAKELEVEL") != "" {
		target := "bench"
		if o.quick {
			target = "bench-quick"
		}
		return fmt.Sprintf("make %s (which runs %s)", target, cmd)
	}
	return cmd
}

// raiseOpenFileLimit lifts this process's soft RLIMIT_NOFILE to its hard
// limit. Children started afterwards inherit it (an explicit Setrlimit
// tells the Go runtime not to restore the old limit in children), which
// the 10,000-client memory test needs in the gateway and PgBouncer.
func raiseOpenFileLimit() error {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return fmt.Errorf("read open file limit: %w", err)
	}
	lim.Cur = lim.Max
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return fmt.Errorf("raise open file limit: %w", err)
	}
	return nil
}
