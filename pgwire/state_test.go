package pgwire

import (
	"bytes"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/jackc/pgerrcode"
	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/dsqlgate/dsqlgate/pgwire/sqllex"
)

func TestSyncSQL(t *testing.T) {
	cases := []struct {
		name     string
		have     map[string]string
		want     map[string]string
		resetAll bool
		sql      string
	}{
		{"nothing to do", map[string]string{"timezone": "'UTC'"}, map[string]string{"timezone": "'UTC'"}, false, ""},
		{"set new", nil, map[string]string{"search_path": `"a", "b"`}, false, `SET search_path TO "a", "b";`},
		{"change and reset", map[string]string{"timezone": "'UTC'", "datestyle": "'ISO'"}, map[string]string{"timezone": "'Asia/Tokyo'"}, false,
			"RESET datestyle;SET timezone TO 'Asia/Tokyo';"},
		{"unknown value is reset", map[string]string{"search_path": unknownValue}, nil, false, "RESET search_path;"},
		{"unknown value is set", map[string]string{"search_path": unknownValue}, map[string]string{"search_path": "x"}, false, "SET search_path TO x;"},
		{"reset all first", map[string]string{"timezone": "'UTC'"}, map[string]string{"timezone": "'UTC'"}, true, "RESET ALL;SET timezone TO 'UTC';"},
		{"custom and odd names", nil, map[string]string{"myapp.tenant": "'7'", "Weird Name": "'x'"}, false,
			`SET "Weird Name" TO 'x';SET myapp.tenant TO '7';`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := syncSQL(tc.have, tc.want, tc.resetAll); got != tc.sql {
				t.Fatalf("got %q, want %q", got, tc.sql)
			}
		})
	}
}

func TestStartupValueSQL(t *testing.T) {
	cases := []struct{ name, raw, want string }{
		{"search_path", `"$user", public`, `"$user", public`},
		{"search_path case folding", `MySchema, "Quoted"`, `myschema, "Quoted"`},
		{"timezone", "Europe/Paris", `'Europe/Paris'`},
		{"application_name", "it's", `'it''s'`},
	}
	for _, tc := range cases {
		name := tc.name
		if name == "search_path case folding" {
			name = "search_path"
		}
		got, ok := startupValueSQL(name, tc.raw)
		if !ok || got != tc.want {
			t.Errorf("%s %q: got %q %v, want %q", tc.name, tc.raw, got, ok, tc.want)
		}
	}
	if _, ok := startupValueSQL("search_path", `"unterminated`); ok {
		t.Error("an unterminated search_path was accepted")
	}
}

func TestParseOptions(t *testing.T) {
	got := parseOptions(`-c search_path=a,b --statement-timeout=5s -cTimeZone=UTC -c application_name=my\ app junk`)
	want := map[string]string{"search_path": "a,b", "statement_timeout": "5s", "timezone": "UTC", "application_name": "my app"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Fatalf("(-want +got):\n%s", diff)
	}
}

func set(t *testing.T, sql string) *sqllex.SetStmt {
	t.Helper()
	st, ok := sqllex.ParseSet(sql)
	if !ok {
		t.Fatalf("ParseSet(%q) failed", sql)
	}
	return &st
}

// TestGUCTransactions follows PostgreSQL's rules: a SET counts when its
// transaction commits, a rollback or an error in the transaction undoes
// it, SET LOCAL never survives, RESET returns to the startup value.
func TestGUCTransactions(t *testing.T) {
	g := newGUCState(map[string]string{"timezone": "'UTC'"}, nil)
	g.apply(set(t, "SET application_name = 'a'"))
	g.endTransaction() // autocommit
	g.apply(set(t, "SET application_name = 'b'"))
	g.rollback()
	g.apply(set(t, "SET LOCAL search_path = x"))
	g.commit()
	g.apply(set(t, "SET timezone = 'Asia/Tokyo'"))
	g.txFailed = true // an error later in the same implicit transaction
	g.endTransaction()
	want := map[string]string{"timezone": "'UTC'", "application_name": "'a'"}
	if diff := cmp.Diff(want, g.desired); diff != "" {
		t.Fatalf("(-want +got):\n%s", diff)
	}
	g.apply(set(t, "SET timezone TO 'Asia/Tokyo'"))
	g.commit()
	g.apply(set(t, "RESET timezone"))
	g.commit()
	g.apply(set(t, "RESET application_name"))
	g.commit()
	want = map[string]string{"timezone": "'UTC'"}
	if diff := cmp.Diff(want, g.desired); diff != "" {
		t.Fatalf("after RESET (-want +got):\n%s", diff)
	}
	g.apply(set(t, "SET search_path TO a"))
	g.apply(set(t, "RESET ALL"))
	g.commit()
	if diff := cmp.Diff(want, g.desired); diff != "" {
		t.Fatalf("after RESET ALL (-want +got):\n%s", diff)
	}
	if _, ok := g.touched["search_path"]; !ok {
		t.Fatal("RESET ALL did not mark search_path as unknown upstream")
	}
}

func TestUpstreamStatementLRU(t *testing.T) {
	u := newUpstreamState(frameReader{}, nil)
	if ev := u.addStmt("a", 2); ev != nil {
		t.Fatal(ev)
	}
	u.addStmt("b", 2)
	u.hasStmt("a") // a is now more recent than b
	if ev := u.addStmt("c", 2); len(ev) != 1 || ev[0] != "b" {
		t.Fatalf("evicted %v, want [b]", ev)
	}
	if u.hasStmt("b") || !u.hasStmt("a") || !u.hasStmt("c") {
		t.Fatal("wrong statements kept")
	}
	u.dropAllStmts()
	if u.hasStmt("a") {
		t.Fatal("dropAllStmts kept a statement")
	}
}

func TestUpstreamNameIsStable(t *testing.T) {
	a := upstreamName("select $1", []uint32{23}, "")
	if a != upstreamName("select $1", []uint32{23}, "") {
		t.Fatal("the same statement got two names")
	}
	for _, other := range []string{upstreamName("select $1", []uint32{25}, ""), upstreamName("select $1", []uint32{23}, "s"), upstreamName("select $2", []uint32{23}, "")} {
		if other == a {
			t.Fatal("different statements share a name")
		}
	}
	if len(a) > 63 {
		t.Fatalf("name %q is longer than NAMEDATALEN", a)
	}
}

func TestRenameInError(t *testing.T) {
	er := &pgproto3.ErrorResponse{Severity: "ERROR", SeverityUnlocalized: "ERROR", Code: "26000", Message: `prepared statement "` + missingStatementName + `" does not exist`}
	msg, err := er.Encode(nil)
	if err != nil {
		t.Fatal(err)
	}
	got, _ := decodeError(renameInError(msg, &reply{renameFrom: missingStatementName, renameTo: "mine"}))
	if got.Message != `prepared statement "mine" does not exist` || got.Code != "26000" {
		t.Fatalf("got %+v", got)
	}
	got, _ = decodeError(renameInError(msg, &reply{renameFrom: missingStatementName, renameTo: ""}))
	if got.Message != "unnamed prepared statement does not exist" {
		t.Fatalf("unnamed: %q", got.Message)
	}
	if !bytes.Equal(renameInError(msg, &reply{}), msg) {
		t.Fatal("a message without a rename changed")
	}
}

func TestErrorResponseRoundTrip(t *testing.T) {
	msg := appendErrorResponse(nil, &pgError{Severity: severityError, Code: pgerrcode.SerializationFailure, Message: "m", Detail: "d", Hint: "h"})
	er, err := decodeError(msg)
	if err != nil {
		t.Fatal(err)
	}
	if er.Code != "40001" || er.Message != "m" || er.Detail != "d" || er.Hint != "h" || er.Severity != "ERROR" || er.SeverityUnlocalized != "ERROR" {
		t.Fatalf("got %+v", er)
	}
	if severityOf(msg) != "ERROR" {
		t.Fatal("severityOf")
	}
	if n := appendErrorResponse(nil, &pgError{Severity: "NOTICE", Code: "00000", Message: "x"}); n[0] != 'N' {
		t.Fatal("a NOTICE is not a NoticeResponse")
	}
}
