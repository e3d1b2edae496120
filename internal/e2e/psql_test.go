package e2e

import (
	"strings"
	"testing"
)

// TestPsql drives the real psql through the gateway and the emulator to
// PostgreSQL: one query, several in one string, an error then a good
// query, COPY both ways, and transactions committed and rolled back.
func TestPsql(t *testing.T) {
	mustPsql := func(t *testing.T, stdin string, args ...string) string {
		t.Helper()
		out, err := psql(t, shared, stdin, args...)
		if err != nil {
			t.Fatalf("psql %v: %v\n%s", args, err, out)
		}
		return out
	}
	t.Run("query", func(t *testing.T) {
		out := mustPsql(t, "", "-Atc", "select 40 + 2")
		if strings.TrimSpace(out) != "42" {
			t.Fatalf("got %q, want 42", out)
		}
	})
	t.Run("multi-statement", func(t *testing.T) {
		// DDL goes in statements of its own (DSQL runs no DDL beside DML
		// in one transaction, and a Query of several statements is one).
		mustPsql(t, "", "-c", "create table psql_multi(a int)")
		defer mustPsql(t, "", "-c", "drop table psql_multi")
		out := mustPsql(t, "", "-Atc", "insert into psql_multi values (1); insert into psql_multi values (2); select sum(a) from psql_multi")
		if !strings.Contains(out, "3") {
			t.Fatalf("got %q, want the sum 3", out)
		}
	})
	t.Run("error then good query", func(t *testing.T) {
		// Without ON_ERROR_STOP psql goes on after the error, on the
		// same connection.
		out, _ := psql(t, shared, "select 1/0;\nselect 'after' as word;\n", "-v", "ON_ERROR_STOP=0", "-At")
		if !strings.Contains(out, "division by zero") || !strings.Contains(out, "after") {
			t.Fatalf("got %q, want the division error and then 'after'", out)
		}
	})
	t.Run("copy in and out", func(t *testing.T) {
		mustPsql(t, "", "-c", "create table psql_copy(id int primary key, name text)")
		defer mustPsql(t, "", "-c", "drop table psql_copy")
		var in strings.Builder
		for i := 1; i <= 1000; i++ {
			in.WriteString(strings.Repeat("x", i%7))
			in.Reset()
		}
		for i := 1; i <= 1000; i++ {
			in.WriteString(itoa(i) + "\tname " + itoa(i) + "\n")
		}
		in.WriteString("\\.\n")
		mustPsql(t, in.String(), "-c", "copy psql_copy from stdin")
		out := mustPsql(t, "", "-Atc", "select count(*), sum(id) from psql_copy")
		if strings.TrimSpace(out) != "1000|500500" {
			t.Fatalf("after COPY FROM STDIN: %q, want 1000|500500", out)
		}
		out = mustPsql(t, "", "-c", "copy (select id, name from psql_copy where id <= 3 order by id) to stdout")
		want := "1\tname 1\n2\tname 2\n3\tname 3\n"
		if out != want {
			t.Fatalf("COPY TO STDOUT gave %q, want %q", out, want)
		}
		// psql's \copy goes through the same protocol messages.
		out = mustPsql(t, "", "-c", `\copy (select count(*) from psql_copy) to stdout`)
		if strings.TrimSpace(out) != "1000" {
			t.Fatalf(`\copy gave %q`, out)
		}
	})
	t.Run("transactions", func(t *testing.T) {
		mustPsql(t, "", "-c", "create table psql_tx(a int)")
		defer mustPsql(t, "", "-c", "drop table psql_tx")
		mustPsql(t, "begin;\ninsert into psql_tx values (1);\ncommit;\n")
		mustPsql(t, "begin;\ninsert into psql_tx values (2);\nrollback;\n")
		out := mustPsql(t, "", "-Atc", "select coalesce(string_agg(a::text, ','), '') from psql_tx")
		if strings.TrimSpace(out) != "1" {
			t.Fatalf("got %q: want only the committed row 1", out)
		}
	})
}

func itoa(i int) string {
	const digits = "0123456789"
	if i == 0 {
		return "0"
	}
	var b []byte
	for ; i > 0; i /= 10 {
		b = append([]byte{digits[i%10]}, b...)
	}
	return string(b)
}
