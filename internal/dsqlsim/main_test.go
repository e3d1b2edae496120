package dsqlsim_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dsqlgate/dsqlgate/internal/dsqlsim"
	"github.com/dsqlgate/dsqlgate/internal/pgtest"
	"github.com/jackc/pgx/v5/pgconn"
	"go.uber.org/goleak"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"
)

// The end-to-end tests share one real PostgreSQL, started on first use.
// Its database "dsqlsim" is what DSQL's "postgres" maps to; roles "admin"
// (superuser) and "app" exist as on a DSQL cluster.
var (
	pgOnce sync.Once
	pg     *pgtest.Postgres
	pgErr  error
)

const backendDatabase = "dsqlsim"

func TestMain(m *testing.M) {
	code := m.Run()
	if pg != nil {
		pg.Close()
	}
	if code == 0 {
		if err := goleak.Find(); err != nil {
			fmt.Fprintf(os.Stderr, "goroutines leaked: %v\n", err)
			code = 1
		}
	}
	os.Exit(code)
}

func needPostgres(t *testing.T) *pgtest.Postgres {
	t.Helper()
	pgOnce.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		pg, pgErr = pgtest.StartPostgres(ctx, pgtest.PostgresOptions{})
		if pgErr != nil {
			return
		}
		if _, pgErr = pg.Psql(ctx, "postgres", "-c", "CREATE ROLE admin SUPERUSER LOGIN", "-c", "CREATE ROLE app LOGIN",
			"-c", "CREATE DATABASE "+backendDatabase+" OWNER admin"); pgErr != nil {
			return
		}
		_, pgErr = pg.Psql(ctx, backendDatabase, "-c", "GRANT ALL ON SCHEMA public TO app")
	})
	if pgErr != nil {
		t.Fatalf("the end-to-end tests need a real PostgreSQL (server binaries in /usr/lib/postgresql/*/bin or $PG_BIN): %v", pgErr)
	}
	return pg
}

// testClock is an adjustable clock for the emulator: real time plus an
// offset that tests move forward.
type testClock struct{ offset atomic.Int64 }

func (c *testClock) Now() time.Time          { return time.Now().Add(time.Duration(c.offset.Load())) }
func (c *testClock) Advance(d time.Duration) { c.offset.Add(int64(d)) }
func (c *testClock) Reset()                  { c.offset.Store(0) }

// emulator is a running Server with what tests need around it.
type emulator struct {
	*dsqlsim.Server
	caFile string
	logs   *observer.ObservedLogs
}

// startEmulator starts a Server on the shared PostgreSQL; configure may
// change the config first. The server is closed when the test ends.
func startEmulator(t *testing.T, configure func(*dsqlsim.Config)) *emulator {
	t.Helper()
	backend := needPostgres(t)
	core, logs := observer.New(zap.DebugLevel)
	cfg := dsqlsim.Config{
		ListenAddr:       "127.0.0.1:0",
		Region:           dsqlsim.TestRegion,
		Hostnames:        []string{dsqlsim.TestHost},
		Credentials:      dsqlsim.TestCreds,
		CAFile:           filepath.Join(t.TempDir(), "ca.pem"),
		BackendSocketDir: backend.SocketDir,
		BackendPort:      backend.Port,
		BackendDatabase:  backendDatabase,
		ClockSkew:        dsqlsim.TestSkew,
		Logger:           zap.New(core),
	}
	if configure != nil {
		configure(&cfg)
	}
	s, err := dsqlsim.Start(context.Background(), cfg)
	if err != nil {
		t.Fatalf("dsqlsim.Start: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return &emulator{Server: s, caFile: cfg.CAFile, logs: logs}
}

// connConfig is a pgconn config for host (which resolves to the emulator's
// 127.0.0.1) as role, with verify-full TLS against the emulator's CA and a
// Go SDK token for host as the password.
func (e *emulator) connConfig(t *testing.T, host, role, negotiation string) *pgconn.Config {
	t.Helper()
	_, port, _ := net.SplitHostPort(e.Addr())
	cfg, err := pgconn.ParseConfig(fmt.Sprintf(
		"host=%s port=%s user=%s dbname=postgres sslmode=verify-full sslrootcert=%s sslnegotiation=%s connect_timeout=10",
		host, port, role, e.caFile, negotiation))
	if err != nil {
		t.Fatalf("parse config: %v", err)
	}
	cfg.Password = dsqlsim.SDKToken(t, dsqlsim.TestHost, dsqlsim.TestRegion, role, dsqlsim.TestCred, 15*time.Minute)
	cfg.LookupFunc = func(ctx context.Context, name string) ([]string, error) {
		if net.ParseIP(name) != nil {
			return []string{name}, nil
		}
		return []string{"127.0.0.1"}, nil // every test name is the emulator
	}
	return cfg
}

func (e *emulator) connect(t *testing.T, role, negotiation string) *pgconn.PgConn {
	t.Helper()
	conn, err := connectConfig(t, e.connConfig(t, dsqlsim.TestHost, role, negotiation))
	if err != nil {
		t.Fatalf("connect as %s (%s): %v", role, negotiation, err)
	}
	return conn
}

func connectConfig(t *testing.T, cfg *pgconn.Config) (*pgconn.PgConn, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	conn, err := pgconn.ConnectConfig(ctx, cfg)
	if err != nil {
		return nil, err
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		conn.Close(ctx)
	})
	return conn, nil
}

// query runs one simple-protocol statement and returns its rows as text.
func query(t *testing.T, conn *pgconn.PgConn, sql string) ([][]string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	results, err := conn.Exec(ctx, sql).ReadAll()
	if err != nil {
		return nil, err
	}
	return rowsOf(results), nil
}

// rowsOf is every row of results, as text.
func rowsOf(results []*pgconn.Result) [][]string {
	var rows [][]string
	for _, r := range results {
		for _, row := range r.Rows {
			var cols []string
			for _, v := range row {
				cols = append(cols, string(v))
			}
			rows = append(rows, cols)
		}
	}
	return rows
}

func mustQuery(t *testing.T, conn *pgconn.PgConn, sql string) [][]string {
	t.Helper()
	rows, err := query(t, conn, sql)
	if err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
	return rows
}

// wantPgError fails unless err is a *pgconn.PgError with code whose message
// contains substr, and returns it.
func wantPgError(t *testing.T, err error, code, substr string) *pgconn.PgError {
	t.Helper()
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) {
		t.Fatalf("error = %v, want a PostgreSQL error %s", err, code)
	}
	if pgErr.Code != code || !strings.Contains(pgErr.Message, substr) {
		t.Fatalf("error = %s %q (%s), want %s containing %q", pgErr.Code, pgErr.Message, pgErr.Detail, code, substr)
	}
	return pgErr
}

// waitFor polls cond until it holds or 10 s pass.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func itoa(n uint32) string { return strconv.FormatUint(uint64(n), 10) }
