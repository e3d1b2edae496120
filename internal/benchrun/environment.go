//go:build linux

package main

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/dsqlgate/dsqlgate/internal/pgtest"
)

// Names and settings of the environment.
const (
	// emulatorHost is the DSQL endpoint the gateway's dsql routes name;
	// they dial the emulator's address instead (dial_address).
	emulatorHost   = "abcdefghijklmnopqrstuvwxyz.dsql.us-east-1.on.aws"
	emulatorRegion = "us-east-1"
	// gatewayUser logs in to the gateway (password from an environment
	// variable, so no secret is written to a file).
	gatewayUser = "bench"
	// pgbenchScale is pgbench -i -s: 1,000,000 accounts, about 160 MB,
	// which fits in shared_buffers.
	pgbenchScale = 10
	// maxPostgresConnections leaves room for the direct target's 256
	// clients, the session route's pool and every other pool at once.
	maxPostgresConnections = 700
	// dialRate replaces DSQL's 100 new connections per second, in the
	// emulator and the gateway's dsql routes, so that warming the
	// session-mode pool and the replacement test are not throttled.
	dialRate = 1000
	// maxClientConn is the gateway's and PgBouncer's client limit: more
	// than the largest idle-client test.
	maxClientConn = 20000
)

// Gateway route names (the database clients ask for).
const (
	routeDSQLTx      = "bench"         // kind dsql, transaction mode, pool poolSize
	routeDSQLSession = "bench_session" // kind dsql, session mode, pool sessionPoolSize
	routePostgres    = "direct"        // kind postgres, transaction mode, pool poolSize
	routeReplace     = "replace"       // kind dsql, session mode, pool 2: the replacement test
)

// environment is everything the benchmark runs against. Close stops it
// all and removes its directory.
type environment struct {
	dir          string // temporary; holds configs, logs and pgbench logs
	keep         bool   // leave dir in place
	dsqlgateBin  string
	pgbouncerBin string
	pg           *pgtest.Postgres
	// pgSecret is the postgres role's SCRAM secret from pg_authid, for
	// PgBouncer's userlist (PgBouncer then logs in to PostgreSQL with the
	// client's own SCRAM proof).
	pgSecret string

	awsKeyID, awsSecret string
	emulator            *process
	emulatorAddr        string
	controlURL          string // the emulator's control API
	caFile              string

	gatewayPassword string
	gateway         *process
	gatewayAddr     string
	// gatewayMetricsURL is the gateway's Prometheus page.
	gatewayMetricsURL string
	// baselineBin, when set, is the earlier build behind target
	// baselineKey.
	baselineBin string

	pgbouncer     *process
	pgbouncerAddr string

	poolSize        int
	sessionPoolSize int
	targets         []*target
	processes       []*process // every child still to stop, in start order
}

// target is one thing pgbench connects to.
type target struct {
	key      string // column name in the report
	desc     string
	addr     string // host:port
	user     string
	password string
	database string
	// server is the pooler whose CPU time a run is charged with (the
	// gateway or PgBouncer); nil for PostgreSQL itself.
	server *process
	// emulator, when set, is charged separately for dsql routes.
	emulator *process
	// prepared: the target supports pgbench -M prepared (PgBouncer 1.18
	// in transaction mode does not: protocol-level prepared statements
	// need 1.21's max_prepared_statements).
	prepared bool
}

// startEnvironment builds or finds the binaries and starts PostgreSQL, the
// emulator, the gateway and PgBouncer.
func startEnvironment(ctx context.Context, o options, p plan, logf func(string, ...any)) (e *environment, err error) {
	e = &environment{
		poolSize:        o.poolSize,
		keep:            o.keep,
		sessionPoolSize: p.maxClients() + 16,
		gatewayPassword: pgtest.RandomHex(16),
		awsKeyID:        "AKIA" + strings.ToUpper(pgtest.RandomHex(8)),
		awsSecret:       pgtest.RandomHex(20),
	}
	started := e // the returns below set e to nil
	defer func() {
		if err != nil {
			started.Close()
		}
	}()
	e.dir, err = os.MkdirTemp("", "dsqlgate-bench-")
	if err != nil {
		return nil, err
	}
	if o.keep {
		logf("keeping %s", e.dir)
	}
	// PgBouncer runs as postgres and must reach its own subdirectory.
	if err := os.Chmod(e.dir, 0o711); err != nil {
		return nil, err
	}
	if e.pgbouncerBin, err = findPgBouncer(); err != nil {
		return nil, err
	}
	if e.dsqlgateBin, err = dsqlgateBinary(ctx, o.dsqlgate, e.dir, logf); err != nil {
		return nil, err
	}
	if o.baseline != "" {
		if e.baselineBin, err = dsqlgateBinary(ctx, o.baseline, e.dir, logf); err != nil {
			return nil, err
		}
	}

	loadPgbench := len(p.cells) > 0
	if loadPgbench {
		logf("starting PostgreSQL (max_connections %d) and loading pgbench scale %d", maxPostgresConnections, pgbenchScale)
	} else {
		logf("starting PostgreSQL (max_connections %d); no pgbench cells, so no pgbench tables", maxPostgresConnections)
	}
	e.pg, err = pgtest.StartPostgres(ctx, pgtest.PostgresOptions{
		MaxConnections: maxPostgresConnections,
		ExtraConfig:    []string{"shared_buffers = 256MB"},
	})
	if err != nil {
		return nil, err
	}
	if err := e.initPostgres(ctx, loadPgbench); err != nil {
		return nil, err
	}

	if err := e.startEmulator(ctx); err != nil {
		return nil, err
	}
	e.gateway, e.gatewayAddr, e.gatewayMetricsURL, err = e.startGateway(ctx, e.dsqlgateBin, "gateway", []gatewayRoute{
		{database: routeDSQLTx, kind: "dsql", mode: "transaction", size: e.poolSize},
		{database: routeDSQLSession, kind: "dsql", mode: "session", size: e.sessionPoolSize},
		{database: routePostgres, kind: "postgres", mode: "transaction", size: e.poolSize},
		{database: routeReplace, kind: "dsql", mode: "session", size: 2},
	})
	if err != nil {
		return nil, err
	}
	e.pgbouncer, e.pgbouncerAddr, err = e.startPgBouncer(ctx, "pgbouncer")
	if err != nil {
		return nil, err
	}
	logf("emulator pid %d, gateway pid %d, PgBouncer pid %d", e.emulator.pid(), e.gateway.pid(), e.pgbouncer.pid())

	gw := func(key, desc, route string, emulator *process) *target {
		return &target{key: key, desc: desc, addr: e.gatewayAddr, user: gatewayUser, password: e.gatewayPassword,
			database: route, server: e.gateway, emulator: emulator, prepared: true}
	}
	e.targets = []*target{
		{key: "postgres", desc: "PostgreSQL directly", addr: e.pg.Addr(), user: "postgres", password: e.pg.Password,
			database: "postgres", prepared: true},
		{key: "pgbouncer", desc: "PgBouncer, transaction pooling → PostgreSQL", addr: e.pgbouncerAddr, user: "postgres",
			password: e.pg.Password, database: "postgres", server: e.pgbouncer},
		gw("gw-pg", "dsqlgate, transaction mode → PostgreSQL (route kind postgres, static password)", routePostgres, nil),
		gw("gw-dsql-tx", "dsqlgate, transaction mode → DSQL emulator → PostgreSQL", routeDSQLTx, e.emulator),
		gw("gw-dsql-sess", "dsqlgate, session mode → DSQL emulator → PostgreSQL", routeDSQLSession, e.emulator),
	}
	if e.baselineBin != "" {
		base, addr, _, err := e.startGateway(ctx, e.baselineBin, "baseline", []gatewayRoute{
			{database: routePostgres, kind: "postgres", mode: "transaction", size: e.poolSize},
		})
		if err != nil {
			return nil, fmt.Errorf("baseline gateway: %w", err)
		}
		logf("baseline gateway (%s) pid %d", filepath.Base(e.baselineBin), base.pid())
		e.targets = append(e.targets, &target{key: baselineKey,
			desc: fmt.Sprintf("the baseline build `%s` as `gw-pg`: transaction mode → PostgreSQL, the same route and pool, its own process", filepath.Base(e.baselineBin)),
			addr: addr, user: gatewayUser, password: e.gatewayPassword, database: routePostgres, server: base, prepared: true})
	}
	return e, nil
}

// baselineKey is the target of the baseline build (-baseline).
const baselineKey = "gw-pg-base"

// initPostgres creates DSQL's admin role (the emulator logs in to
// PostgreSQL as the role the client names), loads pgbench's tables when
// pgbench is true, and reads the postgres role's SCRAM secret.
func (e *environment) initPostgres(ctx context.Context, pgbench bool) error {
	if _, err := e.pg.Psql(ctx, "postgres", "-qc", "CREATE ROLE admin SUPERUSER LOGIN"); err != nil {
		return err
	}
	if pgbench {
		init := exec.CommandContext(ctx, filepath.Join(e.pg.BinDir(), "pgbench"), "-i", "-q", "-s", strconv.Itoa(pgbenchScale),
			"-h", e.pg.SocketDir, "-p", strconv.Itoa(e.pg.Port), "-U", "postgres", "postgres")
		if out, err := init.CombinedOutput(); err != nil {
			return fmt.Errorf("pgbench -i: %w\n%s", err, out)
		}
	}
	secret, err := e.pg.Psql(ctx, "postgres", "-Atc", "SELECT rolpassword FROM pg_authid WHERE rolname = 'postgres'")
	if err != nil {
		return err
	}
	e.pgSecret = strings.TrimSpace(secret)
	if !strings.HasPrefix(e.pgSecret, "SCRAM-SHA-256$") {
		return fmt.Errorf("the postgres role has no SCRAM secret")
	}
	return nil
}

func (e *environment) startEmulator(ctx context.Context) error {
	addr, err := freeAddr()
	if err != nil {
		return err
	}
	control, err := freeAddr()
	if err != nil {
		return err
	}
	e.caFile = filepath.Join(e.dir, "emulator-ca.pem")
	args := []string{"emulate", "--listen", addr, "--region", emulatorRegion, "--hostname", emulatorHost,
		"--ca-file", e.caFile, "--backend-socket-dir", e.pg.SocketDir, "--backend-port", strconv.Itoa(e.pg.Port),
		"--conn-rate", strconv.Itoa(dialRate), "--max-conns", strconv.Itoa(maxClientConn),
		"--control", control, "--log-level", "warn"}
	env := []string{"AWS_ACCESS_KEY_ID=" + e.awsKeyID, "AWS_SECRET_ACCESS_KEY=" + e.awsSecret}
	e.emulator, err = startProcess("emulator", e.dsqlgateBin, args, env, filepath.Join(e.dir, "emulator.log"), "")
	if err != nil {
		return err
	}
	e.processes = append(e.processes, e.emulator)
	if err := e.emulator.waitListening(ctx, addr, 30*time.Second); err != nil {
		return err
	}
	if err := e.emulator.waitListening(ctx, control, 10*time.Second); err != nil {
		return err
	}
	e.emulatorAddr, e.controlURL = addr, "http://"+control
	return nil
}

// gatewayRoute is one route of a gateway configuration.
type gatewayRoute struct {
	database string
	kind     string // dsql or postgres
	mode     string // transaction or session
	size     int
}

// gatewayConfig is a configuration file for `dsqlgate serve`. The
// passwords come from environment variables (set by startGateway).
func (e *environment) gatewayConfig(listen, metrics string, routes []gatewayRoute) string {
	var b strings.Builder
	fmt.Fprintf(&b, "listen: %s\n", listen)
	fmt.Fprintf(&b, "log: {level: warn}\n")
	fmt.Fprintf(&b, "client_tls: {mode: disable}\n")
	fmt.Fprintf(&b, "limits: {max_client_conn: %d}\n", maxClientConn)
	fmt.Fprintf(&b, "shutdown_timeout: 5s\n")
	fmt.Fprintf(&b, "metrics: {listen: %q}\n", metrics)
	fmt.Fprintf(&b, "users:\n  - {name: %s, password_env: DSQLGATE_BENCH_PASSWORD}\n", gatewayUser)
	fmt.Fprintf(&b, "admin: {users: [%s]}\n", gatewayUser)
	fmt.Fprintf(&b, "routes:\n")
	for _, r := range routes {
		fmt.Fprintf(&b, "  - database: %s\n    kind: %s\n", r.database, r.kind)
		switch r.kind {
		case "dsql":
			fmt.Fprintf(&b, "    endpoint: %s\n    dial_address: %s\n    ca_file: %s\n", emulatorHost, e.emulatorAddr, e.caFile)
			fmt.Fprintf(&b, "    pool: {mode: %s, size: %d, dial_rate: %d}\n", r.mode, r.size, dialRate)
		case "postgres":
			fmt.Fprintf(&b, "    endpoint: %s\n    tls: disable\n    user: postgres\n    password_env: DSQLGATE_BENCH_PG_PASSWORD\n    upstream_database: postgres\n", e.pg.Addr())
			fmt.Fprintf(&b, "    pool: {mode: %s, size: %d}\n", r.mode, r.size)
		}
	}
	return b.String()
}

// startGateway writes a configuration with routes and runs `bin serve`
// with it; name names its files. It returns the client address
// and the URL of its metrics.
func (e *environment) startGateway(ctx context.Context, bin, name string, routes []gatewayRoute) (p *process, addr, metricsURL string, err error) {
	listen, err := freeAddr()
	if err != nil {
		return nil, "", "", err
	}
	metrics, err := freeAddr()
	if err != nil {
		return nil, "", "", err
	}
	cfgPath := filepath.Join(e.dir, name+".yaml")
	if err := os.WriteFile(cfgPath, []byte(e.gatewayConfig(listen, metrics, routes)), 0o600); err != nil {
		return nil, "", "", err
	}
	env := []string{
		"AWS_ACCESS_KEY_ID=" + e.awsKeyID, "AWS_SECRET_ACCESS_KEY=" + e.awsSecret, "AWS_EC2_METADATA_DISABLED=true",
		"DSQLGATE_BENCH_PASSWORD=" + e.gatewayPassword,
	}
	// The gateway refuses a DSQLGATE_ variable that no key names.
	for _, r := range routes {
		if r.kind == "postgres" {
			env = append(env, "DSQLGATE_BENCH_PG_PASSWORD="+e.pg.Password)
			break
		}
	}
	p, err = startProcess(name, bin, []string{"serve", "-c", cfgPath}, env, filepath.Join(e.dir, name+".log"), "")
	if err != nil {
		return nil, "", "", err
	}
	e.processes = append(e.processes, p)
	if err := p.waitListening(ctx, listen, 30*time.Second); err != nil {
		return nil, "", "", err
	}
	return p, listen, "http://" + metrics + "/metrics", nil
}

// startPgBouncer writes a configuration (transaction pooling, pool size
// poolSize, SCRAM client authentication against a userlist holding the
// postgres role's secret) into its own directory owned by postgres, and
// runs PgBouncer as postgres when benchrun is root. It returns the client
// address.
func (e *environment) startPgBouncer(ctx context.Context, name string) (*process, string, error) {
	listen, err := freeAddr()
	if err != nil {
		return nil, "", err
	}
	host, port, _ := net.SplitHostPort(listen)
	dir := filepath.Join(e.dir, name)
	if err := os.Mkdir(dir, 0o700); err != nil {
		return nil, "", err
	}
	ini := strings.Join([]string{
		"[databases]",
		fmt.Sprintf("postgres = host=%s port=%d dbname=postgres", e.pg.Host, e.pg.Port),
		"[pgbouncer]",
		"listen_addr = " + host,
		"listen_port = " + port,
		"unix_socket_dir =",
		"auth_type = scram-sha-256",
		"auth_file = " + filepath.Join(dir, "userlist.txt"),
		"pool_mode = transaction",
		fmt.Sprintf("default_pool_size = %d", e.poolSize),
		fmt.Sprintf("max_client_conn = %d", maxClientConn),
		"logfile = " + filepath.Join(dir, "pgbouncer.log"),
		"log_connections = 0",
		"log_disconnections = 0",
		"",
	}, "\n")
	files := map[string]string{
		"pgbouncer.ini": ini,
		"userlist.txt":  fmt.Sprintf("%q %q\n", "postgres", e.pgSecret),
	}
	runAs := ""
	if os.Geteuid() == 0 {
		runAs = "postgres"
	}
	for file, content := range files {
		if err := os.WriteFile(filepath.Join(dir, file), []byte(content), 0o600); err != nil {
			return nil, "", err
		}
	}
	if runAs != "" {
		uid, gid, err := lookupUser(runAs)
		if err != nil {
			return nil, "", err
		}
		for _, path := range []string{dir, filepath.Join(dir, "pgbouncer.ini"), filepath.Join(dir, "userlist.txt")} {
			if err := os.Chown(path, int(uid), int(gid)); err != nil {
				return nil, "", err
			}
		}
	}
	p, err := startProcess(name, e.pgbouncerBin, []string{filepath.Join(dir, "pgbouncer.ini")}, nil,
		filepath.Join(e.dir, name+".out"), runAs)
	if err != nil {
		return nil, "", err
	}
	p.logPath = filepath.Join(dir, "pgbouncer.log")
	e.processes = append(e.processes, p)
	if err := p.waitListening(ctx, listen, 30*time.Second); err != nil {
		return nil, "", err
	}
	return p, listen, nil
}

// stopProcess stops p and forgets it.
func (e *environment) stopProcess(p *process) {
	p.stop(10 * time.Second)
	for i, q := range e.processes {
		if q == p {
			e.processes = append(e.processes[:i], e.processes[i+1:]...)
			break
		}
	}
}

// Close stops every process in reverse start order and removes the
// directory. It is safe on a partly started environment.
func (e *environment) Close() {
	for i := len(e.processes) - 1; i >= 0; i-- {
		e.processes[i].stop(10 * time.Second)
	}
	e.processes = nil
	if e.pg != nil {
		e.pg.Close()
	}
	if e.dir != "" && !e.keep {
		os.RemoveAll(e.dir)
	}
}

// setup is what the report says about the environment.
type setup struct {
	poolSize, sessionPoolSize int
	targets                   []*target
}

func (e *environment) describe() setup {
	return setup{poolSize: e.poolSize, sessionPoolSize: e.sessionPoolSize, targets: e.targets}
}

// dsqlgateBinary returns bin, or builds ./cmd/dsqlgate into dir when bin
// is empty.
func dsqlgateBinary(ctx context.Context, bin, dir string, logf func(string, ...any)) (string, error) {
	if bin != "" {
		abs, err := filepath.Abs(bin)
		if err != nil {
			return "", err
		}
		if _, err := os.Stat(abs); err != nil {
			return "", fmt.Errorf("dsqlgate binary: %w", err)
		}
		return abs, nil
	}
	out := filepath.Join(dir, "dsqlgate")
	logf("building ./cmd/dsqlgate")
	build := exec.CommandContext(ctx, "go", "build", "-o", out, "./cmd/dsqlgate")
	if msg, err := build.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build ./cmd/dsqlgate (run benchrun from the repository root): %w\n%s", err, msg)
	}
	return out, nil
}

func findPgBouncer() (string, error) {
	if p, err := exec.LookPath("pgbouncer"); err == nil {
		return p, nil
	}
	if _, err := os.Stat("/usr/sbin/pgbouncer"); err == nil {
		return "/usr/sbin/pgbouncer", nil
	}
	return "", fmt.Errorf("no pgbouncer: run make deps-bench (apt-get install pgbouncer)")
}

// freeAddr is a loopback host:port that was free a moment ago.
func freeAddr() (string, error) {
	port, err := pgtest.FreePort()
	if err != nil {
		return "", err
	}
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), nil
}
