package config_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/dsqlgate/dsqlgate/config"
)

func TestParseUnknownKey(t *testing.T) {
	runProblemCases(t, "", []problemCase{
		{name: "top level typo", doc: "lisen: 127.0.0.1:6432 # <-\n" + user + dsqlRoute, key: "lisen", msg: `unknown key; did you mean "listen"?`},
		{name: "nested typo", doc: "log:\n  levle: debug # <-\n" + user + dsqlRoute, key: "log.levle", msg: `did you mean "level"?`},
		{name: "in a route", doc: user + dsqlRoute + "    pool_sise: 5 # <-\n", key: "routes[0].pool_sise", msg: "unknown key; did you mean size: inside pool:?"},
		{name: "pgbouncer style", doc: user + dsqlRoute + "    pool_mode: session # <-\n", key: "routes[0].pool_mode", msg: "unknown key; did you mean mode: inside pool:?"},
		{name: "nothing close", doc: user + dsqlRoute + "    colour: blue # <-\n", key: "routes[0].colour", msg: "unknown key; known keys here: database, kind, endpoint"},
		{name: "in a pool", doc: user + dsqlRoute + "    pool:\n      sise: 5 # <-\n", key: "routes[0].pool.sise", msg: `did you mean "size"?`},
		{name: "in a second route", doc: user + dsqlRoute + "  - database: b\n    endpoint: abcdefghijklmnopqrstuvwxyz.dsql.us-east-1.on.aws\n    max_lifetime: 30m # <-\n", key: "routes[1].max_lifetime", msg: "unknown key"},
		{name: "in a user", doc: "users:\n  - name: alice\n    verifier_env: TEST_VERIFIER\n    pasword: x # <-\n" + dsqlRoute, key: "users[0].pasword", msg: "unknown key"},
		{name: "unexported field name", doc: "src: x # <-\n" + user + dsqlRoute, key: "src", msg: "unknown key"},
	})
}

// TestUnknownKeyMessage pins the whole message a user sees.
func TestUnknownKeyMessage(t *testing.T) {
	t.Setenv("TEST_VERIFIER", testVerifier)
	doc := user + dsqlRoute + "    pool:\n      sise: 5\n"
	_, err := config.Parse([]byte(doc), "dsqlgate.yaml")
	want := `dsqlgate.yaml:6: routes[0].pool.sise: unknown key; did you mean "size"?`
	if err == nil || err.Error() != want {
		t.Errorf("Parse error = %v, want %s", err, want)
	}
}

func TestParseTypeErrors(t *testing.T) {
	runProblemCases(t, "", []problemCase{
		{name: "word for an int", doc: user + dsqlRoute + "    pool: {size: many} # <-\n", key: "routes[0].pool.size", msg: `expected a whole number, got "many"`},
		{name: "fraction for an int", doc: user + dsqlRoute + "    pool: {size: 1.5} # <-\n", key: "routes[0].pool.size", msg: `expected a whole number, got "1.5"`},
		{name: "quoted int", doc: "limits: {max_client_conn: '10'} # <-\n" + user + dsqlRoute, key: "limits.max_client_conn", msg: `expected a whole number, got "10"`},
		{name: "word for a float", doc: user + dsqlRoute + "    pool: {dial_rate: fast} # <-\n", key: "routes[0].pool.dial_rate", msg: `expected a number, got "fast"`},
		{name: "list for a string", doc: "listen: [127.0.0.1, 6432] # <-\n" + user + dsqlRoute, key: "listen", msg: "expected text, got a list"},
		{name: "scalar for a mapping", doc: user + dsqlRoute + "    pool: big # <-\n", key: "routes[0].pool", msg: `expected a mapping of keys, got "big"`},
		{name: "mapping for a list", doc: user + "routes: # <-\n  app: {endpoint: x}\n", key: "routes", msg: "expected a list (lines starting with -), got a mapping"},
		{name: "scalar for a list item", doc: user + "routes:\n  - app # <-\n", key: "routes[0]", msg: `expected a mapping of keys, got "app"`},
		{name: "bad size", doc: "limits: {max_message_size: 64MB} # <-\n" + user + dsqlRoute, key: "limits.max_message_size", msg: `unknown unit "MB"`},
		{name: "long value is cut", doc: "listen: [" + strings.Repeat("x", 100) + "] # <-\n" + user + dsqlRoute, key: "listen", msg: "got a list"},
		{name: "duplicate key", doc: "listen: 127.0.0.1:1\nlisten: 127.0.0.1:2 # <-\n" + user + dsqlRoute, key: "listen", msg: "set twice (first at line 1)"},
		{name: "merge into itself", doc: "log: &l {<<: *l} # <-\n" + user + dsqlRoute, key: "log", msg: "an alias refers to a mapping that contains it"},
		{name: "merge a list that holds itself", doc: "log: {<<: &s [*s]} # <-\n" + user + dsqlRoute, key: "log", msg: "<< must merge a mapping or a list of mappings, got a list"},
		{name: "merge a scalar", doc: "log: {<<: 5} # <-\n" + user + dsqlRoute, key: "log", msg: "<< must merge a mapping"},
		{name: "non-scalar key", doc: "log:\n  ? [a, b] # <-\n  : 1\n" + user + dsqlRoute, key: "log", msg: "a key must be a plain name, got a list"},
	})
}

func TestParseDocumentProblems(t *testing.T) {
	tests := []struct {
		name string
		doc  string
		want config.Problem
	}{
		{
			name: "syntax error",
			doc:  "listen: x\n  log: y\n",
			want: config.Problem{File: "f.yaml", Line: 2, Message: "invalid YAML: mapping values are not allowed in this context"},
		},
		{
			name: "second document",
			doc:  "listen: 127.0.0.1:6432\n---\nlisten: 127.0.0.1:6433\n",
			want: config.Problem{File: "f.yaml", Line: 2, Message: "a second YAML document (after ---); the configuration is one document"},
		},
		{
			name: "not a mapping",
			doc:  "- listen\n",
			want: config.Problem{File: "f.yaml", Line: 1, Message: "the file must be a mapping of keys such as listen: and routes:, got a list"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := config.Parse([]byte(tt.doc), "f.yaml")
			if diff := cmp.Diff([]config.Problem{tt.want}, asValidation(t, err)); diff != "" {
				t.Errorf("problems mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

// TestParseEmpty checks that an empty file is the defaults, which lack
// users and routes.
func TestParseEmpty(t *testing.T) {
	for _, doc := range []string{"", "# only a comment\n", "~\n"} {
		_, err := config.Parse([]byte(doc), "empty.yaml")
		want := []config.Problem{
			{File: "empty.yaml", Key: "users", Message: "at least one user is required (in users, users_file or users_env): clients log in as one of them"},
			{File: "empty.yaml", Key: "routes", Message: "at least one route is required: a route maps the database a client asks for to an upstream"},
		}
		if diff := cmp.Diff(want, asValidation(t, err)); diff != "" {
			t.Errorf("Parse(%q) problems mismatch (-want +got):\n%s", doc, diff)
		}
	}
}

// TestParseAliasBomb checks that merges nested to expand exponentially
// stop with a problem instead of running for minutes.
func TestParseAliasBomb(t *testing.T) {
	var b strings.Builder
	b.WriteString("x0: &a0 {level: info}\n")
	for i := 1; i <= 40; i++ {
		fmt.Fprintf(&b, "x%d: &a%d {<<: [*a%d, *a%d]}\n", i, i, i-1, i-1)
	}
	b.WriteString("log: {<<: [*a40, *a40]}\n")
	_, err := config.Parse([]byte(b.String()), "bomb.yaml")
	var found bool
	for _, p := range asValidation(t, err) {
		found = found || p.Key == "log" && strings.Contains(p.Message, "aliases expanded")
	}
	if !found {
		t.Errorf("no problem about aliases at key log:\n%v", err)
	}
}

// TestParseAnchors checks aliases and merge keys: a route merges shared
// settings and overrides one of them.
func TestParseAnchors(t *testing.T) {
	t.Setenv("TEST_VERIFIER", testVerifier)
	const doc = `
users: [{name: alice, verifier_env: TEST_VERIFIER}]
routes:
  - &app
    database: app
    endpoint: abcdefghijklmnopqrstuvwxyz.dsql.us-east-1.on.aws
    pool: &pool {size: 7, idle_timeout: 1m}
  - <<: *app
    database: reports
    role: reporting
    pool:
      <<: *pool
      size: 3
`
	c, err := config.Parse([]byte(doc), "anchors.yaml")
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	got := c.Routes[1]
	want := config.DefaultRoute(config.KindDSQL, "reports")
	want.Endpoint = "abcdefghijklmnopqrstuvwxyz.dsql.us-east-1.on.aws"
	want.Role = "reporting"
	want.Pool.Size = 3
	want.Pool.IdleTimeout = config.Duration(time.Minute)
	if diff := cmp.Diff(want, got, ignoreResolved); diff != "" {
		t.Errorf("merged route mismatch (-want +got):\n%s", diff)
	}
	if c.Routes[0].Pool.Size != 7 {
		t.Errorf("routes[0].pool.size = %d, want 7", c.Routes[0].Pool.Size)
	}
}

// TestParseFlags: flags apply over the file and the environment, and a
// problem with a value a flag set names the flag.
func TestParseFlags(t *testing.T) {
	t.Setenv("TEST_VERIFIER", testVerifier)
	t.Setenv("DSQLGATE_LOG_LEVEL", "warn")
	doc := "listen: 127.0.0.1:7001\nlog: {level: debug, format: json}\n" + user + dsqlRoute
	c, err := config.Parse([]byte(doc), "test.yaml", config.Flag{Name: "--listen", Key: "listen", Value: "127.0.0.1:7002"})
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	if got := c.Listen + " " + c.Log.Level + " " + c.Log.Format; got != "127.0.0.1:7002 warn json" {
		t.Errorf("listen, log.level, log.format = %q, want flag, environment, file", got)
	}

	_, err = config.Parse([]byte(doc), "test.yaml",
		config.Flag{Name: "--listen", Key: "listen", Value: "nowhere"},
		config.Flag{Name: "--shutdown", Key: "shutdown_timeout", Value: "30"},
		config.Flag{Name: "--routes", Key: "routes", Value: "x"})
	want := []config.Problem{
		{Flag: "--shutdown", Key: "shutdown_timeout", Message: `duration 30 has no unit; write "30s"`},
		{Flag: "--routes", Key: "routes", Message: "sets no key the command line can set"},
		{Flag: "--listen", Key: "listen", Message: `"nowhere" is not host:port, such as 127.0.0.1:6432 (an IPv6 address goes in brackets: [::1]:6432)`},
	}
	if diff := cmp.Diff(want, asValidation(t, err), cmpopts.SortSlices(func(a, b config.Problem) bool { return a.Flag < b.Flag })); diff != "" {
		t.Errorf("problems mismatch (-want +got):\n%s", diff)
	}
	if !strings.Contains(err.Error(), "--listen: listen: ") {
		t.Errorf("error does not name the flag:\n%v", err)
	}
}
