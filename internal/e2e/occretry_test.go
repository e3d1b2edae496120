package e2e

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/dsqlgate/dsqlgate/config"
	"github.com/dsqlgate/dsqlgate/internal/harness"
)

// The gateway's retry of optimistic-concurrency failures against the
// emulator, which runs its sessions at REPEATABLE READ with a 10 ms
// lock_timeout: of two concurrent writers of a row one fails with 40001
// (OC000), as on DSQL.

// occWriters runs writers goroutines, each on its own connection made by
// dial, doing each autocommit UPDATE of the counter row; it returns the
// updates that succeeded and the errors by SQLSTATE.
func occWriters(t *testing.T, dial func() *pgx.Conn, table string, writers, each int) (ok int64, failed map[string]int) {
	t.Helper()
	conns := make([]*pgx.Conn, writers)
	for i := range conns {
		conns[i] = dial()
	}
	var okN atomic.Int64
	var mu sync.Mutex
	failed = map[string]int{}
	var wg sync.WaitGroup
	start := make(chan struct{})
	for _, c := range conns {
		wg.Go(func() {
			<-start
			for range each {
				ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
				_, err := c.Exec(ctx, "UPDATE "+table+" SET n = n + 1 WHERE id = 1")
				cancel()
				if err == nil {
					okN.Add(1)
					continue
				}
				code := "not a server error: " + err.Error()
				var pe *pgconn.PgError
				if errors.As(err, &pe) {
					code = pe.Code
				}
				mu.Lock()
				failed[code]++
				mu.Unlock()
			}
		})
	}
	close(start)
	wg.Wait()
	return okN.Load(), failed
}

// counterTable creates, through admin, a table named prefix and a
// number, holding one counter row (id 1, n 0), dropped after the test,
// and returns its name.
func counterTable(ctx context.Context, t *testing.T, admin *pgx.Conn, prefix string) string {
	t.Helper()
	table := fmt.Sprintf("%s_%d", prefix, time.Now().UnixNano()%1_000_000)
	if _, err := admin.Exec(ctx, "CREATE TABLE "+table+" (id int PRIMARY KEY, n int NOT NULL)"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { admin.Exec(context.Background(), "DROP TABLE "+table) })
	if _, err := admin.Exec(ctx, "INSERT INTO "+table+" VALUES (1, 0)"); err != nil {
		t.Fatal(err)
	}
	return table
}

// occCounter reads the counter of a counterTable.
func occCounter(t *testing.T, c *pgx.Conn, table string) int64 {
	t.Helper()
	var n int64
	if err := c.QueryRow(testCtx(t, 30*time.Second), "SELECT n FROM "+table+" WHERE id = 1").Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

func promCounter(c prometheus.Counter) float64 {
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		panic(err)
	}
	return m.GetCounter().GetValue()
}

// TestOCCRetryContention: writers hammering one row through the gateway
// see no error (their conflicts are retried, and the retries metric says
// so), and the row counts every update that succeeded; the same writers
// straight to the emulator see 40001s.
func TestOCCRetryContention(t *testing.T) {
	// The defaults (5 attempts in 2s) let one update in a few hundred
	// exhaust its attempts when 8 writers fight over one row; this stack
	// gives each more, so that none reaches the client.
	st, err := harness.StartStack(testCtx(t, 2*time.Minute), harness.StackOptions{
		Gateway: func(c *config.Config) {
			c.Routes[0].OCCRetry.MaxAttempts = 30
			c.Routes[0].OCCRetry.Budget = config.Duration(20 * time.Second)
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(st.Close)
	admin := connect(t, st, "")
	ctx := testCtx(t, time.Minute)
	table := counterTable(ctx, t, admin, "occ_counter")
	const writers, each = 8, 25
	retries := st.Gateway.Metrics.OCCRetriesTotal.WithLabelValues(harness.StackDatabase)
	before := promCounter(retries)

	exhausted := st.Gateway.Metrics.OCCRetriesExhaustedTotal.WithLabelValues(harness.StackDatabase)
	var ok int64
	for round := 0; round < 10 && promCounter(retries) == before; round++ {
		// Until the writers have conflicted at least once.
		n, failed := occWriters(t, func() *pgx.Conn { return connect(t, st, "") }, table, writers, each)
		if len(failed) > 0 || n != writers*each {
			t.Fatalf("through the gateway: %d updates succeeded, errors %v (%v exhausted their attempts); want %d and none",
				n, failed, promCounter(exhausted), writers*each)
		}
		ok += n
	}
	if got := occCounter(t, admin, table); got != ok {
		t.Fatalf("counter %d after %d successful updates", got, ok)
	}
	retried := promCounter(retries) - before
	t.Logf("through the gateway: %d updates, %v retries", ok, retried)
	if retried == 0 {
		t.Fatal("no retry counted: the writers did not conflict, the test proves nothing")
	}

	// Straight to the emulator, the same writers conflict.
	direct := func() *pgx.Conn {
		cfg, err := pgx.ParseConfig(directURL(st))
		if err != nil {
			t.Fatal(err)
		}
		directToEmulator(t, st)(cfg)
		c, err := pgx.ConnectConfig(testCtx(t, 30*time.Second), cfg)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close(context.Background()) })
		return c
	}
	base := occCounter(t, admin, table)
	var okDirect int64
	failedDirect := map[string]int{}
	for round := 0; round < 10 && failedDirect["40001"] == 0; round++ {
		n, failed := occWriters(t, direct, table, writers, each)
		okDirect += n
		for code, k := range failed {
			failedDirect[code] += k
		}
	}
	t.Logf("straight to the emulator: %d updates, errors %v", okDirect, failedDirect)
	if failedDirect["40001"] == 0 {
		t.Fatalf("straight to the emulator no writer conflicted (errors %v)", failedDirect)
	}
	if len(failedDirect) != 1 {
		t.Fatalf("straight to the emulator, errors other than 40001: %v", failedDirect)
	}
	if got := occCounter(t, admin, table) - base; got != okDirect {
		t.Fatalf("counter moved by %d after %d successful direct updates", got, okDirect)
	}
}

// TestOCCInteractiveNotRetried: a transaction whose statements come in
// separate round trips is never retried: the conflicting UPDATE gets the
// emulator's 40001, and no retry is counted.
func TestOCCInteractiveNotRetried(t *testing.T) {
	st := shared
	admin := connect(t, st, "")
	ctx := testCtx(t, time.Minute)
	table := counterTable(ctx, t, admin, "occ_interactive")
	retries := st.Gateway.Metrics.OCCRetriesTotal.WithLabelValues(harness.StackDatabase)
	before := promCounter(retries)

	a := connect(t, st, "")
	tx, err := a.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var n int
	if err := tx.QueryRow(ctx, "SELECT n FROM "+table+" WHERE id = 1").Scan(&n); err != nil {
		t.Fatal(err) // the transaction's snapshot is taken
	}
	if _, err := admin.Exec(ctx, "UPDATE "+table+" SET n = n + 1 WHERE id = 1"); err != nil {
		t.Fatalf("the concurrent autocommit update: %v", err)
	}
	_, err = tx.Exec(ctx, "UPDATE "+table+" SET n = n + 10 WHERE id = 1")
	var pe *pgconn.PgError
	if !errors.As(err, &pe) || pe.Code != "40001" {
		t.Fatalf("the interactive transaction's conflicting UPDATE: %v, want SQLSTATE 40001", err)
	}
	tx.Rollback(ctx)
	if d := promCounter(retries) - before; d != 0 {
		t.Fatalf("%v retries counted for an interactive transaction", d)
	}
	if got := occCounter(t, admin, table); got != 1 {
		t.Fatalf("counter %d, want 1 (the autocommit update only)", got)
	}
}
