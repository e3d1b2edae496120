package config_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/dsqlgate/dsqlgate/config"
)

// TestValidateACMERules: client_tls.acme, checked only when domains turn
// it on.
func TestValidateACMERules(t *testing.T) {
	dir := t.TempDir()
	tlsFiles(t, dir)
	if err := os.WriteFile(filepath.Join(dir, "empty.pem"), []byte("no pem here\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	const acme = "client_tls:\n  acme:\n"
	tests := []problemCase{
		{name: "valid off with defaults", doc: user + dsqlRoute},
		{name: "valid on a public address", doc: "listen: 0.0.0.0:6432\n" + acme + "    domains: [db.example.com]\n" + user + dsqlRoute},
		{name: "valid wildcard with dns-01", doc: acme + "    domains: ['*.example.com', example.com]\n" + user + dsqlRoute},
		{name: "valid http-01", doc: acme + "    domains: [db.example.com]\n    challenge: http-01\n    http_listen: 127.0.0.1:0\n" + user + dsqlRoute},
		{name: "valid route storage", doc: acme + "    domains: [db.example.com]\n    storage: route:app\n" + user + dsqlRoute},
		{name: "valid directory storage", doc: acme + "    domains: [db.example.com]\n    storage: /var/lib/dsqlgate/acme\n" + user + dsqlRoute},
		{name: "valid challtestsrv", doc: acme + "    domains: [db.example.com]\n    dns_provider: pebble-challtestsrv\n    challtestsrv_url: http://127.0.0.1:8055\n    ca_file: {{dir}}/cert.pem\n" + user + dsqlRoute},
		{name: "valid require", doc: "client_tls:\n  mode: require\n  acme:\n    domains: [db.example.com]\n" + user + dsqlRoute},

		{name: "with cert_file", doc: "client_tls:\n  cert_file: {{dir}}/cert.pem\n  key_file: {{dir}}/key.pem\n  acme:\n    domains: [db.example.com] # <-\n" + user + dsqlRoute, key: "client_tls.acme.domains", msg: "cert_file and key_file must be empty"},
		{name: "mode disable", doc: "client_tls:\n  mode: disable # <-\n  acme:\n    domains: [db.example.com]\n" + user + dsqlRoute, key: "client_tls.mode", msg: "disable turns client TLS off"},
		{name: "not a dns name", doc: acme + "    domains:\n      - db.example.com\n      - db_1.example.com # <-\n" + user + dsqlRoute, key: "client_tls.acme.domains[1]", msg: `"db_1.example.com" is not a DNS name`},
		{name: "one label", doc: acme + "    domains:\n      - localhost # <-\n" + user + dsqlRoute, key: "client_tls.acme.domains[0]", msg: "is not a DNS name"},
		{name: "duplicate", doc: acme + "    domains:\n      - db.example.com\n      - DB.example.com. # <-\n" + user + dsqlRoute, key: "client_tls.acme.domains[1]", msg: "is already domains[0]"},
		{name: "wildcard with http-01", doc: acme + "    challenge: http-01\n    domains:\n      - '*.example.com' # <-\n" + user + dsqlRoute, key: "client_tls.acme.domains[0]", msg: "only with challenge dns-01"},
		{name: "bad challenge", doc: acme + "    domains: [db.example.com]\n    challenge: tls-alpn-01 # <-\n" + user + dsqlRoute, key: "client_tls.acme.challenge", msg: `"tls-alpn-01" is not one of dns-01, http-01`},
		{name: "bad provider", doc: acme + "    domains: [db.example.com]\n    dns_provider: cloudflare # <-\n" + user + dsqlRoute, key: "client_tls.acme.dns_provider", msg: "is not one of route53, pebble-challtestsrv"},
		{name: "challtestsrv without url", doc: "client_tls:\n  acme: # <-\n    domains: [db.example.com]\n    dns_provider: pebble-challtestsrv\n" + user + dsqlRoute, key: "client_tls.acme.challtestsrv_url", msg: "dns_provider pebble-challtestsrv needs it"},
		{name: "bad http_listen", doc: acme + "    domains: [db.example.com]\n    challenge: http-01\n    http_listen: '80' # <-\n" + user + dsqlRoute, key: "client_tls.acme.http_listen", msg: "is not host:port"},
		{name: "unknown route", doc: acme + "    domains: [db.example.com]\n    storage: route:other # <-\n" + user + dsqlRoute, key: "client_tls.acme.storage", msg: `"route:other" names no route`},
		{name: "bad table", doc: acme + "    domains: [db.example.com]\n    storage: route:app\n    storage_table: Certs; # <-\n" + user + dsqlRoute, key: "client_tls.acme.storage_table", msg: "is not a table name"},
		{name: "bad directory", doc: acme + "    domains: [db.example.com]\n    directory: acme.example.com # <-\n" + user + dsqlRoute, key: "client_tls.acme.directory", msg: "is not an http(s) URL"},
		{name: "bad email", doc: acme + "    domains: [db.example.com]\n    email: ops # <-\n" + user + dsqlRoute, key: "client_tls.acme.email", msg: "is not an e-mail address"},
		{name: "renew interval too short", doc: acme + "    domains: [db.example.com]\n    renew_check_interval: 10ms # <-\n" + user + dsqlRoute, key: "client_tls.acme.renew_check_interval", msg: "must be at least 1s"},
		{name: "ca_file missing", doc: acme + "    domains: [db.example.com]\n    ca_file: {{dir}}/nope.pem # <-\n" + user + dsqlRoute, key: "client_tls.acme.ca_file", msg: "cannot read"},
		{name: "ca_file not pem", doc: acme + "    domains: [db.example.com]\n    ca_file: {{dir}}/empty.pem # <-\n" + user + dsqlRoute, key: "client_tls.acme.ca_file", msg: "holds no PEM certificate"},
	}
	runProblemCases(t, dir, tests)
}

// TestACMEMode: ACME counts as a certificate when client_tls.mode is left
// empty on loopback.
func TestACMEMode(t *testing.T) {
	c := config.Default()
	c.ClientTLS.ACME.Domains = []string{"db.example.com"}
	if got := c.ClientTLSMode(); got != config.TLSAllow {
		t.Errorf("ClientTLSMode with acme.domains on loopback = %q, want %q", got, config.TLSAllow)
	}
	if db, ok := (&config.ACME{Storage: "route:app"}).StorageRoute(); !ok || db != "app" {
		t.Errorf("StorageRoute(route:app) = %q, %v", db, ok)
	}
	if _, ok := (&config.ACME{Storage: "/var/lib/acme"}).StorageRoute(); ok {
		t.Error("StorageRoute of a directory reports a route")
	}
}

// TestValidateACMEStorageTableNames: the storage's two tables, table and
// table_locks, must be distinct tables of their own: table_locks longer
// than PostgreSQL's 63 characters is truncated by the server (to the
// table itself, or to a name the gateway's protection of the tables does
// not know), and neither may be the route's advisory lock table.
func TestValidateACMEStorageTableNames(t *testing.T) {
	const acme = "client_tls:\n  acme:\n    domains: [db.example.com]\n    storage: route:app\n"
	long := strings.Repeat("c", 60)
	tests := []problemCase{
		{name: "valid", doc: acme + "    storage_table: certs\n" + user + dsqlRoute},
		{name: "locks name truncated", doc: acme + "    storage_table: " + long + " # <-\n" + user + dsqlRoute, key: "client_tls.acme.storage_table", msg: "characters"},
		{name: "locks table is the advisory lock table", doc: acme + "    storage_table: dsqlgate_advisory # <-\n" + user + dsqlRoute, key: "client_tls.acme.storage_table", msg: "advisory lock table"},
		{name: "table is the advisory lock table", doc: acme + "    storage_table: dsqlgate_advisory_locks # <-\n" + user + dsqlRoute, key: "client_tls.acme.storage_table", msg: "advisory lock table"},
	}
	runProblemCases(t, t.TempDir(), tests)
}

// TestValidateACMEStorageOnPostgresRoute: a route: storage holds the
// certificate's private key on the route's upstream, reached with the
// route's own user, as the route's clients are. On a kind dsql route the
// gateway keeps clients from naming the table (a lexical check, sound on
// DSQL only); on a kind postgres route it checks nothing and a client can
// read the key: refused, pointing at a directory or a dsql route.
func TestValidateACMEStorageOnPostgresRoute(t *testing.T) {
	const acme = "client_tls:\n  acme:\n    domains: [db.example.com]\n"
	tests := []problemCase{
		{name: "postgres route", doc: acme + "    storage: route:local # <-\n" + user + pgRoute + "    password: x\n", key: "client_tls.acme.storage", msg: "kind postgres"},
	}
	runProblemCases(t, t.TempDir(), tests)
}
