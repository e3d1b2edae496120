package e2e

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/dsqlgate/dsqlgate/config"
	"github.com/dsqlgate/dsqlgate/internal/harness"
)

// stacks per pool mode, started on first use and closed by TestMain.
var (
	stacksMu sync.Mutex
	stacks   = map[string]*harness.Stack{}
)

// stackFor returns a running stack whose route uses the given pool mode.
func stackFor(t testing.TB, mode string) *harness.Stack {
	t.Helper()
	if mode == config.PoolTransaction {
		return shared
	}
	// Other names get a transaction-mode stack of their own (tests that
	// need a database to themselves); stackPlain's route goes to
	// PostgreSQL over plain TCP, not through the emulator.
	stacksMu.Lock()
	defer stacksMu.Unlock()
	if st := stacks[mode]; st != nil {
		return st
	}
	st, err := harness.StartStack(testCtx(t, 2*time.Minute), harness.StackOptions{
		Gateway: func(c *config.Config) {
			if mode == config.PoolSession {
				c.Routes[0].Pool.Mode = mode
			}
		},
		Plain: mode == stackPlain,
	})
	if err != nil {
		t.Fatal(err)
	}
	stacks[mode] = st
	return st
}

func closeStacks() {
	stacksMu.Lock()
	defer stacksMu.Unlock()
	for _, st := range stacks {
		st.Close()
	}
}

var poolModes = []string{config.PoolTransaction, config.PoolSession}

// stackPlain names the stack whose route is kind postgres over plain TCP:
// the relay on a socket of its own (no TLS between it and the upstream).
const stackPlain = "plain"

// upstreamKinds are the stacks the protocol tests run on: through the
// emulator (TLS, as DSQL) and to plain PostgreSQL.
var upstreamKinds = []struct{ name, stack string }{{"dsql", config.PoolTransaction}, {"plain", stackPlain}}

// TestStateSurvivesReplacement: a pgx session with its statement cache on
// keeps search_path, TimeZone, application_name and its prepared
// statements across five upstream replacements (the emulator cuts every
// upstream between two queries, as DSQL's 60-minute cap does), and a SET
// inside a rolled-back transaction is not carried over.
func TestStateSurvivesReplacement(t *testing.T) {
	for _, mode := range poolModes {
		t.Run(mode, func(t *testing.T) {
			st := stackFor(t, mode)
			ctx := testCtx(t, 2*time.Minute)
			schema := "survive_" + mode
			setup := connect(t, st, "")
			// One DDL statement per transaction, as DSQL runs them.
			for _, q := range []string{"create schema " + schema, "create table " + schema + ".t (v int)", "insert into " + schema + ".t values (42)"} {
				if _, err := setup.Exec(ctx, q); err != nil {
					t.Fatal(err)
				}
			}
			defer setup.Exec(context.Background(), "drop schema "+schema+" cascade")

			conn := connect(t, st, "sslmode=disable&default_query_exec_mode=cache_statement")
			for _, q := range []string{
				"SET search_path TO " + schema + ", public",
				"SET TimeZone TO 'America/New_York'",
				"SET application_name = 'survivor'",
			} {
				if _, err := conn.Exec(ctx, q); err != nil {
					t.Fatalf("%s: %v", q, err)
				}
			}
			if _, err := conn.Prepare(ctx, "by_value", "select v from t where v = $1"); err != nil {
				t.Fatal(err)
			}
			// A SET through the extended protocol (Query, unlike Exec
			// without arguments, prepares it) counts as well.
			rows, err := conn.Query(ctx, "SET extra_float_digits = 2")
			if err != nil {
				t.Fatal(err)
			}
			rows.Close()
			if err := rows.Err(); err != nil {
				t.Fatal(err)
			}
			// A SET in a rolled-back transaction does not count.
			tx, err := conn.Begin(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := tx.Exec(ctx, "SET application_name = 'rolled back'"); err != nil {
				t.Fatal(err)
			}
			tx.Rollback(ctx)

			before := st.Emulator.Stats().Authenticated
			for round := 0; round < 5; round++ {
				if n := st.Emulator.KillAll(); n == 0 {
					t.Fatalf("round %d: no upstream to cut", round)
				}
				var searchPath, tz, app string
				if err := conn.QueryRow(ctx, "select current_setting('search_path'), current_setting('TimeZone'), current_setting('application_name')").Scan(&searchPath, &tz, &app); err != nil {
					t.Fatalf("round %d: %v", round, err)
				}
				if searchPath != schema+", public" || tz != "America/New_York" || app != "survivor" {
					t.Fatalf("round %d: search_path=%q TimeZone=%q application_name=%q", round, searchPath, tz, app)
				}
				var digits string
				if err := conn.QueryRow(ctx, "select current_setting('extra_float_digits')").Scan(&digits); err != nil || digits != "2" {
					t.Fatalf("round %d: extra_float_digits=%q (set through the extended protocol), %v", round, digits, err)
				}
				var v int
				if err := conn.QueryRow(ctx, "by_value", 42).Scan(&v); err != nil || v != 42 {
					t.Fatalf("round %d: prepared statement: %v %d", round, err, v)
				}
				if err := conn.QueryRow(ctx, "select v + $1 from t", round).Scan(&v); err != nil || v != 42+round {
					t.Fatalf("round %d: cached statement: %v %d", round, err, v)
				}
			}
			if dials := st.Emulator.Stats().Authenticated - before; dials < 5 {
				t.Fatalf("only %d new upstreams in 5 rounds", dials)
			}
		})
	}
}

// TestPsqlSurvivesReplacement drives one interactive psql session: its
// settings and a named prepared statement (through \bind? no: a SQL-level
// setting only; psql uses the simple protocol) survive upstream cuts.
func TestPsqlSurvivesReplacement(t *testing.T) {
	for _, mode := range poolModes {
		t.Run(mode, func(t *testing.T) {
			st := stackFor(t, mode)
			ctx := testCtx(t, 2*time.Minute)
			cmd := exec.CommandContext(ctx, st.PG.BinDir()+"/psql", "-X", "-At", "-v", "ON_ERROR_STOP=1", "-d", st.URL("sslmode=disable"))
			stdin, _ := cmd.StdinPipe()
			stdout, _ := cmd.StdoutPipe()
			cmd.Stderr = cmd.Stdout
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			defer cmd.Wait()
			defer stdin.Close()
			out := bufio.NewReader(stdout)
			// run sends SQL and returns psql's output up to a marker.
			run := func(sql string) string {
				t.Helper()
				marker := fmt.Sprintf("--done-%d--", time.Now().UnixNano())
				if _, err := io.WriteString(stdin, sql+"\n\\echo "+marker+"\n"); err != nil {
					t.Fatal(err)
				}
				var b strings.Builder
				for {
					line, err := out.ReadString('\n')
					if err != nil {
						t.Fatalf("psql ended: %v\n%s", err, b.String())
					}
					if strings.TrimSpace(line) == marker {
						return strings.TrimSpace(b.String())
					}
					b.WriteString(line)
				}
			}
			run("SET search_path TO pg_catalog, public;")
			run("SET TimeZone TO 'Asia/Tokyo';")
			run("SET application_name TO 'psql survivor';")
			run("BEGIN; SET TimeZone TO 'UTC'; ROLLBACK;")
			before := st.Emulator.Stats().Authenticated
			for round := 0; round < 5; round++ {
				st.Emulator.KillAll()
				got := run("SELECT current_setting('search_path') || '|' || current_setting('TimeZone') || '|' || current_setting('application_name');")
				if got != "pg_catalog, public|Asia/Tokyo|psql survivor" {
					t.Fatalf("round %d: %q", round, got)
				}
			}
			if dials := st.Emulator.Stats().Authenticated - before; dials < 5 {
				t.Fatalf("only %d new upstreams in 5 rounds", dials)
			}
		})
	}
}

// TestTransactionModeIsolation: fifty clients share two upstreams in
// transaction mode, each with its own settings and prepared statements;
// every client only ever sees its own state, checked by queries.
func TestTransactionModeIsolation(t *testing.T) {
	const clients, rounds = 50, 20
	ctx := testCtx(t, 3*time.Minute)
	st, err := harness.StartStack(ctx, harness.StackOptions{
		Postgres: pgtestOptions(),
		Gateway:  func(c *config.Config) { c.Routes[0].Pool.Size = 2 },
	})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	setup := connect(t, st, "")
	for i := 0; i < clients; i++ {
		// One DDL statement per transaction, as DSQL runs them.
		for _, q := range []string{fmt.Sprintf("create schema iso%d", i), fmt.Sprintf("create table iso%d.t (v int)", i), fmt.Sprintf("insert into iso%d.t values (%d)", i, i)} {
			if _, err := setup.Exec(ctx, q); err != nil {
				t.Fatal(err)
			}
		}
	}
	setup.Close(ctx)

	var wg sync.WaitGroup
	errs := make(chan error, clients)
	for i := 0; i < clients; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			mode := "cache_statement"
			if i%2 == 1 {
				mode = "simple_protocol"
			}
			conn, err := pgx.Connect(ctx, st.URL("sslmode=disable&default_query_exec_mode="+mode))
			if err != nil {
				errs <- err
				return
			}
			defer conn.Close(context.Background())
			if _, err := conn.Exec(ctx, fmt.Sprintf("SET search_path TO iso%d", i)); err != nil {
				errs <- err
				return
			}
			if _, err := conn.Exec(ctx, fmt.Sprintf("SET application_name TO 'client %d'", i)); err != nil {
				errs <- err
				return
			}
			if mode == "cache_statement" {
				if _, err := conn.Prepare(ctx, "mine", "select v from t"); err != nil {
					errs <- err
					return
				}
			}
			for r := 0; r < rounds; r++ {
				var v int
				var app string
				if err := conn.QueryRow(ctx, "select v, current_setting('application_name') from t").Scan(&v, &app); err != nil {
					errs <- fmt.Errorf("client %d round %d: %w", i, r, err)
					return
				}
				if v != i || app != fmt.Sprintf("client %d", i) {
					errs <- fmt.Errorf("client %d round %d saw v=%d application_name=%q", i, r, v, app)
					return
				}
				if mode == "cache_statement" {
					if err := conn.QueryRow(ctx, "mine").Scan(&v); err != nil || v != i {
						errs <- fmt.Errorf("client %d round %d: prepared statement gave %d, %v", i, r, v, err)
						return
					}
				}
				// A transaction with SET LOCAL leaves nothing behind.
				tx, err := conn.Begin(ctx)
				if err != nil {
					errs <- err
					return
				}
				tx.Exec(ctx, "SET LOCAL application_name TO 'local'")
				if err := tx.Commit(ctx); err != nil {
					errs <- err
					return
				}
			}
		}(i)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if open := st.Emulator.Stats().Open; open > 2 {
		t.Fatalf("%d upstream connections open, pool size is 2", open)
	}
}
