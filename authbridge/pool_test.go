package authbridge

import (
	"context"
	"errors"
	"maps"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/dsqlgate/dsqlgate/config"
	"github.com/dsqlgate/dsqlgate/internal/pgtest"
	"github.com/dsqlgate/dsqlgate/internal/scram"
)

var testPG *pgtest.Postgres

func TestMain(m *testing.M) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	var err error
	testPG, err = pgtest.StartPostgres(ctx, pgtest.PostgresOptions{})
	cancel()
	if err != nil {
		panic(err)
	}
	code := m.Run()
	testPG.Close()
	if code == 0 {
		if err := goleak.Find(); err != nil {
			println("goroutine leak:", err.Error())
			code = 1
		}
	}
	os.Exit(code)
}

// newTestBridge makes a bridge with one kind-postgres route to the test
// PostgreSQL, its pool adjusted by adjust.
func newTestBridge(t *testing.T, adjust func(*config.Pool)) *Route {
	t.Helper()
	v, err := scram.GenerateVerifier("x")
	if err != nil {
		t.Fatal(err)
	}
	cfg := config.Default()
	cfg.Users = []config.User{{Name: "u", Verifier: v.Encode()}}
	r := config.DefaultRoute(config.KindPostgres, "postgres")
	r.Endpoint = testPG.Addr()
	r.User = "postgres"
	r.Password = testPG.Password
	r.TLS = "disable"
	if adjust != nil {
		adjust(&r.Pool)
	}
	cfg.Routes = []config.Route{r}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	b, err := New(context.Background(), cfg, Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.Close)
	return b.Route("postgres")
}

func acquire(t *testing.T, p *Pool, user string, prefer *ServerConn) *ServerConn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	sc, err := p.Acquire(ctx, user, prefer)
	if err != nil {
		t.Fatal(err)
	}
	return sc
}

// eventually polls cond for up to 10 s; it fails the test if cond never
// holds. It asserts an outcome, not a duration.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("never happened: %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestPoolReuseAndPreference(t *testing.T) {
	r := newTestBridge(t, nil)
	p := r.Pool()
	a := acquire(t, p, "u", nil)
	b := acquire(t, p, "u", nil)
	if a == b {
		t.Fatal("two holders got the same connection")
	}
	p.Release(a)
	p.Release(b) // b is now the most recently used
	got := acquire(t, p, "u", a)
	if got != a {
		t.Fatal("the preferred idle connection was not handed out")
	}
	got2 := acquire(t, p, "u", nil)
	if got2 != b {
		t.Fatal("the remaining idle connection was not reused")
	}
	p.Release(got)
	p.Release(got2)
	if s := p.Stats(); s.Dials != 2 || s.Open != 2 || s.Idle != 2 {
		t.Fatalf("stats %+v, want 2 dials, 2 open, 2 idle", s)
	}
	if r.Params("")["server_version"] == "" {
		t.Fatal("the route did not keep the handshake's ParameterStatus values")
	}
}

func TestPoolSizeAndWaiters(t *testing.T) {
	r := newTestBridge(t, func(p *config.Pool) { p.Size = 2 })
	p := r.Pool()
	a, b := acquire(t, p, "u", nil), acquire(t, p, "u", nil)

	// A third client waits until a connection comes back.
	got := make(chan *ServerConn)
	go func() {
		sc, err := p.Acquire(context.Background(), "u", nil)
		if err != nil {
			t.Error(err)
		}
		got <- sc
	}()
	eventually(t, "the third acquire waits", func() bool { return p.Stats().Waiting == 1 })
	p.Release(a)
	if sc := <-got; sc != a {
		t.Fatal("the waiter did not get the released connection")
	}

	// With the pool full, a bounded wait ends with a WaitError that says
	// the pool was exhausted.
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	_, err := p.Acquire(ctx, "u", nil)
	var we *WaitError
	if !errors.As(err, &we) || !we.Exhausted {
		t.Fatalf("got %v, want an exhausted WaitError", err)
	}
	if s := p.Stats(); s.Waiting != 0 || s.Open != 2 {
		t.Fatalf("after the timeout: %+v", s)
	}

	// A discarded connection's slot goes to the next waiter, who dials.
	go func() {
		sc, err := p.Acquire(context.Background(), "u", nil)
		if err != nil {
			t.Error(err)
		}
		got <- sc
	}()
	eventually(t, "the next acquire waits", func() bool { return p.Stats().Waiting == 1 })
	p.Discard(b)
	sc := <-got
	if sc == a || sc == b {
		t.Fatal("the waiter did not get a new connection")
	}
	p.Release(sc)
	p.Release(a)
	if s := p.Stats(); s.Open != 2 {
		t.Fatalf("open = %d, want 2", s.Open)
	}
}

func TestPoolIdleTimeoutAndMinIdle(t *testing.T) {
	r := newTestBridge(t, func(p *config.Pool) {
		p.MinIdle = 1
		p.IdleTimeout = config.Duration(200 * time.Millisecond)
	})
	p := r.Pool()
	eventually(t, "min_idle is dialled without any client", func() bool { return p.Stats().Idle == 1 })
	a, b, c := acquire(t, p, "u", nil), acquire(t, p, "u", nil), acquire(t, p, "u", nil)
	p.Release(a)
	p.Release(b)
	p.Release(c)
	eventually(t, "idle connections beyond min_idle close", func() bool {
		s := p.Stats()
		return s.Open == 1 && s.Idle == 1
	})
}

func TestPoolLifetime(t *testing.T) {
	const life = 400 * time.Millisecond
	r := newTestBridge(t, func(p *config.Pool) {
		p.MaxLifetime = config.Duration(life)
		p.LifetimeJitter = config.Duration(100 * time.Millisecond)
	})
	p := r.Pool()
	deadline := time.Now().Add(3 * time.Second)
	for time.Now().Before(deadline) {
		sc := acquire(t, p, "u", nil)
		if age := time.Since(sc.Created); age >= life {
			t.Fatalf("handed out a connection aged %v, past max_lifetime %v", age, life)
		}
		time.Sleep(30 * time.Millisecond)
		p.Release(sc)
	}
	if s := p.Stats(); s.Retired == 0 || s.Dials < 3 {
		t.Fatalf("stats %+v: connections were not retired and replaced", s)
	}
	eventually(t, "an idle connection past its lifetime is closed", func() bool { return p.Stats().Open == 0 })
}

// TestPoolMakeBeforeBreak: a connection in use that nears its retirement
// gets its replacement dialled first, so the next client after the
// retirement does not wait for a dial.
func TestPoolMakeBeforeBreak(t *testing.T) {
	r := newTestBridge(t, func(p *config.Pool) {
		p.MaxLifetime = config.Duration(2 * time.Second)
		p.LifetimeJitter = config.Duration(time.Millisecond)
	})
	p := r.Pool()
	old := acquire(t, p, "u", nil)
	p.Release(old)
	for {
		sc := acquire(t, p, "u", old)
		p.Release(sc)
		if sc != old {
			if !sc.Created.Before(old.RetireAt()) {
				t.Fatalf("the replacement was dialled at %v, after the old connection retired at %v", sc.Created, old.RetireAt())
			}
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestPoolMaintenanceKeepsIdleList: maintenance passes over several idle
// connections must keep each exactly once (a bug once duplicated one and
// lost another, handing one connection to two clients).
func TestPoolMaintenanceKeepsIdleList(t *testing.T) {
	r := newTestBridge(t, func(p *config.Pool) {
		p.MaxLifetime = config.Duration(time.Minute)
		p.LifetimeJitter = config.Duration(time.Second) // maintenance every 250ms
	})
	p := r.Pool()
	var all []*ServerConn
	for i := 0; i < 4; i++ {
		all = append(all, acquire(t, p, "u", nil))
	}
	for _, sc := range all {
		p.Release(sc)
	}
	time.Sleep(time.Second)
	seen := map[*ServerConn]bool{}
	for i := 0; i < 4; i++ {
		sc := acquire(t, p, "u", nil)
		if seen[sc] {
			t.Fatal("one idle connection was handed out twice")
		}
		seen[sc] = true
	}
	if s := p.Stats(); s.Dials != 4 {
		t.Fatalf("%d dials, want 4: an idle connection was lost", s.Dials)
	}
	for sc := range seen {
		p.Release(sc)
	}
}

func TestPoolDeadIdleConnection(t *testing.T) {
	r := newTestBridge(t, nil)
	p := r.Pool()
	sc := acquire(t, p, "u", nil)
	pid := sc.PID
	p.Release(sc)
	if _, err := testPG.Psql(context.Background(), "postgres", "-qc", "select pg_terminate_backend("+itoa(int(pid))+")"); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the backend is gone", func() bool { return !sc.Alive() })
	got := acquire(t, p, "u", sc)
	if got == sc {
		t.Fatal("a dead idle connection was handed out")
	}
	p.Release(got)
	if s := p.Stats(); s.Lost != 1 {
		t.Fatalf("lost = %d, want 1", s.Lost)
	}
}

func TestPoolDialFailureIsNotRetried(t *testing.T) {
	r := newTestBridge(t, nil)
	r.password = "wrong"
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	start := time.Now()
	_, err := r.Pool().Acquire(ctx, "u", nil)
	var de *DialError
	if !errors.As(err, &de) || de.Retryable || de.SQLState != "28P01" {
		t.Fatalf("got %v, want a non-retryable 28P01 DialError", err)
	}
	if time.Since(start) > 20*time.Second {
		t.Fatal("a wrong password was retried until the deadline")
	}
}

// TestDialLimiter: however many goroutines dial at once, the limiter never
// lets more than burst + rate × elapsed through.
func TestDialLimiter(t *testing.T) {
	const rate, burst = 50, 5
	l := newDialLimiter(rate, burst, time.Now)
	start := time.Now()
	var mu sync.Mutex
	var times []time.Duration
	var wg sync.WaitGroup
	for i := 0; i < 8; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := 0; j < 10; j++ {
				if err := l.wait(context.Background()); err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				times = append(times, time.Since(start))
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	for i, at := range times {
		allowed := burst + int(at.Seconds()*rate) + 1
		if i+1 > allowed {
			t.Fatalf("dial %d went through at %v; at most %d allowed by then", i+1, at, allowed)
		}
	}
	// After a cluster-wide backoff nothing goes through until it ends.
	l.backoff(200 * time.Millisecond)
	before := time.Now()
	if err := l.wait(context.Background()); err != nil {
		t.Fatal(err)
	}
	if waited := time.Since(before); waited < 100*time.Millisecond {
		t.Fatalf("a dial went through %v into a backoff of at least 100ms", waited)
	}
}

// TestPoolConnectionsBelongToOneUser: a connection is only ever handed to
// the user it was first handed to; prefer is honoured for that user only.
func TestPoolConnectionsBelongToOneUser(t *testing.T) {
	r := newTestBridge(t, nil)
	p := r.Pool()
	a := acquire(t, p, "alice", nil)
	p.Release(a)
	if sc := p.TakeIdle("bob", nil); sc != nil {
		t.Fatal("TakeIdle handed alice's idle connection to bob")
	}
	b := acquire(t, p, "bob", a) // prefers alice's: must not get it
	if b == a {
		t.Fatal("bob got alice's connection")
	}
	if a.Owner() != "alice" || b.Owner() != "bob" {
		t.Fatalf("owners %q and %q, want alice and bob", a.Owner(), b.Owner())
	}
	p.Release(b)
	if got := acquire(t, p, "alice", b); got != a {
		t.Fatal("alice, preferring bob's connection, did not get her own")
	}
	p.Release(a)
	users := map[uint64]string{}
	for _, c := range p.Conns() {
		users[c.ID] = c.User
	}
	if want := map[uint64]string{a.ID: "alice", b.ID: "bob"}; !maps.Equal(users, want) {
		t.Fatalf("Conns users %v, want %v", users, want)
	}
	if s := p.Stats(); s.Dials != 2 || s.Evicted != 0 {
		t.Fatalf("stats %+v, want 2 dials and nothing evicted", s)
	}
}

// TestPoolTakesAnotherUsersIdleSlot: with the pool full and only another
// user's connection idle, a user gets a new connection in its slot; the
// old one is closed, never reused. The fast paths do neither.
func TestPoolTakesAnotherUsersIdleSlot(t *testing.T) {
	r := newTestBridge(t, func(p *config.Pool) { p.Size = 1 })
	p := r.Pool()
	a := acquire(t, p, "alice", nil)
	p.Release(a)
	if sc := p.TakeIdle("bob", nil); sc != nil {
		t.Fatal("TakeIdle handed out alice's connection")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if sc, err := p.TryAcquire(ctx, "bob"); sc != nil || err != nil {
		t.Fatalf("TryAcquire = %v, %v; want nothing from a full pool", sc, err)
	}

	b := acquire(t, p, "bob", nil)
	if b == a || b.Owner() != "bob" {
		t.Fatal("bob did not get a new connection of his own")
	}
	if a.Alive() {
		t.Fatal("alice's connection was not closed")
	}
	if s := p.Stats(); s.Open != 1 || s.Evicted != 1 || s.Dials != 2 {
		t.Fatalf("stats %+v, want 1 open, 1 evicted, 2 dials", s)
	}

	// A waiter gets the slot of a connection released by another user.
	got := make(chan *ServerConn)
	go func() {
		sc, err := p.Acquire(context.Background(), "alice", a)
		if err != nil {
			t.Error(err)
		}
		got <- sc
	}()
	eventually(t, "alice waits", func() bool { return p.Stats().Waiting == 1 })
	p.Release(b)
	a2 := <-got
	if a2 == b || a2 == a || a2.Owner() != "alice" {
		t.Fatal("alice's waiter did not get a new connection of her own")
	}
	p.Release(a2)
	if s := p.Stats(); s.Open != 1 || s.Evicted != 2 {
		t.Fatalf("stats %+v, want 1 open, 2 evicted", s)
	}
}

// TestPoolWarmConnectionIsClaimed: a connection dialled for min_idle has
// no owner until the first user takes it.
func TestPoolWarmConnectionIsClaimed(t *testing.T) {
	r := newTestBridge(t, func(p *config.Pool) { p.MinIdle = 1 })
	p := r.Pool()
	eventually(t, "min_idle is dialled", func() bool { return p.Stats().Idle == 1 })
	if cs := p.Conns(); len(cs) != 1 || cs[0].User != "" {
		t.Fatalf("Conns = %+v, want one connection without a user", cs)
	}
	sc := p.TakeIdle("alice", nil)
	if sc == nil {
		t.Fatal("the warm connection was not handed to the first user")
	}
	if sc.Owner() != "alice" {
		t.Fatalf("owner %q, want alice", sc.Owner())
	}
	if s := p.Stats(); s.Dials != 1 {
		t.Fatalf("%d dials, want 1", s.Dials)
	}
	p.Release(sc)
}

// TestPoolMaxUserConnections: a user at its limit waits without holding up
// the users behind it, is served when one of its own comes back, and a
// wait that ends at the limit says so.
func TestPoolMaxUserConnections(t *testing.T) {
	r := newTestBridge(t, func(p *config.Pool) { p.Size = 4; p.MaxUserConnections = 1 })
	p := r.Pool()
	a := acquire(t, p, "alice", nil)
	if sc := p.TakeIdle("alice", nil); sc != nil {
		t.Fatal("TakeIdle went past alice's limit")
	}

	got := make(chan *ServerConn)
	go func() {
		sc, err := p.Acquire(context.Background(), "alice", nil)
		if err != nil {
			t.Error(err)
		}
		got <- sc
	}()
	eventually(t, "alice waits at her limit", func() bool { return p.Stats().Waiting == 1 })
	b := acquire(t, p, "bob", nil) // behind alice in line, served at once
	select {
	case <-got:
		t.Fatal("alice got a second connection past her limit")
	default:
	}
	p.Release(a)
	if sc := <-got; sc != a {
		t.Fatal("alice's waiter did not get her released connection")
	}

	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	_, err := p.Acquire(ctx, "alice", nil)
	var we *WaitError
	if !errors.As(err, &we) || !we.UserCapped || we.Exhausted || we.User != "alice" || we.Limit != 1 {
		t.Fatalf("got %#v, want a WaitError for alice at her limit of 1", err)
	}
	if want := `user "alice" holds its limit of 1 connections (pool.max_user_connections)`; !strings.HasSuffix(err.Error(), want) {
		t.Fatalf("error %q does not end with %q", err, want)
	}
	p.Release(a)
	p.Release(b)
	if s := p.Stats(); s.Open != 2 || s.Idle != 2 || s.Waiting != 0 {
		t.Fatalf("stats %+v, want 2 open, 2 idle, none waiting", s)
	}
}

// TestPoolBusyUserDoesNotStarveAnother: alice holds the pool's only
// connection and reuses it without pause; bob, who holds one elsewhere
// (so he is not served at once), still gets a slot once he has waited
// evictAfter, instead of waiting until his deadline while alice's
// connection is never idle long enough to be taken.
func TestPoolBusyUserDoesNotStarveAnother(t *testing.T) {
	r := newTestBridge(t, func(p *config.Pool) { p.Size = 2 })
	p := r.Pool()
	bobs := acquire(t, p, "bob", nil) // bob holds one: he is not urgent at once
	a := acquire(t, p, "alice", nil)
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		sc := a
		for {
			p.Release(sc)
			select {
			case <-stop:
				return
			default:
			}
			if sc = p.TakeIdle("alice", sc); sc == nil {
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				sc, _ = p.Acquire(ctx, "alice", nil)
				cancel()
				if sc == nil {
					return
				}
			}
		}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 3*evictAfter)
	defer cancel()
	started := time.Now()
	sc, err := p.Acquire(ctx, "bob", nil)
	close(stop)
	<-done
	if err != nil {
		t.Fatalf("bob waited %v and got %v while alice reused her connection", time.Since(started).Round(time.Millisecond), err)
	}
	p.Release(sc)
	p.Release(bobs)
}
