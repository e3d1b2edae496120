package e2e

import (
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/dsqlgate/dsqlgate/authbridge"
	"github.com/dsqlgate/dsqlgate/config"
	"github.com/dsqlgate/dsqlgate/internal/gateway"
	"github.com/dsqlgate/dsqlgate/internal/scram"
	"github.com/dsqlgate/dsqlgate/internal/selfsigned"
)

// reloadUser is the gateway user of the reload tests' gateways.
const reloadUser, reloadPassword = "reloader", "reload-password"

// reloadConfig is a configuration with reloadUser and, for each name, a
// kind postgres route to the shared PostgreSQL at endpoint.
func reloadConfig(t *testing.T, endpoints map[string]string) *config.Config {
	t.Helper()
	v, err := scram.GenerateVerifier(reloadPassword)
	if err != nil {
		t.Fatal(err)
	}
	cfg := config.Default()
	cfg.Listen = "127.0.0.1:0"
	cfg.Metrics.Listen = ""
	cfg.Users = []config.User{{Name: reloadUser, Verifier: v.Encode()}}
	for name, endpoint := range endpoints {
		r := config.DefaultRoute(config.KindPostgres, name)
		r.Endpoint, r.TLS = endpoint, "disable"
		r.User, r.Password = "postgres", shared.PG.Password
		r.UpstreamDatabase = "postgres"
		cfg.Routes = append(cfg.Routes, r)
	}
	return cfg
}

// routeOf returns cfg's route for database.
func routeOf(t *testing.T, cfg *config.Config, database string) *config.Route {
	t.Helper()
	for i := range cfg.Routes {
		if cfg.Routes[i].Database == database {
			return &cfg.Routes[i]
		}
	}
	t.Fatalf("no route %q", database)
	return nil
}

// reloadLogin logs in to g's database as reloadUser and runs a query.
func reloadLogin(ctx context.Context, g *gateway.Gateway, database string) error {
	return loginAs(ctx, g, reloadUser, reloadPassword, database)
}

// loginAs logs in to g's database and runs a query.
func loginAs(ctx context.Context, g *gateway.Gateway, user, password, database string) error {
	u := url.URL{Scheme: "postgres", User: url.UserPassword(user, password), Host: g.Addr, Path: "/" + database, RawQuery: "sslmode=disable"}
	conn, err := pgx.Connect(ctx, u.String())
	if err != nil {
		return err
	}
	defer conn.Close(context.Background())
	var n int
	if err := conn.QueryRow(ctx, "select 1").Scan(&n); err != nil {
		return err
	}
	return nil
}

// writeSelfSigned writes a new self-signed certificate and its key into
// dir under name.crt and name.key.
func writeSelfSigned(t *testing.T, dir, name string) (certFile, keyFile string) {
	t.Helper()
	pair, err := selfsigned.Generate([]string{"localhost", "127.0.0.1"}, time.Now(), 24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile = filepath.Join(dir, name+".crt"), filepath.Join(dir, name+".key")
	if err := os.WriteFile(certFile, pair.CertPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pair.KeyPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	return certFile, keyFile
}

// TestReloadFailureKeepsRoutes: a reload whose users file or client
// certificate cannot be loaded fails as a whole. Its route changes (a
// route added, a pool resized, a route's upstream moved) are not put in
// force either: the bridge keeps the same routes with the same pools and
// settings, the server the same configuration, users and certificate,
// and clients go on logging in. Mended, the same reload then succeeds.
func TestReloadFailureKeepsRoutes(t *testing.T) {
	for _, broken := range []string{"users", "tls"} {
		t.Run(broken, func(t *testing.T) {
			ctx := testCtx(t, 2*time.Minute)
			dir := t.TempDir()
			pg := shared.PG.Addr()
			_, port, _ := net.SplitHostPort(pg)
			cfg := reloadConfig(t, map[string]string{"keep": pg, "move": pg})
			cfg.ClientTLS.Mode = config.TLSAllow
			cfg.ClientTLS.CertFile, cfg.ClientTLS.KeyFile = writeSelfSigned(t, dir, "old")
			routeOf(t, cfg, "keep").Pool.Size = 5
			g, err := gateway.Start(ctx, cfg, gateway.Options{})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { g.Close() })
			for _, db := range []string{"keep", "move"} {
				if err := reloadLogin(ctx, g, db); err != nil {
					t.Fatalf("before the reload, %s: %v", db, err)
				}
			}
			routes, pools, settings := map[string]*authbridge.Route{}, map[string]*authbridge.Pool{}, map[string]config.Pool{}
			for _, r := range g.Bridge.Routes() {
				routes[r.Name], pools[r.Name], settings[r.Name] = r, r.Pool(), r.Pool().Settings()
			}
			serverConfig := g.Server.Config()
			cert := presentedCertificate(t, g.Addr, &tls.Config{InsecureSkipVerify: true}).Raw

			next := reloadConfig(t, map[string]string{"keep": pg, "move": "localhost:" + port, "added": pg})
			next.ClientTLS = cfg.ClientTLS
			routeOf(t, next, "keep").Pool.Size = 7
			usersFile := filepath.Join(dir, "users.txt")
			v, _ := scram.GenerateVerifier("newcomer-password")
			if err := os.WriteFile(usersFile, []byte(fmt.Sprintf("%q %q\n", "newcomer", v.Encode())), 0o600); err != nil {
				t.Fatal(err)
			}
			next.UsersFile = usersFile
			next.ClientTLS.CertFile, next.ClientTLS.KeyFile = writeSelfSigned(t, dir, "new")
			if err := next.Validate(); err != nil {
				t.Fatal(err)
			}
			// The file breaks between validation and reload.
			file := usersFile
			if broken == "tls" {
				file = next.ClientTLS.CertFile
			}
			if err := os.WriteFile(file, []byte("not what it should be\n"), 0o600); err != nil {
				t.Fatal(err)
			}
			if changes, err := g.Reload(ctx, next); err == nil {
				t.Fatalf("a reload with a broken %s file succeeded: %q", broken, changes)
			}

			now := map[string]*authbridge.Route{}
			for _, r := range g.Bridge.Routes() {
				now[r.Name] = r
			}
			if len(now) != len(routes) {
				t.Errorf("routes after the failed reload: %v, want %v", now, routes)
			}
			for name, r := range routes {
				switch got := now[name]; {
				case got != r:
					t.Errorf("route %q was replaced", name)
				case got.Pool() != pools[name]:
					t.Errorf("route %q has a new pool", name)
				case got.Pool().Settings() != settings[name]:
					t.Errorf("route %q: pool settings %+v, want %+v", name, got.Pool().Settings(), settings[name])
				case got.Pool().Paused():
					t.Errorf("route %q: pool paused", name)
				}
				if got := g.Bridge.Route(name); got != r {
					t.Errorf("Bridge.Route(%q) = %p, want %p", name, got, r)
				}
			}
			if g.Bridge.Route("added") != nil {
				t.Error(`route "added" is in force`)
			}
			if g.Server.Config() != serverConfig {
				t.Error("the server's configuration changed")
			}
			if !bytes.Equal(presentedCertificate(t, g.Addr, &tls.Config{InsecureSkipVerify: true}).Raw, cert) {
				t.Error("the server presents another certificate")
			}
			for _, db := range []string{"keep", "move"} {
				if err := reloadLogin(ctx, g, db); err != nil {
					t.Errorf("after the failed reload, %s: %v", db, err)
				}
			}
			if err := reloadLogin(ctx, g, "added"); err == nil {
				t.Error(`a client logged in to route "added"`)
			}
			if err := loginAs(ctx, g, "newcomer", "newcomer-password", "keep"); err == nil {
				t.Error("the users file of the failed reload is in force")
			}
			if t.Failed() {
				return
			}

			// Mended, the same configuration reloads, and all of it
			// takes effect.
			if err := os.WriteFile(usersFile, []byte(fmt.Sprintf("%q %q\n", "newcomer", v.Encode())), 0o600); err != nil {
				t.Fatal(err)
			}
			writeSelfSigned(t, dir, "new")
			if _, err := g.Reload(ctx, next); err != nil {
				t.Fatalf("the mended reload: %v", err)
			}
			if g.Bridge.Route("keep") != routes["keep"] || g.Bridge.Route("keep").Pool().Settings().Size != 7 {
				t.Error(`route "keep": not the same route with the new pool size`)
			}
			if g.Bridge.Route("move") == routes["move"] || g.Bridge.Route("added") == nil {
				t.Error(`routes "move" and "added": not in force`)
			}
			if bytes.Equal(presentedCertificate(t, g.Addr, &tls.Config{InsecureSkipVerify: true}).Raw, cert) {
				t.Error("the server presents the old certificate")
			}
			for _, db := range []string{"keep", "move", "added"} {
				if err := loginAs(ctx, g, "newcomer", "newcomer-password", db); err != nil {
					t.Errorf("after the mended reload, %s: %v", db, err)
				}
			}
		})
	}
}

// TestReloadDoesNotBlockLogins: a reload that moves a route's upstream
// retires its pool of 20 idle upstreams, whose server does not close them
// after Terminate, so each graceful close waits its full second. Logins
// meanwhile take about as long as one login that dials.
func TestReloadDoesNotBlockLogins(t *testing.T) {
	const idle = 20
	ctx := testCtx(t, 2*time.Minute)
	relay := startHoldRelay(t, shared.PG.Addr())
	cfg := reloadConfig(t, map[string]string{"slow": relay.addr(), "base": shared.PG.Addr()})
	routeOf(t, cfg, "slow").Pool.Size = idle + 5
	routeOf(t, cfg, "slow").Pool.MinIdle = idle
	g, err := gateway.Start(ctx, cfg, gateway.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { g.Close() })
	pool := g.Bridge.Route("slow").Pool()
	for deadline := time.Now().Add(30 * time.Second); pool.Stats().Idle < idle; {
		if time.Now().After(deadline) {
			t.Fatalf("the pool has %+v, want %d idle", pool.Stats(), idle)
		}
		time.Sleep(20 * time.Millisecond)
	}
	// One login to an empty pool: what a login that dials takes.
	start := time.Now()
	if err := reloadLogin(ctx, g, "base"); err != nil {
		t.Fatal(err)
	}
	dial := time.Since(start)

	next := reloadConfig(t, map[string]string{"slow": shared.PG.Addr(), "base": shared.PG.Addr()})
	if err := next.Validate(); err != nil {
		t.Fatal(err)
	}
	relay.hold()
	reloaded := make(chan error, 1)
	go func() {
		_, err := g.Reload(ctx, next)
		reloaded <- err
	}()
	select {
	case <-relay.terminated:
	case <-time.After(30 * time.Second):
		t.Fatal("the reload closed none of the old pool's upstreams")
	}
	start = time.Now()
	err = reloadLogin(ctx, g, "slow")
	login := time.Since(start)
	stillClosing := relay.heldOpen()
	relay.release() // the closes still under way end now
	if err != nil {
		t.Fatal(err)
	}
	if err := <-reloaded; err != nil {
		t.Fatal(err)
	}
	t.Logf("a login that dials: %v; a login during the reload: %v, with %d upstreams still closing", dial, login, stillClosing)
	if limit := min(dial+2*time.Second, 5*time.Second); login > limit {
		t.Fatalf("a login during the reload took %v; one that dials took %v", login, dial)
	}
	if stillClosing == 0 {
		t.Fatal("the old pool's upstreams had all closed before the login ended: the test measured nothing")
	}
}

// holdRelay forwards TCP connections to an upstream. Once told to hold,
// it stops passing what the gateway sends on the connections open then,
// so their server never sees the Terminate and never closes them.
type holdRelay struct {
	l          net.Listener
	target     string
	terminated chan struct{} // a held connection received bytes

	mu    sync.Mutex
	pairs map[*relayPair]bool // open pairs; true once held
	wg    sync.WaitGroup
}

type relayPair struct{ client, server net.Conn }

func startHoldRelay(t *testing.T, target string) *holdRelay {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	r := &holdRelay{l: l, target: target, terminated: make(chan struct{}, 1000), pairs: map[*relayPair]bool{}}
	r.wg.Add(1)
	go r.accept()
	t.Cleanup(func() {
		l.Close()
		r.release()
		r.wg.Wait()
	})
	return r
}

func (r *holdRelay) addr() string { return r.l.Addr().String() }

func (r *holdRelay) accept() {
	defer r.wg.Done()
	for {
		c, err := r.l.Accept()
		if err != nil {
			return
		}
		s, err := net.Dial("tcp", r.target)
		if err != nil {
			c.Close()
			continue
		}
		p := &relayPair{client: c, server: s}
		r.mu.Lock()
		r.pairs[p] = false
		r.mu.Unlock()
		r.wg.Add(2)
		go func() {
			defer r.wg.Done()
			io.Copy(c, s)
			c.Close()
		}()
		go func() {
			defer r.wg.Done()
			r.forward(p)
		}()
	}
}

// forward passes the client's bytes to the server until the pair is held.
func (r *holdRelay) forward(p *relayPair) {
	defer func() {
		r.mu.Lock()
		delete(r.pairs, p)
		r.mu.Unlock()
		p.server.Close()
		p.client.Close()
	}()
	buf := make([]byte, 32<<10)
	signalled := false
	for {
		n, err := p.client.Read(buf)
		if n > 0 {
			r.mu.Lock()
			held := r.pairs[p]
			r.mu.Unlock()
			if !held {
				if _, err := p.server.Write(buf[:n]); err != nil {
					return
				}
			} else if !signalled {
				signalled = true
				r.terminated <- struct{}{}
			}
		}
		if err != nil {
			return
		}
	}
}

// hold stops forwarding the client's bytes on every connection open now.
func (r *holdRelay) hold() {
	r.mu.Lock()
	defer r.mu.Unlock()
	for p := range r.pairs {
		r.pairs[p] = true
	}
}

// heldOpen counts the held connections the gateway has not closed yet.
func (r *holdRelay) heldOpen() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, held := range r.pairs {
		if held {
			n++
		}
	}
	return n
}

// release closes every connection.
func (r *holdRelay) release() {
	r.mu.Lock()
	defer r.mu.Unlock()
	for p := range r.pairs {
		p.server.Close()
		p.client.Close()
	}
}
