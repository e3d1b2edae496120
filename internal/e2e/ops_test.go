package e2e

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/dsqlgate/dsqlgate/config"
	"github.com/dsqlgate/dsqlgate/internal/harness"
	"github.com/dsqlgate/dsqlgate/internal/scram"
)

// TestMetrics scrapes /metrics around a run and checks that the counters
// move as the run dictates.
func TestMetrics(t *testing.T) {
	ctx := testCtx(t, 2*time.Minute)
	st, err := harness.StartStack(ctx, harness.StackOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	addr := st.Gateway.OpsAddr
	const route = `route="postgres"`
	before := harness.Scrape(t, addr)
	// The OCC retry's counters exist before anything happened (the
	// benchmark reads them by name).
	for _, name := range []string{`dsqlgate_occ_retries_total{` + route + `}`, `dsqlgate_occ_retries_exhausted_total{` + route + `}`} {
		if v, ok := before[name]; !ok || v != 0 {
			t.Errorf("%s at start: %v (present %v), want 0", name, v, ok)
		}
	}

	conn := connect(t, st, "sslmode=disable&default_query_exec_mode=cache_statement")
	for i := 0; i < 10; i++ {
		var v int
		if err := conn.QueryRow(ctx, "select $1::int", i).Scan(&v); err != nil {
			t.Fatal(err)
		}
	}
	tx, _ := conn.Begin(ctx)
	tx.Exec(ctx, "select 1")
	tx.Commit(ctx)
	conn.Exec(ctx, "SET application_name = 'metrics'")
	conn.Exec(ctx, "select 1/0")
	conn.Exec(ctx, "select pg_advisory_lock(1)") // answered by the gateway, not an upstream error
	conn.Exec(ctx, "select pg_advisory_unlock(1)")
	st.Emulator.KillAll()
	var v int
	conn.QueryRow(ctx, "select 1").Scan(&v) // on a new upstream, with a state sync
	bad, err := pgx.Connect(ctx, strings.Replace(st.URL("sslmode=disable"), st.Password, "wrong", 1))
	if err == nil {
		bad.Close(ctx)
	}
	after := harness.Scrape(t, addr)
	delta := func(name string) float64 { return after[name] - before[name] }
	checks := []struct {
		name string
		min  float64
	}{
		{`dsqlgate_client_connections_opened_total{outcome="accepted"}`, 1},
		{`dsqlgate_client_connections_opened_total{outcome="auth_failed"}`, 1},
		{`dsqlgate_query_duration_seconds_count{` + route + `}`, 13},
		{`dsqlgate_transaction_duration_seconds_count{` + route + `}`, 12},
		{`dsqlgate_upstream_dials_total{outcome="ok",` + route + `}`, 2},
		{`dsqlgate_token_mints_total{outcome="ok",` + route + `}`, 2},
		{`dsqlgate_token_mint_duration_seconds_count{` + route + `}`, 2},
		{`dsqlgate_upstream_replacements_total{reason="lost_idle",` + route + `}`, 1},
		{`dsqlgate_session_state_syncs_total{` + route + `}`, 1},
		{`dsqlgate_upstream_errors_total{` + route + `,sqlstate="other"}`, 1}, // 22012 division by zero
		{`dsqlgate_pool_wait_seconds_count{` + route + `}`, 10},
		{`dsqlgate_bytes_total{direction="server_to_client"}`, 100},
	}
	for _, c := range checks {
		if d := delta(c.name); d < c.min {
			t.Errorf("%s moved by %v, want at least %v", c.name, d, c.min)
		}
	}
	if after[`dsqlgate_client_connections{state="idle"}`]+after[`dsqlgate_client_connections{state="active"}`] < 1 {
		t.Errorf("no connected client counted: %v", after[`dsqlgate_client_connections{state="idle"}`])
	}
	if after[`dsqlgate_pool_size{`+route+`}`] != 20 {
		t.Errorf("pool size %v", after[`dsqlgate_pool_size{`+route+`}`])
	}
	if delta(`dsqlgate_upstream_errors_total{`+route+`,sqlstate="0A000"}`) != 0 {
		t.Error("an advisory lock call reached DSQL (0A000 counted)")
	}
}

// TestHealth: /livez, /startupz and /readyz, and /readyz naming a failing
// route.
func TestHealth(t *testing.T) {
	ctx := testCtx(t, time.Minute)
	st, err := harness.StartStack(ctx, harness.StackOptions{Gateway: func(c *config.Config) {
		broken := config.DefaultRoute(config.KindDSQL, "broken")
		broken.Endpoint = harness.StackHost
		broken.DialAddress = "127.0.0.1:1" // nothing listens there
		broken.CAFile = c.Routes[0].CAFile
		c.Routes = append(c.Routes, broken)
	}})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	get := func(path string) (int, string) {
		resp, err := http.Get("http://" + st.Gateway.OpsAddr + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	for _, p := range []string{"/livez", "/startupz"} {
		if code, body := get(p); code != 200 {
			t.Fatalf("%s: %d %s", p, code, body)
		}
	}
	// Both routes can mint tokens: ready, though "broken" cannot dial.
	code, body := get("/readyz")
	var rep struct {
		Ready  bool
		Routes map[string]string
	}
	json.Unmarshal([]byte(body), &rep)
	if code != 200 || !rep.Ready || rep.Routes["postgres"] != "ok" {
		t.Fatalf("/readyz: %d %s", code, body)
	}
	// A route that cannot mint fails, named with the reason.
	st2, err := harness.StartStack(ctx, harness.StackOptions{Gateway: func(c *config.Config) {
		pg := config.DefaultRoute(config.KindPostgres, "plain")
		pg.Endpoint = "127.0.0.1:1"
		pg.User, pg.Password, pg.TLS = "x", "y", "disable"
		c.Routes = append(c.Routes, pg)
	}})
	if err != nil {
		t.Fatal(err)
	}
	defer st2.Close()
	resp, err := http.Get("http://" + st2.Gateway.OpsAddr + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 503 || !strings.Contains(string(b), `"plain"`) || !strings.Contains(string(b), "refused") {
		t.Fatalf("/readyz with a dead route: %d %s", resp.StatusCode, b)
	}
}

// adminStack is a stack with an admin user "ops".
func adminStack(t *testing.T) (*harness.Stack, string) {
	t.Helper()
	const password = "ops-password-1"
	v, err := scram.GenerateVerifier(password)
	if err != nil {
		t.Fatal(err)
	}
	st, err := harness.StartStack(testCtx(t, time.Minute), harness.StackOptions{Gateway: func(c *config.Config) {
		c.Users = append(c.Users, config.User{Name: "ops", Verifier: v.Encode()})
		c.Admin.Users = []string{"ops"}
	}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(st.Close)
	u := url.URL{Scheme: "postgres", User: url.UserPassword("ops", password), Host: st.Gateway.Addr, Path: "/dsqlgate", RawQuery: "sslmode=disable"}
	return st, u.String()
}

// adminPsql runs one admin command with psql and returns its unaligned
// output with a header line.
func adminPsql(t *testing.T, st *harness.Stack, adminURL, command string) string {
	t.Helper()
	out, err := exec.Command(st.PG.BinDir()+"/psql", "-X", "-A", "-F", "|", "-d", adminURL, "-c", command).CombinedOutput()
	if err != nil {
		t.Fatalf("psql %s: %v\n%s", command, err, out)
	}
	return string(out)
}

// column returns the values of column name in psql's unaligned output.
func column(out, name string) []string {
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) < 2 {
		return nil
	}
	header := strings.Split(lines[0], "|")
	idx := -1
	for i, h := range header {
		if h == name {
			idx = i
		}
	}
	var vals []string
	for _, l := range lines[1:] {
		if strings.HasPrefix(l, "(") {
			break
		}
		f := strings.Split(l, "|")
		if idx >= 0 && idx < len(f) {
			vals = append(vals, f[idx])
		}
	}
	return vals
}

// TestAdminConsole runs every admin command through psql and checks that
// the rows match what the test did.
func TestAdminConsole(t *testing.T) {
	st, admin := adminStack(t)
	ctx := testCtx(t, time.Minute)
	busy := connect(t, st, "sslmode=disable&application_name=busy-client")
	tx, err := busy.Begin(ctx) // holds an upstream: active
	if err != nil {
		t.Fatal(err)
	}
	tx.Exec(ctx, "select 1")
	idle := connect(t, st, "sslmode=disable&application_name=idle-client")
	idle.Exec(ctx, "select 1")

	pools := adminPsql(t, st, admin, "SHOW POOLS")
	if db := column(pools, "database"); len(db) != 1 || db[0] != "postgres" {
		t.Fatalf("SHOW POOLS databases: %v\n%s", db, pools)
	}
	if a := column(pools, "cl_active"); a[0] != "2" {
		t.Fatalf("SHOW POOLS cl_active %v\n%s", a, pools)
	}
	if sv := column(pools, "sv_active"); sv[0] != "1" {
		t.Fatalf("SHOW POOLS sv_active %v\n%s", sv, pools)
	}
	if m := column(pools, "pool_mode"); m[0] != "transaction" {
		t.Fatalf("pool_mode %v", m)
	}
	clients := adminPsql(t, st, admin, "SHOW CLIENTS")
	apps := strings.Join(column(clients, "application_name"), ",")
	if !strings.Contains(apps, "busy-client") || !strings.Contains(apps, "idle-client") {
		t.Fatalf("SHOW CLIENTS: %s", clients)
	}
	states := strings.Join(column(clients, "state"), ",")
	if !strings.Contains(states, "active") || !strings.Contains(states, "idle") {
		t.Fatalf("SHOW CLIENTS states: %s", clients)
	}
	servers := adminPsql(t, st, admin, "SHOW SERVERS")
	if links := column(servers, "link"); len(links) < 1 || strings.Join(links, "") == "" {
		t.Fatalf("SHOW SERVERS: no server linked to the client in a transaction\n%s", servers)
	}
	tx.Commit(ctx)
	stats := adminPsql(t, st, admin, "SHOW STATS")
	if n, _ := strconv.Atoi(column(stats, "total_xact_count")[0]); n < 2 {
		t.Fatalf("SHOW STATS: %s", stats)
	}
	cfg := adminPsql(t, st, admin, "SHOW CONFIG")
	if !strings.Contains(cfg, "routes[0].pool.size|20|20") || strings.Contains(cfg, "SCRAM-SHA-256$") {
		t.Fatalf("SHOW CONFIG: %s", cfg)
	}
	if v := adminPsql(t, st, admin, "SHOW VERSION"); !strings.Contains(v, "dsqlgate") {
		t.Fatalf("SHOW VERSION: %s", v)
	}
	// PAUSE: new work waits; RESUME lets it through.
	adminPsql(t, st, admin, "PAUSE postgres")
	done := make(chan error, 1)
	go func() {
		var v int
		done <- idle.QueryRow(ctx, "select 2").Scan(&v)
	}()
	select {
	case err := <-done:
		t.Fatalf("a query ran while the route was paused: %v", err)
	case <-time.After(300 * time.Millisecond):
	}
	adminPsql(t, st, admin, "RESUME postgres")
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	// RECONNECT: upstreams open now are replaced at their next safe point.
	before := st.Emulator.Stats().Authenticated
	adminPsql(t, st, admin, "RECONNECT")
	var v int
	idle.QueryRow(ctx, "select 3").Scan(&v)
	if st.Emulator.Stats().Authenticated == before {
		t.Fatal("RECONNECT did not replace the upstream")
	}
	// A user who is not an admin is refused.
	_, err = pgx.Connect(ctx, strings.Replace(st.URL("sslmode=disable"), "/postgres", "/dsqlgate", 1))
	if pgCode(err) != "28000" {
		t.Fatalf("non-admin into the console: %v", err)
	}
}

// gatewayProcess is a `dsqlgate serve` process with a config file.
type gatewayProcess struct {
	cmd    *exec.Cmd
	addr   string
	ops    string
	config string
	logs   *syncBuffer
	exited chan struct{} // closed when the process has exited; then err is set
	err    error
}

// startServe writes cfgYAML (listen and metrics addresses filled in) and
// runs `dsqlgate serve` on it with env added.
func startServe(t *testing.T, cfgYAML string, env ...string) *gatewayProcess {
	t.Helper()
	bin := buildGateway(t)
	free := func() string {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		return l.Addr().String()
	}
	p := &gatewayProcess{addr: free(), ops: free(), logs: &syncBuffer{}, exited: make(chan struct{})}
	p.config = filepath.Join(t.TempDir(), "dsqlgate.yaml")
	full := fmt.Sprintf("listen: %s\nmetrics:\n  listen: %s\n%s", p.addr, p.ops, cfgYAML)
	if err := os.WriteFile(p.config, []byte(full), 0o600); err != nil {
		t.Fatal(err)
	}
	p.cmd = exec.Command(bin, "serve", "-c", p.config)
	p.cmd.Env = append(os.Environ(), env...)
	p.cmd.Stdout, p.cmd.Stderr = p.logs, p.logs
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		p.err = p.cmd.Wait()
		close(p.exited)
	}()
	t.Cleanup(func() {
		p.cmd.Process.Kill()
		<-p.exited
	})
	deadline := time.Now().Add(30 * time.Second)
	for {
		if c, err := net.DialTimeout("tcp", p.addr, time.Second); err == nil {
			c.Close()
			return p
		}
		select {
		case <-p.exited:
			t.Fatalf("dsqlgate serve exited: %v\n%s", p.err, p.logs.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("dsqlgate serve did not start\n%s", p.logs.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (p *gatewayProcess) url(user, password string) string {
	u := url.URL{Scheme: "postgres", User: url.UserPassword(user, password), Host: p.addr, Path: "/" + harness.StackDatabase, RawQuery: "sslmode=disable"}
	return u.String()
}

// stackConfig is YAML for a route to st's emulator and one user whose
// verifier is in the environment variable TEST_VERIFIER.
func stackConfig(st *harness.Stack, extraUsers string, poolSize int) string {
	return fmt.Sprintf(`shutdown_timeout: 10s
users:
  - name: %s
    verifier_env: TEST_VERIFIER
%sroutes:
  - database: %s
    endpoint: %s
    dial_address: %s
    ca_file: %s
    pool:
      size: %d
`, st.User, extraUsers, harness.StackDatabase, harness.StackHost, st.Emulator.Addr(), st.CAFile, poolSize)
}

func stackEnv(t *testing.T, st *harness.Stack) []string {
	v, err := scram.GenerateVerifier(st.Password)
	if err != nil {
		t.Fatal(err)
	}
	return []string{"TEST_VERIFIER=" + v.Encode(), "AWS_ACCESS_KEY_ID=" + st.Credentials.AccessKeyID, "AWS_SECRET_ACCESS_KEY=" + st.Credentials.SecretAccessKey}
}

// TestDrain: SIGTERM during a running transaction lets it commit, then the
// client gets a clean close, no new connection is accepted, and the
// process exits 0 within shutdown_timeout.
func TestDrain(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the gateway binary")
	}
	st := stackFor(t, "drain")
	ctx := testCtx(t, time.Minute)
	p := startServe(t, stackConfig(st, "", 5), stackEnv(t, st)...)
	conn, err := pgx.Connect(ctx, p.url(st.User, st.Password))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	conn.Exec(ctx, "create table if not exists drain_t (a int)")
	idle, err := pgx.Connect(ctx, p.url(st.User, st.Password))
	if err != nil {
		t.Fatal(err)
	}
	tx, err := conn.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, "insert into drain_t values (1)"); err != nil {
		t.Fatal(err)
	}
	// A client that logged in under a second before the drain is owed its
	// first request (pgwire's drainGrace): let idle be older than that.
	time.Sleep(1100 * time.Millisecond)
	start := time.Now()
	p.cmd.Process.Signal(syscall.SIGTERM)
	time.Sleep(300 * time.Millisecond)
	// No new connection is accepted...
	if c, err := pgx.Connect(ctx, p.url(st.User, st.Password)); err == nil {
		c.Close(ctx)
		t.Fatal("a new connection was accepted while draining")
	}
	// ...the idle client was closed at once, and the transaction commits.
	if _, err := idle.Exec(ctx, "select 1"); err == nil {
		t.Fatal("the idle client was not closed")
	}
	if _, err := tx.Exec(ctx, "insert into drain_t values (2)"); err != nil {
		t.Fatalf("the transaction was cut: %v", err)
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatalf("commit while draining: %v", err)
	}
	// The client is then closed at its safe point.
	if _, err := conn.Exec(ctx, "select 1"); err == nil {
		t.Fatal("the client was not closed after its transaction")
	}
	select {
	case <-p.exited:
		if p.err != nil {
			t.Fatalf("exit: %v\n%s", p.err, p.logs.String())
		}
	case <-time.After(15 * time.Second):
		t.Fatalf("not exited within shutdown_timeout\n%s", p.logs.String())
	}
	t.Logf("exited %v after SIGTERM", time.Since(start).Round(time.Millisecond))
	out, _ := st.PG.Psql(ctx, "postgres", "-Atc", "select count(*) from drain_t")
	if strings.TrimSpace(out) != "2" {
		t.Fatalf("rows after drain: %s", out)
	}
}

// TestReload: SIGHUP adds a user and changes the pool size while clients
// are connected; the new user logs in and no session drops. An invalid
// configuration is refused and the old one keeps serving.
func TestReload(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the gateway binary")
	}
	st := stackFor(t, "reload")
	ctx := testCtx(t, time.Minute)
	env := stackEnv(t, st)
	p := startServe(t, stackConfig(st, "", 5), env...)
	conn, err := pgx.Connect(ctx, p.url(st.User, st.Password))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	tx, _ := conn.Begin(ctx)
	tx.Exec(ctx, "select 1")

	v, _ := scram.GenerateVerifier("newcomer-password")
	next := fmt.Sprintf("listen: %s\nmetrics:\n  listen: %s\n%s", p.addr, p.ops,
		stackConfig(st, "  - name: newcomer\n    verifier: \""+v.Encode()+"\"\n", 9))
	if err := os.WriteFile(p.config, []byte(next), 0o600); err != nil {
		t.Fatal(err)
	}
	p.cmd.Process.Signal(syscall.SIGHUP)
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(p.logs.String(), "pool settings changed") {
		if time.Now().After(deadline) {
			t.Fatalf("no reload logged:\n%s", p.logs.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	c, err := pgx.Connect(ctx, p.url("newcomer", "newcomer-password"))
	if err != nil {
		t.Fatalf("the added user: %v", err)
	}
	c.Close(ctx)
	if _, err := tx.Exec(ctx, "select 2"); err != nil {
		t.Fatalf("the open transaction dropped: %v", err)
	}
	tx.Commit(ctx)
	if m := harness.Scrape(t, p.ops)[`dsqlgate_pool_size{route="postgres"}`]; m != 9 {
		t.Fatalf("pool size after reload: %v", m)
	}
	// An invalid configuration is refused; the old one serves on.
	os.WriteFile(p.config, []byte(next+"bogus_key: 1\n"), 0o600)
	p.cmd.Process.Signal(syscall.SIGHUP)
	deadline = time.Now().Add(10 * time.Second)
	for !strings.Contains(p.logs.String(), "reload refused") {
		if time.Now().After(deadline) {
			t.Fatalf("no refusal logged:\n%s", p.logs.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	if !regexp.MustCompile(`bogus_key`).MatchString(p.logs.String()) {
		t.Fatalf("the refusal does not name the key:\n%s", p.logs.String())
	}
	var n int
	if err := conn.QueryRow(ctx, "select 3").Scan(&n); err != nil || n != 3 {
		t.Fatalf("after the refused reload: %v", err)
	}
	c, err = pgx.Connect(ctx, p.url("newcomer", "newcomer-password"))
	if err != nil {
		t.Fatalf("the added user after a refused reload: %v", err)
	}
	c.Close(ctx)
	// Both SIGHUPs are counted, the refused one too although its file
	// never reached Gateway.Reload.
	m := harness.Scrape(t, p.ops)
	for outcome, want := range map[string]float64{"ok": 1, "error": 1} {
		if got := m[`dsqlgate_config_reloads_total{outcome="`+outcome+`"}`]; got != want {
			t.Errorf("dsqlgate_config_reloads_total{outcome=%q}: %v, want %v", outcome, got, want)
		}
	}
}

// TestCheck runs `dsqlgate check` against the emulator (success) and
// against a wrong endpoint (a clear failure row, exit 1).
func TestCheck(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the gateway binary")
	}
	st := stackFor(t, "check")
	bin := buildGateway(t)
	dir := t.TempDir()
	write := func(name, dial string) string {
		path := filepath.Join(dir, name)
		cfg := strings.Replace(stackConfig(st, "", 2), "dial_address: "+st.Emulator.Addr(), "dial_address: "+dial, 1)
		os.WriteFile(path, []byte(cfg), 0o600)
		return path
	}
	run := func(path string) (string, int) {
		cmd := exec.Command(bin, "check", "-c", path, "--timeout", "5s")
		cmd.Env = append(os.Environ(), stackEnv(t, st)...)
		out, err := cmd.CombinedOutput()
		code := 0
		if ee, ok := err.(*exec.ExitError); ok {
			code = ee.ExitCode()
		}
		return string(out), code
	}
	out, code := run(write("good.yaml", st.Emulator.Addr()))
	if code != 0 || !regexp.MustCompile(`postgres\s+dsql\s+`+regexp.QuoteMeta(harness.StackHost)+`\s+admin\s+ok\s`).MatchString(out) {
		t.Fatalf("check against the emulator: exit %d\n%s", code, out)
	}
	if strings.Contains(out, st.Credentials.SecretAccessKey) || strings.Contains(out, "X-Amz-Signature") {
		t.Fatalf("check printed a secret:\n%s", out)
	}
	out, code = run(write("bad.yaml", "127.0.0.1:1"))
	if code != 1 || !strings.Contains(out, "FAIL  cannot connect") || !strings.Contains(out, "refused") {
		t.Fatalf("check against a wrong endpoint: exit %d\n%s", code, out)
	}
}
