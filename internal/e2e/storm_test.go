package e2e

import (
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/dsqlgate/dsqlgate/config"
	"github.com/dsqlgate/dsqlgate/internal/dsqlsim"
	"github.com/dsqlgate/dsqlgate/internal/harness"
)

// TestConnectionStorm: 200 clients connect, query and disconnect in a loop
// for 30 seconds while upstreams retire every couple of seconds. The
// emulator enforces a connection limit equal to the pool size and a
// connection rate equal to the gateway's dial rate, so one dial too many
// or too fast would be refused (53300, 53400) and counted; none may be.
func TestConnectionStorm(t *testing.T) {
	if testing.Short() {
		t.Skip("30-second storm")
	}
	const (
		clients  = 200
		poolSize = 10
		dialRate = 20
	)
	duration := time.Duration(envSeconds("E2E_STORM_SECONDS", 30)) * time.Second
	ctx := testCtx(t, duration+2*time.Minute)
	st, err := harness.StartStack(ctx, harness.StackOptions{
		Emulator: func(c *dsqlsim.Config) {
			c.MaxConns = poolSize
			c.ConnRate = dialRate
			c.ConnBurst = dialRate
		},
		Gateway: func(c *config.Config) {
			p := &c.Routes[0].Pool
			p.Size = poolSize
			p.DialRate = dialRate
			p.MaxLifetime = config.Duration(2 * time.Second)
			p.LifetimeJitter = config.Duration(500 * time.Millisecond)
			p.IdleTimeout = config.Duration(time.Second)
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	pool := st.Gateway.Bridge.Route(harness.StackDatabase).Pool()

	start := time.Now()
	deadline := start.Add(duration)
	var sessions, failures atomic.Int64
	var firstErr atomic.Value
	var maxGateway, maxEmulator atomic.Int64
	stopSampling := make(chan struct{})
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		for {
			select {
			case <-stopSampling:
				return
			case <-time.After(5 * time.Millisecond):
			}
			if n := int64(pool.Stats().Open); n > maxGateway.Load() {
				maxGateway.Store(n)
			}
			if n := int64(len(st.Emulator.Sessions())); n > maxEmulator.Load() {
				maxEmulator.Store(n)
			}
		}
	}()
	var wg sync.WaitGroup
	for i := 0; i < clients; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for time.Now().Before(deadline) {
				conn, err := pgx.Connect(ctx, st.URL("sslmode=disable"))
				if err == nil {
					var v int
					err = conn.QueryRow(ctx, "select 1").Scan(&v)
					conn.Close(ctx)
				}
				if err != nil {
					failures.Add(1)
					firstErr.CompareAndSwap(nil, err)
					continue
				}
				sessions.Add(1)
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	close(stopSampling)
	<-sampled
	stats := st.Emulator.Stats()
	t.Logf("%d client sessions in %v, %d upstream dials, at most %d upstreams open (gateway) / %d (emulator)",
		sessions.Load(), elapsed.Round(time.Millisecond), stats.Accepted, maxGateway.Load(), maxEmulator.Load())
	if f := failures.Load(); f > 0 {
		t.Fatalf("%d client sessions failed, first: %v", f, firstErr.Load())
	}
	if stats.RateLimited != 0 || stats.ConnLimited != 0 {
		t.Fatalf("the emulator refused %d dials for rate and %d for count", stats.RateLimited, stats.ConnLimited)
	}
	if maxGateway.Load() > poolSize || maxEmulator.Load() > poolSize {
		t.Fatalf("more than %d upstreams open", poolSize)
	}
	if allowed := int64(dialRate) + int64(elapsed.Seconds()*dialRate) + 1; stats.Accepted > allowed {
		t.Fatalf("%d dials in %v, more than the %d the rate allows", stats.Accepted, elapsed, allowed)
	}
	if min := int64(duration / (2 * time.Second)); stats.Accepted < min {
		t.Fatalf("only %d dials: lifetimes were not exercised", stats.Accepted)
	}
}
