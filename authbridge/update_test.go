package authbridge

import (
	"cmp"
	"context"
	"net"
	"slices"
	"testing"
	"time"

	"github.com/dsqlgate/dsqlgate/config"
	"github.com/dsqlgate/dsqlgate/internal/scram"
)

// updateConfig is a validated configuration with a kind postgres route to
// the test PostgreSQL for each name, reached at endpoint.
func updateConfig(t *testing.T, endpoints map[string]string, adjust func(*config.Route)) *config.Config {
	t.Helper()
	v, err := scram.GenerateVerifier("x")
	if err != nil {
		t.Fatal(err)
	}
	cfg := config.Default()
	cfg.Users = []config.User{{Name: "u", Verifier: v.Encode()}}
	for name, endpoint := range endpoints {
		r := config.DefaultRoute(config.KindPostgres, name)
		r.Endpoint, r.TLS = endpoint, "disable"
		r.User, r.Password = "postgres", testPG.Password
		r.UpstreamDatabase = "postgres"
		if adjust != nil {
			adjust(&r)
		}
		cfg.Routes = append(cfg.Routes, r)
	}
	// Map order is random; the route table is not.
	slices.SortFunc(cfg.Routes, func(a, b config.Route) int { return cmp.Compare(a.Database, b.Database) })
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	return cfg
}

// rateNow is the dial limiter's rate in force.
func (l *dialLimiter) rateNow() float64 { return l.perSecond() }

// isClosed reports whether close ran.
func (p *Pool) isClosed() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.closed
}

// TestPrepareChangesNothing: a prepared update that is discarded leaves
// the routes, their pools, settings and dial limiters as they were, and
// closes the pools it built; the next update can then be prepared and
// committed, and puts everything in force.
func TestPrepareChangesNothing(t *testing.T) {
	pg := testPG.Addr()
	_, port, _ := net.SplitHostPort(pg)
	b, err := New(context.Background(), updateConfig(t, map[string]string{"keep": pg, "move": pg}, nil), Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	keep, move := b.Route("keep"), b.Route("move")
	before := keep.Pool().Settings()

	next := updateConfig(t, map[string]string{"keep": pg, "move": "localhost:" + port, "added": pg}, func(r *config.Route) {
		r.Pool.Size = 7
		r.Pool.DialRate = 5 // added shares keep's cluster, and its limiter
	})
	for _, commit := range []bool{false, true} {
		u, err := b.Prepare(context.Background(), next)
		if err != nil {
			t.Fatal(err)
		}
		if b.Route("keep") != keep || b.Route("move") != move || b.Route("added") != nil {
			t.Fatal("Prepare changed the routes in force")
		}
		if keep.Pool().Settings() != before || keep.limiter.rateNow() != 100 {
			t.Fatalf("Prepare changed keep's pool settings (%+v) or dial rate (%v)", keep.Pool().Settings(), keep.limiter.rateNow())
		}
		if !commit {
			u.Discard()
			for _, r := range u.created {
				if !r.pool.isClosed() {
					t.Errorf("route %q: Discard left its new pool open", r.Name)
				}
			}
			continue
		}
		changes := u.Commit()
		u.Discard() // nothing after Commit
		if len(changes) != 3 {
			t.Errorf("changes: %q", changes)
		}
	}
	if b.Route("keep") != keep || keep.Pool().Settings().Size != 7 || keep.limiter.rateNow() != 5 {
		t.Errorf("keep after the commit: same route %v, settings %+v, dial rate %v", b.Route("keep") == keep, keep.Pool().Settings(), keep.limiter.rateNow())
	}
	if m := b.Route("move"); m == move || m == nil || b.Route("added") == nil {
		t.Error("move and added are not in force")
	}
	b.mu.RLock()
	retired := slices.Contains(b.retired, move)
	b.mu.RUnlock()
	if !retired {
		t.Error("the replaced route is not retired")
	}
	b.Close()
	if !move.Pool().isClosed() {
		t.Error("Close left the replaced pool open")
	}
}

// TestCommitAfterClose: an update committed after Close is discarded, and
// the pools it built are closed (the package's leak check finds any
// goroutine left).
func TestCommitAfterClose(t *testing.T) {
	pg := testPG.Addr()
	b, err := New(context.Background(), updateConfig(t, map[string]string{"a": pg}, nil), Options{})
	if err != nil {
		t.Fatal(err)
	}
	u, err := b.Prepare(context.Background(), updateConfig(t, map[string]string{"b": pg}, func(r *config.Route) { r.Pool.MinIdle = 1 }))
	if err != nil {
		t.Fatal(err)
	}
	b.Close()
	if changes := u.Commit(); changes != nil {
		t.Errorf("a commit after Close: %q", changes)
	}
	if b.Route("b") != nil {
		t.Error("a commit after Close put a route in force")
	}
	for _, r := range u.created {
		if !r.pool.isClosed() {
			t.Errorf("route %q: its pool was left open", r.Name)
		}
	}
	// The update lock is free again.
	cfg := updateConfig(t, map[string]string{"a": pg}, nil)
	done := make(chan struct{})
	go func() {
		defer close(done)
		if u, err := b.Prepare(context.Background(), cfg); err == nil {
			u.Discard()
		}
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Prepare after a commit waits")
	}
}
