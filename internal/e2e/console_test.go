package e2e

import (
	"context"
	"errors"
	"net/url"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/dsqlgate/dsqlgate/config"
	"github.com/dsqlgate/dsqlgate/internal/gateway"
	"github.com/dsqlgate/dsqlgate/internal/harness"
	"github.com/dsqlgate/dsqlgate/internal/scram"
)

// consoleStack is a stack with an admin user "ops" whose console SHUTDOWN
// drains the gateway as serve does on SIGTERM; shut receives Shutdown's
// result.
func consoleStack(t *testing.T) (st *harness.Stack, admin string, shut <-chan error) {
	t.Helper()
	const password = "ops-password-2"
	v, err := scram.GenerateVerifier(password)
	if err != nil {
		t.Fatal(err)
	}
	gw := make(chan *gateway.Gateway, 1)
	done := make(chan error, 1)
	st, err = harness.StartStack(testCtx(t, time.Minute), harness.StackOptions{
		Gateway: func(c *config.Config) {
			c.Users = append(c.Users, config.User{Name: "ops", Verifier: v.Encode()})
			c.Admin.Users = []string{"ops"}
			// Long: a drain that waits for the timeout fails the test.
			c.ShutdownTimeout = config.Duration(time.Minute)
		},
		Shutdown: func() {
			g := <-gw
			go func() {
				ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
				defer cancel()
				done <- g.Shutdown(ctx)
			}()
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	gw <- st.Gateway
	t.Cleanup(st.Close)
	u := url.URL{Scheme: "postgres", User: url.UserPassword("ops", password), Host: st.Gateway.Addr, Path: "/dsqlgate", RawQuery: "sslmode=disable"}
	return st, u.String(), done
}

// psqlScript runs a console script with psql -c; it returns psql's
// output and whether psql succeeded.
func psqlScript(st *harness.Stack, adminURL, script string) (string, error) {
	out, err := exec.Command(st.PG.BinDir()+"/psql", "-X", "-A", "-F", "|", "-d", adminURL, "-c", script).CombinedOutput()
	return string(out), err
}

// consoleExec runs a console query with pgconn and returns its results.
func consoleExec(t *testing.T, c *pgconn.PgConn, sql string) ([]*pgconn.Result, error) {
	t.Helper()
	return c.Exec(testCtx(t, 30*time.Second), sql).ReadAll()
}

// TestConsoleCommands runs every console command through psql and pgconn
// against a real gateway: the answers, the column types, scripts of
// several commands, KILL_CLIENT, KILL, the refusals, and SHUTDOWN last.
func TestConsoleCommands(t *testing.T) {
	st, admin, shut := consoleStack(t)
	ctx := testCtx(t, 2*time.Minute)

	// Every command answers, with PgBouncer's column names.
	for _, c := range [][2]string{
		{"SHOW DATABASES", "name|host|port|database|force_user|pool_size|min_pool_size|server_lifetime|pool_mode|max_connections|current_connections|current_client_connections|paused|kind|max_user_connections"},
		{"SHOW POOLS", "database|user|cl_active|cl_waiting|sv_active|sv_idle"},
		{"SHOW CLIENTS", "type|user|database|state|addr|port"},
		{"SHOW SERVERS", "type|user|database|state|addr|port"},
		{"SHOW USERS", "name|auth|admin|databases|current_client_connections"},
		{"SHOW STATS", "database|total_xact_count|total_query_count"},
		{"SHOW STATS_TOTALS", "database|xact_count|query_count|bytes_received|bytes_sent|xact_time|query_time|wait_time"},
		{"SHOW LISTS", "list|items"},
		{"SHOW MEM", "name|size|used|free|memtotal"},
		{"SHOW CONFIG", "key|value|default|changeable"},
		{"SHOW VERSION", "version"},
		{"show help", "NOTICE:  Console usage"},
		{"RELOAD", "ERROR:  this gateway cannot reload"},
		{"PAUSE postgres", "PAUSE"},
		{"RESUME", "RESUME"},
		{"RECONNECT", "RECONNECT"},
	} {
		cmd, header := c[0], c[1]
		out, err := psqlScript(st, admin, cmd)
		if cmd != "RELOAD" && err != nil || !strings.HasPrefix(out, header) {
			t.Errorf("%s: %v\n%s\nwant it to start %q", cmd, err, out, header)
		}
	}
	help, _ := psqlScript(st, admin, "SHOW HELP")
	for _, c := range []string{"SHOW DATABASES", "SHOW MEM", "KILL_CLIENT id", "KILL db", "SHUTDOWN"} {
		if !strings.Contains(help, c) {
			t.Errorf("SHOW HELP does not list %s:\n%s", c, help)
		}
	}

	busy := connect(t, st, "sslmode=disable&application_name=busy")
	other := connect(t, st, "sslmode=disable&application_name=other")
	// A session is listed (and killable) from when it is served: a query
	// answered.
	for _, c := range []*pgx.Conn{busy, other} {
		if _, err := c.Exec(ctx, "select 1"); err != nil {
			t.Fatal(err)
		}
	}

	// Two commands in one psql -c: both answered, in order.
	out, err := psqlScript(st, admin, "SHOW POOLS; SHOW STATS;")
	if err != nil || !strings.HasPrefix(out, "database|user|cl_active") || !strings.Contains(out, "\ndatabase|total_xact_count|") {
		t.Fatalf("SHOW POOLS; SHOW STATS: %v\n%s", err, out)
	}
	if a := column(out, "cl_active"); len(a) != 1 || a[0] != "2" {
		t.Errorf("SHOW POOLS cl_active %v, want 2\n%s", a, out)
	}

	console, err := pgconn.Connect(ctx, admin)
	if err != nil {
		t.Fatal(err)
	}
	defer console.Close(ctx)
	// Typed columns: int8, bool and text, in one script.
	res, err := consoleExec(t, console, "SHOW POOLS;; SHOW USERS; SHOW CLIENTS")
	if err != nil || len(res) != 3 {
		t.Fatalf("SHOW POOLS; SHOW USERS; SHOW CLIENTS: %d results, %v", len(res), err)
	}
	wantTypes := []map[string]uint32{
		{"database": 25, "cl_active": 20, "sv_idle": 20, "maxwait_us": 20, "pool_mode": 25, "paused": 16},
		{"name": 25, "admin": 16, "current_client_connections": 20},
		{"ptr": 20, "port": 20, "tls": 16, "connect_time": 25, "application_name": 25},
	}
	for i, want := range wantTypes {
		got := map[string]uint32{}
		for _, f := range res[i].FieldDescriptions {
			got[f.Name] = f.DataTypeOID
		}
		for name, oid := range want {
			if got[name] != oid {
				t.Errorf("result %d column %s: type oid %d, want %d", i, name, got[name], oid)
			}
		}
	}
	if p := string(res[0].Rows[0][12]); p != "f" {
		t.Errorf("SHOW POOLS paused %q, want f", p)
	}
	// SHOW USERS: each user, whether admin, and never a secret.
	users := map[string]string{}
	for _, row := range res[1].Rows {
		users[string(row[0])] = string(row[2]) + "," + string(row[4])
	}
	if users["ops"] != "t,0" || users[harness.StackUser] != "f,2" {
		t.Errorf("SHOW USERS admin,current_client_connections: %v, want ops t,0 and %s f,2", users, harness.StackUser)
	}
	for _, cmd := range []string{"SHOW USERS", "SHOW CONFIG"} {
		if out, _ := psqlScript(st, admin, cmd); strings.Contains(out, "SCRAM-SHA-256$") || strings.Contains(out, "ops-password") {
			t.Errorf("%s shows a secret:\n%s", cmd, out)
		}
	}

	// An error stops the rest of a script; the earlier results stand.
	res, err = consoleExec(t, console, "SHOW VERSION; SHOW NOPE; SHOW POOLS")
	var pe *pgconn.PgError
	ranPools := slices.ContainsFunc(res, func(r *pgconn.Result) bool {
		return len(r.FieldDescriptions) > 0 && r.FieldDescriptions[0].Name == "database"
	})
	if !errors.As(err, &pe) || pe.Code != "42601" || !strings.Contains(pe.Hint, "KILL_CLIENT id") || len(res) == 0 || len(res[0].Rows) != 1 || ranPools {
		t.Fatalf("SHOW VERSION; SHOW NOPE; SHOW POOLS: %d results, %v (hint %q); want SHOW VERSION answered, then 42601 with the commands", len(res), err, hintOf(err))
	}
	if _, err := consoleExec(t, console, "FROB"); pgCode(err) != "42601" {
		t.Errorf("unknown command: %v, want 42601", err)
	}
	if _, err := consoleExec(t, console, strings.Repeat("SHOW LISTS;", 65)); pgCode(err) != "42601" {
		t.Errorf("65 commands: %v, want 42601", err)
	}
	// The extended protocol stays refused, and the console goes on.
	if _, err := console.ExecParams(ctx, "SHOW POOLS", nil, nil, nil, nil).Close(); pgCode(err) != "0A000" {
		t.Errorf("extended protocol: %v, want 0A000", err)
	}

	// KILL_CLIENT ends that client only.
	if _, err := consoleExec(t, console, "KILL_CLIENT 4000000000"); pgCode(err) != "42704" || !strings.Contains(err.Error(), "no client with id") {
		t.Errorf("KILL_CLIENT of an unknown id: %v, want 42704 no client", err)
	}
	if _, err := consoleExec(t, console, "KILL_CLIENT x"); pgCode(err) != "22023" {
		t.Errorf("KILL_CLIENT x: %v, want 22023", err)
	}
	pid := busy.PgConn().PID()
	if _, err := consoleExec(t, console, "KILL_CLIENT "+strconv.FormatUint(uint64(pid), 10)); err != nil {
		t.Fatal(err)
	}
	waitGone(t, st, admin, pid)
	_, err = busy.Exec(ctx, "select 1")
	if !errors.As(err, &pe) || pe.Code != "57P01" || pe.Severity != "FATAL" || !strings.Contains(pe.Message, "administrator command") {
		t.Errorf("killed client's next query: %v, want FATAL 57P01 terminating connection due to administrator command", err)
	}
	var n int
	if err := other.QueryRow(ctx, "select 7").Scan(&n); err != nil || n != 7 {
		t.Fatalf("the other client after KILL_CLIENT: %d, %v", n, err)
	}

	// KILL db: every client of the route goes, in or out of a
	// transaction; new clients are served.
	tx, err := other.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	tx.Exec(ctx, "select 1")
	third := connect(t, st, "sslmode=disable")
	if _, err := third.Exec(ctx, "select 1"); err != nil {
		t.Fatal(err)
	}
	if _, err := consoleExec(t, console, "KILL nosuchdb"); pgCode(err) != "3D000" {
		t.Errorf("KILL nosuchdb: %v, want 3D000", err)
	}
	if _, err := consoleExec(t, console, "KILL postgres"); err != nil {
		t.Fatal(err)
	}
	waitGone(t, st, admin, other.PgConn().PID(), third.PgConn().PID())
	for _, c := range []*pgx.Conn{other, third} {
		if _, err := c.Exec(ctx, "select 1"); pgCode(err) != "57P01" {
			t.Errorf("client after KILL postgres: %v, want 57P01", err)
		}
	}
	fresh := connect(t, st, "sslmode=disable")
	if err := fresh.QueryRow(ctx, "select 8").Scan(&n); err != nil || n != 8 {
		t.Fatalf("a new client after KILL: %d, %v", n, err)
	}

	// A user who is not an admin is refused.
	_, err = pgx.Connect(ctx, strings.Replace(st.URL("sslmode=disable"), "/postgres", "/dsqlgate", 1))
	if pgCode(err) != "28000" {
		t.Fatalf("non-admin into the console: %v", err)
	}

	// SHUTDOWN: answered, then the drain: the idle client and this open
	// console are closed at once (the drain does not wait for
	// shutdown_timeout), and the gateway accepts no one.
	out, err = psqlScript(st, admin, "SHOW VERSION; SHUTDOWN")
	if err != nil || !strings.Contains(out, "dsqlgate") {
		t.Fatalf("SHUTDOWN: %v\n%s", err, out)
	}
	select {
	case err := <-shut:
		if err != nil {
			t.Fatalf("Shutdown: %v", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("SHUTDOWN: the drain did not finish (an open console or client held it)")
	}
	if _, err := fresh.Exec(ctx, "select 1"); pgCode(err) != "57P01" {
		t.Errorf("idle client after SHUTDOWN: %v, want 57P01", err)
	}
	if _, err := consoleExec(t, console, "SHOW VERSION"); err == nil {
		t.Error("the open console still answers after SHUTDOWN")
	}
	if c, err := pgconn.Connect(ctx, admin); err == nil {
		c.Close(ctx)
		t.Error("the gateway accepts connections after SHUTDOWN")
	}
}

// waitGone waits until SHOW CLIENTS lists none of pids.
func waitGone(t *testing.T, st *harness.Stack, admin string, pids ...uint32) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		ptrs := column(adminPsql(t, st, admin, "SHOW CLIENTS"), "ptr")
		left := slices.ContainsFunc(pids, func(p uint32) bool { return slices.Contains(ptrs, strconv.FormatUint(uint64(p), 10)) })
		if !left {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("clients %v still listed: %v", pids, ptrs)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
