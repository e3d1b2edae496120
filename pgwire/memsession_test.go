package pgwire

import (
	"context"
	"errors"
	"net"
	"net/url"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/dsqlgate/dsqlgate/config"
	"github.com/dsqlgate/dsqlgate/internal/scram"
)

// Sessions against the in-memory upstream side (memupstream_test.go):
// a real client (pgconn) over loopback, a real Server, and upstreams that
// are model backends (modelserver_test.go) at the far end of net.Pipe,
// which a test can end at any moment, as a server restart or a network
// failure would. These pin the README's "When things fail" rows that need
// an upstream to go away under a session.

// memGateway is a Server whose one route, "db", dials model backends.
type memGateway struct {
	srv   *Server
	ups   *memUpstreams
	route *memRoute
	addr  string

	// occ scripts the backends' optimistic-concurrency conflicts (nil:
	// none).
	occ *modelOCC

	// refuse makes every dial fail, as an upstream that is down.
	refuse atomic.Bool

	mu       sync.Mutex
	backends []*modelConn // in dial order
	traps    []*replyTrap // the backends' ends of their pipes, in dial order
}

// replyTrap is a backend's end of its pipe; once armed, the backend's next
// reply closes it instead of going out, as a backend that dies while it
// runs a statement.
type replyTrap struct {
	net.Conn
	armed atomic.Bool
}

func (c *replyTrap) Write(b []byte) (int, error) {
	if c.armed.Load() {
		c.Conn.Close()
		return 0, net.ErrClosed
	}
	return c.Conn.Write(b)
}

const memPassword = "mem-pw"

// startMemGateway starts a gateway whose route is a PostgreSQL one in pool
// mode mode.
func startMemGateway(t *testing.T, mode string) *memGateway {
	t.Helper()
	r := config.DefaultRoute(config.KindPostgres, "db")
	r.Endpoint, r.TLS, r.User, r.Password = "model.invalid:5432", config.TLSDisable, "gw", "gw-pw"
	r.Pool.Mode = mode
	return startMemGatewayRoute(t, r)
}

// startMemGatewayRoute starts a gateway whose one route is r, with a pool
// of two upstreams.
func startMemGatewayRoute(t *testing.T, r config.Route) *memGateway {
	t.Helper()
	v, err := scram.GenerateVerifier(memPassword)
	if err != nil {
		t.Fatal(err)
	}
	cfg := config.Default()
	cfg.Users = []config.User{{Name: "u", Verifier: v.Encode()}}
	r.Pool.Size = 2
	cfg.Routes = []config.Route{r}
	cfg.Listen = "127.0.0.1:0"
	cfg.Metrics.Listen = ""
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	g := &memGateway{}
	if g.route, err = newMemRoute(cfg.Routes[0], g.dial); err != nil {
		t.Fatal(err)
	}
	g.ups = newMemUpstreams(g.route)
	if g.srv, err = NewServer(cfg, g.ups, Options{}); err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	g.addr = l.Addr().String()
	go g.srv.Serve(l)
	t.Cleanup(func() {
		g.srv.Close()
		g.ups.close()
		g.mu.Lock()
		defer g.mu.Unlock()
		for _, b := range g.backends {
			b.conn.Close()
			<-b.done
		}
	})
	return g
}

// dial is the route's transport: a model backend over net.Pipe.
func (g *memGateway) dial(ctx context.Context, network, addr string) (net.Conn, error) {
	if g.refuse.Load() {
		return nil, errors.New("upstream down")
	}
	near, pipe := net.Pipe()
	far := &replyTrap{Conn: pipe}
	g.mu.Lock()
	b := &modelConn{conn: far, be: pgproto3.NewBackend(far, far), pid: uint32(len(g.backends) + 1), done: make(chan struct{}), occ: g.occ}
	g.backends = append(g.backends, b)
	g.traps = append(g.traps, far)
	g.mu.Unlock()
	go func() {
		defer close(b.done)
		defer far.Close()
		b.serve()
	}()
	return near, nil
}

// backend is the i-th backend dialled (from 0).
func (g *memGateway) backend(t *testing.T, i int) *modelConn {
	t.Helper()
	g.mu.Lock()
	defer g.mu.Unlock()
	if i >= len(g.backends) {
		t.Fatalf("backend %d asked for; %d dialled", i, len(g.backends))
	}
	return g.backends[i]
}

// kill ends backend i as a server restart would, and waits until it is
// gone.
func (g *memGateway) kill(t *testing.T, i int) {
	t.Helper()
	b := g.backend(t, i)
	b.conn.Close()
	<-b.done
}

// dieOnReply makes backend i die when it answers its next message.
func (g *memGateway) dieOnReply(t *testing.T, i int) {
	t.Helper()
	g.backend(t, i)
	g.mu.Lock()
	defer g.mu.Unlock()
	g.traps[i].armed.Store(true)
}

// dials is how many upstream connections the route has opened.
func (g *memGateway) dials() int { return g.route.pool.stats().dials }

// idle waits until no session has an upstream attached: each has let its
// upstream go at the safe point after its last reply (back to the pool in
// transaction mode, reserved in session mode), which it does just after
// the client has the ReadyForQuery.
func (g *memGateway) idle(t *testing.T) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		g.srv.mu.Lock()
		sessions := make([]*session, 0, len(g.srv.sessions))
		for sess := range g.srv.sessions {
			sessions = append(sessions, sess)
		}
		g.srv.mu.Unlock()
		attached := 0
		for _, sess := range sessions {
			sess.mu.Lock()
			if sess.sc != nil {
				attached++
			}
			sess.mu.Unlock()
		}
		if attached == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d sessions still have their upstream attached", attached)
		}
		time.Sleep(time.Millisecond)
	}
}

func (g *memGateway) connect(t *testing.T) *pgconn.PgConn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	u := url.URL{Scheme: "postgres", User: url.UserPassword("u", memPassword), Host: g.addr, Path: "/db", RawQuery: "sslmode=disable"}
	c, err := pgconn.Connect(ctx, u.String())
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	t.Cleanup(func() { c.Close(context.Background()) })
	return c
}

// query runs sql on the simple protocol and returns its one value (""
// when it returned no row) or the error's SQLSTATE.
func query(t *testing.T, c *pgconn.PgConn, sql string) (value, sqlstate string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	results, err := c.Exec(ctx, sql).ReadAll()
	if err != nil {
		return "", sqlstateOfErr(t, err)
	}
	for _, r := range results {
		if r.Err != nil {
			return "", sqlstateOfErr(t, r.Err)
		}
		if len(r.Rows) > 0 {
			value = string(r.Rows[0][0])
		}
	}
	return value, ""
}

func sqlstateOfErr(t *testing.T, err error) string {
	t.Helper()
	var pe *pgconn.PgError
	if !errors.As(err, &pe) {
		t.Fatalf("not a server error: %v", err)
	}
	return pe.Code
}

// mustQuery runs sql and requires want as its value.
func mustQuery(t *testing.T, c *pgconn.PgConn, sql, want string) {
	t.Helper()
	got, code := query(t, c, sql)
	if code != "" || got != want {
		t.Fatalf("%s: got %q, SQLSTATE %q; want %q", sql, got, code, want)
	}
}

// TestMemSimpleQuery: a simple Query and its rows go through the session
// to an upstream and back, in both pool modes.
func TestMemSimpleQuery(t *testing.T) {
	for _, mode := range []string{config.PoolTransaction, config.PoolSession} {
		t.Run(mode, func(t *testing.T) {
			g := startMemGateway(t, mode)
			c := g.connect(t)
			mustQuery(t, c, "SELECT 42", "42")
			mustQuery(t, c, "SELECT 'relayed'", "'relayed'")
			if _, code := query(t, c, "SELECT * FROM missing"); code != "42P01" {
				t.Fatalf("the upstream's error: SQLSTATE %q, want 42P01", code)
			}
			mustQuery(t, c, "SELECT 7", "7")
			if n := g.dials(); n != 1 {
				t.Fatalf("%d upstreams dialled for one client, want 1", n)
			}
		})
	}
}

// TestMemPreparedMovesUpstream: a statement the client prepared (Parse)
// and runs (Bind, Execute, Sync) goes on working after its upstream is
// gone between transactions: transaction mode takes another upstream,
// where the gateway prepares it again before the Bind. Without that the
// new upstream answers 26000 (no such statement).
func TestMemPreparedMovesUpstream(t *testing.T) {
	g := startMemGateway(t, config.PoolTransaction)
	c := g.connect(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := c.Prepare(ctx, "s1", "SELECT 7", nil); err != nil {
		t.Fatalf("prepare: %v", err)
	}
	exec := func(when string) {
		t.Helper()
		r := c.ExecPrepared(ctx, "s1", nil, nil, nil).Read()
		if r.Err != nil {
			t.Fatalf("%s: %v", when, r.Err)
		}
		if len(r.Rows) != 1 || string(r.Rows[0][0]) != "7" {
			t.Fatalf("%s: rows %q, want one row 7", when, r.Rows)
		}
	}
	exec("on the first upstream")
	g.idle(t)
	g.kill(t, 0)
	exec("on the second upstream")
	if n := g.dials(); n != 2 {
		t.Fatalf("%d upstreams dialled, want 2: the statement did not move", n)
	}
	// And a statement prepared on the second upstream still runs there.
	exec("again on the second upstream")
}

// TestMemSettingFollowsSession: a SET the client made is put on the
// upstream the session moves to when its own is gone while it is idle,
// and the client notices nothing (the README's first row of "When things
// fail").
func TestMemSettingFollowsSession(t *testing.T) {
	for _, mode := range []string{config.PoolTransaction, config.PoolSession} {
		t.Run(mode, func(t *testing.T) {
			g := startMemGateway(t, mode)
			c := g.connect(t)
			mustQuery(t, c, "SET search_path = app, public", "")
			mustQuery(t, c, "SHOW search_path", "app, public")
			g.idle(t)
			g.kill(t, 0)
			mustQuery(t, c, "SHOW search_path", "app, public")
			if n := g.dials(); n != 2 {
				t.Fatalf("%d upstreams dialled, want 2", n)
			}
		})
	}
}

// TestMemUpstreamLostInTransaction: an upstream lost inside an explicit
// transaction fails the transaction: the next statement gets 40001,
// further ones 25P02, a COMMIT 40001 (never a false success); after it the
// session goes on, on another upstream.
func TestMemUpstreamLostInTransaction(t *testing.T) {
	g := startMemGateway(t, config.PoolTransaction)
	c := g.connect(t)
	mustQuery(t, c, "BEGIN", "")
	mustQuery(t, c, "SELECT 1", "1")
	g.kill(t, 0)
	if _, code := query(t, c, "SELECT 2"); code != "40001" {
		t.Fatalf("first statement after the loss: SQLSTATE %q, want 40001", code)
	}
	if _, code := query(t, c, "SELECT 3"); code != "25P02" {
		t.Fatalf("next statement in the failed transaction: SQLSTATE %q, want 25P02", code)
	}
	if _, code := query(t, c, "COMMIT"); code != "40001" {
		t.Fatalf("COMMIT of the failed transaction: SQLSTATE %q, want 40001", code)
	}
	mustQuery(t, c, "SELECT 4", "4")
	if n := g.dials(); n != 2 {
		t.Fatalf("%d upstreams dialled, want 2", n)
	}
}

// TestMemUpstreamLostWhileRunning: an upstream lost while an autocommit
// statement is in flight (the backend got it and died before answering)
// gets 08007, whether it committed is unknown; the session goes on, on
// another upstream.
func TestMemUpstreamLostWhileRunning(t *testing.T) {
	g := startMemGateway(t, config.PoolTransaction)
	c := g.connect(t)
	mustQuery(t, c, "SELECT 1", "1")
	g.idle(t)
	g.dieOnReply(t, 0)
	if _, code := query(t, c, "SELECT 2"); code != "08007" {
		t.Fatalf("statement whose upstream died: SQLSTATE %q, want 08007", code)
	}
	mustQuery(t, c, "SELECT 3", "3")
	if n := g.dials(); n != 2 {
		t.Fatalf("%d upstreams dialled, want 2", n)
	}
}

// TestMemAdvisoryLocks: on a DSQL route the gateway answers the advisory
// lock functions from the route's lock table (here memLocks), one owner
// per session, with PostgreSQL's two key spaces apart.
func TestMemAdvisoryLocks(t *testing.T) {
	r := config.DefaultRoute(config.KindDSQL, "db")
	r.Endpoint = "abcdefghijklmnopqrstuvwxyz.dsql.us-east-1.on.aws"
	g := startMemGatewayRoute(t, r)
	c1, c2 := g.connect(t), g.connect(t)
	mustQuery(t, c1, "SELECT pg_try_advisory_lock(1)", "t")
	mustQuery(t, c2, "SELECT pg_try_advisory_lock(1)", "f")
	mustQuery(t, c2, "SELECT pg_try_advisory_lock(0, 1)", "t")
	mustQuery(t, c1, "SELECT pg_try_advisory_lock(0, 1)", "f")
	mustQuery(t, c1, "SELECT pg_advisory_unlock(1)", "t")
	mustQuery(t, c2, "SELECT pg_try_advisory_lock(1)", "t")
	mustQuery(t, c1, "SELECT pg_advisory_unlock(1)", "f")
}
