package dsqlsim

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// statementTexts returns the trimmed text of each statement that has tokens.
func statementTexts(src string) []string {
	var texts []string
	for _, st := range splitStatements(src) {
		if len(st.tokens) > 0 {
			texts = append(texts, strings.TrimSpace(src[st.start:st.end]))
		}
	}
	return texts
}

func TestSplitStatements(t *testing.T) {
	tests := []struct {
		name string
		src  string
		want []string
	}{
		{"one", "select 1", []string{"select 1"}},
		{"two", "select 1; select 2;", []string{"select 1", "select 2"}},
		{"empty statements", ";; ;select 1;;", []string{"select 1"}},
		{"semicolon in string", "select 'a;b'; select 2", []string{"select 'a;b'", "select 2"}},
		{"doubled quote", "select 'it''s;'; select 2", []string{"select 'it''s;'", "select 2"}},
		{"backslash in standard string", `select 'a\'; select 2`, []string{`select 'a\'`, "select 2"}},
		{"e string escape", `select E'a\';b'; select 2`, []string{`select E'a\';b'`, "select 2"}},
		{"e string escaped backslash", `select e'a\\'; select 2`, []string{`select e'a\\'`, "select 2"}},
		{"e string continuation", "select E'a'\n'\\';'; select 2", []string{"select E'a'\n'\\';'", "select 2"}},
		{"e string continuation after comment", "select E'a' -- c\n'\\';'; select 2", []string{"select E'a' -- c\n'\\';'", "select 2"}},
		{"no continuation without newline", `select E'a' '\'; select 2`, []string{`select E'a' '\'`, "select 2"}},
		{"e string after a number", `select 1e'\';'; select 2`, []string{`select 1e'\';'`, "select 2"}},
		{"exponent", `select 1.5e-3; select 2`, []string{`select 1.5e-3`, "select 2"}},
		{"identifier ending in e", `select some'x;'; select 2`, []string{`select some'x;'`, "select 2"}},
		{"quoted identifier", `select 1 as "a;""b"; select 2`, []string{`select 1 as "a;""b"`, "select 2"}},
		{"dollar quote", "select $$a;b$$; select 2", []string{"select $$a;b$$", "select 2"}},
		{"tagged dollar quote", "select $fn$ $$; $fn$; select 2", []string{"select $fn$ $$; $fn$", "select 2"}},
		{"dollar in identifier", "select a$b$c; select 2", []string{"select a$b$c", "select 2"}},
		{"parameter", "select $1; select $2", []string{"select $1", "select $2"}},
		{"line comment", "select 1 -- x;y\n; select 2", []string{"select 1 -- x;y", "select 2"}},
		{"block comment", "select /* ; */ 1; select 2", []string{"select /* ; */ 1", "select 2"}},
		{"nested block comment", "select /* /* ; */ ; */ 1; select 2", []string{"select /* /* ; */ ; */ 1", "select 2"}},
		{"parentheses", "select (1;2); select 3", []string{"select (1;2)", "select 3"}},
		{"unterminated string", "select 'a; select 2", []string{"select 'a; select 2"}},
		{"unterminated comment", "select 1 /* ; select 2", []string{"select 1 /* ; select 2"}},
		{"unterminated dollar quote", "select $q$ ; select 2", []string{"select $q$ ; select 2"}},
		{"atomic function body", "create function f() returns int begin atomic select 1; select 2; end; select 3",
			[]string{"create function f() returns int begin atomic select 1; select 2; end", "select 3"}},
		{"atomic procedure with case", "create or replace procedure p() begin atomic select case when true then 1 end; end; select 3",
			[]string{"create or replace procedure p() begin atomic select case when true then 1 end; end", "select 3"}},
		{"begin transaction is not a body", "begin; select 1; end; select 2", []string{"begin", "select 1", "end", "select 2"}},
		{"only comments", "-- nothing\n/* at all */", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if diff := cmp.Diff(tt.want, statementTexts(tt.src)); diff != "" {
				t.Fatalf("splitStatements(%q) mismatch (-want +got):\n%s", tt.src, diff)
			}
		})
	}
}

func TestRefusalOf(t *testing.T) {
	tests := []struct {
		name string
		sql  string
		want string // "" means DSQL runs it
	}{
		{"select", "SELECT 1", ""},
		{"set allowed", "SET search_path TO public", ""},
		{"set allowed equals", "set application_name = 'x'", ""},
		{"set allowed mixed case", "SET DateStyle = ISO", ""},
		{"set local allowed", "SET LOCAL TimeZone = 'UTC'", ""},
		{"set session allowed", "SET SESSION extra_float_digits = 3", ""},
		{"set quoted allowed", `SET "search_path" = public`, ""},
		{"set enable", "set enable_seqscan = off", ""},
		{"set time zone", "SET TIME ZONE 'UTC'", ""},
		{"set local time zone", "SET LOCAL TIME ZONE UTC", ""},
		{"set schema", "SET SCHEMA 'public'", ""},
		{"set names", "SET NAMES 'UTF8'", ""},
		{"set refused", "SET statement_timeout = 0", `setting configuration parameter "statement_timeout" not supported`},
		{"set refused to", "set lock_timeout to '1s'", `setting configuration parameter "lock_timeout" not supported`},
		{"set session refused", "SET SESSION client_min_messages = warning", `setting configuration parameter "client_min_messages" not supported`},
		{"set local refused", "SET LOCAL standard_conforming_strings = off", `setting configuration parameter "standard_conforming_strings" not supported`},
		{"set dotted", "SET myapp.tenant = '1'", `setting configuration parameter "myapp.tenant" not supported`},
		{"set quoted keeps case", `SET "Lock_Timeout" = 0`, `setting configuration parameter "Lock_Timeout" not supported`},
		{"set after comment", "/* x */ -- y\n SET work_mem = '1MB'", `setting configuration parameter "work_mem" not supported`},
		{"set transaction", "SET TRANSACTION ISOLATION LEVEL SERIALIZABLE", "SET TRANSACTION not supported"},
		{"set local transaction", "SET LOCAL TRANSACTION READ ONLY", "SET TRANSACTION not supported"},
		{"set session characteristics", "SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY", "SET SESSION CHARACTERISTICS not supported"},
		{"set role", "SET ROLE app", `setting configuration parameter "role" not supported`},
		{"set session authorization", "SET SESSION AUTHORIZATION app", `setting configuration parameter "session_authorization" not supported`},
		{"set constraints", "SET CONSTRAINTS ALL DEFERRED", "SET CONSTRAINTS not supported"},
		{"set xml option", "SET XML OPTION DOCUMENT", `setting configuration parameter "xmloption" not supported`},
		{"set transaction_isolation", "SET transaction_isolation = 'serializable'", `setting configuration parameter "transaction_isolation" not supported`},
		{"set default_transaction_isolation", "SET default_transaction_isolation TO 'serializable'", `setting configuration parameter "default_transaction_isolation" not supported`},
		{"reset all", "RESET ALL", ""},
		{"reset allowed", "RESET search_path", ""},
		{"reset time zone", "RESET TIME ZONE", ""},
		{"reset refused", "RESET statement_timeout", `setting configuration parameter "statement_timeout" not supported`},
		{"reset role", "RESET ROLE", `setting configuration parameter "role" not supported`},
		{"discard all", "DISCARD ALL", "DISCARD not supported"},
		{"discard plans", "discard plans", "DISCARD not supported"},
		{"savepoint", "SAVEPOINT a", "SAVEPOINT not supported"},
		{"release", "RELEASE SAVEPOINT a", "RELEASE SAVEPOINT not supported"},
		{"release short", "RELEASE a", "RELEASE SAVEPOINT not supported"},
		{"rollback to", "ROLLBACK TO SAVEPOINT a", "ROLLBACK TO SAVEPOINT not supported"},
		{"rollback work to", "ROLLBACK WORK TO a", "ROLLBACK TO SAVEPOINT not supported"},
		{"rollback", "ROLLBACK", ""},
		{"commit", "COMMIT", ""},
		{"prepare transaction", "PREPARE TRANSACTION 'x'", "PREPARE TRANSACTION not supported"},
		{"commit prepared", "COMMIT PREPARED 'x'", "COMMIT PREPARED not supported"},
		{"rollback prepared", "ROLLBACK PREPARED 'x'", "ROLLBACK PREPARED not supported"},
		{"prepare", "PREPARE q AS SELECT 1", "PREPARE not supported"},
		{"execute", "EXECUTE q", "EXECUTE not supported"},
		{"deallocate", "DEALLOCATE q", "DEALLOCATE not supported"},
		{"deallocate prepare", "DEALLOCATE PREPARE q", "DEALLOCATE not supported"},
		{"deallocate all", "DEALLOCATE ALL", ""},
		{"deallocate prepare all", "deallocate prepare all", ""},
		{"listen", "LISTEN ch", "LISTEN not supported"},
		{"notify", "NOTIFY ch, 'x'", "NOTIFY not supported"},
		{"unlisten", "UNLISTEN *", "UNLISTEN not supported"},
		{"truncate", "TRUNCATE t", "TRUNCATE not supported"},
		{"lock", "LOCK TABLE t IN ACCESS EXCLUSIVE MODE", "LOCK not supported"},
		{"declare", "DECLARE c CURSOR FOR SELECT 1", "DECLARE CURSOR not supported"},
		{"create temp table", "CREATE TEMP TABLE t (a int)", "CREATE TEMPORARY TABLE not supported"},
		{"create temporary table", "create temporary table t (a int)", "CREATE TEMPORARY TABLE not supported"},
		{"create local temporary table", "CREATE LOCAL TEMPORARY TABLE t (a int)", "CREATE TEMPORARY TABLE not supported"},
		{"create or replace temp view", "CREATE OR REPLACE TEMP VIEW v AS SELECT 1", "CREATE TEMPORARY VIEW not supported"},
		{"create unlogged table", "CREATE UNLOGGED TABLE t (a int)", "CREATE UNLOGGED TABLE not supported"},
		{"create table", "CREATE TABLE temp (a int)", ""},
		{"advisory lock", "SELECT pg_advisory_lock(1)", "function pg_advisory_lock not supported"},
		{"try advisory lock qualified", "select pg_catalog.pg_try_advisory_xact_lock (42)", "function pg_try_advisory_xact_lock not supported"},
		{"advisory unlock in expression", "SELECT 1 WHERE pg_advisory_unlock_all() IS NULL", "function pg_advisory_unlock_all not supported"},
		{"advisory name in a string", "SELECT 'pg_advisory_lock(1)'", ""},
		{"advisory name as a column", "SELECT pg_advisory_lock FROM t", ""},
		{"keyword in a string", "SELECT 'SET statement_timeout = 0'", ""},
		{"insert", "INSERT INTO t VALUES ('TRUNCATE')", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			stmts := splitStatements(tt.sql)
			if len(stmts) != 1 {
				t.Fatalf("splitStatements(%q) gave %d statements, want 1", tt.sql, len(stmts))
			}
			if got := refusalOf(tt.sql, stmts[0]); got != tt.want {
				t.Fatalf("refusalOf(%q) = %q, want %q", tt.sql, got, tt.want)
			}
		})
	}
}

func TestRewriteQuery(t *testing.T) {
	r := newStatementRefuser("n0nce")
	got, refused := r.rewriteQuery("select 1; SET statement_timeout = 0 ; select 2; savepoint a")
	want := `select 1; SELECT * FROM "dsqlsim_refused_n0nce_1"; select 2; SELECT * FROM "dsqlsim_refused_n0nce_2"`
	if got != want {
		t.Fatalf("rewriteQuery = %q, want %q", got, want)
	}
	if diff := cmp.Diff([]string{`setting configuration parameter "statement_timeout" not supported`, "SAVEPOINT not supported"}, refused); diff != "" {
		t.Fatalf("refusals (-want +got):\n%s", diff)
	}
	msg, ok := r.takeRefusal([]byte(`SERROR` + "\x00" + `Mrelation "dsqlsim_refused_n0nce_2" does not exist` + "\x00\x00"))
	if !ok || msg != "SAVEPOINT not supported" {
		t.Fatalf("takeRefusal = %q, %v", msg, ok)
	}
	if _, ok := r.takeRefusal([]byte(`Mrelation "dsqlsim_refused_other_1" does not exist`)); ok {
		t.Fatalf("takeRefusal took another server's marker")
	}

	unchanged := "select 'SET x = 1'; -- DISCARD ALL\n"
	if got, refused := r.rewriteQuery(unchanged); got != unchanged || refused != nil {
		t.Fatalf("rewriteQuery(%q) = %q, %v; want it unchanged", unchanged, got, refused)
	}
}

func TestRefusalsAreBounded(t *testing.T) {
	r := newStatementRefuser("n")
	for i := 0; i < 3*maxPendingRefusals; i++ {
		r.failingStatement("x")
	}
	if n := len(r.pending); n > maxPendingRefusals {
		t.Fatalf("%d pending refusals, want at most %d", n, maxPendingRefusals)
	}
}

// TestRefusalOfUnsupported covers the refusals of isolation levels,
// set_config(), and the commands and objects DSQL documents as unsupported.
func TestRefusalOfUnsupported(t *testing.T) {
	const (
		serializable = "Unsupported isolation level: SERIALIZABLE"
		nonLiteral   = "set_config() with a parameter name that is not a string literal not supported"
	)
	tests := []struct {
		name string
		sql  string
		want string // "" means DSQL runs it
	}{
		{"begin", "BEGIN", ""},
		{"begin work", "begin work", ""},
		{"begin read only", "BEGIN READ ONLY", ""},
		{"begin repeatable read", "BEGIN ISOLATION LEVEL REPEATABLE READ", ""},
		{"begin repeatable read and modes", "begin transaction read only, isolation level repeatable read, not deferrable", ""},
		{"start transaction repeatable read", "START TRANSACTION ISOLATION LEVEL REPEATABLE READ", ""},
		{"begin serializable", "BEGIN ISOLATION LEVEL SERIALIZABLE", serializable},
		{"begin lower case", "begin transaction isolation level serializable", serializable},
		{"begin read committed", "BEGIN ISOLATION LEVEL READ COMMITTED", "Unsupported isolation level: READ COMMITTED"},
		{"begin read uncommitted", "BEGIN ISOLATION LEVEL READ UNCOMMITTED", "Unsupported isolation level: READ UNCOMMITTED"},
		{"begin level after a mode", "BEGIN READ WRITE, ISOLATION LEVEL SERIALIZABLE", serializable},
		{"begin level without commas", "BEGIN READ ONLY ISOLATION LEVEL SERIALIZABLE DEFERRABLE", serializable},
		{"start transaction serializable", "START TRANSACTION ISOLATION LEVEL SERIALIZABLE", serializable},
		{"start transaction with comments", "start /* x */ transaction -- y\n isolation level read committed", "Unsupported isolation level: READ COMMITTED"},
		{"begin unknown level", "BEGIN ISOLATION LEVEL SNAPSHOT", ""},

		{"set_config allowed", "SELECT set_config('search_path', 'public', false)", ""},
		{"set_config allowed mixed case", "select SET_CONFIG('TimeZone', 'UTC', true)", ""},
		{"set_config enable", "SELECT set_config('enable_seqscan', 'off', false)", ""},
		{"set_config refused", "SELECT set_config('statement_timeout', '0', false)", `setting configuration parameter "statement_timeout" not supported`},
		{"set_config qualified", "SELECT pg_catalog.set_config('lock_timeout', '0', false)", `setting configuration parameter "lock_timeout" not supported`},
		{"set_config quoted", `SELECT "pg_catalog"."set_config"('work_mem', '1MB', false)`, `setting configuration parameter "work_mem" not supported`},
		{"set_config in a where clause", "SELECT 1 FROM t WHERE set_config('role', 'app', true) IS NOT NULL", `setting configuration parameter "role" not supported`},
		{"set_config in an insert", "INSERT INTO t SELECT set_config('myapp.tenant', '1', false)", `setting configuration parameter "myapp.tenant" not supported`},
		{"set_config cast name", "SELECT set_config('search_path'::text, 'x', false)", ""},
		{"set_config dollar name", "SELECT set_config($$statement_timeout$$, '0', false)", `setting configuration parameter "statement_timeout" not supported`},
		{"set_config e string", "SELECT set_config(E'statement_timeout', '0', false)", `setting configuration parameter "statement_timeout" not supported`},
		{"set_config e string escape", `SELECT set_config(E'search\_path', '0', false)`, nonLiteral},
		{"set_config doubled quote", "SELECT set_config('a''b', '0', false)", `setting configuration parameter "a'b" not supported`},
		{"set_config parameter", "SELECT set_config($1, $2, false)", nonLiteral},
		{"set_config expression", "SELECT set_config('search' || '_path', 'x', false)", nonLiteral},
		{"set_config column", "SELECT set_config(name, 'x', false) FROM t", nonLiteral},
		{"set_config second call", "SELECT set_config('search_path', 'x', false), set_config('lock_timeout', '0', false)", `setting configuration parameter "lock_timeout" not supported`},
		{"set_config other schema", "SELECT myschema.set_config('lock_timeout', '0', false)", ""},
		{"set_config quoted upper case", `SELECT "SET_CONFIG"('lock_timeout', '0', false)`, ""},
		{"set_config column name", "SELECT set_config FROM t", ""},
		{"set_config in a string", "SELECT 'set_config(''lock_timeout'', ''0'', false)'", ""},
		{"current_setting", "SELECT current_setting('statement_timeout')", ""},

		{"create extension", "CREATE EXTENSION IF NOT EXISTS pgcrypto", "CREATE EXTENSION not supported"},
		{"alter extension", "ALTER EXTENSION pgcrypto UPDATE", "ALTER EXTENSION not supported"},
		{"drop extension", "drop extension if exists pgcrypto", "DROP EXTENSION not supported"},
		{"alter system", "ALTER SYSTEM SET work_mem = '1MB'", "ALTER SYSTEM not supported"},
		{"create database", "CREATE DATABASE other", "CREATE DATABASE not supported"},
		{"alter database", "ALTER DATABASE postgres SET work_mem = '1MB'", "ALTER DATABASE not supported"},
		{"drop database", "DROP DATABASE IF EXISTS other", "DROP DATABASE not supported"},
		{"create tablespace", "CREATE TABLESPACE ts LOCATION '/tmp/ts'", "CREATE TABLESPACE not supported"},
		{"drop tablespace", "DROP TABLESPACE ts", "DROP TABLESPACE not supported"},
		{"vacuum", "VACUUM", "VACUUM not supported"},
		{"vacuum analyze", "VACUUM (ANALYZE) t", "VACUUM not supported"},
		{"analyze", "ANALYZE t", ""},
		{"explain analyze", "EXPLAIN ANALYZE SELECT 1", ""},
		{"create trigger", "CREATE TRIGGER trg BEFORE INSERT ON t FOR EACH ROW EXECUTE FUNCTION f()", "CREATE TRIGGER not supported"},
		{"create or replace constraint trigger", "CREATE OR REPLACE CONSTRAINT TRIGGER trg AFTER INSERT ON t FOR EACH ROW EXECUTE FUNCTION f()", "CREATE TRIGGER not supported"},
		{"create event trigger", "CREATE EVENT TRIGGER et ON ddl_command_start EXECUTE FUNCTION f()", "CREATE EVENT TRIGGER not supported"},
		{"drop event trigger", "DROP EVENT TRIGGER et", "DROP EVENT TRIGGER not supported"},
		{"alter event trigger", "ALTER EVENT TRIGGER et DISABLE", "ALTER EVENT TRIGGER not supported"},
		{"drop trigger", "DROP TRIGGER IF EXISTS trg ON t", "DROP TRIGGER not supported"},
		{"alter trigger", "ALTER TRIGGER trg ON t RENAME TO trg2", "ALTER TRIGGER not supported"},
		{"drop materialized view", "DROP MATERIALIZED VIEW IF EXISTS mv", "DROP MATERIALIZED VIEW not supported"},
		{"refresh materialized view", "REFRESH MATERIALIZED VIEW CONCURRENTLY mv", "REFRESH MATERIALIZED VIEW not supported"},
		{"drop view", "DROP VIEW v", ""},
		{"alter table", "ALTER TABLE t ADD COLUMN trigger int", ""},
		{"create materialized view", "CREATE MATERIALIZED VIEW mv AS SELECT 1", "CREATE MATERIALIZED VIEW not supported"},
		{"create view", "CREATE VIEW v AS SELECT 1", ""},
		{"do", "DO $$ BEGIN PERFORM 1; END $$", "DO not supported"},
		{"do language", "do language plpgsql 'begin null; end'", "DO not supported"},
		{"plpgsql function", "CREATE FUNCTION f() RETURNS int AS $$ BEGIN RETURN 1; END $$ LANGUAGE plpgsql",
			"CREATE FUNCTION with LANGUAGE plpgsql not supported"},
		{"plpgsql language first", "create or replace function f() returns int language plpgsql as $$ begin return 1; end $$",
			"CREATE FUNCTION with LANGUAGE plpgsql not supported"},
		{"plpgsql procedure", "CREATE PROCEDURE p() LANGUAGE 'plpgsql' AS $$ BEGIN NULL; END $$", "CREATE PROCEDURE with LANGUAGE plpgsql not supported"},
		{"c function", "CREATE FUNCTION f(int) RETURNS int AS 'lib', 'f' LANGUAGE C", "CREATE FUNCTION with LANGUAGE c not supported"},
		{"sql function", "CREATE FUNCTION f() RETURNS int AS $$ SELECT 1 $$ LANGUAGE sql", ""},
		{"sql function quoted", `CREATE OR REPLACE FUNCTION f() RETURNS int LANGUAGE "sql" AS 'SELECT 1'`, ""},
		{"sql function upper case", "CREATE FUNCTION f() RETURNS int LANGUAGE SQL IMMUTABLE AS 'SELECT 1'", ""},
		{"sql standard body", "CREATE FUNCTION f(language text) RETURNS text RETURN language", ""},
		{"begin atomic body", "CREATE PROCEDURE p() LANGUAGE sql BEGIN ATOMIC SELECT language FROM t; END", ""},
		{"language as a parameter", "CREATE FUNCTION f(language text) RETURNS text LANGUAGE sql AS 'SELECT $1'", ""},
		{"copy from stdin", "COPY t (a, b) FROM STDIN WITH (FORMAT csv)", ""},
		{"copy to stdout", "COPY (SELECT * FROM t WHERE a IN (SELECT a FROM u)) TO STDOUT", ""},
		{"copy from file", "COPY t FROM '/etc/passwd'", "COPY FROM a file not supported"},
		{"copy to file", "copy (select 1) to '/tmp/x'", "COPY TO a file not supported"},
		{"copy from program", "COPY t FROM PROGRAM 'cat /etc/passwd'", "COPY FROM PROGRAM not supported"},
		{"copy to program", "COPY t (a) TO PROGRAM 'gzip > /tmp/x'", "COPY TO PROGRAM not supported"},
		{"copy binary", "COPY BINARY t FROM STDIN", ""},
		{"create table inherits", "CREATE TABLE c (b int) INHERITS (p)", "CREATE TABLE with INHERITS not supported"},
		{"create table partition by", "CREATE TABLE IF NOT EXISTS p (a int, b int) PARTITION BY RANGE (a)", "CREATE TABLE with PARTITION BY not supported"},
		{"create table partition of", "create table c partition of p for values from (1) to (10)", "CREATE TABLE with PARTITION OF not supported"},
		{"create table", "CREATE TABLE t (a int GENERATED ALWAYS AS (1) STORED, inherits int, partition int)", ""},
		{"create table as with a window", "CREATE TABLE t AS SELECT rank() OVER (PARTITION BY a) FROM u", ""},
		{"create table as a column named inherits", "CREATE TABLE t AS SELECT inherits FROM u", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			stmts := splitStatements(tt.sql)
			if len(stmts) != 1 {
				t.Fatalf("splitStatements(%q) gave %d statements, want 1", tt.sql, len(stmts))
			}
			if got := refusalOf(tt.sql, stmts[0]); got != tt.want {
				t.Fatalf("refusalOf(%q) = %q, want %q", tt.sql, got, tt.want)
			}
		})
	}
}
