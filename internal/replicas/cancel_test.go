//go:build replicas && linux

package replicas

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgconn/ctxwatch"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/dsqlgate/dsqlgate/internal/harness"
)

// Cancel scenarios' sizes.
const (
	cancelsPerClient = 200
	cancelWorkers    = 4               // cancels in flight at once
	cancelWithin     = time.Second     // from the cancel to the 57014
	cancelGiveUp     = 2 * time.Second // a cancel that missed: stop waiting
	cancelRequest    = 80877102        // the CancelRequest's request code
	hopsMask         = uint32(3) << 29 // the hops field of a cancel key's pid
)

// cancelMetrics are the cancel counters of one replica.
type cancelMetrics struct{ fromClients, fromPeers, delivered, forwarded, ignored, failed float64 }

func (b *bed) scrapeCancels(t *testing.T, r *replica) cancelMetrics {
	m := harness.Scrape(t, r.metrics)
	return cancelMetrics{
		fromClients: m[`dsqlgate_cancel_requests_received_total{source="client"}`],
		fromPeers:   m[`dsqlgate_cancel_requests_received_total{source="peer"}`],
		delivered:   m[`dsqlgate_cancel_requests_total{outcome="delivered"}`],
		forwarded:   m[`dsqlgate_cancel_requests_total{outcome="forwarded"}`],
		ignored:     m[`dsqlgate_cancel_requests_total{outcome="ignored"}`],
		failed:      m[`dsqlgate_cancel_requests_total{outcome="failed"}`],
	}
}

func (b *bed) scrapeAll(t *testing.T) []cancelMetrics {
	out := make([]cancelMetrics, len(b.replicas))
	for i, r := range b.replicas {
		out[i] = b.scrapeCancels(t, r)
	}
	return out
}

func (m cancelMetrics) minus(o cancelMetrics) cancelMetrics {
	return cancelMetrics{m.fromClients - o.fromClients, m.fromPeers - o.fromPeers, m.delivered - o.delivered,
		m.forwarded - o.forwarded, m.ignored - o.ignored, m.failed - o.failed}
}

// activity watches the stack's PostgreSQL for statements running.
type activity struct{ pool *pgxpool.Pool }

func (b *bed) activity(t *testing.T) *activity {
	pool, err := pgxpool.New(context.Background(), b.st.PG.URL("postgres"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	return &activity{pool}
}

// waitRunning waits until PostgreSQL runs a statement whose text holds
// marker: the cancel then finds it in flight, not queued.
func (a *activity) waitRunning(ctx context.Context, marker string) error {
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		var n int
		err := a.pool.QueryRow(ctx, `select count(*) from pg_stat_activity
			where state = 'active' and pid <> pg_backend_pid() and strpos(query, $1) > 0`, marker).Scan(&n)
		if err != nil {
			return err
		}
		if n > 0 {
			return nil
		}
		time.Sleep(10 * time.Millisecond)
	}
	return fmt.Errorf("no statement with %q running after 10s", marker)
}

// cancels: 200 cancels from psql (SIGINT: psql sends the CancelRequest to
// the address it connected to, HAProxy, which gives it to any replica) and
// 200 from pgx (context cancel, likewise to HAProxy). Each must end its
// statement with 57014 within a second, whichever replica the request
// lands on.
func (b *bed) cancels(t *testing.T) {
	act := b.activity(t)
	psql := filepath.Join(b.st.PG.BinDir(), "psql")
	clients := []struct {
		name string
		run  func(ctx context.Context, marker string) (time.Duration, error)
	}{
		{"psql", func(ctx context.Context, marker string) (time.Duration, error) {
			return b.psqlCancel(ctx, act, psql, marker)
		}},
		{"pgx", func(ctx context.Context, marker string) (time.Duration, error) { return b.pgxCancel(ctx, act, marker) }},
	}
	for _, c := range clients {
		before := b.scrapeAll(t)
		ok, slowest, errs := runCancels(c.name, c.run)
		after := b.scrapeAll(t)
		t.Logf("%s: %d/%d cancels ended with 57014 within %s (slowest %s)", c.name, ok, cancelsPerClient, cancelWithin, slowest.Round(time.Millisecond))
		var sum cancelMetrics
		for i := range b.replicas {
			d := after[i].minus(before[i])
			t.Logf("  r%d: landed %.0f (delivered here %.0f, forwarded %.0f), from peers %.0f, ignored %.0f, failed %.0f",
				i+1, d.fromClients, d.delivered-d.fromPeers, d.forwarded, d.fromPeers, d.ignored, d.failed)
			sum.fromClients += d.fromClients
			sum.fromPeers += d.fromPeers
			sum.delivered += d.delivered
			sum.forwarded += d.forwarded
		}
		if ok != cancelsPerClient {
			t.Errorf("%s: %d of %d cancels failed; first: %v", c.name, cancelsPerClient-ok, cancelsPerClient, errs)
		}
		// Every request lands on one replica, which delivers it or
		// forwards it once to the replica that delivers it.
		if sum.fromClients != cancelsPerClient || sum.delivered != cancelsPerClient || sum.forwarded != sum.fromPeers {
			t.Errorf("%s: the replicas count %.0f requests from clients, %.0f delivered, %.0f forwarded, %.0f from peers; want %d, %d, and forwarded = from peers",
				c.name, sum.fromClients, sum.delivered, sum.forwarded, sum.fromPeers, cancelsPerClient, cancelsPerClient)
		}
	}
}

// runCancels runs cancelsPerClient cancels with run, cancelWorkers at a
// time, and returns how many succeeded, the slowest, and the first few
// failures.
func runCancels(name string, run func(ctx context.Context, marker string) (time.Duration, error)) (int, time.Duration, []error) {
	var (
		next, ok atomic.Int64
		mu       sync.Mutex
		slowest  time.Duration
		errs     []error
		wg       sync.WaitGroup
	)
	for range cancelWorkers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := next.Add(1); i <= cancelsPerClient; i = next.Add(1) {
				ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
				marker := fmt.Sprintf("cancel-%s-%d-%s", name, i, randomHex(4))
				took, err := run(ctx, marker)
				cancel()
				mu.Lock()
				if err == nil && took > cancelWithin {
					err = fmt.Errorf("%s: 57014 came %s after the cancel", marker, took)
				}
				if err != nil {
					if len(errs) < 5 {
						errs = append(errs, err)
					}
				} else {
					ok.Add(1)
				}
				slowest = max(slowest, took)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	return int(ok.Load()), slowest, errs
}

// psqlCancel runs `select pg_sleep(30)` in psql through HAProxy, sends
// psql SIGINT once the statement runs, and returns how long psql took to
// report 57014 and exit.
func (b *bed) psqlCancel(ctx context.Context, act *activity, psql, marker string) (time.Duration, error) {
	var out bytes.Buffer
	cmd := exec.CommandContext(ctx, psql, "-X", "-v", "VERBOSITY=verbose", "-d", b.url(b.lb, ""),
		"-c", fmt.Sprintf("select pg_sleep(30), '%s'", marker))
	cmd.Env = append(os.Environ(), "PGCONNECT_TIMEOUT=10")
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		return 0, err
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	if err := act.waitRunning(ctx, marker); err != nil {
		cmd.Process.Kill()
		<-done
		return 0, fmt.Errorf("%s: %w; psql: %s", marker, err, out.String())
	}
	start := time.Now()
	cmd.Process.Signal(syscall.SIGINT)
	select {
	case <-done:
	case <-time.After(cancelGiveUp):
		cmd.Process.Kill()
		<-done
		return time.Since(start), fmt.Errorf("%s: psql still runs %s after SIGINT", marker, cancelGiveUp)
	}
	took := time.Since(start)
	if !strings.Contains(out.String(), "57014") {
		return took, fmt.Errorf("%s: psql after SIGINT: %s", marker, strings.TrimSpace(out.String()))
	}
	return took, nil
}

// pgxConfig is a pgx configuration for addr whose context cancel sends a
// CancelRequest (to addr) and waits for the server's answer, closing the
// connection when none comes within cancelGiveUp.
func (b *bed) pgxConfig(addr string) (*pgx.ConnConfig, error) {
	cfg, err := pgx.ParseConfig(b.url(addr, ""))
	if err != nil {
		return nil, err
	}
	cfg.BuildContextWatcherHandler = func(pc *pgconn.PgConn) ctxwatch.Handler {
		return &pgconn.CancelRequestContextWatcherHandler{Conn: pc, DeadlineDelay: cancelGiveUp}
	}
	return cfg, nil
}

// pgxCancel runs `select pg_sleep(30)` on a new pgx connection through
// HAProxy, cancels its context once the statement runs, and returns how
// long the 57014 took.
func (b *bed) pgxCancel(ctx context.Context, act *activity, marker string) (time.Duration, error) {
	cfg, err := b.pgxConfig(b.lb)
	if err != nil {
		return 0, err
	}
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return 0, err
	}
	defer conn.Close(context.Background())
	qctx, cancel := context.WithCancel(ctx)
	defer cancel()
	done := make(chan error, 1)
	go func() { _, err := conn.Exec(qctx, fmt.Sprintf("select pg_sleep(30), '%s'", marker)); done <- err }()
	if err := act.waitRunning(ctx, marker); err != nil {
		return 0, fmt.Errorf("%s: %w", marker, err)
	}
	start := time.Now()
	cancel()
	err = <-done
	took := time.Since(start)
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) || pgErr.Code != "57014" {
		return took, fmt.Errorf("%s: after the cancel: %v, want 57014", marker, err)
	}
	return took, nil
}

// liveKey is a session's cancel key and the replica that issued it.
type liveKey struct {
	r      int // index in bed.replicas
	pid    uint32
	secret []byte
}

// forgedKeys: while sessions on every replica sleep 3s, CancelRequests
// with random keys, a live pid with a wrong secret, keys of sessions
// already closed, a live key with its hops at 0 sent to a replica that
// did not issue it, and malformed packets, through HAProxy and to each
// replica directly. Every sleep completes, and the replicas count the
// requests as ignored.
func (b *bed) forgedKeys(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	act := b.activity(t)
	var stale, live []liveKey
	var conns []*pgx.Conn
	for i, r := range b.replicas {
		for range 3 {
			cfg, err := b.pgxConfig(r.addr)
			if err != nil {
				t.Fatal(err)
			}
			c, err := pgx.ConnectConfig(ctx, cfg)
			if err != nil {
				t.Fatal(err)
			}
			live = append(live, liveKey{i, c.PgConn().PID(), c.PgConn().SecretKey()})
			conns = append(conns, c)
			t.Cleanup(func() { c.Close(context.Background()) })
		}
		c := b.connect(t, r.addr)
		stale = append(stale, liveKey{i, c.PgConn().PID(), c.PgConn().SecretKey()})
		c.Close(ctx)
	}
	before := b.scrapeAll(t)

	type result struct {
		took time.Duration
		err  error
	}
	results := make(chan result, len(conns))
	for i, c := range conns {
		marker := fmt.Sprintf("forged-%d-%s", i, randomHex(4))
		go func() {
			start := time.Now()
			_, err := c.Exec(ctx, fmt.Sprintf("select pg_sleep(3), '%s'", marker))
			results <- result{time.Since(start), err}
		}()
		if err := act.waitRunning(ctx, marker); err != nil {
			t.Fatal(err)
		}
	}
	sendStart := time.Now()
	all := append([]*replica{{addr: b.lb}}, b.replicas...)
	var sent int
	send := func(addr string, pkt []byte) {
		t.Helper()
		if err := sendRaw(addr, pkt); err != nil {
			t.Errorf("send a CancelRequest to %s: %v", addr, err)
		}
		sent++
	}
	for _, r := range all {
		for range 5 {
			send(r.addr, cancelPacket(randomUint32()&^(1<<31), randomBytes(4)))
		}
		for _, k := range live {
			send(r.addr, cancelPacket(k.pid, flip(k.secret)))
		}
		for _, k := range stale {
			send(r.addr, cancelPacket(k.pid, k.secret))
		}
		for _, pkt := range malformedCancels() {
			send(r.addr, pkt)
		}
	}
	for _, k := range live {
		for j, r := range b.replicas {
			if j != k.r {
				send(r.addr, cancelPacket(k.pid&^hopsMask, k.secret))
			}
		}
	}
	sending := time.Since(sendStart)
	for range conns {
		res := <-results
		if res.err != nil || res.took < 3*time.Second {
			t.Errorf("a pg_sleep(3) under forged cancels: %v after %s, want success after 3s", res.err, res.took)
		}
	}
	t.Logf("%d forged, stale, hop-0 and malformed CancelRequests in %s while %d sessions slept: every sleep completed", sent, sending.Round(time.Millisecond), len(conns))
	if sending > 2500*time.Millisecond {
		t.Errorf("sending the forged requests took %s: some arrived after the sleeps ended", sending)
	}
	after := b.scrapeAll(t)
	for i := range b.replicas {
		d := after[i].minus(before[i])
		t.Logf("  r%d: from clients %.0f, from peers %.0f, ignored %.0f, delivered %.0f, forwarded %.0f, failed %.0f",
			i+1, d.fromClients, d.fromPeers, d.ignored, d.delivered, d.forwarded, d.failed)
		if d.ignored == 0 {
			t.Errorf("r%d: the ignored counter did not move", i+1)
		}
		if d.delivered != 0 {
			t.Errorf("r%d: %.0f forged requests delivered", i+1, d.delivered)
		}
	}
}

// malformedCancels are CancelRequests a parser must refuse: too short,
// shorter than their length says, a key over protocol 3.2's 256 bytes, a
// length of 2 GiB.
func malformedCancels() [][]byte {
	head := func(length uint32, rest ...byte) []byte {
		b := binary.BigEndian.AppendUint32(nil, length)
		b = binary.BigEndian.AppendUint32(b, cancelRequest)
		return append(b, rest...)
	}
	return [][]byte{
		head(8),
		head(12, 0, 0, 0, 1),
		head(16, 0, 0, 0, 1),                 // says 16, sends 12
		head(12+257, make([]byte, 4+257)...), // key of 257 bytes
		head(0x7fffffff, 1, 2, 3, 4),
	}
}

// cancelPacket is a CancelRequest for pid and secret.
func cancelPacket(pid uint32, secret []byte) []byte {
	b := binary.BigEndian.AppendUint32(nil, uint32(12+len(secret)))
	b = binary.BigEndian.AppendUint32(b, cancelRequest)
	b = binary.BigEndian.AppendUint32(b, pid)
	return append(b, secret...)
}

// sendRaw writes pkt to a new connection to addr and waits for the server
// to close it, as a client's CancelRequest does.
func sendRaw(addr string, pkt []byte) error {
	c, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(2 * time.Second))
	if _, err := c.Write(pkt); err != nil {
		return err
	}
	c.(*net.TCPConn).CloseWrite()
	var buf [64]byte
	for {
		if _, err := c.Read(buf[:]); err != nil {
			if errors.Is(err, os.ErrDeadlineExceeded) {
				return fmt.Errorf("no close within 2s")
			}
			return nil
		}
	}
}

// flip is secret with every bit inverted: the right length, wrong value.
func flip(secret []byte) []byte {
	out := make([]byte, len(secret))
	for i, c := range secret {
		out[i] = ^c
	}
	return out
}

func randomBytes(n int) []byte {
	b := make([]byte, n)
	rand.Read(b)
	return b
}

func randomUint32() uint32 { return binary.BigEndian.Uint32(randomBytes(4)) }

func randomHex(n int) string { return fmt.Sprintf("%x", randomBytes(n)) }
