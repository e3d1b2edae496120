package e2e

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// TestPlainUpstreamLoss: on a route to plain PostgreSQL, an upstream
// terminated while idle is never noticed by its client (the next query
// runs on another backend), and one terminated under a running statement
// fails that statement only.
func TestPlainUpstreamLoss(t *testing.T) {
	st := stackFor(t, stackPlain)
	ctx := testCtx(t, time.Minute)
	conn := connect(t, st, "")
	backend := func() string {
		t.Helper()
		var pid int
		if err := conn.QueryRow(ctx, "select pg_backend_pid()").Scan(&pid); err != nil {
			t.Fatalf("query through the gateway: %v", err)
		}
		return fmt.Sprint(pid)
	}
	terminate := func(pid string) {
		t.Helper()
		if out, err := st.PG.Psql(ctx, "postgres", "-Atqc", "select pg_terminate_backend("+pid+")"); err != nil {
			t.Fatalf("terminate backend %s: %v %s", pid, err, out)
		}
		// Wait until it is gone: its FATAL and close reached the gateway.
		for {
			out, err := st.PG.Psql(ctx, "postgres", "-Atqc", "select count(*) from pg_stat_activity where pid = "+pid)
			if err != nil {
				t.Fatal(err)
			}
			if out == "0\n" {
				return
			}
			time.Sleep(20 * time.Millisecond)
		}
	}

	for i := 0; i < 3; i++ {
		first := backend()
		terminate(first)
		if next := backend(); next == first {
			t.Fatalf("round %d: the query ran on terminated backend %s", i, first)
		}
	}

	// Under a running statement: that statement fails, the session goes on.
	pid := backend()
	done := make(chan error, 1)
	go func() {
		_, err := conn.Exec(ctx, "select pg_sleep(30)")
		done <- err
	}()
	for {
		out, err := st.PG.Psql(ctx, "postgres", "-Atqc", "select count(*) from pg_stat_activity where pid = "+pid+" and query like 'select pg_sleep%'")
		if err != nil {
			t.Fatal(err)
		}
		if out == "1\n" {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	terminate(pid)
	var pgErr *pgconn.PgError
	if err := <-done; !errors.As(err, &pgErr) {
		t.Fatalf("statement on a terminated upstream: %v, want an error with a SQLSTATE", err)
	}
	if next := backend(); next == pid {
		t.Fatalf("the query ran on terminated backend %s", pid)
	}
}

// TestPlainConcurrency: many clients share a small pool of plain upstreams
// with simple queries, prepared statements and transactions, so upstreams
// change hands between every transaction; every answer must be the
// client's own.
func TestPlainConcurrency(t *testing.T) {
	st := stackFor(t, stackPlain)
	ctx := testCtx(t, 2*time.Minute)
	setup := connect(t, st, "")
	if _, err := setup.Exec(ctx, "create table plain_counts (client int primary key, n int)"); err != nil {
		t.Fatal(err)
	}
	defer setup.Exec(context.Background(), "drop table plain_counts")

	const clients, rounds = 24, 40 // the route's pool holds 20
	var wg sync.WaitGroup
	errs := make(chan error, clients)
	for c := 0; c < clients; c++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			mode := execModes[c%len(execModes)]
			conn, err := pgx.Connect(ctx, st.URL("sslmode=disable&default_query_exec_mode="+modeParam(mode)))
			if err != nil {
				errs <- err
				return
			}
			defer conn.Close(context.Background())
			if _, err := conn.Exec(ctx, "insert into plain_counts values ($1, 0)", c); err != nil {
				errs <- err
				return
			}
			for r := 0; r < rounds; r++ {
				var echo int
				if err := conn.QueryRow(ctx, "select $1::int * 1000 + $2::int", c, r).Scan(&echo); err != nil || echo != c*1000+r {
					errs <- fmt.Errorf("client %d round %d: %d, %v", c, r, echo, err)
					return
				}
				err := pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
					_, err := tx.Exec(ctx, "update plain_counts set n = n + 1 where client = $1", c)
					return err
				})
				if err != nil {
					errs <- fmt.Errorf("client %d round %d: transaction: %v", c, r, err)
					return
				}
			}
			var n int
			if err := conn.QueryRow(ctx, "select n from plain_counts where client = $1", c).Scan(&n); err != nil || n != rounds {
				errs <- fmt.Errorf("client %d: counted %d, %v; want %d", c, n, err, rounds)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}
