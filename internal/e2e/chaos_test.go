package e2e

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dsqlgate/dsqlgate/config"
	"github.com/dsqlgate/dsqlgate/internal/dsqlsim"
	"github.com/dsqlgate/dsqlgate/internal/harness"
)

// pgbenchResult is what a pgbench run reported.
type pgbenchResult struct {
	processed int // transactions that committed
	failed    int // transactions that failed after their tries
	retried   int // transactions that needed more than one try
	retries   int // tries after the first, in all
	output    string
	exitErr   error
}

var (
	reProcessed = regexp.MustCompile(`number of transactions actually processed: (\d+)`)
	reFailed    = regexp.MustCompile(`number of failed transactions: (\d+)`)
	reRetried   = regexp.MustCompile(`number of transactions retried: (\d+)`)
	reRetries   = regexp.MustCompile(`total number of retries: (\d+)`)
)

// runPgbench runs pgbench against a stack's gateway with args, bounded by
// a timeout well past its duration so a hang fails the test.
func runPgbench(t *testing.T, st *harness.Stack, timeout time.Duration, args ...string) pgbenchResult {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	host, port, _ := strings.Cut(st.Gateway.Addr, ":")
	all := append([]string{"-h", host, "-p", port, "-U", st.User, "-n"}, args...)
	all = append(all, harness.StackDatabase)
	cmd := exec.CommandContext(ctx, st.PG.BinDir()+"/pgbench", all...)
	cmd.Env = append(os.Environ(), "PGPASSWORD="+st.Password, "PGSSLMODE=disable")
	out, err := cmd.CombinedOutput()
	if ctx.Err() != nil {
		t.Fatalf("pgbench hung past %v:\n%s", timeout, tail(string(out), 40))
	}
	r := pgbenchResult{output: string(out), exitErr: err}
	if m := reProcessed.FindStringSubmatch(r.output); m != nil {
		r.processed, _ = strconv.Atoi(m[1])
	}
	if m := reFailed.FindStringSubmatch(r.output); m != nil {
		r.failed, _ = strconv.Atoi(m[1])
	}
	if m := reRetried.FindStringSubmatch(r.output); m != nil {
		r.retried, _ = strconv.Atoi(m[1])
	}
	if m := reRetries.FindStringSubmatch(r.output); m != nil {
		r.retries, _ = strconv.Atoi(m[1])
	}
	return r
}

// initPgbench creates pgbench's tables directly on PostgreSQL (pgbench -i
// uses statements DSQL does not have; the runs then go through the
// gateway).
func initPgbench(t *testing.T, st *harness.Stack) {
	t.Helper()
	cmd := exec.Command(st.PG.BinDir()+"/pgbench", "-i", "-s", "1", "-q", "-h", st.PG.SocketDir, "-p", strconv.Itoa(st.PG.Port), "-U", "postgres", "postgres")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("pgbench -i: %v\n%s", err, out)
	}
}

// pgbenchBalances checks pgbench's invariants directly on PostgreSQL:
// every committed transaction moved the same delta through an account, a
// teller and a branch and wrote one history row. It returns the number of
// history rows.
func pgbenchBalances(t *testing.T, st *harness.Stack) int {
	t.Helper()
	out, err := st.PG.Psql(context.Background(), "postgres", "-Atc",
		"select (select sum(abalance) from pgbench_accounts), (select sum(bbalance) from pgbench_branches), (select sum(tbalance) from pgbench_tellers), (select coalesce(sum(delta), 0) from pgbench_history), (select count(*) from pgbench_history)")
	if err != nil {
		t.Fatal(err)
	}
	f := strings.Split(strings.TrimSpace(out), "|")
	if len(f) != 5 || f[0] != f[1] || f[1] != f[2] || f[2] != f[3] {
		t.Fatalf("pgbench balances disagree (accounts|branches|tellers|history delta|history rows): %s", out)
	}
	n, _ := strconv.Atoi(f[4])
	return n
}

// TestLifetimeChaos: the emulator closes every connection abruptly after 6
// seconds and tokens last 3; the gateway's lifetimes are scaled the same
// way (55 min : 60 min becomes 5.5 s : 6 s, jitter 0.5 s). pgbench's
// TPC-B-like load through the gateway for 60 s in each pool mode and query
// mode loses no transaction to the lifetime cuts, and the database is
// consistent.
//
// On DSQL's optimistic concurrency that load (eight clients, one branch
// row) conflicts all the time, so pgbench retries 40001 without limit
// (--max-tries=0) and prints every error it meets (--verbose-errors).
// Each of those errors must be a conflict the emulator reported (OC000 or
// OC001, counted in its Conflicts), never the gateway's 40001 for a lost
// upstream, which pgbench would otherwise retry silently; the only
// transactions allowed to fail are those the run's end cut off while they
// were being retried (at most one per client).
func TestLifetimeChaos(t *testing.T) {
	if testing.Short() {
		t.Skip("60-second pgbench runs")
	}
	duration := envSeconds("E2E_CHAOS_SECONDS", 60)
	for _, mode := range poolModes {
		for _, proto := range []string{"simple", "extended", "prepared"} {
			t.Run(mode+"/"+proto, func(t *testing.T) {
				ctx := testCtx(t, 5*time.Minute)
				st, err := harness.StartStack(ctx, harness.StackOptions{
					Emulator: func(c *dsqlsim.Config) {
						c.MaxConnDuration = 6 * time.Second
						c.ClockSkew = time.Second
					},
					Gateway: func(c *config.Config) {
						r := &c.Routes[0]
						r.TokenExpiry = config.Duration(3 * time.Second)
						r.Pool.Mode = mode
						r.Pool.MaxLifetime = config.Duration(5500 * time.Millisecond)
						r.Pool.LifetimeJitter = config.Duration(500 * time.Millisecond)
					},
				})
				if err != nil {
					t.Fatal(err)
				}
				defer st.Close()
				initPgbench(t, st)
				const clients = 8
				r := runPgbench(t, st, time.Duration(duration+60)*time.Second,
					"-c", strconv.Itoa(clients), "-j", "2", "-T", strconv.Itoa(duration), "-M", proto,
					"--max-tries=0", "--failures-detailed", "--verbose-errors")
				stats := st.Emulator.Stats()
				conflicts, other := pgbenchErrors(r.output)
				t.Logf("%s/%s: %d transactions, %d retried (%d retries), %d failed, %d conflict errors seen by pgbench, %d conflicts in the emulator, %d upstream connections opened, %d closed by the emulator's cap",
					mode, proto, r.processed, r.retried, r.retries, r.failed, conflicts, stats.Conflicts, stats.Authenticated, stats.Expired)
				if len(other) > 0 {
					t.Fatalf("pgbench met errors that are not optimistic-concurrency conflicts (%d), first: %s", len(other), other[0])
				}
				if r.exitErr != nil || r.processed == 0 || r.failed > clients || strings.Contains(r.output, "aborted") {
					t.Fatalf("pgbench: %v, %d processed, %d failed:\n%s", r.exitErr, r.processed, r.failed, tail(r.output, 30))
				}
				if conflicts < r.retries+r.failed {
					t.Fatalf("pgbench retried %d times and failed %d transactions but printed only %d conflict errors: some error went unseen", r.retries, r.failed, conflicts)
				}
				if int64(conflicts) > stats.Conflicts {
					t.Fatalf("pgbench saw %d conflict errors, the emulator reported only %d conflicts: some 40001 came from elsewhere", conflicts, stats.Conflicts)
				}
				if rows := pgbenchBalances(t, st); rows != r.processed {
					t.Fatalf("%d history rows, pgbench reported %d transactions", rows, r.processed)
				}
				if minDials := int64(duration / 6); stats.Authenticated < minDials {
					t.Fatalf("only %d upstream connections in %d s: lifetimes were not exercised", stats.Authenticated, duration)
				}
			})
		}
	}
}

// TestKillChaos cuts upstream sessions at random during pgbench, through
// the emulator (an abrupt close, as DSQL's cap) and through PostgreSQL
// (pg_terminate_backend, a FATAL error then a close). Every failure a
// client sees is a 40001 or an 08007 from the gateway, nothing hangs, and
// nothing committed is lost.
func TestKillChaos(t *testing.T) {
	if testing.Short() {
		t.Skip("pgbench under chaos")
	}
	duration := envSeconds("E2E_KILL_CHAOS_SECONDS", 30)
	for _, mode := range poolModes {
		t.Run(mode, func(t *testing.T) {
			ctx := testCtx(t, 5*time.Minute)
			st, err := harness.StartStack(ctx, harness.StackOptions{
				Gateway: func(c *config.Config) { c.Routes[0].Pool.Mode = mode },
			})
			if err != nil {
				t.Fatal(err)
			}
			defer st.Close()
			initPgbench(t, st)

			stop := make(chan struct{})
			var wg sync.WaitGroup
			kills := 0
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := 0; ; i++ {
					select {
					case <-stop:
						return
					case <-time.After(time.Duration(300+rand.IntN(700)) * time.Millisecond):
					}
					sessions := st.Emulator.Sessions()
					if len(sessions) == 0 {
						continue
					}
					victim := sessions[rand.IntN(len(sessions))]
					if i%2 == 0 {
						if st.Emulator.Kill(victim.ID) {
							kills++
						}
					} else if _, err := st.PG.Psql(context.Background(), "postgres", "-qc", fmt.Sprintf("select pg_terminate_backend(%d)", victim.BackendPID)); err == nil {
						kills++
					}
				}
			}()
			r := runPgbench(t, st, time.Duration(duration+60)*time.Second,
				"-c", "8", "-j", "2", "-T", strconv.Itoa(duration), "-M", "extended", "--max-tries=1000", "--failures-detailed")
			close(stop)
			wg.Wait()

			// Every error line pgbench printed is one of the gateway's
			// two answers to a lost upstream.
			unknown := 0
			for _, line := range strings.Split(r.output, "\n") {
				if !strings.Contains(line, "ERROR") && !strings.Contains(line, "FATAL") && !strings.Contains(line, "aborted") {
					continue
				}
				switch {
				case strings.Contains(line, "whether it committed is unknown"):
					unknown++
				case strings.Contains(line, "rolled back because its upstream connection was lost"),
					strings.Contains(line, "aborted in command"), strings.Contains(line, "aborted"):
				default:
					t.Errorf("unexpected failure: %s", line)
				}
			}
			rows := pgbenchBalances(t, st)
			t.Logf("%s: %d kills, %d transactions committed, %d retried after 40001, %d failed after retries, %d outcomes unknown (08007), %d history rows",
				mode, kills, r.processed, r.retried, r.failed, unknown, rows)
			if kills < duration/2 {
				t.Fatalf("only %d kills in %d s", kills, duration)
			}
			if rows < r.processed || rows > r.processed+unknown {
				t.Fatalf("%d history rows for %d reported commits and %d unknown outcomes: something committed was lost or invented", rows, r.processed, unknown)
			}
		})
	}
}

// pgbenchErrors reads the errors pgbench --verbose-errors printed
// ("client N got an error in command C (SQL) of script S; ERROR: ..."):
// the number that are DSQL optimistic-concurrency conflicts (OC000,
// OC001), and the lines of any other error.
func pgbenchErrors(output string) (conflicts int, other []string) {
	for _, line := range strings.Split(output, "\n") {
		switch {
		case strings.Contains(line, "got an error in command"):
			if strings.Contains(line, "(OC000)") || strings.Contains(line, "(OC001)") {
				conflicts++
			} else {
				other = append(other, line)
			}
		case strings.Contains(line, "ERROR") || strings.Contains(line, "FATAL"):
			other = append(other, line)
		}
	}
	return conflicts, other
}

func envSeconds(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil && v > 0 {
		return v
	}
	return def
}

func tail(s string, n int) string {
	lines := strings.Split(s, "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
