package dsqlsim_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dsqlgate/dsqlgate/internal/dsqlsim"
	"github.com/jackc/pgx/v5/pgconn"
)

// The fidelity tests of DSQL's concurrency model, transaction limits and
// DDL rules, as a client meets them through the emulator. Every statement
// must answer quickly: DSQL never makes a writer wait, so a statement that
// blocks is itself a failure (occQuery bounds each one).

// occStatementTimeout bounds one statement: far above the backend's lock
// timeout, far below what a blocked writer would take.
const occStatementTimeout = 3 * time.Second

var occTableSeq atomic.Int64

// occTable creates a fresh table named after prefix with the given columns
// and returns its name. Each statement runs on its own (DSQL allows one DDL
// statement per transaction).
func occTable(t *testing.T, conn *pgconn.PgConn, prefix, columns string, setup ...string) string {
	t.Helper()
	name := fmt.Sprintf("%s_%d_%d", prefix, time.Now().UnixNano()%1e6, occTableSeq.Add(1))
	mustQuery(t, conn, "CREATE TABLE "+name+" ("+columns+")")
	for _, sql := range setup {
		mustQuery(t, conn, strings.ReplaceAll(sql, "$T", name))
	}
	return name
}

// occQuery runs sql within occStatementTimeout; a statement still running
// then fails the test as a writer that waited.
func occQuery(t *testing.T, conn *pgconn.PgConn, sql string) ([][]string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), occStatementTimeout)
	defer cancel()
	results, err := conn.Exec(ctx, sql).ReadAll()
	if ctx.Err() != nil {
		t.Fatalf("%s: still running after %s: a writer waited (%v)", sql, occStatementTimeout, err)
	}
	if err != nil {
		return nil, err
	}
	return rowsOf(results), nil
}

func occMust(t *testing.T, conn *pgconn.PgConn, sql string) [][]string {
	t.Helper()
	rows, err := occQuery(t, conn, sql)
	if err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
	return rows
}

// wantConflict fails unless err is DSQL's 40001 with code ("OC000" or
// "OC001") in its message.
func wantConflict(t *testing.T, err error, code string) {
	t.Helper()
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) {
		t.Fatalf("error = %v, want 40001 (%s)", err, code)
	}
	if pgErr.Code != "40001" || !strings.Contains(pgErr.Message, "("+code+")") {
		t.Fatalf("error = %s %q, want 40001 with (%s)", pgErr.Code, pgErr.Message, code)
	}
}

// loserFails runs the loser's statement and, when it succeeds (the model
// may fail a loser at COMMIT, as DSQL does), its COMMIT; one of them must
// fail with 40001 OC000. It leaves the loser outside a transaction.
func loserFails(t *testing.T, loser *pgconn.PgConn, sql string) {
	t.Helper()
	_, err := occQuery(t, loser, sql)
	if err == nil {
		_, err = occQuery(t, loser, "COMMIT")
		wantConflict(t, err, "OC000")
		return
	}
	wantConflict(t, err, "OC000")
	occQuery(t, loser, "ROLLBACK")
}

func wantValue(t *testing.T, conn *pgconn.PgConn, sql, want string) {
	t.Helper()
	rows := occMust(t, conn, sql)
	if len(rows) != 1 || rows[0][0] != want {
		t.Fatalf("%s = %v, want %s", sql, rows, want)
	}
}

func TestFidelityOCCWriteWrite(t *testing.T) {
	e := startEmulator(t, nil)
	t1, t2 := e.connect(t, "admin", "direct"), e.connect(t, "app", "direct")
	table := occTable(t, t1, "occ_ww", "id int PRIMARY KEY, v int",
		"GRANT ALL ON $T TO app", "INSERT INTO $T VALUES (1, 0)")
	before := e.Stats().Conflicts

	occMust(t, t1, "BEGIN")
	occMust(t, t2, "BEGIN")
	occMust(t, t1, "UPDATE "+table+" SET v = 1 WHERE id = 1")
	loserFails(t, t2, "UPDATE "+table+" SET v = 2 WHERE id = 1")
	occMust(t, t1, "COMMIT")
	wantValue(t, t2, "SELECT v FROM "+table+" WHERE id = 1", "1")
	if got := e.Stats().Conflicts; got <= before {
		t.Fatalf("Stats().Conflicts = %d, want more than %d", got, before)
	}
}

func TestFidelityOCCSelectForUpdate(t *testing.T) {
	e := startEmulator(t, nil)
	t1, t2 := e.connect(t, "admin", "direct"), e.connect(t, "admin", "postgres")
	table := occTable(t, t1, "occ_sfu", "id int PRIMARY KEY, v int", "INSERT INTO $T VALUES (1, 0)")

	t.Run("locked row, then update", func(t *testing.T) {
		occMust(t, t1, "BEGIN")
		occMust(t, t2, "BEGIN")
		occMust(t, t1, "SELECT v FROM "+table+" WHERE id = 1 FOR UPDATE")
		loserFails(t, t2, "UPDATE "+table+" SET v = v + 1 WHERE id = 1")
		occMust(t, t1, "COMMIT")
	})
	t.Run("updated row, then lock", func(t *testing.T) {
		occMust(t, t1, "BEGIN")
		occMust(t, t2, "BEGIN")
		occMust(t, t1, "UPDATE "+table+" SET v = v + 1 WHERE id = 1")
		loserFails(t, t2, "SELECT v FROM "+table+" WHERE id = 1 FOR UPDATE")
		occMust(t, t1, "COMMIT")
	})
	wantValue(t, t1, "SELECT v FROM "+table+" WHERE id = 1", "1")
}

func TestFidelityOCCUniqueKeyRace(t *testing.T) {
	e := startEmulator(t, nil)
	t1, t2 := e.connect(t, "admin", "direct"), e.connect(t, "admin", "direct")
	table := occTable(t, t1, "occ_uk", "id int PRIMARY KEY, who text")

	occMust(t, t1, "BEGIN")
	occMust(t, t2, "BEGIN")
	occMust(t, t1, "INSERT INTO "+table+" VALUES (7, 't1')")
	loserFails(t, t2, "INSERT INTO "+table+" VALUES (7, 't2')")
	occMust(t, t1, "COMMIT")
	wantValue(t, t1, "SELECT who FROM "+table+" WHERE id = 7", "t1")
}

func TestFidelityOCCForeignKey(t *testing.T) {
	e := startEmulator(t, nil)
	t1, t2 := e.connect(t, "admin", "direct"), e.connect(t, "admin", "direct")
	parent := occTable(t, t1, "occ_parent", "id int PRIMARY KEY", "INSERT INTO $T VALUES (1), (2)")
	child := occTable(t, t1, "occ_child", "id int PRIMARY KEY, parent int REFERENCES "+parent+" (id)")

	t.Run("insert child, then delete parent", func(t *testing.T) {
		occMust(t, t1, "BEGIN")
		occMust(t, t2, "BEGIN")
		occMust(t, t1, "INSERT INTO "+child+" VALUES (1, 1)")
		loserFails(t, t2, "DELETE FROM "+parent+" WHERE id = 1")
		occMust(t, t1, "COMMIT")
	})
	t.Run("delete parent, then insert child", func(t *testing.T) {
		occMust(t, t1, "BEGIN")
		occMust(t, t2, "BEGIN")
		occMust(t, t1, "DELETE FROM "+parent+" WHERE id = 2")
		loserFails(t, t2, "INSERT INTO "+child+" VALUES (2, 2)")
		occMust(t, t1, "COMMIT")
	})
	wantValue(t, t1, "SELECT count(*) FROM "+child, "1")
	wantValue(t, t1, "SELECT count(*) FROM "+parent, "1")
}

func TestFidelityOCCSchemaChange(t *testing.T) {
	e := startEmulator(t, nil)
	t1, t2 := e.connect(t, "admin", "direct"), e.connect(t, "admin", "direct")
	table := occTable(t, t1, "occ_ddl", "id int PRIMARY KEY, v int", "INSERT INTO $T VALUES (1, 0)")

	t.Run("alter a table another transaction used", func(t *testing.T) {
		occMust(t, t1, "BEGIN")
		occMust(t, t1, "SELECT v FROM "+table)
		_, err := occQuery(t, t2, "ALTER TABLE "+table+" ADD COLUMN w int")
		wantConflict(t, err, "OC001")
		occMust(t, t1, "COMMIT")
	})
	t.Run("use a table another transaction altered", func(t *testing.T) {
		occMust(t, t1, "BEGIN")
		occMust(t, t1, "ALTER TABLE "+table+" ADD COLUMN x int")
		occMust(t, t2, "BEGIN")
		_, err := occQuery(t, t2, "SELECT * FROM "+table)
		wantConflict(t, err, "OC001")
		occQuery(t, t2, "ROLLBACK")
		occMust(t, t1, "COMMIT")
	})
	wantValue(t, t2, "SELECT count(*) FROM information_schema.columns WHERE table_name = '"+table+"'", "3")
}

func TestFidelityOCCReadOnlyNeverConflicts(t *testing.T) {
	e := startEmulator(t, nil)
	writer, reader := e.connect(t, "admin", "direct"), e.connect(t, "app", "direct")
	table := occTable(t, writer, "occ_ro", "id int PRIMARY KEY, v int",
		"GRANT ALL ON $T TO app", "INSERT INTO $T VALUES (1, 0)")
	before := e.Stats().Conflicts

	occMust(t, reader, "BEGIN")
	wantValue(t, reader, "SELECT v FROM "+table+" WHERE id = 1", "0")
	occMust(t, writer, "BEGIN")
	occMust(t, writer, "UPDATE "+table+" SET v = 1 WHERE id = 1")
	wantValue(t, reader, "SELECT v FROM "+table+" WHERE id = 1", "0") // no wait for the uncommitted write
	occMust(t, writer, "COMMIT")
	wantValue(t, reader, "SELECT v FROM "+table+" WHERE id = 1", "0") // its snapshot
	wantValue(t, reader, "SELECT count(*) FROM "+table, "1")
	occMust(t, reader, "COMMIT")
	wantValue(t, reader, "SELECT v FROM "+table+" WHERE id = 1", "1")
	if got := e.Stats().Conflicts; got != before {
		t.Fatalf("Stats().Conflicts = %d, want %d: a read-only transaction conflicted", got, before)
	}
}

func TestFidelityOCCSnapshotSerializationFailure(t *testing.T) {
	e := startEmulator(t, nil)
	t1, t2 := e.connect(t, "admin", "direct"), e.connect(t, "admin", "direct")
	table := occTable(t, t1, "occ_rr", "id int PRIMARY KEY, v int", "INSERT INTO $T VALUES (1, 0)")

	occMust(t, t2, "BEGIN")
	wantValue(t, t2, "SELECT v FROM "+table+" WHERE id = 1", "0") // takes the snapshot
	occMust(t, t1, "UPDATE "+table+" SET v = 1 WHERE id = 1")     // autocommit: committed
	_, err := occQuery(t, t2, "UPDATE "+table+" SET v = 2 WHERE id = 1")
	wantConflict(t, err, "OC000")
	occMust(t, t2, "ROLLBACK")
	wantValue(t, t2, "SELECT v FROM "+table+" WHERE id = 1", "1")
}

// conflictAndAbort makes loser lose a write-write conflict to winner inside
// a transaction block and leaves the loser's transaction aborted.
func conflictAndAbort(t *testing.T, winner, loser *pgconn.PgConn, table string) {
	t.Helper()
	occMust(t, winner, "BEGIN")
	occMust(t, loser, "BEGIN")
	occMust(t, winner, "UPDATE "+table+" SET v = v + 1 WHERE id = 1")
	_, err := occQuery(t, loser, "UPDATE "+table+" SET v = v + 1 WHERE id = 1")
	wantConflict(t, err, "OC000")
	if status := loser.TxStatus(); status != 'E' {
		t.Fatalf("loser's TxStatus = %c, want E", status)
	}
	occMust(t, winner, "COMMIT")
}

func TestFidelityOCCLoserCommitFails(t *testing.T) {
	e := startEmulator(t, nil)
	winner, loser := e.connect(t, "admin", "direct"), e.connect(t, "admin", "direct")
	table := occTable(t, winner, "occ_commit", "id int PRIMARY KEY, v int", "INSERT INTO $T VALUES (1, 0)")
	ctx := context.Background()

	for _, commit := range []string{"COMMIT", "end", "commit work"} {
		t.Run("simple "+commit, func(t *testing.T) {
			conflictAndAbort(t, winner, loser, table)
			_, err := occQuery(t, loser, commit)
			wantConflict(t, err, "OC000")
			if status := loser.TxStatus(); status != 'I' {
				t.Fatalf("TxStatus after the failed COMMIT = %c, want I", status)
			}
			occMust(t, loser, "SELECT 1")
		})
	}
	t.Run("rollback stays a rollback", func(t *testing.T) {
		conflictAndAbort(t, winner, loser, table)
		tag, err := loser.Exec(ctx, "ROLLBACK").ReadAll()
		if err != nil || len(tag) != 1 || tag[0].CommandTag.String() != "ROLLBACK" {
			t.Fatalf("ROLLBACK after a conflict = %v, %v; want tag ROLLBACK", tag, err)
		}
	})
	t.Run("extended protocol", func(t *testing.T) {
		conflictAndAbort(t, winner, loser, table)
		res := loser.ExecParams(ctx, "COMMIT", nil, nil, nil, nil).Read()
		wantConflict(t, res.Err, "OC000")
		if status := loser.TxStatus(); status != 'I' {
			t.Fatalf("TxStatus after the failed COMMIT = %c, want I", status)
		}
	})
	t.Run("prepared commit", func(t *testing.T) {
		if _, err := loser.Prepare(ctx, "occ_commit_stmt", "COMMIT", nil); err != nil {
			t.Fatal(err)
		}
		mustQuery(t, loser, "BEGIN")
		if res := loser.ExecPrepared(ctx, "occ_commit_stmt", nil, nil, nil).Read(); res.Err != nil || res.CommandTag.String() != "COMMIT" {
			t.Fatalf("prepared COMMIT of a healthy transaction = %v, %v", res.CommandTag, res.Err)
		}
		conflictAndAbort(t, winner, loser, table)
		res := loser.ExecPrepared(ctx, "occ_commit_stmt", nil, nil, nil).Read()
		wantConflict(t, res.Err, "OC000")
	})
	t.Run("pipelined", func(t *testing.T) {
		// The losing UPDATE, a ROLLBACK and a COMMIT are all sent before
		// any is answered: the ROLLBACK keeps its tag, the COMMIT (now
		// outside a transaction) is PostgreSQL's; then the losing UPDATE
		// and its COMMIT in one pipeline: the COMMIT fails.
		occMust(t, winner, "BEGIN")
		occMust(t, winner, "UPDATE "+table+" SET v = v + 1 WHERE id = 1")
		occMust(t, loser, "BEGIN")
		p := loser.StartPipeline(ctx)
		for _, sql := range []string{"UPDATE " + table + " SET v = v + 1 WHERE id = 1", "ROLLBACK", "COMMIT", "BEGIN",
			"UPDATE " + table + " SET v = v + 1 WHERE id = 1", "COMMIT"} {
			p.SendQueryParams(sql, nil, nil, nil, nil)
			p.SendPipelineSync()
		}
		if err := p.Flush(); err != nil {
			t.Fatal(err)
		}
		want := []string{"40001", "ROLLBACK", "COMMIT", "BEGIN", "40001", "40001"}
		for i, w := range want {
			res, err := p.GetResults()
			var r *pgconn.Result
			if err != nil {
				r = &pgconn.Result{Err: err}
			} else if rr, ok := res.(*pgconn.ResultReader); ok {
				r = rr.Read()
			} else {
				t.Fatalf("result %d = %#v, want a result", i, res)
			}
			if w == "40001" {
				wantConflict(t, r.Err, "OC000")
			} else if r.Err != nil || r.CommandTag.String() != w {
				t.Fatalf("result %d = %v, %v; want %s", i, r.CommandTag, r.Err, w)
			}
			if _, err := p.GetResults(); err != nil { // the sync
				t.Fatalf("sync %d: %v", i, err)
			}
		}
		if err := p.Close(); err != nil {
			t.Fatal(err)
		}
		occMust(t, winner, "COMMIT")
	})
	t.Run("other errors keep PostgreSQL's answer", func(t *testing.T) {
		mustQuery(t, loser, "BEGIN")
		_, err := query(t, loser, "SELECT 1/0")
		wantPgError(t, err, "22012", "")
		tag, err := loser.Exec(ctx, "COMMIT").ReadAll()
		if err != nil || tag[0].CommandTag.String() != "ROLLBACK" {
			t.Fatalf("COMMIT after a division by zero = %v, %v; want tag ROLLBACK", tag, err)
		}
	})
}

func TestFidelityTxnRowLimit(t *testing.T) {
	e := startEmulator(t, func(c *dsqlsim.Config) { c.MaxTxnRows = 10 })
	conn := e.connect(t, "app", "direct")
	table := occTable(t, conn, "lim_rows", "id int PRIMARY KEY, v int")
	ctx := context.Background()
	insert := func(from, to int) string {
		return fmt.Sprintf("INSERT INTO %s SELECT i, 0 FROM generate_series(%d, %d) i", table, from, to)
	}

	t.Run("autocommit statement is rolled back", func(t *testing.T) {
		_, err := occQuery(t, conn, insert(1, 11))
		wantPgError(t, err, "54000", "transaction row limit exceeded")
		wantValue(t, conn, "SELECT count(*) FROM "+table, "0")
	})
	t.Run("the limit itself is allowed", func(t *testing.T) {
		occMust(t, conn, insert(1, 10))
		occMust(t, conn, "UPDATE "+table+" SET v = 1") // 10 more rows, in a transaction of its own
	})
	t.Run("rows add up in a transaction, which is aborted", func(t *testing.T) {
		occMust(t, conn, "BEGIN")
		occMust(t, conn, "UPDATE "+table+" SET v = 2 WHERE id <= 6")
		_, err := occQuery(t, conn, "DELETE FROM "+table+" WHERE id > 5")
		pgErr := wantPgError(t, err, "54000", "transaction row limit exceeded")
		if pgErr.Where != "" {
			t.Fatalf("the limit's error has context %q, want none", pgErr.Where)
		}
		if status := conn.TxStatus(); status != 'E' {
			t.Fatalf("TxStatus = %c, want E", status)
		}
		_, err = occQuery(t, conn, "SELECT 1")
		wantPgError(t, err, "25P02", "")
		occMust(t, conn, "ROLLBACK")
		wantValue(t, conn, "SELECT count(*) FROM "+table+" WHERE v = 1", "10")
	})
	t.Run("a multi-statement query is one transaction", func(t *testing.T) {
		_, err := occQuery(t, conn, "UPDATE "+table+" SET v = 3; DELETE FROM "+table+" WHERE id = 1")
		wantPgError(t, err, "54000", "transaction row limit exceeded")
		wantValue(t, conn, "SELECT count(*) FROM "+table+" WHERE v = 1", "10")
	})
	t.Run("extended protocol", func(t *testing.T) {
		res := conn.ExecParams(ctx, "UPDATE "+table+" SET v = v + $1::int", [][]byte{[]byte("1")}, nil, nil, nil).Read()
		if res.Err != nil {
			t.Fatalf("10 rows: %v", res.Err)
		}
		mustQuery(t, conn, "BEGIN")
		res = conn.ExecParams(ctx, "UPDATE "+table+" SET v = v + $1::int", [][]byte{[]byte("1")}, nil, nil, nil).Read()
		if res.Err != nil {
			t.Fatalf("10 rows: %v", res.Err)
		}
		res = conn.ExecParams(ctx, "DELETE FROM "+table+" WHERE id = $1::int", [][]byte{[]byte("1")}, nil, nil, nil).Read()
		wantPgError(t, res.Err, "54000", "transaction row limit exceeded")
		mustQuery(t, conn, "ROLLBACK")
	})
	t.Run("copy", func(t *testing.T) {
		occMust(t, conn, "DELETE FROM "+table)
		var in strings.Builder
		for i := 1; i <= 11; i++ {
			fmt.Fprintf(&in, "%d\t0\n", i)
		}
		_, err := conn.CopyFrom(ctx, strings.NewReader(in.String()), "COPY "+table+" FROM STDIN")
		wantPgError(t, err, "54000", "transaction row limit exceeded")
		wantValue(t, conn, "SELECT count(*) FROM "+table, "0")
	})
	t.Run("a table of an odd name in another schema", func(t *testing.T) {
		admin := e.connect(t, "admin", "postgres")
		schema := table + "_s"
		occMust(t, admin, "CREATE SCHEMA "+schema)
		odd := schema + `."Odd ""Name"""`
		occMust(t, admin, "CREATE TABLE "+odd+" (id int)")
		_, err := occQuery(t, admin, "INSERT INTO "+odd+" SELECT generate_series(1, 11)")
		wantPgError(t, err, "54000", "transaction row limit exceeded")
	})
	t.Run("a direct connection to the backend is not limited", func(t *testing.T) {
		// One transaction with two DDL statements, DML and more rows than
		// the limit.
		_, err := needPostgres(t).Psql(ctx, backendDatabase, "-1", "-c", "CREATE TABLE "+table+"_direct (id int)",
			"-c", "CREATE INDEX ON "+table+"_direct (id)", "-c", "INSERT INTO "+table+"_direct SELECT generate_series(1, 100)", "-c", "GRANT SELECT ON "+table+"_direct TO app")
		if err != nil {
			t.Fatal(err)
		}
		wantValue(t, conn, "SELECT count(*) FROM "+table+"_direct", "100")
	})
	if got := e.Stats().Limited; got != 6 {
		t.Fatalf("Stats().Limited = %d, want 6", got)
	}
}

func TestFidelityTxnSizeLimit(t *testing.T) {
	e := startEmulator(t, func(c *dsqlsim.Config) { c.MaxTxnBytes = 1 << 20 })
	conn := e.connect(t, "admin", "direct")
	table := occTable(t, conn, "lim_size", "id int PRIMARY KEY, data text")
	// 400 KB of hex that PostgreSQL cannot compress, per row.
	row := func(id int) string {
		return fmt.Sprintf("INSERT INTO %s SELECT %d, string_agg(md5(random()::text || i), '') FROM generate_series(1, 12500) i", table, id)
	}
	occMust(t, conn, "BEGIN")
	occMust(t, conn, row(1))
	occMust(t, conn, row(2))
	_, err := occQuery(t, conn, row(3))
	wantPgError(t, err, "54000", "transaction size limit 1mb exceeded")
	occMust(t, conn, "ROLLBACK")
	occMust(t, conn, row(1)) // a transaction of its own
	wantValue(t, conn, "SELECT count(*) FROM "+table, "1")
}

func TestFidelityDDLRules(t *testing.T) {
	e := startEmulator(t, nil)
	conn := e.connect(t, "admin", "direct")
	ctx := context.Background()
	table := occTable(t, conn, "ddl_rules", "id int PRIMARY KEY, v int")
	name := func(suffix string) string { return table + "_" + suffix }

	t.Run("autocommit DDL statements one after another", func(t *testing.T) {
		occMust(t, conn, "CREATE TABLE "+name("a")+" (id int)")
		occMust(t, conn, "CREATE INDEX ON "+name("a")+" (id)")
		occMust(t, conn, "ALTER TABLE "+name("a")+" ADD COLUMN w int")
		if res := conn.ExecParams(ctx, "DROP TABLE "+name("a"), nil, nil, nil, nil).Read(); res.Err != nil {
			t.Fatalf("DROP TABLE in the extended protocol: %v", res.Err)
		}
		occMust(t, conn, "INSERT INTO "+table+" VALUES (1, 1)")
		occMust(t, conn, "BEGIN")
		occMust(t, conn, "CREATE TABLE "+name("b")+" (id int)")
		occMust(t, conn, "SELECT * FROM "+table) // reading is not DML
		occMust(t, conn, "COMMIT")
		occMust(t, conn, "INSERT INTO "+name("b")+" VALUES (1)") // triggers on a new table
	})
	for _, tc := range []struct {
		name, first, second, message string
	}{
		{"two DDL statements", "CREATE TABLE " + name("c") + " (id int)", "CREATE INDEX ON " + table + " (v)", "multiple ddl statements not supported in a transaction"},
		{"DDL then DML", "ALTER TABLE " + table + " ADD COLUMN x int", "INSERT INTO " + table + " VALUES (2, 2)", "ddl and dml are not supported in the same transaction"},
		{"DDL then DML on the new table", "CREATE TABLE " + name("d") + " (id int)", "INSERT INTO " + name("d") + " VALUES (1)", "ddl and dml are not supported in the same transaction"},
		{"DML then DDL", "UPDATE " + table + " SET v = 3", "CREATE TABLE " + name("e") + " (id int)", "ddl and dml are not supported in the same transaction"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			occMust(t, conn, "BEGIN")
			occMust(t, conn, tc.first)
			_, err := occQuery(t, conn, tc.second)
			pgErr := wantPgError(t, err, "0A000", tc.message)
			if pgErr.Where != "" {
				t.Fatalf("the rule's error has context %q, want none", pgErr.Where)
			}
			_, err = occQuery(t, conn, "SELECT 1")
			wantPgError(t, err, "25P02", "")
			occMust(t, conn, "ROLLBACK")
		})
		t.Run(tc.name+" in one query", func(t *testing.T) {
			_, err := occQuery(t, conn, tc.first+"; "+tc.second)
			wantPgError(t, err, "0A000", tc.message)
			if status := conn.TxStatus(); status != 'I' {
				t.Fatalf("TxStatus = %c, want I", status)
			}
		})
	}
	t.Run("COPY after DDL", func(t *testing.T) {
		occMust(t, conn, "BEGIN")
		occMust(t, conn, "CREATE TABLE "+name("f")+" (id int)")
		_, err := conn.CopyFrom(ctx, strings.NewReader("1\n"), "COPY "+name("f")+" FROM STDIN")
		wantPgError(t, err, "0A000", "ddl and dml are not supported in the same transaction")
		occMust(t, conn, "ROLLBACK")
	})
	wantValue(t, conn, "SELECT count(*) FROM pg_tables WHERE tablename IN ('"+name("c")+"', '"+name("d")+"', '"+name("e")+"', '"+name("f")+"')", "0")
	wantValue(t, conn, "SELECT v FROM "+table, "1")
	if got := e.Stats().Limited; got != 9 {
		t.Fatalf("Stats().Limited = %d, want 9", got)
	}
}

func TestFidelityTxnAgeLimit(t *testing.T) {
	clock := &testClock{}
	e := startEmulator(t, func(c *dsqlsim.Config) {
		c.Now = clock.Now
		c.MaxTxnDuration = 2 * time.Minute
	})
	conn := e.connect(t, "admin", "direct")
	table := occTable(t, conn, "age", "id int PRIMARY KEY")
	ctx := context.Background()
	const message = "transaction age limit of 120s exceeded"
	aged := func(t *testing.T) {
		t.Helper()
		occMust(t, conn, "BEGIN")
		occMust(t, conn, "INSERT INTO "+table+" VALUES (1)")
		clock.Advance(121 * time.Second)
	}
	wantStatus := func(t *testing.T, want byte) {
		t.Helper()
		if status := conn.TxStatus(); status != want {
			t.Fatalf("TxStatus = %c, want %c", status, want)
		}
	}

	t.Run("a statement fails and aborts the transaction", func(t *testing.T) {
		aged(t)
		_, err := occQuery(t, conn, "SELECT 1")
		wantPgError(t, err, "54000", message)
		wantStatus(t, 'E')
		_, err = occQuery(t, conn, "SELECT 1")
		wantPgError(t, err, "25P02", "")
		occMust(t, conn, "ROLLBACK")
	})
	t.Run("COMMIT fails and ends the transaction", func(t *testing.T) {
		aged(t)
		_, err := occQuery(t, conn, "COMMIT")
		wantPgError(t, err, "54000", message)
		wantStatus(t, 'I')
	})
	t.Run("ROLLBACK works", func(t *testing.T) {
		aged(t)
		results, err := conn.Exec(ctx, "ROLLBACK").ReadAll()
		if err != nil || results[0].CommandTag.String() != "ROLLBACK" {
			t.Fatalf("ROLLBACK = %v, %v", results, err)
		}
	})
	t.Run("extended protocol", func(t *testing.T) {
		if _, err := conn.Prepare(ctx, "age_stmt", "SELECT $1::int", nil); err != nil {
			t.Fatal(err)
		}
		aged(t)
		res := conn.ExecPrepared(ctx, "age_stmt", [][]byte{[]byte("1")}, nil, nil).Read()
		wantPgError(t, res.Err, "54000", message)
		wantStatus(t, 'E')
		occMust(t, conn, "ROLLBACK")
		aged(t)
		res = conn.ExecParams(ctx, "SELECT $1::int", [][]byte{[]byte("1")}, nil, nil, nil).Read()
		wantPgError(t, res.Err, "54000", message)
		occMust(t, conn, "ROLLBACK")
		if res := conn.ExecPrepared(ctx, "age_stmt", [][]byte{[]byte("2")}, nil, nil).Read(); res.Err != nil {
			t.Fatalf("the prepared statement after the transaction: %v", res.Err)
		}
	})
	t.Run("idle time does not count", func(t *testing.T) {
		clock.Advance(10 * time.Minute)
		occMust(t, conn, "SELECT 1")
		occMust(t, conn, "BEGIN")
		occMust(t, conn, "SELECT 1")
		occMust(t, conn, "COMMIT")
	})
	wantValue(t, conn, "SELECT count(*) FROM "+table, "0")
	if got := e.Stats().Limited; got != 4 {
		t.Fatalf("Stats().Limited = %d, want 4", got)
	}
}
