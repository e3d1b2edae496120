//go:build replicas && linux

package replicas

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/dsqlgate/dsqlgate/internal/harness"
	"github.com/dsqlgate/dsqlgate/internal/pgtest"
	"github.com/dsqlgate/dsqlgate/internal/scram"
)

// replicaIPs are the replicas' addresses: distinct hosts, as pods are, so
// that every replica has the same ports. Linux answers on all of 127/8.
var replicaIPs = []string{"127.0.0.11", "127.0.0.12", "127.0.0.13"}

// bed is the stack, the replicas and HAProxy in front of them.
type bed struct {
	t        *testing.T
	bin      string
	st       *harness.Stack
	env      []string // the replicas' environment: AWS credentials only
	dir      string
	port     int // every replica's client port
	metrics  int // every replica's metrics and health port
	verifier string
	replicas []*replica // the process serving each address now
	lb       string     // HAProxy's frontend, host:port
	sock     string     // HAProxy's runtime API socket
	haproxy  *process
}

// replica is one `dsqlgate serve` process.
type replica struct {
	*process
	n       int    // 1, 2, 3: HAProxy's server be/rN
	addr    string // client address
	metrics string // metrics and health address
}

// process is a child process in its own process group, whose combined
// output is kept and watched.
type process struct {
	name   string
	cmd    *exec.Cmd
	out    *pgtest.SyncBuffer
	exited chan struct{} // closed once it has exited
	err    error         // its exit, once exited is closed
}

// startProcess starts cmd in a process group of its own, killed (the
// whole group) when the test ends, whatever way it ends.
func startProcess(t *testing.T, name string, cmd *exec.Cmd) *process {
	t.Helper()
	p := &process{name: name, cmd: cmd, out: &pgtest.SyncBuffer{}, exited: make(chan struct{})}
	cmd.Stdout, cmd.Stderr = p.out, p.out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	go func() { p.err = cmd.Wait(); close(p.exited) }()
	t.Cleanup(func() {
		syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		<-p.exited
		if t.Failed() {
			t.Logf("%s output (tail):\n%s", name, tail(p.out.String(), 6000))
		}
	})
	return p
}

// waitExit waits up to d for the process to exit and returns its exit.
func (p *process) waitExit(d time.Duration) (error, bool) {
	select {
	case <-p.exited:
		return p.err, true
	case <-time.After(d):
		return nil, false
	}
}

// waitOutput waits up to d for s in the process's output.
func (p *process) waitOutput(t *testing.T, s string, d time.Duration) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !strings.Contains(p.out.String(), s) {
		select {
		case <-p.exited:
			t.Fatalf("%s exited (%v) before printing %q:\n%s", p.name, p.err, s, tail(p.out.String(), 6000))
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s did not print %q within %s:\n%s", p.name, s, d, tail(p.out.String(), 6000))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// startBed builds the gateway, starts the stack, three replicas and
// HAProxy, and waits until HAProxy sees every replica up.
func startBed(t *testing.T) *bed {
	t.Helper()
	for _, ip := range replicaIPs {
		l, err := net.Listen("tcp", ip+":0")
		if err != nil {
			t.Fatalf("loopback address %s: %v", ip, err)
		}
		l.Close()
	}
	haproxyBin, err := exec.LookPath("haproxy")
	if err != nil && fileExists("/usr/sbin/haproxy") { // not on a user's PATH
		haproxyBin, err = "/usr/sbin/haproxy", nil
	}
	if err != nil {
		t.Fatal("haproxy not found (apt-get install haproxy; .ci/run installs it)")
	}
	b := &bed{t: t, bin: buildGateway(t), dir: t.TempDir()}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	b.st, err = harness.StartStack(ctx, harness.StackOptions{})
	if err != nil {
		t.Fatalf("start the stack: %v", err)
	}
	t.Cleanup(b.st.Close)
	v, err := scram.GenerateVerifier(b.st.Password)
	if err != nil {
		t.Fatal(err)
	}
	b.verifier = v.Encode()
	b.env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + b.dir, "AWS_EC2_METADATA_DISABLED=true",
		"AWS_CONFIG_FILE=/dev/null", "AWS_SHARED_CREDENTIALS_FILE=/dev/null",
		"AWS_ACCESS_KEY_ID=" + b.st.Credentials.AccessKeyID, "AWS_SECRET_ACCESS_KEY=" + b.st.Credentials.SecretAccessKey,
		"AWS_REGION=" + harness.StackRegion}
	b.port, b.metrics = freePort(t), freePort(t)
	for i := range replicaIPs {
		b.replicas = append(b.replicas, b.startReplica(i+1))
	}
	for _, r := range b.replicas {
		r.waitOutput(t, "dsqlgate listening", time.Minute)
		waitReady(t, r)
	}
	b.lb = fmt.Sprintf("127.0.0.1:%d", freePort(t))
	b.sock = filepath.Join(b.dir, "haproxy.sock")
	cfg := filepath.Join(b.dir, "haproxy.cfg")
	if err := os.WriteFile(cfg, []byte(b.haproxyConfig()), 0o600); err != nil {
		t.Fatal(err)
	}
	b.haproxy = startProcess(t, "haproxy", exec.Command(haproxyBin, "-f", cfg, "-db"))
	for i := range b.replicas {
		b.waitServer(i+1, "UP", 30*time.Second)
	}
	return b
}

// config is the replicas' one configuration, with n's own addresses:
// listen, metrics.listen and peers.self, as each pod of a Deployment has
// its own IP.
func (b *bed) config(n int) string {
	ip := replicaIPs[n-1]
	peers := make([]string, len(replicaIPs))
	for i, p := range replicaIPs {
		peers[i] = net.JoinHostPort(p, strconv.Itoa(b.port))
	}
	return fmt.Sprintf(`listen: %s:%d
reuse_port: true
shutdown_timeout: 10s
log: {level: info, format: json}
metrics: {listen: %s:%d}
peers:
  addresses: [%s]
  self: %s:%d
users: [{name: %s, verifier: '%s'}]
routes:
  - database: %s
    endpoint: %s
    dial_address: %s
    ca_file: %s
`, ip, b.port, ip, b.metrics, strings.Join(peers, ", "), ip, b.port,
		b.st.User, b.verifier, harness.StackDatabase, harness.StackHost, b.st.Emulator.Addr(), b.st.CAFile)
}

// startReplica starts a process for replica n (1-based) on its address;
// it does not wait for it.
func (b *bed) startReplica(n int) *replica {
	t := b.t
	t.Helper()
	path := filepath.Join(b.dir, fmt.Sprintf("r%d.yaml", n))
	if err := os.WriteFile(path, []byte(b.config(n)), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(b.bin, "serve", "-c", path)
	cmd.Env = b.env
	ip := replicaIPs[n-1]
	return &replica{
		process: startProcess(t, fmt.Sprintf("replica r%d (%s)", n, time.Now().Format("15:04:05.000")), cmd),
		n:       n,
		addr:    net.JoinHostPort(ip, strconv.Itoa(b.port)),
		metrics: net.JoinHostPort(ip, strconv.Itoa(b.metrics)),
	}
}

// haproxyConfig is HAProxy in front of the replicas as a cloud load
// balancer is: TCP, round robin, a health check of /readyz on the metrics
// port every 200ms (down at the first failure, up at the first success),
// connections retried and sent elsewhere when a replica refuses them, and
// the runtime API to drain a replica before it is stopped.
func (b *bed) haproxyConfig() string {
	var servers strings.Builder
	for i, ip := range replicaIPs {
		fmt.Fprintf(&servers, "  server r%d %s:%d check port %d inter 200ms fall 1 rise 1\n", i+1, ip, b.port, b.metrics)
	}
	return fmt.Sprintf(`global
  stats socket %s level admin
  maxconn 4000

defaults
  mode tcp
  timeout connect 2s
  timeout client 10m
  timeout server 10m
  timeout check 1s
  retries 3
  option redispatch

frontend fe
  bind %s
  default_backend be

backend be
  balance roundrobin
  option httpchk GET /readyz
%s`, b.sock, b.lb, servers.String())
}

// admin runs one command on HAProxy's runtime API and returns its answer.
func (b *bed) admin(cmd string) string {
	b.t.Helper()
	out, err := b.tryAdmin(cmd)
	if err != nil {
		b.t.Fatalf("haproxy %q: %v", cmd, err)
	}
	return out
}

// tryAdmin is admin, which returns its error (the socket is there only
// once HAProxy has started).
func (b *bed) tryAdmin(cmd string) (string, error) {
	c, err := net.DialTimeout("unix", b.sock, 2*time.Second)
	if err != nil {
		return "", err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(c, cmd+"\n"); err != nil {
		return "", err
	}
	out, err := io.ReadAll(c)
	return string(out), err
}

// serverStatus is HAProxy's status of server be/rN: UP, DOWN, DRAIN,
// MAINT...; "" when HAProxy does not answer.
func (b *bed) serverStatus(n int) string {
	stat, err := b.tryAdmin("show stat")
	if err != nil {
		return ""
	}
	sc := bufio.NewScanner(strings.NewReader(stat))
	col := -1
	for sc.Scan() {
		f := strings.Split(strings.TrimPrefix(sc.Text(), "# "), ",")
		if col < 0 {
			for i, name := range f {
				if name == "status" {
					col = i
				}
			}
			continue
		}
		if len(f) > col && f[0] == "be" && f[1] == fmt.Sprintf("r%d", n) {
			return f[col]
		}
	}
	return ""
}

// waitServer waits until HAProxy reports be/rN as status.
func (b *bed) waitServer(n int, status string, d time.Duration) {
	t := b.t
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		got := b.serverStatus(n)
		if strings.HasPrefix(got, status) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("haproxy: be/r%d is %q after %s, want %s", n, got, d, status)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// setState runs `set server be/rN state s` (ready, drain, maint).
func (b *bed) setState(n int, s string) {
	b.t.Helper()
	if out := strings.TrimSpace(b.admin(fmt.Sprintf("set server be/r%d state %s", n, s))); out != "" {
		b.t.Fatalf("haproxy set server be/r%d state %s: %s", n, s, out)
	}
}

// url is a postgres:// URL for the stack's user at addr.
func (b *bed) url(addr, extra string) string {
	u := url.URL{Scheme: "postgres", User: url.UserPassword(b.st.User, b.st.Password), Host: addr,
		Path: "/" + harness.StackDatabase, RawQuery: "sslmode=disable&connect_timeout=10"}
	if extra != "" {
		u.RawQuery += "&" + extra
	}
	return u.String()
}

// waitReady waits until the replica's /readyz answers 200, failing when
// it exits or takes over a minute.
func waitReady(t *testing.T, r *replica) {
	t.Helper()
	client := &http.Client{Timeout: time.Second}
	deadline := time.Now().Add(time.Minute)
	for {
		select {
		case <-r.exited:
			t.Fatalf("%s exited (%v):\n%s", r.name, r.err, tail(r.out.String(), 6000))
		default:
		}
		resp, err := client.Get("http://" + r.metrics + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s not ready after a minute (last: %v)", r.name, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// buildGateway builds cmd/dsqlgate into a temporary directory.
func buildGateway(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "dsqlgate")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "go", "build", "-o", bin, "./cmd/dsqlgate")
	cmd.Dir = harness.ModuleRootOf(t)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build dsqlgate: %v\n%s", err, out)
	}
	return bin
}

func freePort(t *testing.T) int {
	t.Helper()
	p, err := pgtest.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// tail is the last n bytes of s.
func tail(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return "..." + s[len(s)-n:]
}
