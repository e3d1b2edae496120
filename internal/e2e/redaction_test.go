package e2e

import (
	"context"
	"errors"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/dsqlgate/dsqlgate/config"
	"github.com/dsqlgate/dsqlgate/internal/dsqlsim"
	"github.com/dsqlgate/dsqlgate/internal/gateway"
	"github.com/dsqlgate/dsqlgate/internal/harness"
	"github.com/dsqlgate/dsqlgate/internal/pgtest"
)

// TestSecretsStayOutOfLogs runs every authentication path (SCRAM,
// SCRAM-SHA-256-PLUS, md5 and cleartext, each with the right and a wrong
// password; an unknown user; users whose password comes from password_env)
// and upstream dials (after the emulator killed every upstream, to a route
// never used before, and one the upstream refuses because the gateway's
// AWS secret is not the one it knows), with the gateway and the emulator
// logging at debug level. No secret may appear in the logs or in what the
// clients were told: passwords (right and wrong), md5 hashes, the SCRAM
// verifiers' keys, AWS secret access keys, or any part of an IAM token.
func TestSecretsStayOutOfLogs(t *testing.T) {
	f := securityStack(t)
	ctx := testCtx(t, 2*time.Minute)
	db := harness.StackDatabase
	wrong := "wrong-" + pgtest.RandomHex(8)
	var told []string // what clients saw: error texts, psql's output

	logins := []struct {
		name string
		url  string
		ok   bool
	}{
		{"scram", f.plainURL(f.User, f.Password, db), true},
		{"scram, wrong password", f.plainURL(f.User, wrong, db), false},
		{"scram-plus", f.tlsURL(f.User, f.Password, db, "channel_binding=require"), true},
		{"scram-plus, wrong password", f.tlsURL(f.User, wrong, db, "channel_binding=require"), false},
		{"md5", f.plainURL(md5User, f.passwords[md5User], db), true},
		{"md5, wrong password", f.plainURL(md5User, wrong, db), false},
		{"cleartext", f.tlsURL(clearUser, f.passwords[clearUser], db, ""), true},
		{"cleartext, wrong password", f.tlsURL(clearUser, wrong, db, ""), false},
		{"cleartext without TLS", f.plainURL(clearUser, f.passwords[clearUser], db), false},
		{"unknown user", f.plainURL("nobody", wrong, db), false},
		{"password_env, scram", f.plainURL(envUser, f.passwords[envUser], db), true},
		{"password_env, scram, wrong password", f.plainURL(envUser, wrong, db), false},
		{"password_env, md5", f.plainURL(envMD5User, f.passwords[envMD5User], db), true},
		{"password_env, md5, wrong password", f.plainURL(envMD5User, wrong, db), false},
		{"a route never used before", f.plainURL(f.User, f.Password, otherDatabase), true},
	}
	for _, l := range logins {
		t.Run(l.name, func(t *testing.T) {
			err := loginAndQuery(ctx, l.url)
			told = append(told, clientSaw(err)...)
			if (err == nil) != l.ok {
				t.Fatalf("login: %v, want success %v", err, l.ok)
			}
		})
	}

	t.Run("psql", func(t *testing.T) {
		for _, url := range []string{f.tlsURL(f.User, f.Password, db, ""), f.tlsURL(f.User, wrong, db, "")} {
			out, _ := exec.CommandContext(ctx, f.PG.BinDir()+"/psql", "-X", "--no-psqlrc", "-At", "-d", url, "-c", "select 1").CombinedOutput()
			told = append(told, string(out))
		}
	})

	t.Run("upstream dials after a kill", func(t *testing.T) {
		before := f.Emulator.Stats().Authenticated
		if f.Emulator.KillAll() == 0 {
			t.Log("no upstream to kill")
		}
		for range 3 {
			err := loginAndQuery(ctx, f.plainURL(f.User, f.Password, db))
			told = append(told, clientSaw(err)...)
			if err != nil {
				t.Fatal(err)
			}
		}
		if f.Emulator.Stats().Authenticated == before {
			t.Fatal("the gateway dialled no new upstream")
		}
	})

	// The second emulator knows another secret for the gateway's access
	// key id: it refuses the gateway's tokens as a bad signature.
	otherSecret := randomSecretKey()
	t.Run("upstream dial refused", func(t *testing.T) {
		caFile := filepath.Join(t.TempDir(), "ca.pem")
		emu, err := dsqlsim.Start(ctx, dsqlsim.Config{
			Region:           harness.StackRegion,
			Hostnames:        []string{harness.StackHost},
			Credentials:      []dsqlsim.Credential{{AccessKeyID: f.Credentials.AccessKeyID, SecretAccessKey: otherSecret}},
			CAFile:           caFile,
			BackendSocketDir: f.PG.SocketDir,
			BackendPort:      f.PG.Port,
			Logger:           newTestLogger(f.logs).Named("emulator2"),
		})
		if err != nil {
			t.Fatal(err)
		}
		defer emu.Close()
		cfg := *f.Gateway.Config()
		cfg.Listen = "127.0.0.1:0"
		cfg.Users = []config.User{cfg.Users[0]}
		route := cfg.Routes[0]
		route.DialAddress = emu.Addr()
		route.CAFile = caFile
		route.Pool.QueryWaitTimeout = config.Duration(3 * time.Second)
		cfg.Routes = []config.Route{route}
		gw, err := gateway.Start(ctx, &cfg, gateway.Options{
			Logger:      newTestLogger(f.logs).Named("gateway2"),
			Credentials: credentials.StaticCredentialsProvider{Value: f.Credentials},
		})
		if err != nil {
			t.Fatal(err)
		}
		defer gw.Close()
		err = loginAndQuery(ctx, "postgres://"+f.User+":"+f.Password+"@"+gw.Addr+"/"+db+"?sslmode=disable")
		told = append(told, clientSaw(err)...)
		if err == nil {
			t.Fatal("logged in through an upstream that refuses the gateway's tokens")
		}
		if emu.Stats().AuthFailures == 0 {
			t.Fatalf("the upstream refused no token (%v)", err)
		}
	})

	// A token minted the way the gateway mints them has these markers; a
	// log line holding a token, or a piece of one, would show them.
	token := mintToken(t, f.Stack)
	markers := []string{"X-Amz-Signature=", "X-Amz-Credential="}
	for _, m := range markers {
		if !strings.Contains(token, m) {
			t.Fatalf("a minted token has no %q: the marker is wrong", m)
		}
	}

	logs := f.logs.String()
	if !strings.Contains(logs, `"logger":"gateway`) || !strings.Contains(logs, `"logger":"emulator`) {
		t.Fatalf("the logs hold nothing from the gateway or the emulator:\n%s", logs)
	}
	secrets := append(f.secrets(t), wrong, otherSecret, tokenSignature(token))
	for _, s := range secrets {
		if len(s) < 8 {
			t.Fatalf("secret %q is too short to look for", s)
		}
		if i := strings.Index(logs, s); i >= 0 {
			t.Errorf("a secret is in the logs: ...%s...", around(logs, i, len(s)))
		}
		for _, c := range told {
			if i := strings.Index(c, s); i >= 0 {
				t.Errorf("a client was told a secret: ...%s...", around(c, i, len(s)))
			}
		}
	}
	for _, m := range markers {
		if i := strings.Index(strings.ToLower(logs), strings.ToLower(m)); i >= 0 {
			t.Errorf("a token is in the logs: ...%s...", around(logs, i, len(m)))
		}
		for _, c := range told {
			if strings.Contains(strings.ToLower(c), strings.ToLower(m)) {
				t.Errorf("a client was told a token: %s", c)
			}
		}
	}
}

// loginAndQuery connects with url, runs a query and disconnects.
func loginAndQuery(ctx context.Context, url string) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		return err
	}
	defer conn.Close(ctx)
	var one int
	return conn.QueryRow(ctx, "select 1").Scan(&one)
}

// clientSaw is what a client can show of err: its text and the server's
// fields.
func clientSaw(err error) []string {
	if err == nil {
		return nil
	}
	out := []string{err.Error()}
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		out = append(out, pgErr.Message, pgErr.Detail, pgErr.Hint)
	}
	return out
}

// tokenSignature is the X-Amz-Signature value of a token.
func tokenSignature(token string) string {
	_, sig, _ := strings.Cut(token, "X-Amz-Signature=")
	sig, _, _ = strings.Cut(sig, "&")
	return sig
}

// randomSecretKey makes a 40-character secret access key look-alike.
func randomSecretKey() string { return pgtest.RandomHex(20) }

// around quotes a secret's surroundings for a failure message, with the
// secret itself masked.
func around(s string, i, n int) string {
	from, to := max(0, i-60), min(len(s), i+n+60)
	return s[from:i] + "<SECRET>" + s[i+n:to]
}
