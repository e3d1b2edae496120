package e2e

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/dsqlgate/dsqlgate/internal/harness"
	"github.com/dsqlgate/dsqlgate/internal/pgtest"
	"github.com/dsqlgate/dsqlgate/internal/scram"
)

// deployProcess is a `dsqlgate serve` process of the built binary with a
// clean environment, whose log is watched for readiness (startServe's
// process inherits the test's environment and polls the port).
type deployProcess struct {
	cmd    *exec.Cmd
	mu     sync.Mutex
	stderr strings.Builder
	ready  chan struct{} // closed at the "dsqlgate listening" line
	done   chan error    // the process's exit
}

// startDeployProcess runs the binary with args and env added to a clean
// environment (PATH and HOME, AWS credentials that come only from env).
func startDeployProcess(t *testing.T, bin string, env []string, args ...string) *deployProcess {
	t.Helper()
	p := &deployProcess{ready: make(chan struct{}), done: make(chan error, 1)}
	p.cmd = exec.Command(bin, args...)
	p.cmd.Env = append([]string{"PATH=" + os.Getenv("PATH"), "HOME=" + t.TempDir(), "AWS_EC2_METADATA_DISABLED=true",
		"AWS_CONFIG_FILE=/dev/null", "AWS_SHARED_CREDENTIALS_FILE=/dev/null"}, env...)
	r, w := io.Pipe()
	p.cmd.Stderr = w
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		sc := bufio.NewScanner(r)
		var once sync.Once
		for sc.Scan() {
			p.mu.Lock()
			p.stderr.WriteString(sc.Text() + "\n")
			p.mu.Unlock()
			if strings.Contains(sc.Text(), "dsqlgate listening") {
				once.Do(func() { close(p.ready) })
			}
		}
	}()
	go func() {
		err := p.cmd.Wait()
		w.Close()
		p.done <- err
	}()
	t.Cleanup(func() {
		p.cmd.Process.Kill()
		<-p.exited()
	})
	return p
}

// exited returns a channel that yields the process's exit once.
func (p *deployProcess) exited() <-chan error {
	ch := make(chan error, 1)
	go func() {
		err := <-p.done
		p.done <- err // for later callers
		ch <- err
	}()
	return ch
}

func (p *deployProcess) log() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.stderr.String()
}

// waitReady waits for the process to listen, failing the test if it exits
// first.
func (p *deployProcess) waitReady(t *testing.T) {
	t.Helper()
	select {
	case <-p.ready:
	case err := <-p.exited():
		t.Fatalf("gateway exited before listening (%v):\n%s", err, p.log())
	case <-time.After(30 * time.Second):
		t.Fatalf("gateway not listening after 30s:\n%s", p.log())
	}
}

// processConfig is the YAML of a gateway in front of st's emulator on
// listen, with metrics on metrics and the demo user.
func processConfig(t *testing.T, st *harness.Stack, listen, metrics string, reusePort bool) string {
	t.Helper()
	v, err := scram.GenerateVerifier(st.Password)
	if err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf(`listen: %s
reuse_port: %t
shutdown_timeout: 10s
metrics: {listen: %s}
users: [{name: %s, verifier: '%s'}]
routes:
  - database: %s
    endpoint: %s
    dial_address: %s
    ca_file: %s
`, listen, reusePort, metrics, st.User, v.Encode(), harness.StackDatabase, harness.StackHost, st.Emulator.Addr(), st.CAFile)
}

func freeLoopback(t *testing.T) string {
	t.Helper()
	port, err := pgtest.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("127.0.0.1:%d", port)
}

// TestProcessDeployment runs the built binary as operators do: a second
// process on a busy port, the rolling restart the README documents, and a
// Kubernetes-style environment.
func TestProcessDeployment(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	bin := buildGateway(t)
	ctx := testCtx(t, 3*time.Minute)
	st, err := harness.StartStack(ctx, harness.StackOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	awsEnv := []string{"AWS_ACCESS_KEY_ID=" + st.Credentials.AccessKeyID, "AWS_SECRET_ACCESS_KEY=" + st.Credentials.SecretAccessKey, "AWS_REGION=" + harness.StackRegion}
	writeConfig := func(doc string) string {
		path := filepath.Join(t.TempDir(), "dsqlgate.yaml")
		if err := os.WriteFile(path, []byte(doc), 0o600); err != nil {
			t.Fatal(err)
		}
		return path
	}

	// Without reuse_port a second process on the same port fails at once
	// and says why; the first keeps its clients.
	t.Run("busy port", func(t *testing.T) {
		listen, metrics := freeLoopback(t), freeLoopback(t)
		first := startDeployProcess(t, bin, awsEnv, "serve", "-c", writeConfig(processConfig(t, st, listen, metrics, false)))
		first.waitReady(t)
		for _, reuse := range []bool{false, true} {
			second := startDeployProcess(t, bin, awsEnv, "serve", "-c", writeConfig(processConfig(t, st, listen, freeLoopback(t), reuse)))
			select {
			case err := <-second.exited():
				out := second.log()
				if err == nil || !strings.Contains(out, "address already in use") || !strings.Contains(out, "reuse_port") {
					t.Fatalf("reuse_port %t: second process exit %v, want a failure naming the busy address and reuse_port:\n%s", reuse, err, out)
				}
				t.Logf("reuse_port %t: %s", reuse, lastLine(out))
			case <-time.After(20 * time.Second):
				t.Fatalf("reuse_port %t: a second process on a busy port is still running:\n%s", reuse, second.log())
			}
		}
		first.cmd.Process.Signal(syscall.SIGTERM)
		if err := <-first.exited(); err != nil {
			t.Fatalf("first process: %v\n%s", err, first.log())
		}
	})

	// Kubernetes injects DSQLGATE_PORT and friends for a Service named
	// dsqlgate; ECS passes the configuration in a variable. The gateway
	// starts, ignores the service links silently and warns of a variable
	// it does not know.
	t.Run("kubernetes environment", func(t *testing.T) {
		listen := freeLoopback(t)
		env := append(awsEnv,
			"DSQLGATE_CONFIG_YAML="+processConfig(t, st, listen, freeLoopback(t), false),
			"DSQLGATE_PORT=tcp://10.96.0.12:5432", "DSQLGATE_PORT_5432_TCP=tcp://10.96.0.12:5432",
			"DSQLGATE_PORT_5432_TCP_ADDR=10.96.0.12", "DSQLGATE_PORT_5432_TCP_PORT=5432", "DSQLGATE_PORT_5432_TCP_PROTO=tcp",
			"DSQLGATE_SERVICE_HOST=10.96.0.12", "DSQLGATE_SERVICE_PORT=5432", "DSQLGATE_SERVICE_PORT_POSTGRES=5432",
			"DSQLGATE_LOG_LEVLE=debug")
		p := startDeployProcess(t, bin, env, "serve", "--config-env", "DSQLGATE_CONFIG_YAML", "--log-format", "json")
		p.waitReady(t)
		u := url.URL{Scheme: "postgres", User: url.UserPassword(st.User, st.Password), Host: listen, Path: "/" + harness.StackDatabase, RawQuery: "sslmode=disable"}
		c, err := pgx.Connect(ctx, u.String())
		if err != nil {
			t.Fatal(err)
		}
		var one int
		if err := c.QueryRow(ctx, "select 1").Scan(&one); err != nil {
			t.Fatal(err)
		}
		c.Close(ctx)
		out := p.log()
		if !strings.Contains(out, `"variable":"DSQLGATE_LOG_LEVLE"`) || !strings.Contains(out, "did you mean DSQLGATE_LOG_LEVEL?") {
			t.Errorf("no warning naming the misspelt variable:\n%s", out)
		}
		if strings.Contains(out, "DSQLGATE_PORT") || strings.Contains(out, "DSQLGATE_SERVICE") {
			t.Errorf("a Kubernetes service link was reported:\n%s", out)
		}
		for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
			if !strings.HasPrefix(line, "{") {
				t.Errorf("a log line that is not JSON under --log-format json: %q", line)
			}
		}
		p.cmd.Process.Signal(syscall.SIGTERM)
		if err := <-p.exited(); err != nil {
			t.Fatalf("exit: %v\n%s", err, out)
		}
	})

	// The README's rolling restart: start the new process on the same
	// ports (reuse_port in both), wait until it listens, SIGTERM the old
	// one. Clients run transactions throughout and reconnect when their
	// connection is closed between transactions, as pools do: no
	// transaction fails, and every client ends on the new process.
	t.Run("rolling restart", func(t *testing.T) {
		listen, metrics := freeLoopback(t), freeLoopback(t)
		path := writeConfig(processConfig(t, st, listen, metrics, true))
		old := startDeployProcess(t, bin, awsEnv, "serve", "-c", path)
		old.waitReady(t)
		u := url.URL{Scheme: "postgres", User: url.UserPassword(st.User, st.Password), Host: listen, Path: "/" + harness.StackDatabase, RawQuery: "sslmode=disable"}
		setup, err := pgx.Connect(ctx, u.String())
		if err != nil {
			t.Fatal(err)
		}
		if _, err := setup.Exec(ctx, "create table rolling_t (client int, n int, primary key (client, n))"); err != nil {
			t.Fatal(err)
		}
		setup.Close(ctx)

		const clients = 8
		var (
			stop                         atomic.Bool
			committed, failed, reconnect atomic.Int64
			wg                           sync.WaitGroup
			firstErr                     atomic.Value
		)
		for id := range clients {
			wg.Add(1)
			go func() {
				defer wg.Done()
				var conn *pgx.Conn
				defer func() {
					if conn != nil {
						conn.Close(context.Background())
					}
				}()
				for n := 0; !stop.Load(); n++ {
					if conn == nil || conn.IsClosed() {
						c, err := pgx.Connect(ctx, u.String())
						if err != nil {
							// A connection caught in the old listener's
							// queue as it closed: connect again, as a
							// pool does.
							reconnect.Add(1)
							time.Sleep(10 * time.Millisecond)
							n--
							continue
						}
						conn = c
					}
					tx, err := conn.Begin(ctx)
					if err != nil {
						// Closed between transactions by the drain:
						// nothing began, so connect again.
						reconnect.Add(1)
						conn.Close(context.Background())
						conn = nil
						n--
						continue
					}
					_, err = tx.Exec(ctx, "insert into rolling_t values ($1, $2)", id, n)
					if err == nil {
						err = tx.Commit(ctx)
					}
					if err != nil {
						failed.Add(1)
						firstErr.CompareAndSwap(nil, fmt.Sprintf("client %d transaction %d: %v", id, n, err))
						tx.Rollback(context.Background())
						continue
					}
					committed.Add(1)
					time.Sleep(5 * time.Millisecond) // idle between transactions
				}
			}()
		}
		time.Sleep(time.Second)
		before := committed.Load()
		next := startDeployProcess(t, bin, awsEnv, "serve", "-c", path)
		next.waitReady(t)
		old.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case err := <-old.exited():
			if err != nil {
				t.Fatalf("old process exit: %v\n%s", err, old.log())
			}
		case <-time.After(20 * time.Second):
			t.Fatalf("old process did not exit 20s after SIGTERM:\n%s", old.log())
		}
		atRestart := committed.Load()
		time.Sleep(2 * time.Second)
		stop.Store(true)
		wg.Wait()
		after := committed.Load()
		t.Logf("transactions committed: %d before the new process, %d by the old one's exit, %d in all; failed %d; reconnects %d",
			before, atRestart, after, failed.Load(), reconnect.Load())
		if failed.Load() != 0 {
			t.Errorf("%d transactions failed during the rolling restart; first: %v", failed.Load(), firstErr.Load())
		}
		if after-atRestart < clients {
			t.Errorf("only %d transactions after the old process exited: clients did not carry on with the new one", after-atRestart)
		}
		if reconnect.Load() < clients {
			t.Errorf("%d reconnects for %d clients: the old process did not close its clients", reconnect.Load(), clients)
		}
		check, err := pgx.Connect(ctx, u.String())
		if err != nil {
			t.Fatal(err)
		}
		defer check.Close(ctx)
		var rows int64
		if err := check.QueryRow(ctx, "select count(*) from rolling_t").Scan(&rows); err != nil {
			t.Fatal(err)
		}
		if rows != after {
			t.Errorf("%d rows for %d committed transactions", rows, after)
		}
		next.cmd.Process.Signal(syscall.SIGTERM)
		if err := <-next.exited(); err != nil {
			t.Fatalf("new process exit: %v\n%s", err, next.log())
		}
	})
}

func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return lines[len(lines)-1]
}

var _ = errors.New
