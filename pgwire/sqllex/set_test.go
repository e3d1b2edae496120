package sqllex_test

import (
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/dsqlgate/dsqlgate/pgwire/sqllex"
)

func word(text, str string) sqllex.Value {
	return sqllex.Value{Kind: sqllex.ValueWord, Text: text, Str: str}
}

func str(text, s string) sqllex.Value {
	return sqllex.Value{Kind: sqllex.ValueString, Text: text, Str: s}
}

func num(text, s string) sqllex.Value {
	return sqllex.Value{Kind: sqllex.ValueNumber, Text: text, Str: s}
}

func qident(text, s string) sqllex.Value {
	return sqllex.Value{Kind: sqllex.ValueQuotedIdent, Text: text, Str: s}
}

// setCases are shared with the test against a real PostgreSQL: for each
// case with a replay, the server must accept the statement, and the
// setting it leaves (SHOW name) must equal the one Replay leaves.
var setCases = []struct {
	name       string
	stmt       string
	want       sqllex.SetStmt
	wantOK     bool
	wantReplay string
}{
	{
		name:       "search path list",
		stmt:       `SET search_path = "My Schema", public`,
		want:       sqllex.SetStmt{Name: "search_path", ValueText: `"My Schema", public`, Values: []sqllex.Value{qident(`"My Schema"`, "My Schema"), word("public", "public")}},
		wantOK:     true,
		wantReplay: `SET search_path TO "My Schema", public`,
	},
	{
		name:       "local time zone parameter",
		stmt:       "set local TimeZone to 'UTC'",
		want:       sqllex.SetStmt{Scope: sqllex.ScopeLocal, Name: "timezone", ValueText: "'UTC'", Values: []sqllex.Value{str("'UTC'", "UTC")}},
		wantOK:     true,
		wantReplay: "SET LOCAL timezone TO 'UTC'",
	},
	{
		name:       "explicit session scope",
		stmt:       "SET SESSION statement_timeout = 200",
		want:       sqllex.SetStmt{Name: "statement_timeout", ValueText: "200", Values: []sqllex.Value{num("200", "200")}},
		wantOK:     true,
		wantReplay: "SET statement_timeout TO 200",
	},
	{
		name:       "string with unit",
		stmt:       "SET statement_timeout = '200ms';",
		want:       sqllex.SetStmt{Name: "statement_timeout", ValueText: "'200ms'", Values: []sqllex.Value{str("'200ms'", "200ms")}},
		wantOK:     true,
		wantReplay: "SET statement_timeout TO '200ms'",
	},
	{
		name:       "to default",
		stmt:       "SET statement_timeout TO DEFAULT",
		want:       sqllex.SetStmt{Kind: sqllex.SetDefault, Name: "statement_timeout", ValueText: "DEFAULT"},
		wantOK:     true,
		wantReplay: "SET statement_timeout TO DEFAULT",
	},
	{
		name:       "equals default lower case",
		stmt:       "set search_path = default",
		want:       sqllex.SetStmt{Kind: sqllex.SetDefault, Name: "search_path", ValueText: "DEFAULT"},
		wantOK:     true,
		wantReplay: "SET search_path TO DEFAULT",
	},
	{
		name:       "custom name after comment",
		stmt:       "/* c */ SET x.y = 1",
		want:       sqllex.SetStmt{Name: "x.y", ValueText: "1", Values: []sqllex.Value{num("1", "1")}},
		wantOK:     true,
		wantReplay: "SET x.y TO 1",
	},
	{
		name:       "custom name quoted parts folded",
		stmt:       `SET "MyApp"."Tenant" TO 'acme'`,
		want:       sqllex.SetStmt{Name: "myapp.tenant", ValueText: "'acme'", Values: []sqllex.Value{str("'acme'", "acme")}},
		wantOK:     true,
		wantReplay: "SET myapp.tenant TO 'acme'",
	},
	{
		name:       "custom name needing quotes",
		stmt:       `SET "select".x = on`,
		want:       sqllex.SetStmt{Name: "select.x", ValueText: "on", Values: []sqllex.Value{word("on", "on")}},
		wantOK:     true,
		wantReplay: `SET "select".x TO on`,
	},
	{
		name:       "three part custom name",
		stmt:       "SET a.b.c = 'x'",
		want:       sqllex.SetStmt{Name: "a.b.c", ValueText: "'x'", Values: []sqllex.Value{str("'x'", "x")}},
		wantOK:     true,
		wantReplay: "SET a.b.c TO 'x'",
	},
	{
		name:       "special word as name",
		stmt:       "SET local.x = 1",
		want:       sqllex.SetStmt{Name: "local.x", ValueText: "1", Values: []sqllex.Value{num("1", "1")}},
		wantOK:     true,
		wantReplay: "SET local.x TO 1",
	},
	{
		name:       "words and keywords",
		stmt:       "SET DateStyle = ISO, MDY",
		want:       sqllex.SetStmt{Name: "datestyle", ValueText: "ISO, MDY", Values: []sqllex.Value{word("ISO", "iso"), word("MDY", "mdy")}},
		wantOK:     true,
		wantReplay: "SET datestyle TO ISO, MDY",
	},
	{
		name:       "boolean keywords",
		stmt:       "SET enable_seqscan TO false",
		want:       sqllex.SetStmt{Name: "enable_seqscan", ValueText: "false", Values: []sqllex.Value{word("false", "false")}},
		wantOK:     true,
		wantReplay: "SET enable_seqscan TO false",
	},
	{
		name:       "negative number",
		stmt:       "SET extra_float_digits = -1",
		want:       sqllex.SetStmt{Name: "extra_float_digits", ValueText: "-1", Values: []sqllex.Value{num("-1", "-1")}},
		wantOK:     true,
		wantReplay: "SET extra_float_digits TO -1",
	},
	{
		name:       "number canonical",
		stmt:       "SET extra_float_digits = - 02",
		want:       sqllex.SetStmt{Name: "extra_float_digits", ValueText: "- 02", Values: []sqllex.Value{num("- 02", "-2")}},
		wantOK:     true,
		wantReplay: "SET extra_float_digits TO - 02",
	},
	{
		name:       "float",
		stmt:       "SET x.f = 1.5e3",
		want:       sqllex.SetStmt{Name: "x.f", ValueText: "1.5e3", Values: []sqllex.Value{num("1.5e3", "1.5e3")}},
		wantOK:     true,
		wantReplay: "SET x.f TO 1.5e3",
	},
	{
		name:   "hex integer",
		stmt:   "SET x.h = 0x1F",
		want:   sqllex.SetStmt{Name: "x.h", ValueText: "0x1F", Values: []sqllex.Value{num("0x1F", "31")}},
		wantOK: true,
	},
	{
		name:       "escape and dollar strings",
		stmt:       "SET application_name = E'a\\tb'",
		want:       sqllex.SetStmt{Name: "application_name", ValueText: "E'a\\tb'", Values: []sqllex.Value{str("E'a\\tb'", "a\tb")}},
		wantOK:     true,
		wantReplay: "SET application_name TO E'a\\tb'",
	},
	{
		name:       "dollar string",
		stmt:       "SET application_name = $$it's$$",
		want:       sqllex.SetStmt{Name: "application_name", ValueText: "$$it's$$", Values: []sqllex.Value{str("$$it's$$", "it's")}},
		wantOK:     true,
		wantReplay: "SET application_name TO $$it's$$",
	},
	{
		name:       "from current",
		stmt:       "SET search_path FROM CURRENT",
		want:       sqllex.SetStmt{Kind: sqllex.SetFromCurrent, Name: "search_path"},
		wantOK:     true,
		wantReplay: "",
	},
	{
		name:       "time zone string",
		stmt:       "SET TIME ZONE 'Europe/Paris'",
		want:       sqllex.SetStmt{Name: "timezone", ValueText: "'Europe/Paris'", Values: []sqllex.Value{str("'Europe/Paris'", "Europe/Paris")}},
		wantOK:     true,
		wantReplay: "SET timezone TO 'Europe/Paris'",
	},
	{
		name:       "time zone identifier",
		stmt:       "set time zone UTC",
		want:       sqllex.SetStmt{Name: "timezone", ValueText: "UTC", Values: []sqllex.Value{word("UTC", "utc")}},
		wantOK:     true,
		wantReplay: "SET timezone TO UTC",
	},
	{
		name:       "time zone number",
		stmt:       "SET TIME ZONE -8",
		want:       sqllex.SetStmt{Name: "timezone", ValueText: "-8", Values: []sqllex.Value{num("-8", "-8")}},
		wantOK:     true,
		wantReplay: "SET timezone TO -8",
	},
	{
		name:       "time zone fractional number",
		stmt:       "SET TIME ZONE +5.5",
		want:       sqllex.SetStmt{Name: "timezone", ValueText: "+5.5", Values: []sqllex.Value{num("+5.5", "5.5")}},
		wantOK:     true,
		wantReplay: "SET timezone TO +5.5",
	},
	{
		name:       "time zone local",
		stmt:       "SET LOCAL TIME ZONE LOCAL",
		want:       sqllex.SetStmt{Kind: sqllex.SetDefault, Scope: sqllex.ScopeLocal, Name: "timezone", ValueText: "DEFAULT"},
		wantOK:     true,
		wantReplay: "SET LOCAL timezone TO DEFAULT",
	},
	{
		name:       "time zone default",
		stmt:       "SET TIME ZONE DEFAULT",
		want:       sqllex.SetStmt{Kind: sqllex.SetDefault, Name: "timezone", ValueText: "DEFAULT"},
		wantOK:     true,
		wantReplay: "SET timezone TO DEFAULT",
	},
	{
		name:       "time zone interval hour to minute",
		stmt:       "SET TIME ZONE INTERVAL '+00:00' HOUR TO MINUTE",
		want:       sqllex.SetStmt{Name: "timezone", ValueText: "'INTERVAL ''+00:00'''", Values: []sqllex.Value{str("INTERVAL '+00:00' HOUR TO MINUTE", "INTERVAL '+00:00'")}},
		wantOK:     true,
		wantReplay: "SET timezone TO 'INTERVAL ''+00:00'''",
	},
	{
		name:       "time zone interval negative hour to minute",
		stmt:       "SET TIME ZONE INTERVAL '-05:30:59' HOUR TO MINUTE",
		want:       sqllex.SetStmt{Name: "timezone", ValueText: "'INTERVAL ''-05:30'''", Values: []sqllex.Value{str("INTERVAL '-05:30:59' HOUR TO MINUTE", "INTERVAL '-05:30'")}},
		wantOK:     true,
		wantReplay: "SET timezone TO 'INTERVAL ''-05:30'''",
	},
	{
		name:       "time zone interval bare hours",
		stmt:       "SET TIME ZONE INTERVAL '5' HOUR",
		want:       sqllex.SetStmt{Name: "timezone", ValueText: "'INTERVAL ''5 hours'''", Values: []sqllex.Value{str("INTERVAL '5' HOUR", "INTERVAL '5 hours'")}},
		wantOK:     true,
		wantReplay: "SET timezone TO 'INTERVAL ''5 hours'''",
	},
	{
		name:       "time zone interval hour truncates",
		stmt:       "SET TIME ZONE INTERVAL '-5:30' HOUR",
		want:       sqllex.SetStmt{Name: "timezone", ValueText: "'INTERVAL ''-5 hours'''", Values: []sqllex.Value{str("INTERVAL '-5:30' HOUR", "INTERVAL '-5 hours'")}},
		wantOK:     true,
		wantReplay: "SET timezone TO 'INTERVAL ''-5 hours'''",
	},
	{
		name:       "time zone interval bare minutes",
		stmt:       "SET TIME ZONE INTERVAL '90' MINUTE",
		want:       sqllex.SetStmt{Name: "timezone", ValueText: "'INTERVAL ''90 minutes'''", Values: []sqllex.Value{str("INTERVAL '90' MINUTE", "INTERVAL '90 minutes'")}},
		wantOK:     true,
		wantReplay: "SET timezone TO 'INTERVAL ''90 minutes'''",
	},
	{
		name:       "time zone interval without fields",
		stmt:       "SET TIME ZONE INTERVAL '01:30'",
		want:       sqllex.SetStmt{Name: "timezone", ValueText: "'INTERVAL ''01:30'''", Values: []sqllex.Value{str("INTERVAL '01:30'", "INTERVAL '01:30'")}},
		wantOK:     true,
		wantReplay: "SET timezone TO 'INTERVAL ''01:30'''",
	},
	{
		name:       "time zone interval with precision",
		stmt:       "SET TIME ZONE INTERVAL(2) '01:00'",
		want:       sqllex.SetStmt{Name: "timezone", ValueText: "'INTERVAL ''01:00'''", Values: []sqllex.Value{str("INTERVAL(2) '01:00'", "INTERVAL '01:00'")}},
		wantOK:     true,
		wantReplay: "SET timezone TO 'INTERVAL ''01:00'''",
	},
	{name: "time zone interval day refused", stmt: "SET TIME ZONE INTERVAL '1' DAY"},
	{name: "time zone interval odd text refused", stmt: "SET TIME ZONE INTERVAL '1 hour' HOUR"},
	{name: "time zone list refused", stmt: "SET TIME ZONE 'UTC', 'x'"},
	{
		name:       "names",
		stmt:       "set NAMES 'utf8'",
		want:       sqllex.SetStmt{Name: "client_encoding", ValueText: "'utf8'", Values: []sqllex.Value{str("'utf8'", "utf8")}},
		wantOK:     true,
		wantReplay: "SET client_encoding TO 'utf8'",
	},
	{
		name:       "names alone",
		stmt:       "SET NAMES",
		want:       sqllex.SetStmt{Kind: sqllex.SetDefault, Name: "client_encoding", ValueText: "DEFAULT"},
		wantOK:     true,
		wantReplay: "SET client_encoding TO DEFAULT",
	},
	{name: "names needs a string", stmt: "SET NAMES utf8"},
	{
		name:       "names as a parameter name",
		stmt:       "SET names = 'x'",
		want:       sqllex.SetStmt{Name: "names", ValueText: "'x'", Values: []sqllex.Value{str("'x'", "x")}},
		wantOK:     true,
		wantReplay: "",
	},
	{
		name:       "schema",
		stmt:       "SET SCHEMA 'My Schema'",
		want:       sqllex.SetStmt{Name: "search_path", ValueText: "'My Schema'", Values: []sqllex.Value{str("'My Schema'", "My Schema")}},
		wantOK:     true,
		wantReplay: "SET search_path TO 'My Schema'",
	},
	{
		name:       "xml option",
		stmt:       "SET XML OPTION DOCUMENT",
		want:       sqllex.SetStmt{Name: "xmloption", ValueText: "DOCUMENT", Values: []sqllex.Value{word("DOCUMENT", "document")}},
		wantOK:     true,
		wantReplay: "SET xmloption TO DOCUMENT",
	},
	{
		name:       "role",
		stmt:       "SET ROLE postgres",
		want:       sqllex.SetStmt{Kind: sqllex.SetRole, Name: "role", ValueText: "postgres", Values: []sqllex.Value{word("postgres", "postgres")}},
		wantOK:     true,
		wantReplay: "SET role TO postgres",
	},
	{
		name:       "role none",
		stmt:       "SET LOCAL ROLE NONE",
		want:       sqllex.SetStmt{Kind: sqllex.SetRole, Scope: sqllex.ScopeLocal, Name: "role", ValueText: "NONE", Values: []sqllex.Value{word("NONE", "none")}},
		wantOK:     true,
		wantReplay: "SET LOCAL role TO NONE",
	},
	{
		name:       "role as parameter name",
		stmt:       "SET role = 'none'",
		want:       sqllex.SetStmt{Name: "role", ValueText: "'none'", Values: []sqllex.Value{str("'none'", "none")}},
		wantOK:     true,
		wantReplay: "SET role TO 'none'",
	},
	{name: "role default refused", stmt: "SET ROLE DEFAULT"},
	{
		name:       "session authorization",
		stmt:       "SET SESSION AUTHORIZATION 'postgres'",
		want:       sqllex.SetStmt{Kind: sqllex.SetSessionAuthorization, Name: "session_authorization", ValueText: "'postgres'", Values: []sqllex.Value{str("'postgres'", "postgres")}},
		wantOK:     true,
		wantReplay: "SET session_authorization TO 'postgres'",
	},
	{
		name:       "session authorization default",
		stmt:       "SET SESSION AUTHORIZATION DEFAULT",
		want:       sqllex.SetStmt{Kind: sqllex.SetDefault, Name: "session_authorization", ValueText: "DEFAULT"},
		wantOK:     true,
		wantReplay: "SET session_authorization TO DEFAULT",
	},
	{
		name:       "local session authorization default",
		stmt:       "SET LOCAL SESSION AUTHORIZATION DEFAULT",
		want:       sqllex.SetStmt{Kind: sqllex.SetDefault, Scope: sqllex.ScopeLocal, Name: "session_authorization", ValueText: "DEFAULT"},
		wantOK:     true,
		wantReplay: "SET LOCAL session_authorization TO DEFAULT",
	},
	{
		name:       "session session authorization",
		stmt:       "SET SESSION SESSION AUTHORIZATION postgres",
		want:       sqllex.SetStmt{Kind: sqllex.SetSessionAuthorization, Name: "session_authorization", ValueText: "postgres", Values: []sqllex.Value{word("postgres", "postgres")}},
		wantOK:     true,
		wantReplay: "SET session_authorization TO postgres",
	},
	{
		name:   "transaction isolation",
		stmt:   "SET TRANSACTION ISOLATION LEVEL SERIALIZABLE",
		want:   sqllex.SetStmt{Kind: sqllex.SetTransaction, TransactionModes: []string{"isolation level serializable"}},
		wantOK: true,
	},
	{
		name:   "transaction modes",
		stmt:   "set transaction read only, isolation level read committed not deferrable",
		want:   sqllex.SetStmt{Kind: sqllex.SetTransaction, TransactionModes: []string{"read only", "isolation level read committed", "not deferrable"}},
		wantOK: true,
	},
	{
		name:   "session characteristics",
		stmt:   "SET SESSION CHARACTERISTICS AS TRANSACTION ISOLATION LEVEL REPEATABLE READ",
		want:   sqllex.SetStmt{Kind: sqllex.SetSessionCharacteristics, TransactionModes: []string{"isolation level repeatable read"}},
		wantOK: true,
	},
	{
		name:   "session characteristics all modes",
		stmt:   "SET SESSION CHARACTERISTICS AS TRANSACTION READ WRITE, DEFERRABLE, ISOLATION LEVEL READ UNCOMMITTED",
		want:   sqllex.SetStmt{Kind: sqllex.SetSessionCharacteristics, TransactionModes: []string{"read write", "deferrable", "isolation level read uncommitted"}},
		wantOK: true,
	},
	{
		name:   "transaction snapshot",
		stmt:   "SET TRANSACTION SNAPSHOT '00000003-0000001B-1'",
		want:   sqllex.SetStmt{Kind: sqllex.SetTransaction, ValueText: "'00000003-0000001B-1'", Values: []sqllex.Value{str("'00000003-0000001B-1'", "00000003-0000001B-1")}, TransactionModes: []string{"snapshot"}},
		wantOK: true,
	},
	{name: "transaction without modes", stmt: "SET TRANSACTION"},
	{name: "transaction bad level", stmt: "SET TRANSACTION ISOLATION LEVEL SNAPSHOT"},
	{
		name:   "constraints",
		stmt:   "SET CONSTRAINTS ALL DEFERRED",
		want:   sqllex.SetStmt{Kind: sqllex.SetConstraints, ValueText: "ALL DEFERRED"},
		wantOK: true,
	},
	{
		name:   "constraints named",
		stmt:   `SET CONSTRAINTS a, s."B" IMMEDIATE`,
		want:   sqllex.SetStmt{Kind: sqllex.SetConstraints, ValueText: `a, s."B" IMMEDIATE`},
		wantOK: true,
	},
	{
		name:       "reset",
		stmt:       "RESET statement_timeout",
		want:       sqllex.SetStmt{Kind: sqllex.ResetParam, Name: "statement_timeout"},
		wantOK:     true,
		wantReplay: "RESET statement_timeout",
	},
	{
		name:       "reset all",
		stmt:       "RESET ALL",
		want:       sqllex.SetStmt{Kind: sqllex.ResetAll},
		wantOK:     true,
		wantReplay: "RESET ALL",
	},
	{
		name:       "reset time zone",
		stmt:       "reset time zone",
		want:       sqllex.SetStmt{Kind: sqllex.ResetParam, Name: "timezone"},
		wantOK:     true,
		wantReplay: "RESET timezone",
	},
	{
		name:   "reset transaction isolation level",
		stmt:   "RESET TRANSACTION ISOLATION LEVEL",
		want:   sqllex.SetStmt{Kind: sqllex.ResetParam, Name: "transaction_isolation"},
		wantOK: true,
	},
	{
		name:       "reset session authorization",
		stmt:       "RESET SESSION AUTHORIZATION",
		want:       sqllex.SetStmt{Kind: sqllex.ResetSessionAuthorization, Name: "session_authorization"},
		wantOK:     true,
		wantReplay: "RESET session_authorization",
	},
	{
		name:       "reset role",
		stmt:       "RESET ROLE",
		want:       sqllex.SetStmt{Kind: sqllex.ResetRole, Name: "role"},
		wantOK:     true,
		wantReplay: "RESET role",
	},
	{
		name:       "reset quoted custom",
		stmt:       `RESET "X".y`,
		want:       sqllex.SetStmt{Kind: sqllex.ResetParam, Name: "x.y"},
		wantOK:     true,
		wantReplay: "RESET x.y",
	},
	{name: "reset nothing", stmt: "RESET"},
	{name: "reset two", stmt: "RESET a b"},
	{name: "set nothing", stmt: "SET"},
	{name: "set without value", stmt: "SET x TO"},
	{name: "set without to", stmt: "SET x 1"},
	{name: "set default in a list", stmt: "SET x.y = default, 1"},
	{name: "set reserved word value", stmt: "SET x.y = null"},
	{name: "set national string", stmt: "SET x.y = N'abc'"},
	{name: "set bit string", stmt: "SET x.y = B'101'"},
	{name: "set two strings", stmt: "SET x.y = 'a' 'b'"},
	{name: "set trailing junk number", stmt: "SET x.y = 12abc"},
	{name: "set operator value", stmt: "SET x.y = *"},
	{name: "set reserved name", stmt: "SET select = 1"},
	{name: "set local local", stmt: "SET LOCAL LOCAL x.y = 1"},
	{name: "set catalog", stmt: "SET CATALOG 'x'"},
	{name: "set unterminated string", stmt: "SET x.y = 'abc"},
	{name: "set unterminated trailing comment", stmt: "SET x.y = 1 /* c"},
	{name: "two statements", stmt: "SET x.y = 1; SELECT 1"},
	{name: "not set", stmt: "SELECT 1"},
	{name: "empty", stmt: ""},
}

func TestParseSet(t *testing.T) {
	for _, tt := range setCases {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := sqllex.ParseSet(tt.stmt)
			if ok != tt.wantOK {
				t.Fatalf("ParseSet(%q) ok = %v, want %v (got %+v)", tt.stmt, ok, tt.wantOK, got)
			}
			if diff := cmp.Diff(tt.want, got, cmpopts.EquateEmpty()); diff != "" {
				t.Errorf("ParseSet(%q) (-want +got):\n%s", tt.stmt, diff)
			}
			if ok && tt.wantReplay != "" {
				if r := got.Replay(); r != tt.wantReplay {
					t.Errorf("Replay() = %q, want %q", r, tt.wantReplay)
				}
			}
		})
	}
}

func TestParseSetValueTextIsReplayable(t *testing.T) {
	// Replaying a parsed SET must parse back to the same name and values.
	for _, tt := range setCases {
		if !tt.wantOK {
			continue
		}
		t.Run(tt.name, func(t *testing.T) {
			st, _ := sqllex.ParseSet(tt.stmt)
			replay := st.Replay()
			if replay == "" {
				return
			}
			again, ok := sqllex.ParseSet(replay)
			if !ok {
				t.Fatalf("ParseSet(%q) of the replay failed", replay)
			}
			if again.Name != st.Name || again.Scope != st.Scope || again.ValueText != st.ValueText {
				t.Errorf("replay %q parses as %+v, want name %q scope %v value %q", replay, again, st.Name, st.Scope, st.ValueText)
			}
		})
	}
}

func TestKindStrings(t *testing.T) {
	if got := sqllex.Savepoint.String(); got != "Savepoint" {
		t.Errorf("Savepoint.String() = %q", got)
	}
	if got := sqllex.ResetAll.String(); got != "ResetAll" {
		t.Errorf("ResetAll.String() = %q", got)
	}
	if got := sqllex.QuotedIdent.String(); got != "QuotedIdent" {
		t.Errorf("QuotedIdent.String() = %q", got)
	}
	if got := sqllex.ValueNumber.String(); got != "ValueNumber" {
		t.Errorf("ValueNumber.String() = %q", got)
	}
	if got := sqllex.ScopeLocal.String(); got != "ScopeLocal" {
		t.Errorf("ScopeLocal.String() = %q", got)
	}
	if got := sqllex.Kind(200).String(); got != "Kind(?)" {
		t.Errorf("Kind(200).String() = %q", got)
	}
}
