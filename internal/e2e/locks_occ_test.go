package e2e

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/dsqlgate/dsqlgate/internal/compat"
	"github.com/dsqlgate/dsqlgate/internal/gateway"
	"github.com/dsqlgate/dsqlgate/internal/harness"
	"github.com/dsqlgate/dsqlgate/internal/pgtest"
)

// startSecondGateway is secondGateway returning the gateway itself, so a
// test can read its lock manager's counters.
func startSecondGateway(t testing.TB, st *harness.Stack) (*gateway.Gateway, string) {
	t.Helper()
	cfg := *st.Gateway.Config()
	cfg.Listen = "127.0.0.1:0"
	gw, err := gateway.Start(testCtx(t, time.Minute), &cfg, gateway.Options{
		Credentials: credentials.StaticCredentialsProvider{Value: st.Credentials},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { gw.Close() })
	u, _ := url.Parse(st.URL("sslmode=disable"))
	u.Host = gw.Addr
	return gw, u.String()
}

func lockStats(gw *gateway.Gateway) compat.LockStats {
	return gw.Bridge.Route(harness.StackDatabase).Locks().Stats()
}

// TestAdvisoryLocksOCC: mutual exclusion through the lock table under
// DSQL's optimistic concurrency, across two gateways.
//
// Two independent gateway instances (the shared stack's and a second one,
// each with its own bridge, pools, lock manager and lock connection) run
// in this test process in front of the same emulator: in one process the
// race detector sees both, and the test reads each manager's counters;
// they share nothing but the cluster, as two processes would.
//
// Clients of both take the same few keys (session pg_advisory_lock and
// pg_try_advisory_lock with unlock, and pg_advisory_xact_lock and
// pg_try_advisory_xact_lock inside transactions) and, while holding one,
// increment the key's counter row by a read and a separate write, which
// loses updates unless the lock excludes the others. Meanwhile a
// disturber, straight on the emulator, keeps opening transactions that
// write the lock rows and roll back (a concurrent writer of the same
// rows, as another gateway's takeover or renewal is on DSQL), so the
// managers' statements meet 40001 (OC000) and must retry.
//
// It checks: each counter equals the number of critical sections on its
// key (no lost update: mutual exclusion held); no two clients were ever
// inside one key's section at once; every unlock found its lock held and
// no manager lost a lock; and write conflicts were met and retried (their
// count is logged).
func TestAdvisoryLocksOCC(t *testing.T) {
	const (
		perGateway = 6
		keys       = 3
		rounds     = 20
	)
	ctx := testCtx(t, 3*time.Minute)
	gw2, url2 := startSecondGateway(t, shared)
	gws := []*gateway.Gateway{shared.Gateway, gw2}
	urls := []string{shared.URL("sslmode=disable"), url2}

	base := time.Now().UnixNano() & 0xffffffff << 8 // keys of this run only
	counter := "locks_occ_" + pgtest.RandomHex(6)
	setup := connect(t, shared, "")
	if _, err := setup.Exec(ctx, "create table "+counter+" (id bigint primary key, n bigint not null)"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { setup.Exec(context.Background(), "drop table "+counter) })
	for k := range keys {
		if _, err := setup.Exec(ctx, "insert into "+counter+" values ($1, 0)", base+int64(k)); err != nil {
			t.Fatal(err)
		}
	}
	// Take a lock once so the lock table exists before the disturber
	// starts.
	if _, err := setup.Exec(ctx, "select pg_advisory_lock($1)", base-1); err != nil {
		t.Fatal(err)
	}
	setup.Exec(ctx, "select pg_advisory_unlock($1)", base-1)

	before := []compat.LockStats{lockStats(gws[0]), lockStats(gws[1])}

	stopDisturber := make(chan struct{})
	var disturbed atomic.Int64
	var disturberDone sync.WaitGroup
	disturberDone.Add(1)
	go func() {
		defer disturberDone.Done()
		disturb(t, ctx, base, keys, stopDisturber, &disturbed)
	}()

	var inside [keys]atomic.Int32
	var sections [keys]atomic.Int64
	var mu sync.Mutex
	var failures []string
	fail := func(format string, args ...any) {
		mu.Lock()
		failures = append(failures, fmt.Sprintf(format, args...))
		mu.Unlock()
	}
	var wg sync.WaitGroup
	for g := range gws {
		for c := range perGateway {
			extra := "&default_query_exec_mode=cache_statement"
			if c%2 == 0 {
				extra = "&default_query_exec_mode=simple_protocol"
			}
			conn, err := pgx.Connect(ctx, urls[g]+extra)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { conn.Close(context.Background()) })
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := range rounds {
					ki := (c + i + g) % keys
					key := base + int64(ki)
					mode := (c + i) % 4
					err := criticalSection(ctx, conn, mode, key, counter, func() error {
						if n := inside[ki].Add(1); n != 1 {
							return fmt.Errorf("%d clients inside the section of key %d at once", n, ki)
						}
						return nil
					}, func() { inside[ki].Add(-1) })
					if err != nil {
						fail("gateway %d client %d round %d mode %d: %v", g, c, i, mode, err)
						return
					}
					sections[ki].Add(1)
				}
			}()
		}
	}
	wg.Wait()
	close(stopDisturber)
	disturberDone.Wait()
	for _, f := range failures {
		t.Error(f)
	}
	var total int64
	for k := range keys {
		var n int64
		if err := setup.QueryRow(ctx, "select n from "+counter+" where id = $1", base+int64(k)).Scan(&n); err != nil {
			t.Fatal(err)
		}
		if n != sections[k].Load() {
			t.Errorf("key %d: counter %d after %d critical sections: updates were lost", k, n, sections[k].Load())
		}
		total += n
	}
	var conflicts, lost uint64
	for i, gw := range gws {
		s := lockStats(gw)
		conflicts += s.Conflicts - before[i].Conflicts
		lost += s.Lost - before[i].Lost
	}
	t.Logf("%d critical sections on %d keys through 2 gateways; lock-row writes by the disturber: %d; write conflicts (40001) met and retried by the lock managers: %d; locks lost: %d",
		total, keys, disturbed.Load(), conflicts, lost)
	if total != 2*perGateway*rounds {
		t.Errorf("%d critical sections, want %d", total, 2*perGateway*rounds)
	}
	if lost != 0 {
		t.Errorf("%d locks lost", lost)
	}
	if conflicts == 0 {
		t.Error("no write conflict was met: the test did not exercise the retries")
	}
}

// criticalSection takes key in one of four ways, runs enter, increments
// the counter row by a read and a separate write, runs leave and lets go.
func criticalSection(ctx context.Context, conn *pgx.Conn, mode int, key int64, counter string, enter func() error, leave func()) error {
	bump := func(tx pgx.Tx) error {
		if err := enter(); err != nil {
			return err
		}
		defer leave()
		var n int64
		var err error
		if tx != nil {
			err = tx.QueryRow(ctx, "select n from "+counter+" where id = $1", key).Scan(&n)
		} else {
			err = conn.QueryRow(ctx, "select n from "+counter+" where id = $1", key).Scan(&n)
		}
		if err != nil {
			return fmt.Errorf("read the counter: %w", err)
		}
		time.Sleep(time.Millisecond) // widen the window a lost update needs
		if tx != nil {
			_, err = tx.Exec(ctx, "update "+counter+" set n = $2 where id = $1", key, n+1)
		} else {
			_, err = conn.Exec(ctx, "update "+counter+" set n = $2 where id = $1", key, n+1)
		}
		if err != nil {
			return fmt.Errorf("write the counter: %w", err)
		}
		return nil
	}
	tryUntil := func(q func() (bool, error)) error {
		for {
			ok, err := q()
			if err != nil || ok {
				return err
			}
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(2 * time.Millisecond):
			}
		}
	}
	switch mode {
	case 0, 1: // session locks
		if mode == 0 {
			if _, err := conn.Exec(ctx, "select pg_advisory_lock($1)", key); err != nil {
				return fmt.Errorf("pg_advisory_lock: %w", err)
			}
		} else if err := tryUntil(func() (ok bool, err error) {
			err = conn.QueryRow(ctx, "select pg_try_advisory_lock($1)", key).Scan(&ok)
			return ok, err
		}); err != nil {
			return fmt.Errorf("pg_try_advisory_lock: %w", err)
		}
		berr := bump(nil)
		var released bool
		if err := conn.QueryRow(ctx, "select pg_advisory_unlock($1)", key).Scan(&released); err != nil {
			return errors.Join(berr, fmt.Errorf("pg_advisory_unlock: %w", err))
		}
		if !released {
			return errors.Join(berr, errors.New("pg_advisory_unlock found the lock not held: it was lost"))
		}
		return berr
	default: // transaction locks
		tx, err := conn.Begin(ctx)
		if err != nil {
			return err
		}
		defer tx.Rollback(context.Background())
		if mode == 2 {
			if _, err := tx.Exec(ctx, "select pg_advisory_xact_lock($1)", key); err != nil {
				return fmt.Errorf("pg_advisory_xact_lock: %w", err)
			}
		} else if err := tryUntil(func() (ok bool, err error) {
			err = tx.QueryRow(ctx, "select pg_try_advisory_xact_lock($1)", key).Scan(&ok)
			return ok, err
		}); err != nil {
			return fmt.Errorf("pg_try_advisory_xact_lock: %w", err)
		}
		if err := bump(tx); err != nil {
			return err
		}
		if err := tx.Commit(ctx); err != nil {
			return fmt.Errorf("commit: %w", err)
		}
		return nil
	}
}

// disturb, straight on the emulator, keeps writing the lock rows of the
// test's keys in transactions it holds open a moment and rolls back: a
// concurrent writer of those rows, so the lock managers' statements on
// them fail with 40001 and are retried. It changes nothing.
func disturb(t *testing.T, ctx context.Context, base int64, keys int, stop <-chan struct{}, count *atomic.Int64) {
	table := shared.Gateway.Config().Routes[0].Compat.AdvisoryLockTable
	if table == "" {
		table = "dsqlgate_advisory_locks"
	}
	cfg, err := pgx.ParseConfig(directURL(shared))
	if err != nil {
		t.Error(err)
		return
	}
	directToEmulator(t, shared)(cfg)
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		t.Error(err)
		return
	}
	defer conn.Close(context.Background())
	for i := 0; ; i++ {
		select {
		case <-stop:
			return
		default:
		}
		tx, err := conn.Begin(ctx)
		if err != nil {
			t.Error(err)
			return
		}
		tag, err := tx.Exec(ctx, "update "+table+" set expires_at = expires_at where space = 1 and key = $1", base+int64(i%keys))
		if err == nil && tag.RowsAffected() > 0 {
			count.Add(1)
			// Longer than the emulator's lock_timeout (10 ms): a manager's
			// write of the row meanwhile fails with 40001.
			time.Sleep(25 * time.Millisecond)
		}
		tx.Rollback(ctx)
		if err != nil && !strings.Contains(err.Error(), "40001") {
			t.Error(err)
			return
		}
		time.Sleep(30 * time.Millisecond)
	}
}

// TestLockTableOutOfReach: through the gateway, a client cannot name the
// advisory lock table (to delete others' locks or plant endless leases):
// 42501 with a hint, in both protocols, and inside a transaction the
// refusal aborts it like any error. The locks themselves still work.
func TestLockTableOutOfReach(t *testing.T) {
	ctx := testCtx(t, time.Minute)
	for _, mode := range []string{"simple_protocol", "cache_statement"} {
		conn := connect(t, shared, "sslmode=disable&default_query_exec_mode="+mode)
		for _, q := range []string{
			"delete from dsqlgate_advisory_locks",
			`update public."DSQLGATE_ADVISORY_LOCKS" set expires_at = 'infinity'`,
			`UPDATE U&"dsqlgate\005Fadvisory\005Flocks" SET expires_at = 'infinity'`,
			"select owner from Dsqlgate_Advisory_Locks",
		} {
			var err error
			if mode == "simple_protocol" {
				_, err = conn.Exec(ctx, q)
			} else {
				// Parse, Bind, Execute (pgx sends an Exec without
				// arguments as a simple query).
				err = conn.PgConn().ExecParams(ctx, q, nil, nil, nil, nil).Read().Err
			}
			var pgErr *pgconn.PgError
			if pgCode(err) == "42P01" && strings.Contains(q, "DSQLGATE") {
				continue // quoted upper case: another (missing) table, as in PostgreSQL
			}
			if pgCode(err) != "42501" || !errors.As(err, &pgErr) || pgErr.Hint == "" {
				t.Errorf("%s (%s): %v, want 42501 with a hint", q, mode, err)
			}
		}
		tx, err := conn.Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := tx.Exec(ctx, "delete from dsqlgate_advisory_locks"); pgCode(err) != "42501" {
			t.Fatalf("in a transaction: %v", err)
		}
		if _, err := tx.Exec(ctx, "select 1"); pgCode(err) != "25P02" {
			t.Fatalf("after the refusal: %v, want 25P02", err)
		}
		tx.Rollback(ctx)
		var ok bool
		if err := conn.QueryRow(ctx, "select pg_try_advisory_lock(424242)").Scan(&ok); err != nil || !ok {
			t.Fatalf("pg_try_advisory_lock: %v %v", ok, err)
		}
		conn.Exec(ctx, "select pg_advisory_unlock(424242)")
	}
}
