package e2e

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/dsqlgate/dsqlgate/authbridge"
	"github.com/dsqlgate/dsqlgate/config"
	"github.com/dsqlgate/dsqlgate/internal/dsqlsim"
	"github.com/dsqlgate/dsqlgate/internal/harness"
)

// TestTokenExpiry runs the gateway with 2-second tokens against an
// emulator that allows 200 ms of clock skew: clients that connect after
// several token lifetimes still get in (every dial mints a fresh token),
// a session outlives the token its upstream was opened with (DSQL checks
// tokens only when a connection opens), and a token past its expiry is
// refused by the emulator.
func TestTokenExpiry(t *testing.T) {
	const tokenLife = 2 * time.Second
	ctx := testCtx(t, 2*time.Minute)
	st, err := harness.StartStack(ctx, harness.StackOptions{
		Emulator: func(c *dsqlsim.Config) { c.ClockSkew = 200 * time.Millisecond },
		Gateway: func(c *config.Config) {
			r := &c.Routes[0]
			r.TokenExpiry = config.Duration(tokenLife)
			// Idle upstreams go quickly, so later clients need new dials.
			r.Pool.IdleTimeout = config.Duration(300 * time.Millisecond)
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()

	longLived := connect(t, st, "")
	var v int
	if err := longLived.QueryRow(ctx, "select 1").Scan(&v); err != nil {
		t.Fatal(err)
	}
	dialsBefore := st.Emulator.Stats().Authenticated
	for round := 0; round < 3; round++ {
		time.Sleep(tokenLife + 500*time.Millisecond) // every token minted so far is expired
		c := connect(t, st, "")
		if err := c.QueryRow(ctx, "select $1::int", round).Scan(&v); err != nil || v != round {
			t.Fatalf("round %d after token expiry: %v", round, err)
		}
		c.Close(ctx)
		if err := longLived.QueryRow(ctx, "select 2").Scan(&v); err != nil {
			t.Fatalf("long-lived client in round %d: %v", round, err)
		}
	}
	if dials := st.Emulator.Stats().Authenticated - dialsBefore; dials < 3 {
		t.Fatalf("only %d new upstream dials in 3 rounds: tokens were not exercised", dials)
	}
	if failures := st.Emulator.Stats().AuthFailures; failures != 0 {
		t.Fatalf("the emulator refused %d of the gateway's tokens", failures)
	}

	// A token used after its expiry is refused, with DSQL's message.
	minter := authbridge.NewTokenMinter(harness.StackHost, harness.StackRegion, "admin", time.Second,
		credentials.StaticCredentialsProvider{Value: st.Credentials})
	token, err := minter.Mint(ctx)
	if err != nil {
		t.Fatal(err)
	}
	direct := func(token string) error {
		cfg, err := pgconn.ParseConfig("host=" + harness.StackHost + " user=admin dbname=postgres sslmode=verify-full sslnegotiation=direct sslrootcert=" + st.CAFile)
		if err != nil {
			t.Fatal(err)
		}
		cfg.Password = token
		addr := st.Emulator.Addr()
		cfg.LookupFunc = func(context.Context, string) ([]string, error) { return []string{"127.0.0.1"}, nil }
		cfg.DialFunc = func(ctx context.Context, network, _ string) (netConn, error) {
			return dialer.DialContext(ctx, "tcp", addr)
		}
		conn, err := pgconn.ConnectConfig(ctx, cfg)
		if err == nil {
			conn.Close(ctx)
		}
		return err
	}
	if err := direct(token); err != nil {
		t.Fatalf("a fresh token was refused: %v", err)
	}
	time.Sleep(1500 * time.Millisecond)
	err = direct(token)
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) || !strings.Contains(pgErr.Message, "IAM authentication failed") {
		t.Fatalf("an expired token: %v, want IAM authentication failed", err)
	}
}
