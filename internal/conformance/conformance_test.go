//go:build conformance

package conformance

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/dsqlgate/dsqlgate/config"
	"github.com/dsqlgate/dsqlgate/internal/harness"
	"github.com/dsqlgate/dsqlgate/internal/pgtest"
)

// The pgx whose tests run: go.mod's version (a test fails when they part).
const (
	pgxModule  = "github.com/jackc/pgx/v5"
	pgxVersion = "v5.12.0"
)

// Limits on the suite's time.
const (
	stackStartTimeout = 2 * time.Minute
	setupTimeout      = time.Minute
	// goTestTimeout is go test's -timeout: per test binary, so per
	// package. A package that hangs fails after it, naming the test.
	goTestTimeout = "4m"
	// goTestParallel is go test's -parallel: pgx's tests are mostly
	// parallel and many wait (on the server, on a timeout) rather than
	// compute; 4 keeps one slow test from holding the package up on two
	// cores.
	goTestParallel = "4"
	// packageTimeout bounds one package's go test (build included); past
	// it the go command and its test binary are killed.
	packageTimeout = 10 * time.Minute
)

// gatewayPoolSize is the routes' pool size: pgx's tests open a few
// connections at a time (pgxpool's tests up to 10 or so, two tests run in
// parallel), which a session-mode pool of the default 20 could make wait.
const gatewayPoolSize = 50

// target is one of the four ways pgx's tests reach PostgreSQL.
type target struct {
	name    string
	gateway bool   // through the gateway (else straight to PostgreSQL)
	plain   bool   // a kind postgres route (else the route to the emulator)
	mode    string // the route's pool mode
}

var targets = []target{
	{name: "direct", plain: true},
	{name: "pg-session", gateway: true, plain: true, mode: config.PoolSession},
	{name: "pg-transaction", gateway: true, plain: true, mode: config.PoolTransaction},
	{name: "emulator", gateway: true, mode: config.PoolTransaction},
}

// upstreamRole is the database role a gateway target's route logs in as:
// the harness's PostgreSQL superuser on a kind postgres route, DSQL's
// admin role through the emulator.
func upstreamRole(tg target) string {
	if tg.plain {
		return "postgres"
	}
	return "admin"
}

func targetNames() []string {
	var out []string
	for _, tg := range targets {
		out = append(out, tg.name)
	}
	return out
}

// gatewayPackages are the packages (relative to pgx's module) whose tests
// reach a server; the gateway targets run only these. The rest test pgx by
// itself (internal/..., pgconn/ctxwatch, pgconn/internal/bgreader,
// multitracer) and run on direct only.
var gatewayPackages = []string{".", "pgconn", "pgproto3", "pgtype", "pgtype/zeronull", "pgxpool", "stdlib", "tracelog"}

// gatewayRun narrows a package's tests on the gateway targets (go test
// -run). pgproto3 has one test that reaches a server, TestTrace; its others
// encode and decode messages of up to 1 GiB in memory, which on two cores
// can stall TestTrace's client for longer than the gateway's 10 s TLS
// handshake timeout, a failure that says nothing about the gateway.
var gatewayRun = map[string]string{"pgproto3": "^TestTrace$"}

// targetReport is what one target's run came to.
type targetReport struct {
	Target                     string
	Pass, Fail, Skip, Expected int // Fail: unexpected failures only
	Wall, GoTest               time.Duration
	Unexpected                 []*testRun
	NowPasses, NotRun, Skipped []expectation
	NotRunHangs                []expectation // listed as hanging: skipped, counted as expected failures
	Problems                   []string
	expectedRuns               []*testRun
	expectedReason             map[*testRun]string
	packagesWithProblems       map[string]bool
	filtered                   bool // CONFORMANCE_RUN was set
}

// TestConformance runs pgx's test suite against every target and checks
// the results against testdata/expected-failures.txt.
func TestConformance(t *testing.T) {
	root := harness.ModuleRootOf(t)
	text, err := os.ReadFile(filepath.Join("testdata", "expected-failures.txt"))
	if err != nil {
		t.Fatal(err)
	}
	exps, err := parseExpectations(string(text), targetNames())
	if err != nil {
		t.Fatal(err)
	}
	checkGoModVersion(t, root)
	dir := pgxDir(t, root)
	allPackages := goList(t, dir)

	selected := targets
	if f := os.Getenv("CONFORMANCE_TARGETS"); f != "" {
		names := strings.Split(f, ",")
		selected = nil
		for _, tg := range targets {
			if slices.Contains(names, tg.name) {
				selected = append(selected, tg)
			}
		}
		if len(selected) != len(names) {
			t.Fatalf("CONFORMANCE_TARGETS=%s: targets are %s", f, strings.Join(targetNames(), ", "))
		}
	}
	runFilter := os.Getenv("CONFORMANCE_RUN")
	logDir := os.Getenv("CONFORMANCE_LOG_DIR")
	if logDir != "" {
		if err := os.MkdirAll(logDir, 0o755); err != nil {
			t.Fatal(err)
		}
	}

	start := time.Now()
	var reports []*targetReport
	for _, tg := range selected {
		t.Run(tg.name, func(t *testing.T) {
			var pkgs []string
			if tg.gateway {
				for _, p := range gatewayPackages {
					pkgs = append(pkgs, abs(p))
				}
			} else {
				pkgs = allPackages
			}
			var mine []expectation
			for _, e := range exps {
				if e.appliesTo(tg.name, tg.gateway) {
					mine = append(mine, e)
				}
			}
			rep := runTarget(t, tg, dir, pkgs, runFilter, logDir, mine)
			reports = append(reports, rep)
			judge(t, rep)
		})
	}
	total := time.Since(start)

	table := renderTable(reports)
	var times strings.Builder
	for _, r := range reports {
		fmt.Fprintf(&times, "%s %s (go test %s); ", r.Target, r.Wall.Round(time.Second), r.GoTest.Round(time.Second))
	}
	t.Logf("pgx %s conformance (fail counts unexpected failures only):\n%s\nwall time: %stotal %s", pgxVersion, table, times.String(), total.Round(time.Second))

	if os.Getenv("CONFORMANCE_WRITE") == "1" {
		if len(reports) != len(targets) || runFilter != "" || os.Getenv("CONFORMANCE_SKIP") != "" {
			t.Logf("CONFORMANCE_WRITE=1: README.md not written, this was not a full run")
			return
		}
		readme := filepath.Join(root, "README.md")
		old, err := os.ReadFile(readme)
		if err == nil {
			var updated string
			if updated, err = spliceReadme(string(old), renderReadmeBlock(reports)); err == nil {
				err = os.WriteFile(readme, []byte(updated), 0o644)
			}
		}
		if err != nil {
			t.Errorf("update README.md: %v", err)
		}
	}
}

// runTarget starts a fresh stack for the target, sets its database up as
// pgx's CI does, runs pgx's tests against it and sorts the results.
func runTarget(t *testing.T, tg target, dir string, pkgs []string, runFilter, logDir string, exps []expectation) *targetReport {
	rep := &targetReport{Target: tg.name, expectedReason: map[*testRun]string{}, packagesWithProblems: map[string]bool{}, filtered: runFilter != ""}
	began := time.Now()
	defer func() { rep.Wall = time.Since(began) }()

	opts := harness.StackOptions{Plain: tg.plain, ClientTLS: tg.gateway}
	if tg.gateway {
		opts.Gateway = func(c *config.Config) {
			c.Routes[0].Pool.Mode = tg.mode
			c.Routes[0].Pool.Size = gatewayPoolSize
			// The gateway user is named as the role the route logs in
			// as (pgx's TestConnect checks current_user), as a
			// deployment that gives each role a gateway user would.
			c.Users[0].Name = upstreamRole(tg)
			// pgx's TestConnExecBatchHuge pipelines 100,000 statements
			// (four replies each) in one batch, more than the default
			// bound on replies pending per client.
			c.Limits.MaxPendingReplies = 1_000_000
		}
	}
	if logDir != "" {
		stackLog, err := os.Create(filepath.Join(logDir, tg.name+"-stack.log"))
		if err != nil {
			t.Fatal(err)
		}
		defer stackLog.Close()
		enc := zapcore.NewJSONEncoder(zap.NewProductionEncoderConfig())
		opts.Logger = zap.New(zapcore.NewCore(enc, zapcore.AddSync(stackLog), zapcore.InfoLevel))
		pgLog, err := os.Create(filepath.Join(logDir, tg.name+"-postgres.log"))
		if err != nil {
			t.Fatal(err)
		}
		defer pgLog.Close()
		opts.Postgres = pgtest.PostgresOptions{LogOutput: pgLog}
	}
	ctx, cancel := context.WithTimeout(context.Background(), stackStartTimeout)
	st, err := harness.StartStack(ctx, opts)
	cancel()
	if err != nil {
		t.Fatalf("start the %s stack: %v", tg.name, err)
	}
	defer st.Close()
	if tg.gateway {
		st.User = upstreamRole(tg)
	}

	// pgx's CI setup (ci/setup_test.bash runs this file on pgx_test), on
	// the backend as the superuser: on DSQL itself none of it could be
	// created, and the gateway's user is no superuser.
	ctx, cancel = context.WithTimeout(context.Background(), setupTimeout)
	out, err := st.PG.Psql(ctx, harness.StackDatabase, "-q", "-f", filepath.Join(dir, "testsetup", "postgresql_setup.sql"))
	cancel()
	if err != nil {
		t.Fatalf("pgx's testsetup/postgresql_setup.sql: %v\n%s", err, out)
	}

	env := map[string]string{}
	if tg.gateway {
		u := st.URL("sslmode=verify-full&sslrootcert=" + url.QueryEscape(st.ClientCAFile))
		env["PGX_TEST_DATABASE"] = u
		env["PGX_TEST_TCP_CONN_STRING"] = u
		env["PGX_TEST_SCRAM_PASSWORD_CONN_STRING"] = u
		env["PGX_TEST_PGBOUNCER_CONN_STRING"] = u
	} else {
		u := st.PG.URL(harness.StackDatabase)
		env["PGX_TEST_DATABASE"] = u
		env["PGX_TEST_TCP_CONN_STRING"] = u
		env["PGX_TEST_SCRAM_PASSWORD_CONN_STRING"] = u
		env["PGX_TEST_UNIX_SOCKET_CONN_STRING"] = st.PG.SocketDSN(harness.StackDatabase)
	}

	var jsonOut *os.File
	if logDir != "" {
		if jsonOut, err = os.Create(filepath.Join(logDir, tg.name+".json")); err != nil {
			t.Fatal(err)
		}
		defer jsonOut.Close()
	}
	// One go test a package, so that a package's tests listed as hanging
	// are skipped there only (-skip matches names in every package).
	rr := newRunResults()
	var goErrs []string
	for _, pkg := range pkgs {
		args := []string{"test", "-json", "-count=1", "-p", "1", "-parallel", goTestParallel, "-vet=off", "-timeout", goTestTimeout}
		switch {
		case runFilter != "":
			args = append(args, "-run", runFilter)
		case tg.gateway && gatewayRun[rel(pkg)] != "":
			args = append(args, "-run", gatewayRun[rel(pkg)])
		}
		var skips []string
		for _, e := range exps {
			if e.hangs() && e.matches(pkg, e.Test) {
				skips = append(skips, regexp.QuoteMeta(e.Test))
				rep.NotRunHangs = append(rep.NotRunHangs, e)
			}
		}
		skip := ""
		if len(skips) > 0 {
			skip = "^(" + strings.Join(skips, "|") + ")$"
		}
		if extra := os.Getenv("CONFORMANCE_SKIP"); extra != "" {
			if skip != "" {
				skip += "|"
			}
			skip += extra
		}
		if skip != "" {
			args = append(args, "-skip", skip)
		}
		args = append(args, pkg)
		stderr, err := goTest(dir, args, childEnv(env), jsonOut, rr)
		if err != nil {
			goErrs = append(goErrs, fmt.Sprintf("go test %s: %v\n%s", rel(pkg), err, stderr))
		}
	}
	rr.settle()
	rep.GoTest = time.Since(began)
	rep.Expected += len(rep.NotRunHangs)

	// Sort the results.
	for _, tr := range rr.tests() {
		var exp *expectation
		for i := range exps {
			if exps[i].matches(tr.Package, tr.Name) {
				exp = &exps[i]
				break
			}
		}
		if tr.Outcome == "" && tr.waiting {
			continue // never ran: its package died first (a problem below)
		}
		switch tr.Outcome {
		case outcomePass:
			rep.Pass++
			if exp != nil {
				rep.NowPasses = append(rep.NowPasses, *exp)
			}
		case outcomeSkip:
			rep.Skip++
			if exp != nil {
				rep.Skipped = append(rep.Skipped, *exp)
			}
		default: // fail, or never ended (a problem below too)
			if exp != nil && tr.Outcome == outcomeFail {
				rep.Expected++
				rep.expectedRuns = append(rep.expectedRuns, tr)
				rep.expectedReason[tr] = exp.Reason
			} else {
				rep.Fail++
				rep.Unexpected = append(rep.Unexpected, tr)
			}
		}
	}
	rep.Problems = rr.problems(pkgs)
	for _, path := range rr.order {
		p := rr.pkgs[path]
		if p.BuildFailed || len(p.panics) > 0 || len(p.timedOut) > 0 || p.Outcome == "" {
			rep.packagesWithProblems[path] = true
		}
	}
	for _, tr := range rr.tests() {
		if tr.Outcome == "" {
			rep.packagesWithProblems[tr.Package] = true
		}
	}
	if len(goErrs) > 0 && len(rep.Unexpected) == 0 && len(rep.expectedRuns) == 0 && len(rep.Problems) == 0 {
		// go test failed, yet no test did: say why.
		rep.Problems = append(rep.Problems, strings.Join(goErrs, "\n")+"\n"+indent(rr.nonJSON))
	}
	for _, e := range exps {
		if e.hangs() {
			continue
		}
		found := false
		for _, tr := range rr.tests() {
			if e.matches(tr.Package, tr.Name) {
				found = true
				break
			}
		}
		if !found {
			rep.NotRun = append(rep.NotRun, e)
		}
	}
	if logDir != "" {
		rep.Wall = time.Since(began)
		writeSummary(t, filepath.Join(logDir, tg.name+"-failures.txt"), rep)
	}
	return rep
}

// judge turns a target's report into test failures.
func judge(t *testing.T, rep *targetReport) {
	t.Logf("%s: %d passed, %d failed, %d skipped, %d expected failures; %s (go test %s)",
		rep.Target, rep.Pass, rep.Fail, rep.Skip, rep.Expected, rep.Wall.Round(time.Second), rep.GoTest.Round(time.Second))
	for _, p := range rep.Problems {
		t.Errorf("%s: %s", rep.Target, p)
	}
	for _, tr := range rep.Unexpected {
		what := "failed"
		if tr.Outcome == "" {
			what = "never ended"
		}
		t.Errorf("%s: %s %s %s (not in testdata/expected-failures.txt); its output:\n%s",
			rep.Target, rel(tr.Package), tr.Name, what, indent(tr.Tail()))
	}
	for _, e := range rep.NowPasses {
		t.Errorf("%s: %s %s now passes, remove it from the list (%s)", rep.Target, e.Package, e.Test, e)
	}
	for _, e := range rep.Skipped {
		t.Logf("%s: %s %s is listed as an expected failure but skipped (%s)", rep.Target, e.Package, e.Test, e)
	}
	if rep.filtered {
		return
	}
	for _, e := range rep.NotRun {
		if rep.packagesWithProblems[abs(e.Package)] || rep.packagesWithProblems[e.Package] {
			continue // its package stopped early; that is reported above
		}
		t.Errorf("%s: %s %s is listed but did not run (no such test?): %s", rep.Target, e.Package, e.Test, e)
	}
}

// writeSummary keeps the target's failures, expected ones included, with
// their output, for reading after the run.
func writeSummary(t *testing.T, path string, rep *targetReport) {
	var b strings.Builder
	fmt.Fprintf(&b, "%s: %d passed, %d failed, %d skipped, %d expected failures; wall %s\n\n",
		rep.Target, rep.Pass, rep.Fail, rep.Skip, rep.Expected, rep.Wall.Round(time.Second))
	for _, p := range rep.Problems {
		fmt.Fprintf(&b, "PROBLEM %s\n\n", p)
	}
	for _, tr := range rep.Unexpected {
		fmt.Fprintf(&b, "FAIL %s %s (%.2fs)\n%s\n\n", rel(tr.Package), tr.Name, tr.Elapsed, indent(tr.Tail()))
	}
	for _, tr := range rep.expectedRuns {
		fmt.Fprintf(&b, "EXPECTED %s %s (%.2fs) # %s\n%s\n\n", rel(tr.Package), tr.Name, tr.Elapsed, rep.expectedReason[tr], indent(tr.Tail()))
	}
	for _, e := range rep.NotRunHangs {
		fmt.Fprintf(&b, "NOT RUN (listed as hanging) %s\n", e)
	}
	for _, e := range rep.NowPasses {
		fmt.Fprintf(&b, "NOW PASSES %s\n", e)
	}
	if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
		t.Errorf("write %s: %v", path, err)
	}
}

// goTest runs the go command in dir and reads its JSON; jsonCopy, when
// not nil, gets the stream as it came. The go command and the test
// binaries it starts are one process group, killed at packageTimeout.
func goTest(dir string, args, env []string, jsonCopy *os.File, rr *runResults) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), packageTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, goCommand(), args...)
	cmd.Dir = dir
	cmd.Env = env
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 10 * time.Second
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return "", err
	}
	if err := cmd.Start(); err != nil {
		return "", err
	}
	var copy io.Writer // a nil *os.File would be a non-nil Writer
	if jsonCopy != nil {
		copy = jsonCopy
	}
	readErr := rr.read(stdout, copy)
	err = cmd.Wait()
	if ctx.Err() != nil {
		err = fmt.Errorf("killed after %s: %w", packageTimeout, err)
	}
	if err == nil {
		err = readErr
	}
	s := stderr.String()
	if len(s) > 4000 {
		s = "..." + s[len(s)-4000:]
	}
	return s, err
}

// childEnv is this process's environment without anything libpq or pgx
// would read (PG*), plus env, with workspaces off.
func childEnv(env map[string]string) []string {
	var out []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		if strings.HasPrefix(k, "PG") || k == "GOWORK" {
			continue
		}
		out = append(out, kv)
	}
	out = append(out, "GOWORK=off")
	keys := make([]string, 0, len(env))
	for k := range env {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		out = append(out, k+"="+env[k])
	}
	return out
}

func goCommand() string {
	if g := os.Getenv("GO"); g != "" {
		return g
	}
	return "go"
}

// pgxDir is pgx's module directory in the module cache (downloaded when
// missing).
func pgxDir(t *testing.T, root string) string {
	t.Helper()
	cmd := exec.Command(goCommand(), "mod", "download", "-json", pgxModule+"@"+pgxVersion)
	cmd.Dir = root
	out, err := cmd.Output()
	var info struct{ Dir, Error string }
	if jerr := json.Unmarshal(out, &info); jerr != nil || info.Dir == "" {
		t.Fatalf("go mod download %s@%s: %v %s\n%s", pgxModule, pgxVersion, err, info.Error, out)
	}
	return info.Dir
}

// checkGoModVersion fails the test when go.mod's pgx is not the one whose
// tests run.
func checkGoModVersion(t *testing.T, root string) {
	t.Helper()
	cmd := exec.Command(goCommand(), "list", "-m", "-f", "{{.Version}}", pgxModule)
	cmd.Dir = root
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list -m %s: %v", pgxModule, err)
	}
	if v := strings.TrimSpace(string(out)); v != pgxVersion {
		t.Fatalf("go.mod has %s %s but the suite runs %s's tests: update pgxVersion (and the expected failures)", pgxModule, v, pgxVersion)
	}
}

// goList is every package of pgx's module.
func goList(t *testing.T, dir string) []string {
	t.Helper()
	cmd := exec.Command(goCommand(), "list", "./...")
	cmd.Dir = dir
	cmd.Env = childEnv(nil)
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list ./... in %s: %v", dir, err)
	}
	return strings.Fields(string(out))
}

// abs is the import path of a package relative to pgx's module.
func abs(relPath string) string {
	if relPath == "." {
		return pgxModule
	}
	if strings.HasPrefix(relPath, pgxModule) {
		return relPath
	}
	return pgxModule + "/" + relPath
}
