package e2e

import (
	"context"
	"fmt"
	"net/url"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/dsqlgate/dsqlgate/config"
	"github.com/dsqlgate/dsqlgate/internal/harness"
)

// TestLogConnectionSwitches: with log.connections and log.disconnections
// on (the defaults), a client's login and session end, and the admin
// console's, are logged at info with the client's address, user,
// database, TLS and application_name, and never its password; a reload
// turning them off silences both, a session open across the reload
// included, while a refused login is still logged; turning them on again
// brings them back.
func TestLogConnectionSwitches(t *testing.T) {
	ctx := testCtx(t, 2*time.Minute)
	core, logs := observer.New(zapcore.DebugLevel)
	st, err := harness.StartStack(ctx, harness.StackOptions{
		Logger: zap.New(core),
		Gateway: func(c *config.Config) {
			c.Admin.Users = []string{harness.StackUser}
			c.Limits.MaxMessageSize = logTestMaxMessage
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	adminURL := (&url.URL{Scheme: "postgres", User: url.UserPassword(st.User, st.Password), Host: st.Gateway.Addr,
		Path: "/" + st.Gateway.Config().Admin.Database, RawQuery: "sslmode=disable&application_name=console"}).String()

	// count is how many lines with msg were logged since mark.
	mark := 0
	count := func(msg string) []observer.LoggedEntry {
		var out []observer.LoggedEntry
		for _, e := range logs.All()[mark:] {
			if e.Message == msg {
				out = append(out, e)
			}
		}
		return out
	}
	// session connects and disconnects a client with application_name app
	// and waits until the gateway is done with it (its end logged or not).
	session := func(app string) {
		t.Helper()
		conn := connect(t, st, "sslmode=disable&application_name="+app)
		conn.Exec(ctx, "select 1")
		conn.Close(ctx)
		waitNoClients(t, st)
	}
	console := func() {
		t.Helper()
		if out, err := exec.Command(st.PG.BinDir()+"/psql", "-X", "-d", adminURL, "-c", "SHOW VERSION").CombinedOutput(); err != nil {
			t.Fatalf("admin console: %v\n%s", err, out)
		}
		waitNoClients(t, st)
	}
	setSwitches := func(on bool) {
		t.Helper()
		next := *st.Gateway.Config()
		next.Log.Connections, next.Log.Disconnections = on, on
		if _, err := st.Gateway.Reload(ctx, &next); err != nil {
			t.Fatal(err)
		}
	}

	session("switches-on")
	console()
	connected := count("client connected")
	if len(connected) != 1 {
		t.Fatalf("client connected lines: %d, want 1", len(connected))
	}
	c := connected[0]
	fields := c.ContextMap()
	if c.Level != zapcore.InfoLevel || fields["user"] != st.User || fields["database"] != harness.StackDatabase ||
		fields["tls"] != false || fields["application_name"] != "switches-on" || !strings.HasPrefix(fmt.Sprint(fields["client"]), "127.0.0.1:") {
		t.Errorf("client connected: level %s, fields %v", c.Level, fields)
	}
	if n := len(count("client session ended")); n != 1 {
		t.Errorf("client session ended lines: %d, want 1", n)
	}
	if got := count("admin console session started"); len(got) != 1 || got[0].ContextMap()["application_name"] != "console" {
		t.Errorf("admin console session started: %+v, want one with application_name console", got)
	}
	if n := len(count("admin console session ended")); n != 1 {
		t.Errorf("admin console session ended lines: %d, want 1", n)
	}

	// Off: a session open across the reload ends silently too.
	open := connect(t, st, "sslmode=disable")
	mark = len(logs.All())
	setSwitches(false)
	open.Close(ctx)
	session("switches-off")
	console()
	if bad, err := pgx.Connect(ctx, strings.Replace(st.URL("sslmode=disable"), st.Password, "wrong", 1)); err == nil {
		bad.Close(ctx)
		t.Fatal("a wrong password logged in")
	}
	waitNoClients(t, st)
	for _, msg := range []string{"client connected", "client session ended", "admin console session started", "admin console session ended"} {
		if n := len(count(msg)); n != 0 {
			t.Errorf("with the switches off: %d %q lines", n, msg)
		}
	}
	if n := len(count("client connection refused")); n != 1 {
		t.Errorf("with the switches off, a refused login logged %d times, want 1", n)
	}
	// A session that ends on an error is logged all the same.
	tooLarge := connect(t, st, "sslmode=disable")
	if _, err := tooLarge.Exec(ctx, "select '"+strings.Repeat("x", logTestMaxMessage)+"'"); err == nil {
		t.Error("a query over limits.max_message_size ran")
	}
	tooLarge.Close(ctx)
	waitNoClients(t, st)
	if got := count("client session ended"); len(got) != 1 || got[0].ContextMap()["error"] == nil {
		t.Errorf("with the switches off, a session ending on an error: %+v, want its end logged with the error", got)
	}

	// On again.
	mark = len(logs.All())
	setSwitches(true)
	session("switches-on-again")
	if got := count("client connected"); len(got) != 1 || got[0].ContextMap()["application_name"] != "switches-on-again" {
		t.Errorf("after turning the switches on again: client connected %+v", got)
	}
	if n := len(count("client session ended")); n != 1 {
		t.Errorf("after turning the switches on again: %d client session ended lines, want 1", n)
	}

	for _, e := range logs.All() {
		if strings.Contains(fmt.Sprint(e.Message, e.ContextMap()), st.Password) {
			t.Errorf("the password appears in a log line: %q", e.Message)
		}
	}
}

// logTestMaxMessage is the gateway's limits.max_message_size in
// TestLogConnectionSwitches: a query longer ends its session on an error.
const logTestMaxMessage = 64 << 10

// waitNoClients waits until the gateway holds no authenticated client
// (each session's end has run, its log line included).
func waitNoClients(t *testing.T, st *harness.Stack) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for st.Gateway.Server.ActiveClients() > 0 {
		if ctx.Err() != nil {
			t.Fatalf("%d clients still connected", st.Gateway.Server.ActiveClients())
		}
		time.Sleep(10 * time.Millisecond)
	}
}
