//go:build image

package imagetest

import (
	"context"
	"fmt"
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

	"github.com/jackc/pgx/v5"

	"github.com/dsqlgate/dsqlgate/internal/dsqlsim"
	"github.com/dsqlgate/dsqlgate/internal/harness"
	"github.com/dsqlgate/dsqlgate/internal/pgtest"
	"github.com/dsqlgate/dsqlgate/internal/scram"
)

// emulator is a private PostgreSQL with the DSQL emulator in front of it,
// on the host, and the throwaway credentials it accepts.
type emulator struct {
	srv               *dsqlsim.Server
	keyID, secret     string
	caFile            string // in the directory mounted at /etc/dsqlgate
	caFileInContainer string
}

// startEmulator starts PostgreSQL and the emulator, which writes its CA
// certificate into dir; both stop when the test ends.
func startEmulator(ctx context.Context, t *testing.T, dir string) *emulator {
	t.Helper()
	pg, err := pgtest.StartPostgres(ctx, pgtest.PostgresOptions{MaxConnections: 50})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pg.Close() })
	// DSQL's admin role: the emulator connects as the role the client names.
	if _, err := pg.Psql(ctx, "postgres", "-qc", "CREATE ROLE admin SUPERUSER LOGIN"); err != nil {
		t.Fatal(err)
	}
	e := &emulator{
		keyID:             "AKIA" + strings.ToUpper(pgtest.RandomHex(8)),
		secret:            pgtest.RandomHex(20),
		caFile:            filepath.Join(dir, "emulator-ca.pem"),
		caFileInContainer: imageConfigDir + "/emulator-ca.pem",
	}
	e.srv, err = dsqlsim.Start(context.Background(), dsqlsim.Config{
		ListenAddr:       "127.0.0.1:0",
		Region:           harness.StackRegion,
		Hostnames:        []string{harness.StackHost},
		Credentials:      []dsqlsim.Credential{{AccessKeyID: e.keyID, SecretAccessKey: e.secret}},
		CAFile:           e.caFile,
		BackendSocketDir: pg.SocketDir,
		BackendPort:      pg.Port,
	})
	if err != nil {
		t.Fatalf("start emulator: %v", err)
	}
	t.Cleanup(func() { e.srv.Close() })
	return e
}

// serveFromImage runs the image's entrypoint and command in ctr, as the
// image's user, with a configuration mounted at /etc/dsqlgate whose route
// goes to the emulator on the host; a pgx client works through it, and it
// drains and exits 0 on SIGTERM.
func serveFromImage(ctx context.Context, t *testing.T, b *buildah, ctr string, cfg imageConfig) {
	// The directory mounted read-only at /etc/dsqlgate: readable by the
	// image's user, like a Kubernetes ConfigMap.
	dir, err := os.MkdirTemp("", "dsqlgate-imagetest-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	emu := startEmulator(ctx, t, dir)

	const user = "imagetest"
	password := pgtest.RandomHex(12)
	verifier, err := scram.GenerateVerifier(password)
	if err != nil {
		t.Fatal(err)
	}
	port, err := pgtest.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	metricsPort, err := pgtest.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	addr := "127.0.0.1:" + strconv.Itoa(port)
	metrics := "127.0.0.1:" + strconv.Itoa(metricsPort)
	config := fmt.Sprintf(`# dsqlgate from its image, against the DSQL emulator on the host.
listen: %s
shutdown_timeout: 10s
users:
  - name: %s
    verifier_env: IMAGETEST_VERIFIER
routes:
  - database: %s
    endpoint: %s
    dial_address: %s
    ca_file: %s
    pool:
      size: 2
`, addr, user, harness.StackDatabase, harness.StackHost, emu.srv.Addr(), emu.caFileInContainer)
	if err := os.WriteFile(filepath.Join(dir, "dsqlgate.yaml"), []byte(config), 0o644); err != nil {
		t.Fatal(err)
	}

	// The image's entrypoint and command, unchanged: what `docker run
	// IMAGE` runs. The metrics port is moved off 9187 to a free one, the
	// way an operator overrides the image's default.
	command := append(append([]string{}, cfg.OCIv1.Config.Entrypoint...), cfg.OCIv1.Config.Cmd...)
	args := []string{"run", "--isolation", "chroot", "--network", "host",
		"-v", dir + ":" + imageConfigDir + ":ro",
		"-e", "DSQLGATE_METRICS_LISTEN=" + metrics,
		"-e", "IMAGETEST_VERIFIER=" + verifier.Encode(),
		"-e", "AWS_ACCESS_KEY_ID=" + emu.keyID,
		"-e", "AWS_SECRET_ACCESS_KEY=" + emu.secret,
		"-e", "AWS_EC2_METADATA_DISABLED=true",
		ctr, "--"}
	args = append(args, command...)
	p := startContainer(t, b, args)

	if err := p.waitReady(ctx, "http://"+metrics+"/readyz", time.Minute); err != nil {
		t.Fatalf("%v\ncontainer output:\n%s", err, p.output())
	}
	pid, err := p.gatewayPID()
	if err != nil {
		t.Fatalf("%v\ncontainer output:\n%s", err, p.output())
	}
	if uid, err := processUID(pid); err != nil || uid != imageUID {
		t.Errorf("dsqlgate in the container runs as uid %d (%v), want %d", uid, err, imageUID)
	}

	u := url.URL{Scheme: "postgres", User: url.UserPassword(user, password), Host: addr,
		Path: "/" + harness.StackDatabase, RawQuery: "sslmode=disable"}
	if err := queries(ctx, u.String()); err != nil {
		t.Fatalf("through the gateway in the image: %v\ncontainer output:\n%s", err, p.output())
	}

	// SIGTERM to the gateway, as `docker stop` sends it to the container's
	// main process (buildah run does not pass signals on).
	if err := syscall.Kill(pid, syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-p.exited:
	case <-time.After(30 * time.Second):
		t.Fatalf("dsqlgate did not exit within 30s of SIGTERM\n%s", p.output())
	}
	if p.err != nil {
		t.Fatalf("dsqlgate exited with %v after SIGTERM, want 0\n%s", p.err, p.output())
	}
	for _, want := range []string{"dsqlgate listening", "draining", "stopped"} {
		if !strings.Contains(p.output(), want) {
			t.Errorf("the container's log lacks %q:\n%s", want, p.output())
		}
	}
	t.Logf("the container's log:\n%s", p.output())
}

// queries creates a table, inserts into it and reads it back through the
// gateway at dsn.
func queries(ctx context.Context, dsn string) error {
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		return fmt.Errorf("connect: %w", err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "CREATE TABLE imagetest_notes (id int PRIMARY KEY, note text NOT NULL)"); err != nil {
		return fmt.Errorf("create table: %w", err)
	}
	for i, note := range []string{"built", "run", "served"} {
		if _, err := conn.Exec(ctx, "INSERT INTO imagetest_notes (id, note) VALUES ($1, $2)", i+1, note); err != nil {
			return fmt.Errorf("insert %d: %w", i+1, err)
		}
	}
	var n int
	var joined, role string
	err = conn.QueryRow(ctx, "SELECT count(*), string_agg(note, ',' ORDER BY id), current_user::text FROM imagetest_notes").Scan(&n, &joined, &role)
	if err != nil {
		return fmt.Errorf("select: %w", err)
	}
	if n != 3 || joined != "built,run,served" || role != "admin" {
		return fmt.Errorf("select: %d rows %q as %q, want 3 rows \"built,run,served\" as DSQL's admin", n, joined, role)
	}
	return nil
}

// container is a `buildah run` process.
type container struct {
	cmd    *exec.Cmd
	out    *syncBuffer
	exited chan struct{}
	err    error
}

// startContainer starts buildah with args; the test's end kills it if it
// still runs.
func startContainer(t *testing.T, b *buildah, args []string) *container {
	t.Helper()
	p := &container{cmd: exec.Command(b.bin, args...), out: &syncBuffer{}, exited: make(chan struct{})}
	p.cmd.Stdout, p.cmd.Stderr = p.out, p.out
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("buildah %s: %v", redact(args), err)
	}
	go func() {
		p.err = p.cmd.Wait()
		close(p.exited)
	}()
	t.Cleanup(func() {
		select {
		case <-p.exited:
			return
		default:
		}
		if pid, err := p.gatewayPID(); err == nil {
			syscall.Kill(pid, syscall.SIGKILL)
		}
		p.cmd.Process.Kill()
		<-p.exited
	})
	return p
}

func (p *container) output() string { return p.out.String() }

// waitReady polls readyURL until it answers 200, the container exits or
// the time is up.
func (p *container) waitReady(ctx context.Context, readyURL string, limit time.Duration) error {
	deadline := time.Now().Add(limit)
	var last string
	for time.Now().Before(deadline) {
		select {
		case <-p.exited:
			return fmt.Errorf("the container exited before /readyz answered 200: %v", p.err)
		case <-ctx.Done():
			return ctx.Err()
		default:
		}
		resp, err := http.Get(readyURL)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			last = resp.Status
		} else {
			last = err.Error()
		}
		time.Sleep(200 * time.Millisecond)
	}
	return fmt.Errorf("%s did not answer 200 within %s (last: %s)", readyURL, limit, last)
}

// gatewayPID finds the dsqlgate process among the buildah process's
// descendants (buildah-chroot-runtime, buildah-chroot-exec, then the
// command).
func (p *container) gatewayPID() (int, error) {
	parents := map[int]int{}
	comms := map[int]string{}
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return 0, err
	}
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		stat, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		// pid (comm) state ppid ...; comm may hold spaces and parentheses.
		s := string(stat)
		lp, rp := strings.IndexByte(s, '('), strings.LastIndexByte(s, ')')
		if lp < 0 || rp < lp {
			continue
		}
		fields := strings.Fields(s[rp+1:])
		if len(fields) < 2 {
			continue
		}
		ppid, _ := strconv.Atoi(fields[1])
		parents[pid], comms[pid] = ppid, s[lp+1:rp]
	}
	root := p.cmd.Process.Pid
	for pid, comm := range comms {
		if comm != "dsqlgate" {
			continue
		}
		for a := parents[pid]; a > 1; a = parents[a] {
			if a == root {
				return pid, nil
			}
		}
	}
	return 0, fmt.Errorf("no dsqlgate process under buildah (pid %d)", root)
}

// processUID is the real user id of process pid.
func processUID(pid int) (int, error) {
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return -1, err
	}
	for _, line := range strings.Split(string(status), "\n") {
		if rest, ok := strings.CutPrefix(line, "Uid:"); ok {
			f := strings.Fields(rest)
			if len(f) > 0 {
				return strconv.Atoi(f[0])
			}
		}
	}
	return -1, fmt.Errorf("/proc/%d/status has no Uid line", pid)
}

// syncBuffer is a buffer safe for concurrent writers.
type syncBuffer = pgtest.SyncBuffer
