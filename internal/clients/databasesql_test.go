//go:build clients

package clients

import (
	"context"
	"crypto/tls"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgconn/ctxwatch"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/lib/pq"
)

// sqlDriver is what differs between the database/sql clients.
type sqlDriver struct {
	// open returns the pool.
	open func(tg target) (*sql.DB, error)
	// tlsInfo says how the session's connection is secured, or fails.
	tlsInfo func(c *sql.Conn) (string, error)
	// state is the SQLSTATE of an error from the driver, or "".
	state func(error) string
	// bulk inserts rows (id, payload) into the unqualified table bulk.
	bulk func(ctx context.Context, c *sql.Conn, n int) (string, error)
	// cancelEndsSession is set when the driver closes a connection whose
	// query's context ended, after it has sent the CancelRequest (lib/pq
	// does, by design).
	cancelEndsSession bool
}

// runPgxStdlib is database/sql through pgx's stdlib. On a cancelled
// context it sends a CancelRequest and keeps the connection (pgx's default
// closes the connection instead; an application that wants server-side
// cancel configures it like this).
func runPgxStdlib(ctx context.Context, tg target) report {
	return runDatabaseSQL(ctx, tg, "pgx/stdlib "+moduleVersion("github.com/jackc/pgx/v5"), sqlDriver{
		open: func(tg target) (*sql.DB, error) {
			cfg, err := pgx.ParseConfig(tg.URL)
			if err != nil {
				return nil, err
			}
			cfg.BuildContextWatcherHandler = cancelRequestOnContext
			return stdlib.OpenDB(*cfg), nil
		},
		tlsInfo: func(c *sql.Conn) (info string, err error) {
			err = c.Raw(func(dc any) error {
				nc := dc.(*stdlib.Conn).Conn().PgConn().Conn()
				tc, ok := nc.(*tls.Conn)
				if !ok {
					return fmt.Errorf("connection is %T, not TLS", nc)
				}
				info = tlsVersion(tc.ConnectionState().Version) + " verify-full"
				return nil
			})
			return info, err
		},
		state: sqlState,
		bulk: func(ctx context.Context, c *sql.Conn, n int) (string, error) {
			// database/sql has no COPY: a prepared INSERT in one
			// transaction, as applications do.
			tx, err := c.BeginTx(ctx, nil)
			if err != nil {
				return "", err
			}
			defer tx.Rollback()
			stmt, err := tx.PrepareContext(ctx, "insert into bulk (id, payload) values ($1, $2)")
			if err != nil {
				return "", err
			}
			for i := 1; i <= n; i++ {
				if _, err := stmt.ExecContext(ctx, i, fmt.Sprint("payload ", i)); err != nil {
					return "", fmt.Errorf("row %d: %w", i, err)
				}
			}
			return "prepared INSERT x1000 in one transaction (database/sql has no COPY)", tx.Commit()
		},
	})
}

// cancelRequestOnContext makes pgx answer a cancelled context with a
// CancelRequest, and close the connection only if the server has not
// answered 10 s later.
func cancelRequestOnContext(pc *pgconn.PgConn) ctxwatch.Handler {
	return &pgconn.CancelRequestContextWatcherHandler{Conn: pc, DeadlineDelay: 10 * time.Second}
}

// runLibPQ is lib/pq, which sends a CancelRequest when a query's context
// ends.
func runLibPQ(ctx context.Context, tg target) report {
	return runDatabaseSQL(ctx, tg, "lib/pq "+moduleVersion("github.com/lib/pq"), sqlDriver{
		open: func(tg target) (*sql.DB, error) { return sql.Open("postgres", tg.URL) },
		tlsInfo: func(c *sql.Conn) (string, error) {
			// lib/pq does not expose its net.Conn; sslmode=verify-full
			// fails rather than go without TLS.
			return "sslmode=verify-full", nil
		},
		cancelEndsSession: true,
		state: func(err error) string {
			var pqErr *pq.Error
			if errors.As(err, &pqErr) {
				return string(pqErr.Code)
			}
			return ""
		},
		bulk: func(ctx context.Context, c *sql.Conn, n int) (string, error) {
			tx, err := c.BeginTx(ctx, nil)
			if err != nil {
				return "", err
			}
			defer tx.Rollback()
			// lib/pq runs a prepared COPY … FROM STDIN as a copy: each Exec
			// sends a row, the Exec with no arguments ends it.
			stmt, err := tx.PrepareContext(ctx, "COPY bulk (id, payload) FROM STDIN")
			if err != nil {
				return "", err
			}
			for i := 1; i <= n; i++ {
				if _, err := stmt.ExecContext(ctx, i, fmt.Sprint("payload ", i)); err != nil {
					return "", fmt.Errorf("row %d: %w", i, err)
				}
			}
			if _, err := stmt.ExecContext(ctx); err != nil {
				return "", fmt.Errorf("end of COPY: %w", err)
			}
			if err := stmt.Close(); err != nil {
				return "", err
			}
			return "COPY FROM STDIN (a prepared COPY)", tx.Commit()
		},
	})
}

// runDatabaseSQL runs the scenario on a database/sql pool: the session is
// one *sql.Conn held from start to end.
func runDatabaseSQL(ctx context.Context, tg target, version string, drv sqlDriver) (rep report) {
	rep = report{version: version}
	var r recorder
	defer func() { rep.steps = r.steps }()

	db, err := drv.open(tg)
	if err != nil {
		r.fail(err.Error())
		return rep
	}
	defer db.Close()
	db.SetMaxOpenConns(3)
	var (
		conn    *sql.Conn // the session
		doubled *sql.Stmt // prepared on conn in prepared_reuse
		tq      = func(name string) string { return tg.Schema + "." + name }
	)
	defer func() {
		if doubled != nil {
			doubled.Close()
		}
		if conn != nil {
			conn.Close()
		}
	}()

	r.step(ctx, "connect_tls", func(ctx context.Context) (string, error) {
		var err error
		if conn, err = db.Conn(ctx); err != nil {
			return "", err
		}
		if err := conn.PingContext(ctx); err != nil {
			return "", err
		}
		info, err := drv.tlsInfo(conn)
		if err != nil {
			return "", err
		}
		for _, q := range createTables(tg.Schema) {
			if _, err := conn.ExecContext(ctx, q); err != nil {
				return "", fmt.Errorf("%s: %w", q, err)
			}
		}
		return info, nil
	})
	if conn == nil {
		r.fail("no connection")
		return rep
	}

	r.step(ctx, "param_query", func(ctx context.Context) (string, error) {
		var (
			sum   int64
			upper string
			flag  bool
			null  sql.NullString
		)
		err := conn.QueryRowContext(ctx, "select $1::int8 + $2::int8, upper($3::text) || ' ' || $4::text, $5::bool, $6::text",
			int64(40), int64(2), "dsql", "ünïcode", true, nil).Scan(&sum, &upper, &flag, &null)
		if err != nil {
			return "", err
		}
		var n int
		err2 := db.QueryRowContext(ctx, "select count(*) from "+tq("items")+" where id > $1 and name <> $2", 0, "x").Scan(&n)
		return "6 parameters incl. NULL", firstErr(err2, want("sum", sum, 42), want("text", upper, "DSQL ünïcode"),
			want("bool", flag, true), want("null", null.Valid, false))
	})

	r.step(ctx, "prepared_reuse", func(ctx context.Context) (string, error) {
		var err error
		if doubled, err = conn.PrepareContext(ctx, "select $1::int * 2, $2::text"); err != nil {
			return "", err
		}
		for i := range reuseCount {
			var n int
			var s string
			if err := doubled.QueryRowContext(ctx, i, fmt.Sprint(i)).Scan(&n, &s); err != nil {
				return "", fmt.Errorf("execution %d: %w", i, err)
			}
			if n != 2*i || s != fmt.Sprint(i) {
				return "", fmt.Errorf("execution %d: got %d %q", i, n, s)
			}
		}
		return fmt.Sprintf("Conn.PrepareContext, %d executions", reuseCount), nil
	})

	r.step(ctx, "tx_commit", func(ctx context.Context) (string, error) {
		tx, err := conn.BeginTx(ctx, nil)
		if err != nil {
			return "", err
		}
		defer tx.Rollback()
		for i := 1; i <= 3; i++ {
			if _, err := tx.ExecContext(ctx, "insert into "+tq("items")+" (id, name, qty) values ($1, $2, $3)", i, fmt.Sprint("item ", i), i*10); err != nil {
				return "", err
			}
		}
		if err := tx.Commit(); err != nil {
			return "", err
		}
		var n, sum int
		if err := db.QueryRowContext(ctx, "select count(*), sum(qty) from "+tq("items")).Scan(&n, &sum); err != nil {
			return "", err
		}
		return "3 rows", firstErr(want("rows", n, 3), want("sum", sum, 60))
	})

	r.step(ctx, "tx_rollback", func(ctx context.Context) (string, error) {
		tx, err := conn.BeginTx(ctx, nil)
		if err != nil {
			return "", err
		}
		defer tx.Rollback()
		if _, err := tx.ExecContext(ctx, "insert into "+tq("items")+" values ($1, $2, $3)", 100, "rolled back", 1); err != nil {
			return "", err
		}
		var inside, after int
		if err := tx.QueryRowContext(ctx, "select count(*) from "+tq("items")).Scan(&inside); err != nil {
			return "", err
		}
		if err := tx.Rollback(); err != nil {
			return "", err
		}
		if err := conn.QueryRowContext(ctx, "select count(*) from "+tq("items")).Scan(&after); err != nil {
			return "", err
		}
		return "", firstErr(want("rows inside", inside, 4), want("rows after", after, 3))
	})

	r.step(ctx, "error_recovery", func(ctx context.Context) (string, error) {
		_, err := conn.ExecContext(ctx, "insert into "+tq("items")+" values ($1, $2, $3)", 1, "duplicate", 0)
		if err := wantState("duplicate key", err, "23505", drv.state); err != nil {
			return "", err
		}
		var one int
		if err := conn.QueryRowContext(ctx, "select 1").Scan(&one); err != nil {
			return "", fmt.Errorf("after the error: %w", err)
		}
		tx, err := conn.BeginTx(ctx, nil)
		if err != nil {
			return "", err
		}
		defer tx.Rollback()
		_, err = tx.ExecContext(ctx, "select 1/0")
		if err := wantState("division by zero", err, "22012", drv.state); err != nil {
			return "", err
		}
		_, err = tx.ExecContext(ctx, "select 1")
		if err := wantState("in the failed transaction", err, "25P02", drv.state); err != nil {
			return "", err
		}
		if err := tx.Rollback(); err != nil {
			return "", err
		}
		var n int
		err = conn.QueryRowContext(ctx, "select count(*) from "+tq("items")).Scan(&n)
		return "23505, then 22012 and 25P02 in a transaction", firstErr(err, want("rows", n, 3))
	})

	r.step(ctx, "set_observed", func(ctx context.Context) (string, error) {
		for _, q := range []string{"SET search_path TO " + tg.Schema + ", public", "SET TimeZone TO '" + scenarioTZ + "'"} {
			if _, err := conn.ExecContext(ctx, q); err != nil {
				return "", fmt.Errorf("%s: %w", q, err)
			}
		}
		return checkSQLSettings(ctx, conn, tg)
	})

	r.step(ctx, "bulk_insert", func(ctx context.Context) (string, error) {
		detail, err := drv.bulk(ctx, conn, bulkRows)
		if err != nil {
			return "", err
		}
		var count, sum int
		if err := conn.QueryRowContext(ctx, "select count(*), sum(id) from bulk").Scan(&count, &sum); err != nil {
			return "", err
		}
		return detail, firstErr(want("count", count, bulkRows), want("sum", sum, bulkRows*(bulkRows+1)/2))
	})

	r.step(ctx, "cancel", func(ctx context.Context) (string, error) {
		qctx, cancel := context.WithCancel(ctx)
		defer cancel()
		timer := time.AfterFunc(cancelAfter, cancel)
		defer timer.Stop()
		start := time.Now()
		_, err := conn.ExecContext(qctx, "select pg_sleep(30)")
		took := time.Since(start)
		if err := wantState("pg_sleep(30)", err, "57014", drv.state); err != nil {
			return "", err
		}
		if took > cancelWithin {
			return "", fmt.Errorf("the cancel took %s", took)
		}
		detail := fmt.Sprintf("context cancel: 57014 after %s", took.Round(time.Millisecond))
		if drv.cancelEndsSession {
			// The driver has closed the session; the scenario goes on
			// on a new one, with the same settings and statement.
			if err := conn.PingContext(ctx); !errors.Is(err, driver.ErrBadConn) && !errors.Is(err, sql.ErrConnDone) {
				return "", fmt.Errorf("the driver kept the cancelled session (%v): the scenario needs to know", err)
			}
			conn.Close()
			doubled.Close()
			conn, doubled = nil, nil
			var err error
			if conn, err = db.Conn(ctx); err != nil {
				return "", fmt.Errorf("new session after the cancel: %w", err)
			}
			for _, q := range []string{"SET search_path TO " + tg.Schema + ", public", "SET TimeZone TO '" + scenarioTZ + "'"} {
				if _, err := conn.ExecContext(ctx, q); err != nil {
					return "", fmt.Errorf("%s: %w", q, err)
				}
			}
			if doubled, err = conn.PrepareContext(ctx, "select $1::int * 2, $2::text"); err != nil {
				return "", err
			}
			detail += "; the driver closes a cancelled session (its design), a new one was opened"
		}
		if _, err := checkSQLSettings(ctx, conn, tg); err != nil {
			return "", fmt.Errorf("after the cancel: %w", err)
		}
		return detail, nil
	})

	r.step(ctx, "survive_replacement", func(ctx context.Context) (string, error) {
		byID, err := conn.PrepareContext(ctx, "select name from items where id = $1")
		if err != nil {
			return "", err
		}
		defer byID.Close()
		var name string
		if err := byID.QueryRowContext(ctx, 2).Scan(&name); err != nil {
			return "", fmt.Errorf("before the kill: %w", err)
		}
		if err := killAll(ctx, tg); err != nil {
			return "", err
		}
		if _, err := checkSQLSettings(ctx, conn, tg); err != nil {
			return "", fmt.Errorf("after the kill: %w", err)
		}
		var n int
		var s string
		err1 := byID.QueryRowContext(ctx, 3).Scan(&name)
		err2 := doubled.QueryRowContext(ctx, 21, "x").Scan(&n, &s)
		if err := firstErr(err1, err2); err != nil {
			return "", fmt.Errorf("prepared statements after the kill: %w", err)
		}
		return "search_path, TimeZone, 2 prepared statements", firstErr(want("item 3", name, "item 3"), want("doubled", n, 42))
	})
	return rep
}

// checkSQLSettings checks that the session sees the scenario's
// search_path and TimeZone. A session that was silently replaced (a
// database/sql retry on a new connection) fails here.
func checkSQLSettings(ctx context.Context, conn *sql.Conn, tg target) (string, error) {
	var (
		n                   int
		path, tz, ts, shown string
	)
	if err := conn.QueryRowContext(ctx, "select count(*) from items").Scan(&n); err != nil {
		return "", fmt.Errorf("unqualified table: %w", err)
	}
	if err := conn.QueryRowContext(ctx, "select current_setting('search_path'), current_setting('TimeZone')").Scan(&path, &tz); err != nil {
		return "", err
	}
	if err := conn.QueryRowContext(ctx, timestampQuery).Scan(&ts); err != nil {
		return "", err
	}
	if err := conn.QueryRowContext(ctx, "SHOW TimeZone").Scan(&shown); err != nil {
		return "", err
	}
	return "search_path, TimeZone", firstErr(
		want("rows in items", n, 3),
		want("search_path", path, tg.Schema+", public"),
		want("TimeZone", tz, scenarioTZ),
		want("SHOW TimeZone", shown, scenarioTZ),
		want("timestamptz text", ts, timestampNY))
}
