package pgwire

import (
	"context"
	"fmt"
	"net"
	"net/url"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/dsqlgate/dsqlgate/config"
	"github.com/dsqlgate/dsqlgate/internal/pgtest"
	"github.com/dsqlgate/dsqlgate/internal/scram"
)

// TestPanicUnderLockEndsOnlyThatSession: a handler that panics while it
// holds the session's lock (injected with testHookLocked) closes that
// client only; other clients keep working and Server.Close returns. Before
// every critical section unlocked in a defer, the recover could never run
// (end waited for the lock the panicking goroutine held) and Close hung.
func TestPanicUnderLockEndsOnlyThatSession(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	pg, err := pgtest.StartPostgres(ctx, pgtest.PostgresOptions{})
	if err != nil {
		t.Fatalf("start postgres: %v", err)
	}
	defer pg.Close()

	cfg := config.Default()
	passwords := map[string]string{"calm": "calm-pw", "panicker": "panic-pw"}
	for name, pw := range passwords {
		v, err := scram.GenerateVerifier(pw)
		if err != nil {
			t.Fatal(err)
		}
		cfg.Users = append(cfg.Users, config.User{Name: name, Verifier: v.Encode()})
	}
	r := config.DefaultRoute(config.KindPostgres, "postgres")
	r.Endpoint, r.TLS, r.User, r.Password = pg.Addr(), "disable", "postgres", pg.Password
	cfg.Routes = []config.Route{r}
	cfg.Listen = "127.0.0.1:0"
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	route, err := newMemRoute(cfg.Routes[0], nil)
	if err != nil {
		t.Fatal(err)
	}
	ups := newMemUpstreams(route)
	defer ups.close()
	srv, err := NewServer(cfg, ups, Options{})
	if err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(l)

	testHookLocked = func(s *session) {
		if s.user == "panicker" {
			panic("injected by TestPanicUnderLockEndsOnlyThatSession")
		}
	}
	defer func() { testHookLocked = nil }()

	connect := func(user string) *pgx.Conn {
		u := url.URL{Scheme: "postgres", User: url.UserPassword(user, passwords[user]), Host: l.Addr().String(), Path: "/postgres", RawQuery: "sslmode=disable"}
		c, err := pgx.Connect(ctx, u.String())
		if err != nil {
			t.Fatalf("connect as %s: %v", user, err)
		}
		return c
	}
	calm := connect("calm")
	defer calm.Close(context.Background())
	var one int
	if err := calm.QueryRow(ctx, "SELECT 1").Scan(&one); err != nil {
		t.Fatalf("calm client before: %v", err)
	}

	for i := range 3 {
		p := connect("panicker")
		qctx, qcancel := context.WithTimeout(ctx, 10*time.Second)
		err := p.QueryRow(qctx, "SELECT 1").Scan(&one)
		hung := qctx.Err() != nil
		qcancel()
		if err == nil {
			t.Fatalf("round %d: the panicking session answered", i)
		}
		if hung {
			t.Fatalf("round %d: the panicking session hung instead of closing: %v", i, err)
		}
		p.Close(context.Background())
		if err := calm.QueryRow(ctx, fmt.Sprintf("SELECT %d", i)).Scan(&one); err != nil || one != i {
			t.Fatalf("round %d: calm client after a panic elsewhere: %d, %v", i, one, err)
		}
	}

	closed := make(chan struct{})
	go func() {
		srv.Close()
		close(closed)
	}()
	select {
	case <-closed:
	case <-time.After(15 * time.Second):
		t.Fatal("Server.Close did not return after sessions panicked")
	}
}
