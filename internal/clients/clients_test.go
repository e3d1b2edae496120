//go:build clients

package clients

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dsqlgate/dsqlgate/config"
	"github.com/dsqlgate/dsqlgate/internal/harness"
)

// standardSteps are the scenario's steps, in the order they run and the
// matrix shows them (doc.go defines each).
var standardSteps = []string{
	"connect_tls", "param_query", "prepared_reuse", "tx_commit", "tx_rollback",
	"error_recovery", "set_observed", "bulk_insert", "cancel", "survive_replacement",
}

// poolModes are the modes every client runs in, one stack each.
var poolModes = []string{config.PoolTransaction, config.PoolSession}

// Limits on the suite's time.
const (
	stackStartTimeout = 2 * time.Minute
	clientTimeout     = 3 * time.Minute // one client's whole scenario in one mode
)

// skippedPrefix starts the detail of a step a client cannot do.
const skippedPrefix = "skipped: "

// stepResult is one row of the matrix: how one client did one step in one
// pool mode.
type stepResult struct {
	Client, Mode, Step string
	OK                 bool
	Detail             string
}

func (r stepResult) skipped() bool { return r.OK && strings.HasPrefix(r.Detail, skippedPrefix) }

// report is what one run of a client produced.
type report struct {
	version string       // "psycopg 3.1.7"; may be empty
	steps   []stepResult // Client and Mode are filled in by the runner
	log     string       // the program's stray output and the end of its stderr
	ended   string       // why the program ended early (non-zero exit, timeout), or ""
}

// target is what a client needs to reach the gateway for one run.
type target struct {
	URL        string // postgres URL with sslmode=verify-full and sslrootcert
	Host, Port string
	User       string
	Password   string
	Database   string
	CAFile     string
	ControlURL string
	Mode       string
	Schema     string
	PGBinDir   string
}

// env is the environment a program gets on top of the runner's (doc.go).
func (tg target) env() []string {
	return []string{
		"DSQLGATE_TEST_URL=" + tg.URL,
		"DSQLGATE_TEST_HOST=" + tg.Host,
		"DSQLGATE_TEST_PORT=" + tg.Port,
		"DSQLGATE_TEST_USER=" + tg.User,
		"DSQLGATE_TEST_PASSWORD=" + tg.Password,
		"DSQLGATE_TEST_DATABASE=" + tg.Database,
		"DSQLGATE_TEST_CA_FILE=" + tg.CAFile,
		"DSQLGATE_TEST_CONTROL_URL=" + tg.ControlURL,
		"DSQLGATE_TEST_MODE=" + tg.Mode,
		"DSQLGATE_TEST_SCHEMA=" + tg.Schema,
		"DSQLGATE_TEST_PG_BINDIR=" + tg.PGBinDir,
		"PATH=" + tg.PGBinDir + string(os.PathListSeparator) + os.Getenv("PATH"),
	}
}

// client is one entry of the matrix. run must not return before every
// connection and process it started is gone.
type client struct {
	name string
	run  func(ctx context.Context, tg target) report
}

// TestClients runs every client's scenario in both pool modes and writes
// the matrix.
func TestClients(t *testing.T) {
	all := append(goClients(), programClients(t)...)
	clients := all
	filter := os.Getenv("DSQLGATE_CLIENTS")
	if filter != "" {
		names := strings.Split(filter, ",")
		clients = nil
		for _, c := range all {
			if slices.Contains(names, c.name) {
				clients = append(clients, c)
			}
		}
		if len(clients) == 0 {
			t.Fatalf("DSQLGATE_CLIENTS=%s names no client", filter)
		}
	}
	stacks := startStacks(t)

	var (
		mu       sync.Mutex
		results  []stepResult
		versions = map[string]string{}
	)
	t.Run("matrix", func(t *testing.T) {
		for _, mode := range poolModes {
			st := stacks[mode]
			t.Run(mode, func(t *testing.T) {
				t.Parallel()
				for _, c := range clients {
					t.Run(c.name, func(t *testing.T) {
						rep := runClient(t, st, mode, c)
						mu.Lock()
						results = append(results, rep.steps...)
						if rep.version != "" {
							versions[c.name] = rep.version
						}
						mu.Unlock()
						failed := false
						for _, r := range rep.steps {
							t.Run(r.Step, func(t *testing.T) {
								switch {
								case !r.OK:
									failed = true
									t.Errorf("%s %s %s: FAIL: %s", mode, c.name, r.Step, r.Detail)
								case r.skipped():
									t.Skipf("%s %s %s: n/a: %s", mode, c.name, r.Step, strings.TrimPrefix(r.Detail, skippedPrefix))
								default:
									t.Logf("%s %s %s: ok %s", mode, c.name, r.Step, r.Detail)
								}
							})
						}
						if failed && rep.log != "" {
							t.Logf("%s output:\n%s", c.name, rep.log)
						}
					})
				}
			})
		}
	})

	names := make([]string, len(clients))
	for i, c := range clients {
		names[i] = c.name
	}
	md := renderMatrix(names, versions, results)
	t.Logf("client matrix:\n%s", md)
	// The failures once more, last: a log cut to its end still shows
	// them.
	var failures strings.Builder
	for _, r := range results {
		if !r.OK {
			fmt.Fprintf(&failures, "\n  %s %s %s: %s", r.Mode, r.Client, r.Step, r.Detail)
		}
	}
	if failures.Len() > 0 {
		t.Errorf("failed steps:%s", failures.String())
	}
	// Only a full run (every client in every mode) is the matrix.
	ran := map[[2]string]bool{}
	for _, r := range results {
		ran[[2]string{r.Mode, r.Client}] = true
	}
	if filter == "" && len(ran) == len(poolModes)*len(clients) {
		path := filepath.Join(harness.ModuleRootOf(t), "docs", "CLIENTS.md")
		if err := os.WriteFile(path, []byte(md), 0o644); err != nil {
			t.Errorf("write %s: %v", path, err)
		}
		readme := filepath.Join(harness.ModuleRootOf(t), "README.md")
		old, err := os.ReadFile(readme)
		if err == nil {
			var updated string
			if updated, err = spliceReadme(string(old), renderReadmeMatrix(names, results)); err == nil {
				err = os.WriteFile(readme, []byte(updated), 0o644)
			}
		}
		if err != nil {
			t.Errorf("update README.md: %v", err)
		}
	}
}

// startStacks starts one stack per pool mode, side by side, and closes them
// when the test ends.
func startStacks(t *testing.T) map[string]*harness.Stack {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), stackStartTimeout)
	defer cancel()
	stacks := map[string]*harness.Stack{}
	errs := make(chan error, len(poolModes))
	var mu sync.Mutex
	for _, mode := range poolModes {
		go func() {
			st, err := harness.StartStack(ctx, harness.StackOptions{
				ClientTLS: true,
				Control:   true,
				Gateway: func(c *config.Config) {
					c.Routes[0].Pool.Mode = mode
				},
			})
			if err != nil {
				errs <- fmt.Errorf("start %s stack: %w", mode, err)
				return
			}
			mu.Lock()
			stacks[mode] = st
			mu.Unlock()
			errs <- nil
		}()
	}
	var failed bool
	for range poolModes {
		if err := <-errs; err != nil {
			t.Error(err)
			failed = true
		}
	}
	t.Cleanup(func() {
		for _, st := range stacks {
			st.Close()
		}
	})
	if failed {
		t.FailNow()
	}
	return stacks
}

// runClient runs one client in one mode in a schema of its own and
// returns its report with every standard step present.
func runClient(t *testing.T, st *harness.Stack, mode string, c client) report {
	schema := schemaName(c.name, mode)
	ctx, cancel := context.WithTimeout(context.Background(), clientTimeout)
	defer cancel()
	// The schema is made and dropped on PostgreSQL directly: the
	// runner's own setup is not part of what is measured.
	if out, err := st.PG.Psql(ctx, "postgres", "-qc", "CREATE SCHEMA "+schema+" AUTHORIZATION admin"); err != nil {
		t.Fatalf("create schema %s: %v\n%s", schema, err, out)
	}
	defer func() {
		dropCtx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if out, err := st.PG.Psql(dropCtx, "postgres", "-qc", "DROP SCHEMA "+schema+" CASCADE"); err != nil {
			t.Errorf("drop schema %s: %v\n%s", schema, err, out)
		}
	}()
	host, port, _ := net.SplitHostPort(st.Gateway.Addr)
	tg := target{
		URL:        st.URL("sslmode=verify-full&sslrootcert=" + url.QueryEscape(st.ClientCAFile)),
		Host:       host,
		Port:       port,
		User:       st.User,
		Password:   st.Password,
		Database:   harness.StackDatabase,
		CAFile:     st.ClientCAFile,
		ControlURL: st.ControlURL,
		Mode:       mode,
		Schema:     schema,
		PGBinDir:   st.PG.BinDir(),
	}
	start := time.Now()
	rep := c.run(ctx, tg)
	t.Logf("%s in %s mode took %s", c.name, mode, time.Since(start).Round(time.Millisecond))
	rep.steps = completeSteps(rep.steps, rep.ended)
	for i := range rep.steps {
		rep.steps[i].Client = c.name
		rep.steps[i].Mode = mode
	}
	return rep
}

// completeSteps merges repeated reports of a step (failed if any failed),
// orders the standard steps first, and adds a failure for each standard
// step that was not reported.
func completeSteps(in []stepResult, ended string) []stepResult {
	byStep := map[string]*stepResult{}
	var order []string
	for _, r := range in {
		prev := byStep[r.Step]
		if prev == nil {
			r := r
			byStep[r.Step] = &r
			order = append(order, r.Step)
			continue
		}
		switch {
		case prev.OK && !r.OK:
			*prev = r
		case !prev.OK && !r.OK:
			prev.Detail += "; " + r.Detail
		}
	}
	var out []stepResult
	for _, step := range standardSteps {
		if r := byStep[step]; r != nil {
			out = append(out, *r)
			continue
		}
		detail := "not reported"
		if ended != "" {
			detail += ": " + ended
		}
		out = append(out, stepResult{Step: step, Detail: detail})
	}
	for _, step := range order {
		if !slices.Contains(standardSteps, step) {
			out = append(out, *byStep[step])
		}
	}
	return out
}

func lastLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.LastIndexByte(s, '\n'); i >= 0 {
		s = s[i+1:]
	}
	if len(s) > 200 {
		s = s[:200] + "..."
	}
	return s
}

// schemaName is a fresh schema name for one client run: lower-case
// letters, digits and underscores only.
func schemaName(clientName, mode string) string {
	var b strings.Builder
	b.WriteString("clients_")
	for _, r := range strings.ToLower(clientName) {
		if r >= 'a' && r <= 'z' || r >= '0' && r <= '9' {
			b.WriteRune(r)
		} else {
			b.WriteByte('_')
		}
	}
	var suffix [3]byte
	rand.Read(suffix[:])
	return b.String() + "_" + mode[:4] + "_" + hex.EncodeToString(suffix[:])
}
