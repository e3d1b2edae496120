package config_test

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/dsqlgate/dsqlgate/config"
)

// Building blocks for the cases. A case's line of interest carries the
// marker "# <-"; the test finds its line number there.
const (
	user      = "users: [{name: alice, verifier_env: TEST_VERIFIER}]\n"
	dsqlRoute = "routes:\n  - database: app\n    endpoint: abcdefghijklmnopqrstuvwxyz.dsql.us-east-1.on.aws\n"
	pgRoute   = "routes:\n  - database: local\n    kind: postgres\n    endpoint: localhost\n    user: postgres\n"
	pgPass    = "    password_env: TEST_PASSWORD\n"
	marker    = "# <-"
)

// markedLine returns the 1-based line holding marker, or 0.
func markedLine(doc string) int {
	for i, l := range strings.Split(doc, "\n") {
		if strings.Contains(l, marker) {
			return i + 1
		}
	}
	return 0
}

// problemCase is one input that must produce exactly one problem, at key
// on the marked line, whose message contains msg. An empty key means the
// input is valid.
type problemCase struct {
	name string
	doc  string
	key  string
	msg  string
}

// runProblemCases parses each case's doc (with {{dir}} replaced by dir)
// and checks the one problem it must produce. It sets TEST_VERIFIER and
// TEST_PASSWORD, which user and pgPass name.
func runProblemCases(t *testing.T, dir string, tests []problemCase) {
	t.Helper()
	t.Setenv("TEST_VERIFIER", testVerifier)
	t.Setenv("TEST_PASSWORD", "pw")
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			doc := strings.ReplaceAll(tt.doc, "{{dir}}", dir)
			_, err := config.Parse([]byte(doc), "test.yaml")
			if tt.key == "" {
				if err != nil {
					t.Fatalf("Parse: %v\ninput:\n%s", err, doc)
				}
				return
			}
			if err == nil {
				t.Fatalf("Parse succeeded, want a problem at %s\ninput:\n%s", tt.key, doc)
			}
			ps := asValidation(t, err)
			if len(ps) != 1 {
				t.Fatalf("got %d problems, want 1:\n%v\ninput:\n%s", len(ps), err, doc)
			}
			p := ps[0]
			want := config.Problem{File: "test.yaml", Line: markedLine(doc), Key: tt.key, Message: p.Message}
			if diff := cmp.Diff(want, p); diff != "" {
				t.Errorf("problem mismatch (-want +got):\n%s\ninput:\n%s", diff, doc)
			}
			if !strings.Contains(p.Message, tt.msg) {
				t.Errorf("message %q does not contain %q", p.Message, tt.msg)
			}
			if !strings.Contains(err.Error(), tt.key+": ") {
				t.Errorf("error %q does not name key %s", err, tt.key)
			}
		})
	}
}

func TestValidateRules(t *testing.T) {
	dir := t.TempDir()
	tlsFiles(t, dir)
	tests := []problemCase{
		{name: "valid dsql", doc: user + dsqlRoute},
		{name: "valid postgres", doc: user + pgRoute + pgPass},
		{name: "valid client tls", doc: "client_tls: {mode: require, cert_file: {{dir}}/cert.pem, key_file: {{dir}}/key.pem}\n" + user + dsqlRoute},
		{name: "valid everything explicit", doc: user + dsqlRoute + "    region: us-east-1\n    dial_address: 127.0.0.1:15432\n    ca_file: {{dir}}/cert.pem\n    pool: {max_lifetime: 60m, lifetime_jitter: 0s, min_idle: 20}\n"},
		{name: "valid privatelink endpoint", doc: user + "routes: [{database: app, endpoint: abcdefghijklmnopqrstuvwxyz.dsql-fnh4.eu-west-1.on.aws}]\n"},
		{name: "valid listen on every interface without tls", doc: "listen: :6432\nclient_tls: {mode: disable}\n" + user + dsqlRoute},
		{name: "valid listen on every interface with tls", doc: "listen: :6432\nclient_tls: {cert_file: {{dir}}/cert.pem, key_file: {{dir}}/key.pem}\n" + user + dsqlRoute},
		{name: "valid postgres lifetime beyond 60m", doc: user + pgRoute + pgPass + "    pool: {max_lifetime: 2h}\n"},
		{name: "valid user roles", doc: "users: [{name: alice, verifier_env: TEST_VERIFIER}, {name: bob, verifier_env: TEST_VERIFIER}]\n" + dsqlRoute + "    user_roles: {alice: app_writer, bob: reader}\n"},
		{name: "valid user roles with a merge", doc: "users: [{name: alice, verifier_env: TEST_VERIFIER}, {name: bob, verifier_env: TEST_VERIFIER}]\n" + dsqlRoute + "    user_roles: {<<: {alice: a}, bob: b}\n"},

		// user_roles, reuse_port, users_env
		{name: "user role empty", doc: user + dsqlRoute + "    user_roles:\n      alice: '' # <-\n", key: "routes[0].user_roles.alice", msg: "required: the DSQL database role this user logs in as"},
		{name: "user role twice", doc: user + dsqlRoute + "    user_roles:\n      alice: a\n      alice: b # <-\n", key: "routes[0].user_roles.alice", msg: "set twice (first at line"},
		{name: "user role not text", doc: user + dsqlRoute + "    user_roles:\n      alice: [a] # <-\n", key: "routes[0].user_roles.alice", msg: "expected text, got a list"},
		{name: "user roles not a mapping", doc: user + dsqlRoute + "    user_roles: [alice] # <-\n", key: "routes[0].user_roles", msg: "expected a mapping of names to text, got a list"},
		{name: "user roles on postgres", doc: user + pgRoute + pgPass + "    user_roles: {alice: a} # <-\n", key: "routes[0].user_roles", msg: "is only for kind dsql"},
		{name: "reuse_port not a flag", doc: "reuse_port: sometimes # <-\n" + user + dsqlRoute, key: "reuse_port", msg: "expected"},
		{name: "valid users_env alone", doc: "users_env: TEST_USERS\n" + dsqlRoute},

		// listen, log
		{name: "listen without port", doc: "listen: localhost # <-\n" + user + dsqlRoute, key: "listen", msg: "not host:port"},
		{name: "listen port out of range", doc: "listen: 127.0.0.1:70000 # <-\n" + user + dsqlRoute, key: "listen", msg: "port"},
		{name: "listen empty", doc: "listen: '' # <-\n" + user + dsqlRoute, key: "listen", msg: "required"},
		{name: "log level", doc: "log: {level: verbose} # <-\n" + user + dsqlRoute, key: "log.level", msg: `"verbose" is not one of debug, info, warn, error`},
		{name: "log format", doc: "log:\n  format: text # <-\n" + user + dsqlRoute, key: "log.format", msg: "console, json"},

		// log: slow queries
		{name: "valid limits at their bounds", doc: "limits: {max_startup_packet: 1KiB, idle_in_transaction_timeout: 0s, max_pending_replies: 100, max_client_statements: 1, max_client_settings: 1}\n" + user + dsqlRoute},
		{name: "valid max user connections", doc: user + dsqlRoute + "    pool: {size: 10, max_user_connections: 3}\n"},
		{name: "valid slow query logging", doc: "log: {slow_query_threshold: 500ms, slow_query_max_length: 20}\n" + user + dsqlRoute},
		{name: "slow query threshold negative", doc: "log: {slow_query_threshold: -1s} # <-\n" + user + dsqlRoute, key: "log.slow_query_threshold", msg: "must not be negative (0s turns slow query logging off)"},
		{name: "slow query threshold bare number", doc: "log:\n  slow_query_threshold: 500 # <-\n" + user + dsqlRoute, key: "log.slow_query_threshold", msg: `duration 500 has no unit; write "500s"`},
		{name: "slow query max length too small", doc: "log:\n  slow_query_max_length: 19 # <-\n" + user + dsqlRoute, key: "log.slow_query_max_length", msg: "must be at least 20 characters"},

		// shutdown_timeout
		{name: "shutdown timeout zero", doc: "shutdown_timeout: 0s # <-\n" + user + dsqlRoute, key: "shutdown_timeout", msg: `must be positive, such as "30s"`},
		{name: "shutdown timeout negative", doc: "shutdown_timeout: -5s # <-\n" + user + dsqlRoute, key: "shutdown_timeout", msg: "must be positive"},

		// metrics
		{name: "valid metrics off", doc: "metrics: {listen: ''}\n" + user + dsqlRoute},
		{name: "valid metrics on every interface", doc: "metrics: {listen: ':9187'}\n" + user + dsqlRoute},
		{name: "valid metrics on listen's port of another host", doc: "metrics: {listen: '127.0.0.2:6432'}\n" + user + dsqlRoute},
		{name: "valid metrics and listen on any free port", doc: "listen: 127.0.0.1:0\nmetrics: {listen: '127.0.0.1:0'}\n" + user + dsqlRoute},
		{name: "metrics listen without port", doc: "metrics:\n  listen: localhost # <-\n" + user + dsqlRoute, key: "metrics.listen", msg: `"localhost" is not host:port, such as 127.0.0.1:9187`},
		{name: "metrics listen port out of range", doc: "metrics: {listen: '127.0.0.1:99999'} # <-\n" + user + dsqlRoute, key: "metrics.listen", msg: `port "99999" is not a number from 0 to 65535`},
		{name: "metrics listen on listen's address", doc: "metrics:\n  listen: 127.0.0.1:6432 # <-\n" + user + dsqlRoute, key: "metrics.listen", msg: `"127.0.0.1:6432" uses the port of listen ("127.0.0.1:6432")`},
		{name: "metrics on every interface, listen's port", doc: "metrics: {listen: ':6432'} # <-\n" + user + dsqlRoute, key: "metrics.listen", msg: "the HTTP listener needs a port of its own"},

		// admin
		{name: "valid admin user", doc: "admin: {users: [alice]}\n" + user + dsqlRoute},
		{name: "valid admin user from users_file", doc: "admin: {users: [carol, 'o\"brien']}\nusers_file: " + usersFile + "\n" + dsqlRoute},
		{name: "valid admin database", doc: "admin: {database: console}\n" + user + dsqlRoute},
		{name: "admin user unknown", doc: "admin:\n  users: [alice, bob] # <-\n" + user + dsqlRoute, key: "admin.users[1]", msg: `"bob" is not a user in users or users_file`},
		{name: "admin user unknown in a block list", doc: "admin:\n  users:\n    - alice\n    - bob # <-\n" + user + dsqlRoute, key: "admin.users[1]", msg: `"bob" is not a user`},
		{name: "admin user listed twice", doc: "admin:\n  users:\n    - alice\n    - alice # <-\n" + user + dsqlRoute, key: "admin.users[1]", msg: `"alice" is already admin.users[0]`},
		{name: "admin user empty", doc: "admin: {users: ['']} # <-\n" + user + dsqlRoute, key: "admin.users[0]", msg: "required"},
		{name: "admin database empty", doc: "admin: {database: ''} # <-\n" + user + dsqlRoute, key: "admin.database", msg: "required"},
		{name: "admin database is a route's", doc: "admin:\n  database: app # <-\n" + user + dsqlRoute, key: "admin.database", msg: `"app" is also the database of routes[0]: the admin console needs a name no route uses`},
		{name: "route on the default admin database", doc: user + "routes:\n  - database: dsqlgate # <-\n    endpoint: abcdefghijklmnopqrstuvwxyz.dsql.us-east-1.on.aws\n", key: "routes[0].database", msg: `"dsqlgate" is the admin console's database (admin.database defaults to it)`},

		// client_tls
		{name: "client tls mode", doc: "client_tls: {mode: on} # <-\n" + user + dsqlRoute, key: "client_tls.mode", msg: `"on" is not one of`},
		{name: "cert without key", doc: "client_tls: {cert_file: {{dir}}/cert.pem} # <-\n" + user + dsqlRoute, key: "client_tls.key_file", msg: "required with cert_file"},
		{name: "key without cert", doc: "client_tls: {key_file: {{dir}}/key.pem} # <-\n" + user + dsqlRoute, key: "client_tls.cert_file", msg: "required with key_file"},
		{name: "require without cert", doc: "client_tls: {mode: require} # <-\n" + user + dsqlRoute, key: "client_tls.mode", msg: "require needs cert_file and key_file"},
		{name: "allow without cert", doc: "client_tls: {mode: allow} # <-\n" + user + dsqlRoute, key: "client_tls.mode", msg: "allow needs cert_file"},
		{name: "cert file missing", doc: "client_tls:\n  cert_file: {{dir}}/missing.pem # <-\n  key_file: {{dir}}/key.pem\n" + user + dsqlRoute, key: "client_tls.cert_file", msg: "no such file"},
		{name: "key file is a directory", doc: "client_tls:\n  cert_file: {{dir}}/cert.pem\n  key_file: {{dir}} # <-\n" + user + dsqlRoute, key: "client_tls.key_file", msg: "it is a directory"},
		{name: "key does not match cert", doc: "client_tls:\n  cert_file: {{dir}}/cert.pem # <-\n  key_file: {{dir}}/other-key.pem\n" + user + dsqlRoute, key: "client_tls.cert_file", msg: "not a certificate and its key"},

		// limits
		{name: "startup timeout zero", doc: "limits: {startup_timeout: 0s} # <-\n" + user + dsqlRoute, key: "limits.startup_timeout", msg: "must be positive"},
		{name: "startup packet too small", doc: "limits: {max_startup_packet: 512B} # <-\n" + user + dsqlRoute, key: "limits.max_startup_packet", msg: "512B is out of range: from 1KiB"},
		{name: "message size too small", doc: "limits: {max_message_size: 4KiB} # <-\n" + user + dsqlRoute, key: "limits.max_message_size", msg: "from 8KiB to 1GiB"},
		{name: "message size too large", doc: "limits: {max_message_size: 2GiB} # <-\n" + user + dsqlRoute, key: "limits.max_message_size", msg: "2GiB is out of range"},
		{name: "max client conn zero", doc: "limits: {max_client_conn: 0} # <-\n" + user + dsqlRoute, key: "limits.max_client_conn", msg: "at least 1"},
		{name: "max client conn beyond the slot space", doc: "limits: {max_client_conn: 65536} # <-\n" + user + dsqlRoute, key: "limits.max_client_conn", msg: "65536 is more than 65535: a cancel key has a 16-bit session slot"},
		{name: "valid max client conn at the slot space", doc: "limits: {max_client_conn: 65535}\n" + user + dsqlRoute},

		// peers
		{name: "valid peers", doc: "peers: {addresses: ['10.0.1.11:6432', '[fd00::1]:6432', 'gw-2.internal:6432'], dns: 'gw.svc.cluster.local:6432', refresh: 1s, self: '10.0.1.11:6432'}\n" + user + dsqlRoute},
		{name: "peer address without port", doc: "peers:\n  addresses:\n    - 10.0.1.11 # <-\n" + user + dsqlRoute, key: "peers.addresses[0]", msg: "not host:port"},
		{name: "peer address without host", doc: "peers:\n  addresses: [':6432'] # <-\n" + user + dsqlRoute, key: "peers.addresses[0]", msg: "has no host"},
		{name: "peer address port zero", doc: "peers:\n  addresses: ['10.0.1.11:0'] # <-\n" + user + dsqlRoute, key: "peers.addresses[0]", msg: "from 1 to 65535"},
		{name: "peers dns without port", doc: "peers:\n  dns: gw.svc.cluster.local # <-\n" + user + dsqlRoute, key: "peers.dns", msg: "not host:port"},
		{name: "peers refresh zero", doc: "peers:\n  refresh: 0s # <-\n" + user + dsqlRoute, key: "peers.refresh", msg: "must be positive"},
		{name: "peers self without port", doc: "peers:\n  self: 10.0.1.11 # <-\n" + user + dsqlRoute, key: "peers.self", msg: "not host:port"},
		{name: "peers self every interface", doc: "peers:\n  self: '0.0.0.0:6432' # <-\n" + user + dsqlRoute, key: "peers.self", msg: "every interface"},
		{name: "idle in transaction timeout negative", doc: "limits: {idle_in_transaction_timeout: -1s} # <-\n" + user + dsqlRoute, key: "limits.idle_in_transaction_timeout", msg: "must not be negative"},
		{name: "max pending replies too few", doc: "limits: {max_pending_replies: 99} # <-\n" + user + dsqlRoute, key: "limits.max_pending_replies", msg: "at least 100"},
		{name: "max client statements zero", doc: "limits: {max_client_statements: 0} # <-\n" + user + dsqlRoute, key: "limits.max_client_statements", msg: "at least 1"},
		{name: "max client settings zero", doc: "limits: {max_client_settings: 0} # <-\n" + user + dsqlRoute, key: "limits.max_client_settings", msg: "at least 1"},

		// users
		{name: "no users", doc: dsqlRoute, key: "users", msg: "at least one user"},
		{name: "user without name", doc: "users: [{verifier_env: TEST_VERIFIER}] # <-\n" + dsqlRoute, key: "users[0].name", msg: "required"},
		{name: "duplicate user", doc: "users:\n  - {name: alice, verifier_env: TEST_VERIFIER}\n  - {name: alice, verifier_env: TEST_VERIFIER} # <-\n" + dsqlRoute, key: "users[1].name", msg: `"alice" is already the name of users[0]`},
		{name: "verifier and verifier_env", doc: "users:\n  - name: alice\n    verifier: " + testVerifier + "\n    verifier_env: TEST_VERIFIER # <-\n" + dsqlRoute, key: "users[0].verifier_env", msg: "not both"},
		{name: "no verifier", doc: "users: [{name: alice}] # <-\n" + dsqlRoute, key: "users[0]", msg: "needs verifier, verifier_env or password_env"},

		// routes
		{name: "no routes", doc: user, key: "routes", msg: "at least one route"},
		{name: "route without database", doc: user + "routes:\n  - endpoint: abcdefghijklmnopqrstuvwxyz.dsql.us-east-1.on.aws # <-\n", key: "routes[0].database", msg: "required"},
		{name: "duplicate database", doc: user + dsqlRoute + "  - database: app # <-\n    endpoint: abcdefghijklmnopqrstuvwxyz.dsql.us-east-1.on.aws\n", key: "routes[1].database", msg: `"app" is already routed by routes[0]`},
		{name: "unknown kind", doc: user + dsqlRoute + "    kind: mysql # <-\n", key: "routes[0].kind", msg: `"mysql" is not one of dsql, postgres`},
		{name: "endpoint missing", doc: user + "routes:\n  - database: app # <-\n", key: "routes[0].endpoint", msg: "required"},
		{name: "endpoint is a URL", doc: user + "routes:\n  - database: app\n    endpoint: postgres://db.example.com # <-\n    region: us-east-1\n", key: "routes[0].endpoint", msg: "not a host name"},
		{name: "endpoint bad port", doc: user + "routes:\n  - database: app\n    endpoint: abcdefghijklmnopqrstuvwxyz.dsql.us-east-1.on.aws:99999 # <-\n", key: "routes[0].endpoint", msg: "from 1 to 65535"},
		{name: "endpoint bare ipv6", doc: user + "routes:\n  - database: app\n    endpoint: '::1' # <-\n    region: us-east-1\n", key: "routes[0].endpoint", msg: "write an IPv6 address in brackets"},
		{name: "dial address without port", doc: user + dsqlRoute + "    dial_address: localhost # <-\n", key: "routes[0].dial_address", msg: "not host:port"},
		{name: "dial address without host", doc: user + dsqlRoute + "    dial_address: :5432 # <-\n", key: "routes[0].dial_address", msg: "has no host"},
		{name: "ca file is a device", doc: user + dsqlRoute + "    ca_file: /dev/zero # <-\n", key: "routes[0].ca_file", msg: "cannot read /dev/zero: it is not a regular file"},
		{name: "ca file missing", doc: user + dsqlRoute + "    ca_file: {{dir}}/missing.pem # <-\n", key: "routes[0].ca_file", msg: "cannot read"},
		{name: "ca file not pem", doc: user + dsqlRoute + "    ca_file: {{dir}}/junk.pem # <-\n", key: "routes[0].ca_file", msg: "holds no PEM certificate"},
		{name: "tls negotiation", doc: user + dsqlRoute + "    tls_negotiation: starttls # <-\n", key: "routes[0].tls_negotiation", msg: `"starttls" is not one of direct, postgres`},

		// kind dsql
		{name: "dsql endpoint is an IP", doc: user + "routes:\n  - database: app\n    endpoint: 10.0.0.1 # <-\n    region: us-east-1\n", key: "routes[0].endpoint", msg: "not an IP address"},
		{name: "dsql region required", doc: user + "routes:\n  - database: app # <-\n    endpoint: db.example.com\n", key: "routes[0].region", msg: "region cannot be read"},
		{name: "dsql region malformed", doc: user + dsqlRoute + "    region: useast1 # <-\n", key: "routes[0].region", msg: "not an AWS region name"},
		{name: "dsql region mismatch", doc: user + dsqlRoute + "    region: us-west-2 # <-\n", key: "routes[0].region", msg: "differs from the endpoint's region us-east-1"},
		{name: "dsql role empty", doc: user + dsqlRoute + "    role: '' # <-\n", key: "routes[0].role", msg: "required"},
		{name: "dsql token expiry too short", doc: user + dsqlRoute + "    token_expiry: 500ms # <-\n", key: "routes[0].token_expiry", msg: "from 1s to 168h"},
		{name: "dsql token expiry too long", doc: user + dsqlRoute + "    token_expiry: 169h # <-\n", key: "routes[0].token_expiry", msg: "169h0m0s is out of range"},
		{name: "dsql tls set", doc: user + dsqlRoute + "    tls: disable # <-\n", key: "routes[0].tls", msg: "only for kind postgres"},
		{name: "dsql user set", doc: user + dsqlRoute + "    user: bob # <-\n", key: "routes[0].user", msg: "only for kind postgres"},
		{name: "dsql password set", doc: user + dsqlRoute + "    password: hunter2 # <-\n", key: "routes[0].password", msg: "only for kind postgres"},
		{name: "dsql password_env set", doc: user + dsqlRoute + "    password_env: TEST_PASSWORD # <-\n", key: "routes[0].password_env", msg: "only for kind postgres"},
		{name: "dsql upstream database", doc: user + dsqlRoute + "    upstream_database: app # <-\n", key: "routes[0].upstream_database", msg: "DSQL has no other database"},
		{name: "dsql max lifetime over 60m", doc: user + dsqlRoute + "    pool:\n      max_lifetime: 61m # <-\n", key: "routes[0].pool.max_lifetime", msg: "DSQL closes every connection at 60 minutes"},

		// kind postgres
		{name: "postgres user missing", doc: user + "routes:\n  - database: local # <-\n    kind: postgres\n    endpoint: localhost\n" + pgPass, key: "routes[0].user", msg: "required for kind postgres"},
		{name: "postgres no password", doc: user + strings.Replace(pgRoute, "local", "local # <-", 1), key: "routes[0]", msg: "needs password_env (or password)"},
		{name: "postgres both passwords", doc: user + pgRoute + "    password: pw\n" + "    password_env: TEST_PASSWORD # <-\n", key: "routes[0].password_env", msg: "not both"},
		{name: "postgres tls", doc: user + pgRoute + pgPass + "    tls: prefer # <-\n", key: "routes[0].tls", msg: `"prefer" is not one of disable, require, verify-full`},
		{name: "postgres direct without tls", doc: user + pgRoute + pgPass + "    tls: disable\n    tls_negotiation: direct # <-\n", key: "routes[0].tls_negotiation", msg: "tls: disable turns off"},

		// pool
		{name: "pool mode", doc: user + dsqlRoute + "    pool: {mode: statement} # <-\n", key: "routes[0].pool.mode", msg: `"statement" is not one of transaction, session`},
		{name: "pool size zero", doc: user + dsqlRoute + "    pool:\n      size: 0 # <-\n", key: "routes[0].pool.size", msg: "at least 1"},
		{name: "pool min idle above size", doc: user + dsqlRoute + "    pool: {min_idle: 21} # <-\n", key: "routes[0].pool.min_idle", msg: "from 0 to size (20)"},
		{name: "pool min idle negative", doc: user + dsqlRoute + "    pool: {min_idle: -1} # <-\n", key: "routes[0].pool.min_idle", msg: "from 0 to size"},
		{name: "pool idle timeout zero", doc: user + dsqlRoute + "    pool: {idle_timeout: 0s} # <-\n", key: "routes[0].pool.idle_timeout", msg: "must be positive"},
		{name: "pool max lifetime negative", doc: user + dsqlRoute + "    pool: {max_lifetime: -1m, lifetime_jitter: 0s} # <-\n", key: "routes[0].pool.max_lifetime", msg: "must be positive"},
		{name: "pool query wait zero", doc: user + dsqlRoute + "    pool: {query_wait_timeout: 0s} # <-\n", key: "routes[0].pool.query_wait_timeout", msg: "must be positive"},
		{name: "pool dial timeout zero", doc: user + dsqlRoute + "    pool: {dial_timeout: 0s} # <-\n", key: "routes[0].pool.dial_timeout", msg: "must be positive"},
		{name: "pool jitter not below lifetime", doc: user + dsqlRoute + "    pool: {max_lifetime: 5m} # <-\n", key: "routes[0].pool.lifetime_jitter", msg: "must be less than max_lifetime (5m0s)"},
		{name: "pool jitter negative", doc: user + dsqlRoute + "    pool: {lifetime_jitter: -1s} # <-\n", key: "routes[0].pool.lifetime_jitter", msg: "must not be negative"},
		{name: "pool dial rate zero", doc: user + dsqlRoute + "    pool: {dial_rate: 0} # <-\n", key: "routes[0].pool.dial_rate", msg: "positive number"},
		{name: "pool dial rate nan", doc: user + dsqlRoute + "    pool: {dial_rate: .nan} # <-\n", key: "routes[0].pool.dial_rate", msg: "positive number"},
		{name: "pool max user connections negative", doc: user + dsqlRoute + "    pool: {max_user_connections: -1} # <-\n", key: "routes[0].pool.max_user_connections", msg: "must not be negative"},
		{name: "pool prepared statements zero", doc: user + dsqlRoute + "    pool: {max_prepared_statements: 0} # <-\n", key: "routes[0].pool.max_prepared_statements", msg: "at least 1"},
		{name: "occ retry no attempt", doc: user + dsqlRoute + "    occ_retry: {max_attempts: 0} # <-\n", key: "routes[0].occ_retry.max_attempts", msg: "at least 1"},
		{name: "occ retry max backoff below backoff", doc: user + dsqlRoute + "    occ_retry: {backoff: 50ms, max_backoff: 10ms} # <-\n", key: "routes[0].occ_retry.max_backoff", msg: "at least backoff"},
		{name: "occ retry negative budget", doc: user + dsqlRoute + "    occ_retry: {budget: -1s} # <-\n", key: "routes[0].occ_retry.budget", msg: "negative"},
		{name: "dial rate differs on one cluster", doc: user + dsqlRoute + "  - database: other\n    endpoint: ABCDEFGHIJKLMNOPQRSTUVWXYZ.dsql.us-east-1.on.aws\n    pool: {dial_rate: 50} # <-\n", key: "routes[1].pool.dial_rate", msg: "50 differs from 100 in routes[0]"},
	}
	runProblemCases(t, dir, tests)
}

// TestValidateInCode checks a Config built without a file: problems name
// the key and no line, and a loaded Config keeps its lines for a later
// Validate.
func TestValidateInCode(t *testing.T) {
	t.Setenv("TEST_VERIFIER", testVerifier)
	c := config.Default()
	c.Users = []config.User{{Name: "alice", VerifierEnv: "TEST_VERIFIER"}}
	r := config.DefaultRoute(config.KindDSQL, "app")
	r.Endpoint = "abcdefghijklmnopqrstuvwxyz.dsql.us-east-1.on.aws"
	c.Routes = []config.Route{r}
	if err := c.Validate(); err != nil {
		t.Fatalf("Validate: %v", err)
	}
	c.Routes[0].Pool.Size = 0
	want := []config.Problem{{Key: "routes[0].pool.size", Message: "must be at least 1"}}
	if diff := cmp.Diff(want, asValidation(t, c.Validate())); diff != "" {
		t.Errorf("problems mismatch (-want +got):\n%s", diff)
	}

	const doc = "# a comment\n" + user + dsqlRoute
	loaded, err := config.Parse([]byte(doc), "gw.yaml")
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	loaded.Routes[0].Pool.Size = 0 // pool is not in the file: the route's line
	want = []config.Problem{{File: "gw.yaml", Line: 4, Key: "routes[0].pool.size", Message: "must be at least 1"}}
	if diff := cmp.Diff(want, asValidation(t, loaded.Validate())); diff != "" {
		t.Errorf("problems after Parse mismatch (-want +got):\n%s", diff)
	}
}

// TestAllProblemsTogether checks that unknown keys, type errors and
// validation problems come back together, in line order.
func TestAllProblemsTogether(t *testing.T) {
	t.Setenv("TEST_VERIFIER", testVerifier)
	const doc = `listen: localhost
users: [{name: alice, verifier_env: TEST_VERIFIER}]
routes:
  - database: app
    endpoint: abcdefghijklmnopqrstuvwxyz.dsql.us-east-1.on.aws
    pool_sise: 5
    pool:
      size: many
      min_idle: 50
  - database: app
`
	_, err := config.Parse([]byte(doc), "dsqlgate.yaml")
	got := asValidation(t, err)
	keys := make([]string, len(got))
	for i, p := range got {
		keys[i] = p.Error()[:strings.Index(p.Error(), ": ")+len(": ")+len(p.Key)]
	}
	want := []string{
		"dsqlgate.yaml:1: listen",
		"dsqlgate.yaml:6: routes[0].pool_sise",
		"dsqlgate.yaml:8: routes[0].pool.size",
		"dsqlgate.yaml:9: routes[0].pool.min_idle",
		"dsqlgate.yaml:10: routes[1].database",
		"dsqlgate.yaml:10: routes[1].endpoint",
	}
	if diff := cmp.Diff(want, keys); diff != "" {
		t.Errorf("problems mismatch (-want +got):\n%s\nerror:\n%v", diff, err)
	}
}
