package dsqlsim_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

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
	var rows [][]string
	for _, r := range results {
		for _, row := range r.Rows {
			var cols []string
			for _, v := range row {
				cols = append(cols, string(v))
			}
			rows = append(rows, cols)
		}
	}
	return rows, nil
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
