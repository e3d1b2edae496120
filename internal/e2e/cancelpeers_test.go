package e2e

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgerrcode"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgconn/ctxwatch"
	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/dsqlgate/dsqlgate/config"
	"github.com/dsqlgate/dsqlgate/internal/gateway"
	"github.com/dsqlgate/dsqlgate/internal/harness"
	"github.com/dsqlgate/dsqlgate/internal/peers"
)

// Databases of the replicas' routes: both go to the shared PostgreSQL,
// one in session mode, one in transaction mode.
const (
	peerSessionDB     = "sess"
	peerTransactionDB = "tx"
)

// startReplicas starts n gateways in this process on 127.0.0.1, each
// listing all of them in peers.addresses with its own as peers.self, as
// replicas behind one load balancer share one configuration. The ports
// are reserved first (listened on and closed), since every replica must
// know them all before it starts.
func startReplicas(t *testing.T, n int) []*gateway.Gateway {
	gws, _ := startSomeReplicas(t, n, n)
	return gws
}

// startSomeReplicas is startReplicas with only the first running of n
// replicas started; it returns every replica's address too.
func startSomeReplicas(t *testing.T, n, running int) ([]*gateway.Gateway, []string) {
	t.Helper()
	addrs := make([]string, n)
	for i := range addrs {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addrs[i] = l.Addr().String()
		l.Close()
	}
	gws := make([]*gateway.Gateway, running)
	for i := range gws {
		cfg := reloadConfig(t, map[string]string{peerSessionDB: shared.PG.Addr(), peerTransactionDB: shared.PG.Addr()})
		routeOf(t, cfg, peerSessionDB).Pool.Mode = config.PoolSession
		cfg.Listen = addrs[i]
		cfg.Metrics.Listen = "127.0.0.1:0"
		cfg.Peers = config.Peers{Addresses: addrs, Self: addrs[i], Refresh: config.Duration(time.Minute)}
		g, err := gateway.Start(testCtx(t, time.Minute), cfg, gateway.Options{})
		if err != nil {
			t.Fatalf("replica %d: %v", i, err)
		}
		t.Cleanup(func() { g.Close() })
		gws[i] = g
	}
	return gws, addrs
}

// replicaURL is a connection string for g's database.
func replicaURL(g *gateway.Gateway, database, extra string) string {
	u := url.URL{Scheme: "postgres", User: url.UserPassword(reloadUser, reloadPassword), Host: g.Addr, Path: "/" + database, RawQuery: "sslmode=disable" + extra}
	return u.String()
}

func connectReplica(t *testing.T, g *gateway.Gateway, database string) *pgx.Conn {
	t.Helper()
	conn, err := pgx.Connect(testCtx(t, 30*time.Second), replicaURL(g, database, ""))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	return conn
}

// sendCancel sends a CancelRequest for (pid, secret) to addr, as a load
// balancer would hand a client's, and returns once the replica closed the
// connection (it has then delivered or forwarded the request).
func sendCancel(t *testing.T, addr string, pid uint32, secret []byte) time.Duration {
	t.Helper()
	took, err := trySendCancel(addr, pid, secret)
	if err != nil {
		t.Fatal(err)
	}
	return took
}

// trySendCancel is sendCancel for any goroutine.
func trySendCancel(addr string, pid uint32, secret []byte) (time.Duration, error) {
	start := time.Now()
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return 0, err
	}
	defer conn.Close()
	msg, err := (&pgproto3.CancelRequest{ProcessID: pid, SecretKey: secret}).Encode(nil)
	if err != nil {
		return 0, err
	}
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := conn.Write(msg); err != nil {
		return 0, err
	}
	var b [1]byte
	if n, err := conn.Read(b[:]); n != 0 || err == nil {
		return 0, fmt.Errorf("the replica answered a CancelRequest with %d bytes (%v)", n, err)
	}
	return time.Since(start), nil
}

// sleeper runs select pg_sleep(secs) on conn in the background; its
// result arrives on the returned channel.
func sleeper(conn *pgx.Conn, secs float64) <-chan error {
	ch := make(chan error, 1)
	go func() {
		_, err := conn.Exec(context.Background(), fmt.Sprintf(sleepMarker+"select pg_sleep(%g)", secs))
		ch <- err
	}()
	return ch
}

// sleepMarker tells this file's pg_sleep statements from other tests'.
const sleepMarker = "/* cancelpeers */ "

// waitSleeping waits until conn's backend (seen through another session
// of the shared PostgreSQL) runs pg_sleep: a cancel sent before it does
// could reach an idle session.
func waitSleeping(t *testing.T, n int) {
	t.Helper()
	admin := connect(t, shared, "")
	deadline := time.Now().Add(10 * time.Second)
	for {
		var running int
		if err := admin.QueryRow(testCtx(t, 5*time.Second), "select count(*) from pg_stat_activity where query like '"+sleepMarker+"select pg_sleep(%' and state = 'active'").Scan(&running); err != nil {
			t.Fatal(err)
		}
		if running >= n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d pg_sleep statements running after 10s", running, n)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// cancelCounts are one replica's cancel counters.
type cancelCounts struct{ client, peer, delivered, forwarded, ignored, failed float64 }

func scrapeCancels(t *testing.T, g *gateway.Gateway) cancelCounts {
	m := harness.Scrape(t, g.OpsAddr)
	return cancelCounts{
		client:    m[`dsqlgate_cancel_requests_received_total{source="client"}`],
		peer:      m[`dsqlgate_cancel_requests_received_total{source="peer"}`],
		delivered: m[`dsqlgate_cancel_requests_total{outcome="delivered"}`],
		forwarded: m[`dsqlgate_cancel_requests_total{outcome="forwarded"}`],
		ignored:   m[`dsqlgate_cancel_requests_total{outcome="ignored"}`],
		failed:    m[`dsqlgate_cancel_requests_total{outcome="failed"}`],
	}
}

func (c cancelCounts) minus(d cancelCounts) cancelCounts {
	return cancelCounts{c.client - d.client, c.peer - d.peer, c.delivered - d.delivered, c.forwarded - d.forwarded, c.ignored - d.ignored, c.failed - d.failed}
}

func wantCanceled(t *testing.T, err error, took time.Duration) {
	t.Helper()
	var pe *pgconn.PgError
	if !errors.As(err, &pe) || pe.Code != pgerrcode.QueryCanceled {
		t.Fatalf("pg_sleep ended with %v, want 57014", err)
	}
	if took > time.Second {
		t.Fatalf("the cancel took %v", took)
	}
}

// TestCancelFromAnyReplica: a session's key cancels its statement from
// whichever replica receives it; what is not its key cancels nothing.
func TestCancelFromAnyReplica(t *testing.T) {
	gws := startReplicas(t, 3)
	a, b, c := gws[0], gws[1], gws[2]

	t.Run("forwarded", func(t *testing.T) {
		for _, via := range []*gateway.Gateway{b, c, a} {
			for _, db := range []string{peerSessionDB, peerTransactionDB} {
				conn := connectReplica(t, a, db)
				pid, secret := conn.PgConn().PID(), conn.PgConn().SecretKey()
				if len(secret) != 4 || pid>>29 != 1 {
					t.Fatalf("key pid %#x secret %d bytes, want hops 1 and 4 bytes", pid, len(secret))
				}
				beforeA, beforeVia := scrapeCancels(t, a), scrapeCancels(t, via)
				done := sleeper(conn, 30)
				waitSleeping(t, 1)
				sent := time.Now()
				sendCancel(t, via.Addr, pid, secret)
				wantCanceled(t, <-done, time.Since(sent))
				gotA, gotVia := scrapeCancels(t, a).minus(beforeA), scrapeCancels(t, via).minus(beforeVia)
				if via == a {
					if gotA != (cancelCounts{client: 1, delivered: 1}) {
						t.Errorf("%s on the owner: counts %+v", db, gotA)
					}
					continue
				}
				if gotVia != (cancelCounts{client: 1, forwarded: 1}) {
					t.Errorf("%s via %s: counts %+v, want one client request forwarded", db, via.Addr, gotVia)
				}
				if gotA != (cancelCounts{peer: 1, delivered: 1}) {
					t.Errorf("%s: owner's counts %+v, want one peer request delivered", db, gotA)
				}
			}
		}
	})

	t.Run("nothing else is cancelled", func(t *testing.T) {
		target := connectReplica(t, a, peerTransactionDB)
		pid, secret := target.PgConn().PID(), append([]byte(nil), target.PgConn().SecretKey()...)
		stale := connectReplica(t, a, peerSessionDB)
		stalePID, staleSecret := stale.PgConn().PID(), stale.PgConn().SecretKey()
		stale.Close(context.Background())

		var sleeps []<-chan error
		for _, g := range gws {
			for _, db := range []string{peerSessionDB, peerTransactionDB} {
				sleeps = append(sleeps, sleeper(connectReplica(t, g, db), 3))
			}
		}
		sleeps = append(sleeps, sleeper(target, 3))
		waitSleeping(t, len(sleeps))
		start := time.Now()
		before := [3]cancelCounts{scrapeCancels(t, a), scrapeCancels(t, b), scrapeCancels(t, c)}

		forged := append([]byte(nil), secret...)
		forged[3] ^= 1
		sendCancel(t, b.Addr, pid, forged)            // forwarded to a, which ignores it
		sendCancel(t, b.Addr, stalePID, staleSecret)  // forwarded to a: no such session
		sendCancel(t, b.Addr, pid&^(3<<29), secret)   // hops 0 for a: never forwarded
		sendCancel(t, a.Addr, pid, append(secret, 0)) // 5 bytes: a 3.0 session's is 4
		sendCancel(t, a.Addr, pid, make([]byte, 32))  // 3.0 session, 32-byte secret
		sendCancel(t, a.Addr, pid|1<<31, secret)      // no key has the top bit
		const random = 20
		ids := map[uint16]bool{peers.ID(a.Addr): true, peers.ID(b.Addr): true}
		for sent := 0; sent < random; {
			var k [8]byte
			rand.Read(k[:])
			pid := binary.BigEndian.Uint32(k[:4]) &^ (1 << 31)
			if ids[uint16(pid>>16&0x1fff)] {
				continue // a key of a or b could be forwarded
			}
			sendCancel(t, c.Addr, pid, k[4:])
			sent++
		}
		if took := time.Since(start); took > 2*time.Second {
			t.Fatalf("sending the cancels took %v: the sleepers may have ended before", took)
		}
		for i, done := range sleeps {
			if err := <-done; err != nil {
				t.Errorf("sleeper %d: %v", i, err)
			}
		}
		got := [3]cancelCounts{scrapeCancels(t, a).minus(before[0]), scrapeCancels(t, b).minus(before[1]), scrapeCancels(t, c).minus(before[2])}
		if got[0].delivered != 0 || got[1].delivered != 0 || got[2].delivered != 0 {
			t.Errorf("delivered: %+v", got)
		}
		if got[1].forwarded != 2 || got[1].ignored != 1 || got[1].client != 2 || got[1].peer != 1 {
			t.Errorf("b: %+v, want 2 client requests forwarded, 1 with hops 0 (counted from a peer) ignored", got[1])
		}
		if got[0].peer != 2 || got[0].client != 3 || got[0].ignored != 5 {
			t.Errorf("a: %+v, want 2 requests from b and 3 from clients, all ignored", got[0])
		}
		if got[2].client+got[2].peer != random || got[2].ignored != random {
			t.Errorf("c: %+v, want %d requests, all ignored", got[2], random)
		}
	})

	t.Run("protocol 3.2", func(t *testing.T) {
		// A driver's context cancel dials the address it is connected to:
		// the dialer plays the load balancer, sending the cancel to b.
		var dials atomic.Int32
		cfg, err := pgx.ParseConfig(replicaURL(a, peerTransactionDB, "&max_protocol_version=3.2"))
		if err != nil {
			t.Fatal(err)
		}
		// The cancel request, not just a deadline, on a context's end.
		cfg.BuildContextWatcherHandler = func(c *pgconn.PgConn) ctxwatch.Handler {
			return &pgconn.CancelRequestContextWatcherHandler{Conn: c, DeadlineDelay: 5 * time.Second}
		}
		cfg.DialFunc = func(ctx context.Context, network, addr string) (net.Conn, error) {
			if dials.Add(1) > 1 {
				addr = b.Addr
			}
			var d net.Dialer
			return d.DialContext(ctx, network, addr)
		}
		conn, err := pgx.ConnectConfig(testCtx(t, 30*time.Second), cfg)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close(context.Background())
		if n := len(conn.PgConn().SecretKey()); n != 32 {
			t.Fatalf("protocol 3.2 secret: %d bytes, want 32", n)
		}
		before := scrapeCancels(t, a)
		ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
		defer cancel()
		start := time.Now()
		_, err = conn.Exec(ctx, "select pg_sleep(30)")
		if err == nil || time.Since(start) > 5*time.Second {
			t.Fatalf("context cancel: %v after %v", err, time.Since(start))
		}
		if dials.Load() < 2 {
			t.Fatal("the driver sent no cancel request")
		}
		waitFor(t, 5*time.Second, func() bool {
			got := scrapeCancels(t, a).minus(before)
			return got.delivered == 1 && got.peer == 1
		}, "the owner counts one peer request delivered")
		// The statement was stopped upstream: the session goes on.
		var one int
		if err := conn.QueryRow(testCtx(t, 10*time.Second), "select 1").Scan(&one); err != nil && !conn.IsClosed() {
			t.Fatalf("after the cancel: %v", err)
		}
	})

	t.Run("late cancel cancels nothing", func(t *testing.T) {
		for _, db := range []string{peerSessionDB, peerTransactionDB} {
			conn := connectReplica(t, a, db)
			pid, secret := conn.PgConn().PID(), conn.PgConn().SecretKey()
			if _, err := conn.Exec(testCtx(t, 10*time.Second), "select 1"); err != nil {
				t.Fatal(err)
			}
			// The statement ended: its cancel, through either replica,
			// finds the session idle and must not hit the next one.
			before := scrapeCancels(t, a)
			sendCancel(t, b.Addr, pid, secret)
			sendCancel(t, a.Addr, pid, secret)
			if got := scrapeCancels(t, a).minus(before); got.delivered != 2 {
				t.Fatalf("%s: owner's counts %+v, want both delivered", db, got)
			}
			time.Sleep(200 * time.Millisecond) // a cancel sent upstream would have landed
			if _, err := conn.Exec(testCtx(t, 10*time.Second), "select pg_sleep(0.5)"); err != nil {
				t.Fatalf("%s: the statement after a late cancel: %v", db, err)
			}
			// In a transaction block the upstream stays attached while idle.
			tx, err := conn.Begin(testCtx(t, 10*time.Second))
			if err != nil {
				t.Fatal(err)
			}
			sendCancel(t, b.Addr, pid, secret)
			time.Sleep(200 * time.Millisecond)
			if _, err := tx.Exec(testCtx(t, 10*time.Second), "select pg_sleep(0.5)"); err != nil {
				t.Fatalf("%s: the statement after a cancel while idle in a transaction: %v", db, err)
			}
			if err := tx.Commit(testCtx(t, 10*time.Second)); err != nil {
				t.Fatal(err)
			}
		}
	})
}

// TestCancelPeerDown: forwards to a peer that is down fail fast and are
// counted as failed; the client still sees its connection close.
func TestCancelPeerDown(t *testing.T) {
	gws, addrs := startSomeReplicas(t, 2, 1)
	a, down := gws[0], addrs[1]
	pid := uint32(1)<<29 | uint32(peers.ID(down))<<16 | 77
	secret := []byte{1, 2, 3, 4}
	before := scrapeCancels(t, a)
	var wg sync.WaitGroup
	for range 3 {
		wg.Go(func() {
			took, err := trySendCancel(a.Addr, pid, secret)
			if err != nil || took > 3*time.Second {
				t.Errorf("a cancel for a replica that is down: %v after %v", err, took)
			}
		})
	}
	wg.Wait()
	if got := scrapeCancels(t, a).minus(before); got.failed != 3 || got.client != 3 {
		t.Fatalf("counts %+v, want 3 failed", got)
	}
}

// waitFor polls ok until it holds or d has passed.
func waitFor(t *testing.T, d time.Duration, ok func() bool, what string) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("not within %v: %s", d, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestCancelPeersReload: a reload that drops a replica from
// peers.addresses keeps forwarding to it while it may still drain; one
// that lists it again goes on forwarding; peers.self stays as started.
func TestCancelPeersReload(t *testing.T) {
	gws := startReplicas(t, 2)
	a, b := gws[0], gws[1]
	conn := connectReplica(t, b, peerTransactionDB)
	pid, secret := conn.PgConn().PID(), conn.PgConn().SecretKey()
	reload := func(addrs []string, self string) []string {
		t.Helper()
		cfg := *a.Config()
		cfg.Peers.Addresses, cfg.Peers.Self = addrs, self
		changes, err := a.Reload(testCtx(t, 30*time.Second), &cfg)
		if err != nil {
			t.Fatal(err)
		}
		return changes
	}
	changes := reload([]string{a.Addr}, "127.0.0.1:1")
	if !slices.ContainsFunc(changes, func(c string) bool {
		return strings.Contains(c, "peers.self") && strings.Contains(c, "needs a restart")
	}) {
		t.Errorf("changes %q do not say that peers.self needs a restart", changes)
	}
	if got := a.Config().Peers.Self; got != a.Addr {
		t.Errorf("peers.self in force: %q, want %q", got, a.Addr)
	}
	// A replica dropped from the list may still be draining its sessions:
	// it stays a peer for peers.KeepDeparted (internal/peers tests its
	// expiry with a clock of their own).
	time.Sleep(100 * time.Millisecond) // the reload's refresh runs in the background
	beforeA, beforeB := scrapeCancels(t, a), scrapeCancels(t, b)
	sendCancel(t, a.Addr, pid, secret)
	if da, db := scrapeCancels(t, a).minus(beforeA), scrapeCancels(t, b).minus(beforeB); da.forwarded != 1 || db.delivered != 1 {
		t.Errorf("a key of a replica just dropped from peers.addresses: forwarded %v, delivered %v; want it still forwarded", da.forwarded, db.delivered)
	}

	reload([]string{a.Addr, b.Addr}, a.Addr)
	waitFor(t, 5*time.Second, func() bool {
		beforeA, beforeB := scrapeCancels(t, a), scrapeCancels(t, b)
		sendCancel(t, a.Addr, pid, secret)
		return scrapeCancels(t, a).minus(beforeA).forwarded == 1 && scrapeCancels(t, b).minus(beforeB).delivered == 1
	}, "a key of a replica listed again is forwarded to it")
}

// TestCancelWhileDraining: a replica that drains (its orchestrator has
// taken it out of the load balancer and of DNS, then sent SIGTERM) keeps
// serving the cancels of its sessions still running, forwarded by a peer,
// refuses new clients with 57P03, and stops listening once its last
// session has ended.
func TestCancelWhileDraining(t *testing.T) {
	gws := startReplicas(t, 2)
	a, b := gws[0], gws[1]
	conn := connectReplica(t, b, peerTransactionDB)
	pid, secret := conn.PgConn().PID(), conn.PgConn().SecretKey()
	ctx := testCtx(t, time.Minute)
	if _, err := conn.Exec(ctx, "begin"); err != nil {
		t.Fatal(err)
	}
	done := sleeper(conn, 30)
	waitSleeping(t, 1)

	shut := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		shut <- b.Shutdown(ctx)
	}()
	waitFor(t, 5*time.Second, b.Server.Draining, "the replica drains")

	_, err := pgx.Connect(ctx, replicaURL(b, peerTransactionDB, ""))
	var pe *pgconn.PgError
	if !errors.As(err, &pe) || pe.Code != pgerrcode.CannotConnectNow {
		t.Fatalf("a new client of a draining replica: %v, want FATAL 57P03", err)
	}

	start := time.Now()
	sendCancel(t, a.Addr, pid, secret)
	wantCanceled(t, <-done, time.Since(start))

	// A connection that sends nothing (it could hold its startup for
	// limits.startup_timeout) must not hold the drain up once the last
	// session has ended.
	idle, err := net.Dial("tcp", b.Addr)
	if err != nil {
		t.Fatal(err)
	}
	defer idle.Close()
	if _, err := conn.Exec(ctx, "rollback"); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-shut:
		if err != nil {
			t.Fatalf("shutdown: %v", err)
		}
	case <-time.After(3 * time.Second):
		t.Fatal("the drain did not end 3s after the last transaction")
	}
	if c, err := net.DialTimeout("tcp", b.Addr, time.Second); err == nil {
		c.Close()
		t.Fatal("the drained replica still listens")
	}
}
