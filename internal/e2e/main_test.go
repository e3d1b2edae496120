package e2e

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/jackc/pgx/v5"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/dsqlgate/dsqlgate/authbridge"
	"github.com/dsqlgate/dsqlgate/internal/harness"
	"github.com/dsqlgate/dsqlgate/internal/pgtest"
)

// shared is the stack most tests use: one PostgreSQL, emulator and gateway
// for the package, so the suite stays fast. Tests that need special
// settings start their own.
var shared *harness.Stack

// sharedLogs captures the shared stack's logs at debug level, for the
// tests that check what reaches a log.
var sharedLogs = &syncBuffer{}

func TestMain(m *testing.M) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	var err error
	shared, err = harness.StartStack(ctx, harness.StackOptions{Logger: newTestLogger(sharedLogs)})
	cancel()
	if err != nil {
		fmt.Fprintln(os.Stderr, "start stack:", err)
		os.Exit(1)
	}
	code := m.Run()
	closeStacks()
	shared.Close()
	os.Exit(code)
}

// syncBuffer is a buffer safe for concurrent writers.
type syncBuffer = pgtest.SyncBuffer

func newTestLogger(w *syncBuffer) *zap.Logger {
	enc := zapcore.NewJSONEncoder(zap.NewProductionEncoderConfig())
	return zap.New(zapcore.NewCore(enc, zapcore.AddSync(w), zapcore.DebugLevel))
}

// connect opens a pgx connection to a stack's gateway.
func connect(t testing.TB, st *harness.Stack, extra string) *pgx.Conn {
	t.Helper()
	if extra == "" {
		extra = "sslmode=disable"
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, st.URL(extra))
	if err != nil {
		t.Fatalf("connect to gateway: %v", err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	return conn
}

// psql runs psql against a stack's gateway with the given arguments and
// standard input, and returns its combined output.
func psql(t testing.TB, st *harness.Stack, stdin string, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	all := append([]string{"-X", "-v", "ON_ERROR_STOP=1", "--no-psqlrc", "-d", st.URL("sslmode=disable")}, args...)
	cmd := exec.CommandContext(ctx, st.PG.BinDir()+"/psql", all...)
	cmd.Stdin = strings.NewReader(stdin)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// ctx returns a context that ends with the test or after d.
func testCtx(t testing.TB, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// pgtestOptions are the PostgreSQL options for stacks started by tests.
func pgtestOptions() pgtest.PostgresOptions { return pgtest.PostgresOptions{} }

// secondGateway starts another gateway (its own bridge, pools and lock
// manager) with st's configuration in front of st's emulator, and returns
// a URL for it. It stops with the test.
func secondGateway(t testing.TB, st *harness.Stack) string {
	t.Helper()
	_, u := startSecondGateway(t, st)
	return u
}

// mintToken mints a token the emulator of st accepts, as a client
// talking to DSQL directly would.
func mintToken(t testing.TB, st *harness.Stack) string {
	t.Helper()
	m := authbridge.NewTokenMinter(harness.StackHost, harness.StackRegion, "admin", 15*time.Minute,
		credentials.StaticCredentialsProvider{Value: st.Credentials})
	token, err := m.Mint(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return token
}
