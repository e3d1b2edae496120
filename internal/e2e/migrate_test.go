package e2e

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-migrate/migrate/v4"
	migratepgx "github.com/golang-migrate/migrate/v4/database/pgx/v5"
	_ "github.com/golang-migrate/migrate/v4/source/file"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/pressly/goose/v3"
	"github.com/pressly/goose/v3/lock"

	"github.com/dsqlgate/dsqlgate/internal/harness"
	"github.com/dsqlgate/dsqlgate/internal/scram"
)

// openDB opens a database/sql pool through pgx's stdlib driver.
func openDB(t testing.TB, connString string, adjust func(*pgx.ConnConfig)) *sql.DB {
	t.Helper()
	cfg, err := pgx.ParseConfig(connString)
	if err != nil {
		t.Fatal(err)
	}
	if adjust != nil {
		adjust(cfg)
	}
	db := stdlib.OpenDB(*cfg)
	t.Cleanup(func() { db.Close() })
	return db
}

// directToEmulator points a pgx config at the emulator itself, as a
// client that speaks to DSQL directly would (TLS, SNI, an IAM token).
func directToEmulator(t testing.TB, st *harness.Stack) func(*pgx.ConnConfig) {
	token := mintToken(t, st)
	return func(c *pgx.ConnConfig) {
		addr := st.Emulator.Addr()
		c.Password = token
		c.LookupFunc = func(context.Context, string) ([]string, error) { return []string{"127.0.0.1"}, nil }
		c.DialFunc = func(ctx context.Context, _, _ string) (net.Conn, error) { return dialer.DialContext(ctx, "tcp", addr) }
	}
}

func directURL(st *harness.Stack) string {
	return "host=" + harness.StackHost + " user=admin dbname=postgres sslmode=verify-full sslnegotiation=direct sslrootcert=" + st.CAFile
}

func migrationsDir(t testing.TB, tool string) string {
	t.Helper()
	dir, err := filepath.Abs(filepath.Join("testdata", "migrations", tool))
	if err != nil {
		t.Fatal(err)
	}
	return dir
}

// TestGolangMigrate runs golang-migrate (pgx/v5 driver: pg_advisory_lock,
// TRUNCATE of its version table) up and down through the gateway,
// unchanged; the same run straight against the emulator fails on the
// lock, as it does against DSQL.
func TestGolangMigrate(t *testing.T) {
	st := stackFor(t, "golang-migrate")
	dir := migrationsDir(t, "golang-migrate")

	// Straight to the emulator the driver fails at once: it takes the
	// lock to create its version table.
	direct := openDB(t, directURL(st), directToEmulator(t, st))
	_, err := migratepgx.WithInstance(direct, &migratepgx.Config{})
	if err == nil || !strings.Contains(err.Error(), "pg_advisory_lock") || !strings.Contains(err.Error(), "not supported") {
		t.Fatalf("straight to the emulator: %v, want the advisory lock refused", err)
	}

	gw := openDB(t, st.URL("sslmode=disable&application_name=migrate"), nil)
	driver, err := migratepgx.WithInstance(gw, &migratepgx.Config{})
	if err != nil {
		t.Fatal(err)
	}
	m, err := migrate.NewWithDatabaseInstance("file://"+dir, "pgx5", driver)
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Up(); err != nil {
		t.Fatalf("up through the gateway: %v", err)
	}
	version, dirty, err := m.Version()
	if err != nil || version != 4 || dirty {
		t.Fatalf("after up: version %d dirty %v err %v", version, dirty, err)
	}
	var accounts int
	if err := gw.QueryRow("select count(*) from accounts where name is null").Scan(&accounts); err != nil || accounts != 2 {
		t.Fatalf("after up: %d accounts, %v", accounts, err)
	}
	if err := m.Down(); err != nil {
		t.Fatalf("down through the gateway: %v", err)
	}
	if _, _, err := m.Version(); !errors.Is(err, migrate.ErrNilVersion) {
		t.Fatalf("after down: %v, want no version", err)
	}
	if err := m.Up(); err != nil {
		t.Fatalf("up again: %v", err)
	}
}

// TestGoose runs goose (postgres dialect, its advisory session locker)
// up and down through the gateway, unchanged; straight against the
// emulator it fails on the lock.
func TestGoose(t *testing.T) {
	st := stackFor(t, "goose")
	ctx := testCtx(t, 2*time.Minute)
	newProvider := func(db *sql.DB) *goose.Provider {
		t.Helper()
		locker, err := lock.NewPostgresSessionLocker(lock.WithLockTimeout(1, 3))
		if err != nil {
			t.Fatal(err)
		}
		// DSQL runs one DDL statement per transaction and no DDL beside
		// DML: goose's own option for it keeps each migration's DDL apart
		// from its version row (without it goose's first transaction,
		// CREATE TABLE goose_db_version and INSERT version 0, fails).
		p, err := goose.NewProvider(goose.DialectPostgres, db, os.DirFS(migrationsDir(t, "goose")),
			goose.WithSessionLocker(locker), goose.WithIsolateDDL(true))
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	direct := openDB(t, directURL(st), directToEmulator(t, st))
	if _, err := newProvider(direct).Up(ctx); err == nil || !strings.Contains(err.Error(), "not supported") {
		t.Fatalf("straight to the emulator: %v, want the advisory lock refused", err)
	}
	gw := openDB(t, st.URL("sslmode=disable"), nil)
	p := newProvider(gw)
	results, err := p.Up(ctx)
	if err != nil {
		t.Fatalf("up through the gateway: %v", err)
	}
	if len(results) != 3 {
		t.Fatalf("%d migrations applied, want 3", len(results))
	}
	var total float64
	if err := gw.QueryRow("select sum(total) from orders").Scan(&total); err != nil || total < 29.97 || total > 29.99 {
		t.Fatalf("after up: %v %v", total, err)
	}
	if _, err := p.DownTo(ctx, 0); err != nil {
		t.Fatalf("down through the gateway: %v", err)
	}
	if v, err := p.GetDBVersion(ctx); err != nil || v != 0 {
		t.Fatalf("after down: version %d, %v", v, err)
	}
}

// TestConcurrentMigrations starts two gateway processes in front of the
// same cluster and runs golang-migrate through both at once: the advisory
// lock, kept on the cluster, lets exactly one apply each migration.
func TestConcurrentMigrations(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the gateway binary")
	}
	st := stackFor(t, "concurrent-migrations")
	bin := buildGateway(t)
	urls := []string{startGatewayProcess(t, st, bin), startGatewayProcess(t, st, bin)}
	dir := migrationsDir(t, "golang-migrate")
	var wg sync.WaitGroup
	errs := make([]error, len(urls))
	for i, u := range urls {
		wg.Add(1)
		go func() {
			defer wg.Done()
			db := openDB(t, u+"&application_name=run"+strconv.Itoa(i), nil)
			driver, err := migratepgx.WithInstance(db, &migratepgx.Config{})
			if err != nil {
				errs[i] = err
				return
			}
			m, err := migrate.NewWithDatabaseInstance("file://"+dir, "pgx5", driver)
			if err != nil {
				errs[i] = err
				return
			}
			if err := m.Up(); err != nil && !errors.Is(err, migrate.ErrNoChange) {
				errs[i] = err
			}
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("run %d: %v", i, err)
		}
	}
	db := openDB(t, st.URL("sslmode=disable"), nil)
	var applied, accounts int
	var by string
	if err := db.QueryRow("select count(*), min(applied_by) from applied_log").Scan(&applied, &by); err != nil {
		t.Fatal(err)
	}
	db.QueryRow("select count(*) from accounts").Scan(&accounts)
	if applied != 1 || accounts != 2 {
		t.Fatalf("migration 3 applied %d times (%d accounts): the runs were not serialised", applied, accounts)
	}
	t.Logf("migration 3 applied once, by %s", by)
}

var (
	buildOnce sync.Once
	builtBin  string
	buildErr  error
)

// buildGateway builds the dsqlgate binary once per test run.
func buildGateway(t testing.TB) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "dsqlgate-bin-")
		if err != nil {
			buildErr = err
			return
		}
		builtBin = filepath.Join(dir, "dsqlgate")
		out, err := exec.Command("go", "build", "-o", builtBin, "github.com/dsqlgate/dsqlgate/cmd/dsqlgate").CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return builtBin
}

// startGatewayProcess runs `dsqlgate serve` with a config file routing to
// st's emulator, and returns a URL for it once it accepts clients.
func startGatewayProcess(t testing.TB, st *harness.Stack, bin string) string {
	t.Helper()
	v, err := scram.GenerateVerifier(st.Password)
	if err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	// metrics on a port of its own: two of these run at once, beside
	// any other gateway on the default 127.0.0.1:9187.
	cfg := fmt.Sprintf(`listen: %s
metrics:
  listen: 127.0.0.1:0
users:
  - name: %s
    verifier_env: TEST_VERIFIER
routes:
  - database: %s
    endpoint: %s
    dial_address: %s
    ca_file: %s
`, addr, st.User, harness.StackDatabase, harness.StackHost, st.Emulator.Addr(), st.CAFile)
	path := filepath.Join(t.TempDir(), "dsqlgate.yaml")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "serve", "-c", path, "--log-level", "warn")
	cmd.Env = append(os.Environ(), "TEST_VERIFIER="+v.Encode(),
		"AWS_ACCESS_KEY_ID="+st.Credentials.AccessKeyID, "AWS_SECRET_ACCESS_KEY="+st.Credentials.SecretAccessKey)
	var logs syncBuffer
	cmd.Stdout, cmd.Stderr = &logs, &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Signal(os.Interrupt)
		done := make(chan struct{})
		go func() { cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
			<-done
		}
	})
	u, _ := url.Parse(st.URL("sslmode=disable"))
	u.Host = addr
	deadline := time.Now().Add(30 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			return u.String()
		}
		if time.Now().After(deadline) {
			t.Fatalf("the gateway process did not start: %v\n%s", err, logs.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}
