package e2e

import (
	"bytes"
	"context"
	"io"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/dsqlgate/dsqlgate/internal/harness"
)

// TestChannelBinding: real clients that insist on channel binding
// (channel_binding=require) log in over TLS with SCRAM-SHA-256-PLUS, bound
// to the gateway's certificate, and refuse to log in where the gateway
// cannot bind: without TLS, or for a user the gateway asks for md5 or a
// cleartext password (before sending anything derived from the password).
func TestChannelBinding(t *testing.T) {
	f := securityStack(t)
	plain := func(user string) string {
		return f.plainURL(user, f.passwords[user], harness.StackDatabase) + "&channel_binding=require"
	}
	require := "channel_binding=require"
	cases := []struct {
		name   string
		client string // pgx or psql
		url    string
		ok     bool
	}{
		{"pgx over TLS", "pgx", f.tlsURL(f.User, f.Password, harness.StackDatabase, require), true},
		{"pgx over TLS, password from password_env", "pgx", f.tlsURL(envUser, f.passwords[envUser], harness.StackDatabase, require), true},
		{"psql over TLS", "psql", f.tlsURL(f.User, f.Password, harness.StackDatabase, require), true},
		{"pgx without TLS", "pgx", plain(f.User), false},
		{"psql without TLS", "psql", plain(f.User), false},
		{"pgx over TLS, md5 user", "pgx", f.tlsURL(md5User, f.passwords[md5User], harness.StackDatabase, require), false},
		{"psql over TLS, cleartext user", "psql", f.tlsURL(clearUser, f.passwords[clearUser], harness.StackDatabase, require), false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var err error
			var out string
			switch tc.client {
			case "pgx":
				out, err = pgxChannelBinding(t, tc.url)
			case "psql":
				out, err = psqlChannelBinding(t, f, tc.url)
			}
			switch {
			case tc.ok && err != nil:
				t.Fatalf("%v\n%s", err, out)
			case !tc.ok && err == nil:
				t.Fatalf("logged in, want a refusal\n%s", out)
			case !tc.ok && !strings.Contains(out+errString(err), "channel binding"):
				t.Fatalf("refused for another reason: %v\n%s", err, out)
			case !tc.ok:
				t.Logf("refused: %v %s", err, out)
			}
		})
	}
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

// pgxChannelBinding logs in with pgx and runs a query. It also records
// what pgx sends (above TLS) and, after a login, checks that it chose
// SCRAM-SHA-256-PLUS: channel_binding=require demands it, and the record
// shows it.
func pgxChannelBinding(t *testing.T, url string) (string, error) {
	ctx := testCtx(t, 30*time.Second)
	cfg, err := pgx.ParseConfig(url)
	if err != nil {
		t.Fatal(err)
	}
	sent := &syncBuffer{}
	cfg.BuildFrontend = func(r io.Reader, w io.Writer) *pgproto3.Frontend {
		return pgproto3.NewFrontend(r, io.MultiWriter(w, sent))
	}
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return "", err
	}
	defer conn.Close(ctx)
	var bound string
	if err := conn.QueryRow(ctx, "select 'bound'").Scan(&bound); err != nil {
		return "", err
	}
	if !strings.Contains(sent.String(), scramPlus+"\x00") {
		t.Errorf("pgx logged in without choosing %s", scramPlus)
	}
	return bound, nil
}

// psqlChannelBinding runs psql with url and returns its output.
func psqlChannelBinding(t *testing.T, f *securityFixture, url string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, f.PG.BinDir()+"/psql", "-X", "--no-psqlrc", "-At", "-d", url, "-c", "select 'bound'")
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	if err == nil && strings.TrimSpace(out.String()) != "bound" {
		t.Errorf("psql printed %q", out.String())
	}
	return out.String(), err
}
