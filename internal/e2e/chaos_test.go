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
	output    string
	exitErr   error
}

var (
	reProcessed = regexp.MustCompile(`number of transactions actually processed: (\d+)`)
	reFailed    = regexp.MustCompile(`number of failed transactions: (\d+)`)
	reRetried   = regexp.MustCompile(`number of transactions retried: (\d+)`)
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
// mode sees zero failed transactions, and the database is consistent.
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
				r := runPgbench(t, st, time.Duration(duration+60)*time.Second,
					"-c", "8", "-j", "2", "-T", strconv.Itoa(duration), "-M", proto)
				stats := st.Emulator.Stats()
				t.Logf("%s/%s: %d transactions, %d failed, %d upstream connections opened, %d closed by the emulator's cap",
					mode, proto, r.processed, r.failed, stats.Authenticated, stats.Expired)
				if r.exitErr != nil || r.processed == 0 || r.failed != 0 || strings.Contains(r.output, "aborted") {
					t.Fatalf("pgbench: %v, %d processed, %d failed:\n%s", r.exitErr, r.processed, r.failed, tail(r.output, 30))
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
