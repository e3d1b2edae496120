package sqllex_test

import (
	"testing"

	"github.com/dsqlgate/dsqlgate/pgwire/sqllex"
)

// classifyCases are shared with the test against a real PostgreSQL, which
// checks that each statement marked with tags is accepted there and
// answers with one of those command tags. setup runs before it.
var classifyCases = []struct {
	name  string
	stmt  string
	want  sqllex.Kind
	setup string   // run first on the real server
	tags  []string // command tags the real server may answer with; none: not run there
}{
	{name: "begin", stmt: "BEGIN", want: sqllex.Begin, tags: []string{"BEGIN"}},
	{name: "begin work", stmt: "begin work", want: sqllex.Begin, tags: []string{"BEGIN"}},
	{name: "begin transaction modes", stmt: "BEGIN TRANSACTION ISOLATION LEVEL SERIALIZABLE, READ ONLY", want: sqllex.Begin, tags: []string{"BEGIN"}},
	{name: "start transaction", stmt: "START TRANSACTION READ WRITE", want: sqllex.Begin, tags: []string{"START TRANSACTION"}},
	{name: "start without transaction", stmt: "START", want: sqllex.Other},
	{name: "commit", stmt: "COMMIT", want: sqllex.Commit, setup: "BEGIN", tags: []string{"COMMIT"}},
	{name: "commit work and chain", stmt: "COMMIT WORK AND CHAIN", want: sqllex.Commit, setup: "BEGIN", tags: []string{"COMMIT"}},
	{name: "commit and no chain", stmt: "commit transaction and no chain", want: sqllex.Commit, setup: "BEGIN", tags: []string{"COMMIT"}},
	{name: "end", stmt: "END", want: sqllex.Commit, setup: "BEGIN", tags: []string{"COMMIT"}},
	{name: "end transaction", stmt: "END TRANSACTION", want: sqllex.Commit, setup: "BEGIN", tags: []string{"COMMIT"}},
	{name: "rollback", stmt: "ROLLBACK", want: sqllex.Rollback, setup: "BEGIN", tags: []string{"ROLLBACK"}},
	{name: "rollback work and chain", stmt: "ROLLBACK WORK AND CHAIN", want: sqllex.Rollback, setup: "BEGIN", tags: []string{"ROLLBACK"}},
	{name: "abort", stmt: "ABORT", want: sqllex.Rollback, setup: "BEGIN", tags: []string{"ROLLBACK"}},
	{name: "abort transaction", stmt: "abort transaction", want: sqllex.Rollback, setup: "BEGIN", tags: []string{"ROLLBACK"}},
	{name: "savepoint", stmt: "SAVEPOINT sp", want: sqllex.Savepoint, setup: "BEGIN", tags: []string{"SAVEPOINT"}},
	{name: "release savepoint", stmt: "RELEASE SAVEPOINT sp", want: sqllex.Savepoint, setup: "BEGIN; SAVEPOINT sp", tags: []string{"RELEASE"}},
	{name: "release", stmt: "release sp", want: sqllex.Savepoint, setup: "BEGIN; SAVEPOINT sp", tags: []string{"RELEASE"}},
	{name: "rollback to savepoint", stmt: "ROLLBACK TO SAVEPOINT sp", want: sqllex.Savepoint, setup: "BEGIN; SAVEPOINT sp", tags: []string{"ROLLBACK"}},
	{name: "rollback to", stmt: "ROLLBACK TO sp", want: sqllex.Savepoint, setup: "BEGIN; SAVEPOINT sp", tags: []string{"ROLLBACK"}},
	{name: "rollback work to", stmt: "ROLLBACK WORK TO SAVEPOINT sp", want: sqllex.Savepoint, setup: "BEGIN; SAVEPOINT sp", tags: []string{"ROLLBACK"}},
	{name: "rollback transaction to", stmt: "rollback transaction to sp", want: sqllex.Savepoint, setup: "BEGIN; SAVEPOINT sp", tags: []string{"ROLLBACK"}},
	{name: "prepare transaction", stmt: "PREPARE TRANSACTION 'gid'", want: sqllex.TwoPhase},
	{name: "commit prepared", stmt: "COMMIT PREPARED 'gid'", want: sqllex.TwoPhase},
	{name: "rollback prepared", stmt: "ROLLBACK PREPARED 'gid'", want: sqllex.TwoPhase},
	{name: "prepare statement named transaction", stmt: "PREPARE transaction AS SELECT 1", want: sqllex.Prepare, tags: []string{"PREPARE"}},
	{name: "set", stmt: "SET search_path = public", want: sqllex.Set, tags: []string{"SET"}},
	{name: "set transaction", stmt: "SET TRANSACTION READ ONLY", want: sqllex.Set, setup: "BEGIN", tags: []string{"SET"}},
	{name: "reset", stmt: "RESET ALL", want: sqllex.Reset, tags: []string{"RESET"}},
	{name: "show", stmt: "SHOW TIME ZONE", want: sqllex.Show, tags: []string{"SHOW"}},
	{name: "discard", stmt: "DISCARD ALL", want: sqllex.Discard, tags: []string{"DISCARD ALL"}},
	{name: "prepare", stmt: "PREPARE q(int) AS SELECT $1", want: sqllex.Prepare, tags: []string{"PREPARE"}},
	{name: "execute", stmt: "EXECUTE q(1)", want: sqllex.Execute, setup: "PREPARE q(int) AS SELECT $1", tags: []string{"SELECT 1"}},
	{name: "deallocate", stmt: "DEALLOCATE q", want: sqllex.Deallocate, setup: "PREPARE q AS SELECT 1", tags: []string{"DEALLOCATE"}},
	{name: "deallocate all", stmt: "DEALLOCATE PREPARE ALL", want: sqllex.Deallocate, tags: []string{"DEALLOCATE ALL"}},
	{name: "listen", stmt: "LISTEN chan", want: sqllex.Listen, tags: []string{"LISTEN"}},
	{name: "notify", stmt: "NOTIFY chan, 'x'", want: sqllex.Notify, tags: []string{"NOTIFY"}},
	{name: "unlisten", stmt: "UNLISTEN *", want: sqllex.Unlisten, tags: []string{"UNLISTEN"}},
	{name: "copy", stmt: "COPY t TO STDOUT", want: sqllex.Copy},
	{name: "declare", stmt: "DECLARE c CURSOR FOR SELECT 1", want: sqllex.Declare, setup: "BEGIN", tags: []string{"DECLARE CURSOR"}},
	{name: "fetch", stmt: "FETCH NEXT FROM c", want: sqllex.Fetch, setup: "BEGIN; DECLARE c CURSOR FOR SELECT 1", tags: []string{"FETCH 1"}},
	{name: "move", stmt: "MOVE c", want: sqllex.Move, setup: "BEGIN; DECLARE c CURSOR FOR SELECT 1", tags: []string{"MOVE 1"}},
	{name: "close", stmt: "CLOSE ALL", want: sqllex.Close, tags: []string{"CLOSE CURSOR ALL"}},
	{name: "truncate", stmt: "TRUNCATE t", want: sqllex.Truncate, setup: "CREATE TEMP TABLE t (a int)", tags: []string{"TRUNCATE TABLE"}},
	{name: "lock", stmt: "LOCK TABLE t IN SHARE MODE", want: sqllex.Lock, setup: "BEGIN; CREATE TEMP TABLE t (a int)", tags: []string{"LOCK TABLE"}},
	{name: "select", stmt: "SELECT 1", want: sqllex.Select, tags: []string{"SELECT 1"}},
	{name: "select in parentheses", stmt: "((SELECT 1))", want: sqllex.Select, tags: []string{"SELECT 1"}},
	{name: "table", stmt: "TABLE pg_namespace", want: sqllex.Select},
	{name: "values", stmt: "VALUES (1), (2)", want: sqllex.Values, tags: []string{"SELECT 2"}},
	{name: "values in parentheses", stmt: "(VALUES (1))", want: sqllex.Values, tags: []string{"SELECT 1"}},
	{name: "with", stmt: "WITH x AS (SELECT 1) SELECT * FROM x", want: sqllex.With, tags: []string{"SELECT 1"}},
	{name: "insert", stmt: "INSERT INTO t VALUES (1)", want: sqllex.Insert, setup: "CREATE TEMP TABLE t (a int)", tags: []string{"INSERT 0 1"}},
	{name: "update", stmt: "UPDATE t SET a = 2", want: sqllex.Update, setup: "CREATE TEMP TABLE t (a int)", tags: []string{"UPDATE 0"}},
	{name: "delete", stmt: "DELETE FROM t", want: sqllex.Delete, setup: "CREATE TEMP TABLE t (a int)", tags: []string{"DELETE 0"}},
	{name: "leading comments", stmt: "/* a */ -- b\n  set x.y = 1", want: sqllex.Set, tags: []string{"SET"}},
	{name: "trailing semicolon", stmt: "COMMIT;", want: sqllex.Commit},
	{name: "lower and mixed case", stmt: "sElEcT 1", want: sqllex.Select},
	{name: "quoted word is not a keyword", stmt: `"select" 1`, want: sqllex.Other},
	{name: "insert in parentheses is not a query", stmt: "(INSERT INTO t VALUES (1))", want: sqllex.Other},
	{name: "create", stmt: "CREATE TABLE t (a int)", want: sqllex.Other},
	{name: "explain", stmt: "EXPLAIN SELECT 1", want: sqllex.Other},
	{name: "empty", stmt: "", want: sqllex.Other},
	{name: "comment only", stmt: "/* SELECT */", want: sqllex.Other},
	{name: "string", stmt: "'select'", want: sqllex.Other},
	{name: "long word", stmt: "deallocatex", want: sqllex.Other},
}

func TestClassify(t *testing.T) {
	for _, tt := range classifyCases {
		t.Run(tt.name, func(t *testing.T) {
			if got := sqllex.Classify(tt.stmt); got != tt.want {
				t.Errorf("Classify(%q) = %v, want %v", tt.stmt, got, tt.want)
			}
		})
	}
}

func TestClassifyDoesNotAllocate(t *testing.T) {
	allocs := testing.AllocsPerRun(100, func() {
		sqllex.Classify("/* c */ ROLLBACK WORK TO SAVEPOINT a")
	})
	if allocs != 0 {
		t.Errorf("Classify allocates %v times", allocs)
	}
}

func TestParseDeallocate(t *testing.T) {
	tests := []struct {
		name     string
		stmt     string
		wantName string
		wantAll  bool
		wantOK   bool
	}{
		{"named", "DEALLOCATE q1", "q1", false, true},
		{"named with prepare", "deallocate prepare Q1;", "q1", false, true},
		{"quoted", `DEALLOCATE "Q1"`, "Q1", false, true},
		{"all", "DEALLOCATE ALL", "", true, true},
		{"prepare all", "DEALLOCATE PREPARE ALL", "", true, true},
		{"statement named prepare", "DEALLOCATE prepare", "prepare", false, true},
		{"missing name", "DEALLOCATE", "", false, false},
		{"extra words", "DEALLOCATE a b", "", false, false},
		{"reserved word", "DEALLOCATE select", "", false, false},
		{"not deallocate", "DISCARD ALL", "", false, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			name, all, ok := sqllex.ParseDeallocate(tt.stmt)
			if name != tt.wantName || all != tt.wantAll || ok != tt.wantOK {
				t.Errorf("ParseDeallocate(%q) = %q, %v, %v; want %q, %v, %v", tt.stmt, name, all, ok, tt.wantName, tt.wantAll, tt.wantOK)
			}
		})
	}
}
