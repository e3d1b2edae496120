package config_test

import (
	"crypto/md5"
	"encoding/hex"
	"testing"

	"github.com/dsqlgate/dsqlgate/config"
)

// md5Of is PostgreSQL's stored md5 password, computed here independently of
// the package: "md5" + hex(md5(password + user)).
func md5Of(password, user string) string {
	h := md5.New()
	h.Write([]byte(password))
	h.Write([]byte(user))
	return "md5" + hex.EncodeToString(h.Sum(nil))
}

// testMD5 is a syntactically valid md5 hash.
var testMD5 = md5Of("secret", "alice")

// usersFile names a users file in cases; Validate never reads it.
const usersFile = "users.txt"

func TestValidateUserRules(t *testing.T) {
	dir := t.TempDir()
	tlsFiles(t, dir)
	t.Setenv("TEST_PLAIN", "secret")
	t.Setenv("TEST_EMPTY", "")
	t.Setenv("TEST_HOLDS_VERIFIER", testVerifier)
	t.Setenv("TEST_HOLDS_MD5", testMD5)
	const tls = "client_tls: {cert_file: {{dir}}/cert.pem, key_file: {{dir}}/key.pem}\n"
	tests := []problemCase{
		{name: "valid password_env", doc: "users: [{name: alice, password_env: TEST_PLAIN}]\n" + dsqlRoute},
		{name: "valid md5 only", doc: "users: [{name: alice, md5: " + testMD5 + ", auth: md5}]\n" + dsqlRoute},
		{name: "valid md5 from password_env", doc: "users: [{name: alice, password_env: TEST_PLAIN, auth: md5}]\n" + dsqlRoute},
		{name: "valid md5 and verifier", doc: "users: [{name: alice, verifier_env: TEST_VERIFIER, md5: " + testMD5 + ", auth: md5}]\n" + dsqlRoute},
		{name: "valid explicit scram", doc: "users: [{name: alice, verifier_env: TEST_VERIFIER, auth: scram-sha-256}]\n" + dsqlRoute},
		{name: "valid password over tls", doc: tls + "users: [{name: alice, verifier_env: TEST_VERIFIER, auth: password}]\n" + dsqlRoute},
		{name: "valid password with tls required", doc: "listen: 0.0.0.0:6432\n" + tls + "users: [{name: alice, password_env: TEST_PLAIN, auth: password}]\n" + dsqlRoute},
		{name: "valid databases", doc: "users: [{name: alice, verifier_env: TEST_VERIFIER, databases: [app]}]\n" + dsqlRoute},
		{name: "valid empty databases", doc: "users: [{name: alice, verifier_env: TEST_VERIFIER, databases: []}]\n" + dsqlRoute},

		{name: "auth unknown", doc: "users:\n  - name: alice\n    verifier_env: TEST_VERIFIER\n    auth: trust # <-\n" + dsqlRoute, key: "users[0].auth", msg: `"trust" is not one of scram-sha-256, md5, password`},
		{name: "verifier and password_env", doc: "users:\n  - name: alice\n    verifier: '" + testVerifier + "'\n    password_env: TEST_PLAIN # <-\n" + dsqlRoute, key: "users[0].password_env", msg: "set verifier or password_env, not both"},
		{name: "verifier_env and password_env", doc: "users:\n  - name: alice\n    verifier_env: TEST_VERIFIER\n    password_env: TEST_PLAIN # <-\n" + dsqlRoute, key: "users[0].password_env", msg: "set verifier_env or password_env, not both"},
		{name: "all three", doc: "users:\n  - name: alice\n    verifier: '" + testVerifier + "'\n    verifier_env: TEST_VERIFIER\n    password_env: TEST_PLAIN # <-\n" + dsqlRoute, key: "users[0].password_env", msg: "not all three"},
		{name: "md5 and password_env", doc: "users:\n  - name: alice\n    password_env: TEST_PLAIN\n    md5: " + testMD5 + " # <-\n" + dsqlRoute, key: "users[0].md5", msg: "set md5 or password_env, not both"},
		{name: "md5 only without auth md5", doc: "users:\n  - name: alice # <-\n    md5: " + testMD5 + "\n" + dsqlRoute, key: "users[0].auth", msg: "scram-sha-256 needs verifier, verifier_env or password_env; a user with only md5 needs auth: md5"},
		{name: "auth md5 with only a verifier", doc: "users:\n  - name: alice\n    verifier_env: TEST_VERIFIER\n    auth: md5 # <-\n" + dsqlRoute, key: "users[0].auth", msg: "md5 needs md5"},
		{name: "auth md5 with nothing", doc: "users:\n  - name: alice # <-\n    auth: md5\n" + dsqlRoute, key: "users[0]", msg: "auth md5 needs md5"},
		{name: "auth password with md5 only", doc: tls + "users:\n  - name: alice\n    md5: " + testMD5 + "\n    auth: password # <-\n" + dsqlRoute, key: "users[0].auth", msg: "password needs verifier, verifier_env or password_env"},
		{name: "auth password without tls", doc: "users:\n  - name: alice\n    verifier_env: TEST_VERIFIER\n    auth: password # <-\n" + dsqlRoute, key: "users[0].auth", msg: "password sends the password in clear, so it needs client TLS, but client_tls.mode resolves to disable"},
		{name: "auth password with tls off explicitly", doc: "listen: 0.0.0.0:6432\nclient_tls: {mode: disable}\nusers:\n  - name: alice\n    verifier_env: TEST_VERIFIER\n    auth: password # <-\n" + dsqlRoute, key: "users[0].auth", msg: "resolves to disable"},
		{name: "unknown database", doc: "users:\n  - name: alice\n    verifier_env: TEST_VERIFIER\n    databases:\n      - app\n      - nope # <-\n" + dsqlRoute, key: "users[0].databases[1]", msg: `"nope" is not the database of any route (routes: app)`},
		{name: "empty database", doc: "users:\n  - name: alice\n    verifier_env: TEST_VERIFIER\n    databases: [''] # <-\n" + dsqlRoute, key: "users[0].databases[0]", msg: `"" is not the database of any route`},
		{name: "database not a list", doc: "users:\n  - name: alice\n    verifier_env: TEST_VERIFIER\n    databases: app # <-\n" + dsqlRoute, key: "users[0].databases", msg: "expected a list"},
		{name: "md5 not text", doc: "users:\n  - name: alice\n    verifier_env: TEST_VERIFIER\n    md5: [x] # <-\n" + dsqlRoute, key: "users[0].md5", msg: "expected text, got a list"},
	}
	runProblemCases(t, dir, tests)
}

// TestValidateUsersFile: Validate does not read the users file (the users
// package does), so with users_file set it cannot know the users there.
func TestValidateUsersFile(t *testing.T) {
	tests := []problemCase{
		{name: "valid file only", doc: "users_file: " + usersFile + "\n" + dsqlRoute},
		{name: "valid file and users", doc: user + "users_file: " + usersFile + "\n" + dsqlRoute},
		{name: "valid missing file", doc: user + "users_file: /nonexistent/users.txt\n" + dsqlRoute},
		{name: "valid admin from the file", doc: "admin: {users: [carol]}\nusers_file: " + usersFile + "\n" + dsqlRoute},

		{name: "users empty and no file", doc: "users: [] # <-\n" + dsqlRoute, key: "users", msg: "at least one user is required (in users, users_file or users_env)"},
		{name: "admin not a user, no file", doc: "admin:\n  users: [carol] # <-\n" + user + dsqlRoute, key: "admin.users[0]", msg: `"carol" is not a user in users or users_file`},
	}
	runProblemCases(t, t.TempDir(), tests)
}

func TestValidateClientTLSRules(t *testing.T) {
	dir := t.TempDir()
	tlsFiles(t, dir)
	const cert = "client_tls: {cert_file: {{dir}}/cert.pem, key_file: {{dir}}/key.pem}\n"
	tests := []problemCase{
		{name: "valid loopback", doc: "listen: 127.0.0.1:6432\n" + user + dsqlRoute},
		{name: "valid other loopback", doc: "listen: 127.8.9.10:6432\n" + user + dsqlRoute},
		{name: "valid ipv6 loopback", doc: "listen: '[::1]:6432'\n" + user + dsqlRoute},
		{name: "valid localhost", doc: "listen: localhost:6432\n" + user + dsqlRoute},
		{name: "valid public with certificate", doc: "listen: 0.0.0.0:6432\n" + cert + user + dsqlRoute},
		{name: "valid public with tls off explicitly", doc: "listen: 0.0.0.0:6432\nclient_tls: {mode: disable}\n" + user + dsqlRoute},
		{name: "valid public allow", doc: "listen: 0.0.0.0:6432\nclient_tls: {mode: allow, cert_file: {{dir}}/cert.pem, key_file: {{dir}}/key.pem}\n" + user + dsqlRoute},

		{name: "every interface", doc: "listen: :6432 # <-\n" + user + dsqlRoute, key: "listen", msg: `":6432" listens on every interface, so client TLS is required (client_tls.mode resolves to require)`},
		{name: "unspecified ipv4", doc: "listen: 0.0.0.0:6432 # <-\n" + user + dsqlRoute, key: "listen", msg: "must not accept passwords in clear"},
		{name: "unspecified ipv6", doc: "listen: '[::]:6432' # <-\n" + user + dsqlRoute, key: "listen", msg: "listens on every interface"},
		{name: "private address", doc: "listen: 10.1.2.3:6432 # <-\n" + user + dsqlRoute, key: "listen", msg: `"10.1.2.3:6432" is not a loopback address`},
		{name: "host name", doc: "listen: gateway.internal:6432 # <-\n" + user + dsqlRoute, key: "listen", msg: "`dsqlgate cert` makes a self-signed pair"},
		{name: "offers disable", doc: "listen: 192.168.0.1:6432 # <-\n" + user + dsqlRoute, key: "listen", msg: "or set client_tls.mode: disable explicitly to accept plain connections"},
		{name: "explicit require", doc: "client_tls:\n  mode: require # <-\n" + user + dsqlRoute, key: "client_tls.mode", msg: "require needs cert_file and key_file: clients must use TLS, which needs a certificate; set client_tls.cert_file and key_file (`dsqlgate cert` makes a self-signed pair)"},
		{name: "explicit require on a public address", doc: "listen: 0.0.0.0:6432\nclient_tls:\n  mode: require # <-\n" + user + dsqlRoute, key: "client_tls.mode", msg: "require needs cert_file"},
		{name: "public with key only", doc: "listen: 0.0.0.0:6432\nclient_tls: # <-\n  key_file: {{dir}}/key.pem\n" + user + dsqlRoute, key: "client_tls.cert_file", msg: "required with key_file"},
		{name: "invalid listen is reported once", doc: "listen: 0.0.0.0 # <-\n" + user + dsqlRoute, key: "listen", msg: "is not host:port"},
	}
	runProblemCases(t, dir, tests)
}

func TestValidateLimitRules(t *testing.T) {
	tests := []problemCase{
		{name: "valid backoff off", doc: "limits: {auth_failure_limit: 0}\n" + user + dsqlRoute},
		{name: "valid longer delay with longer startup", doc: "limits: {startup_timeout: 30s, auth_failure_max_delay: 20s}\n" + user + dsqlRoute},
		{name: "failure limit negative", doc: "limits: {auth_failure_limit: -1} # <-\n" + user + dsqlRoute, key: "limits.auth_failure_limit", msg: "must not be negative (0 turns login backoff off)"},
		{name: "failure limit not a number", doc: "limits: {auth_failure_limit: many} # <-\n" + user + dsqlRoute, key: "limits.auth_failure_limit", msg: "expected a whole number"},
		{name: "window zero", doc: "limits:\n  auth_failure_window: 0s # <-\n" + user + dsqlRoute, key: "limits.auth_failure_window", msg: "must be positive"},
		{name: "window negative", doc: "limits:\n  auth_failure_window: -1m # <-\n" + user + dsqlRoute, key: "limits.auth_failure_window", msg: "must be positive"},
		{name: "window without unit", doc: "limits:\n  auth_failure_window: 60 # <-\n" + user + dsqlRoute, key: "limits.auth_failure_window", msg: `write "60s"`},
		{name: "max delay zero", doc: "limits:\n  auth_failure_max_delay: 0s # <-\n" + user + dsqlRoute, key: "limits.auth_failure_max_delay", msg: "must be positive"},
		{name: "max delay equals startup timeout", doc: "limits:\n  auth_failure_max_delay: 10s # <-\n" + user + dsqlRoute, key: "limits.auth_failure_max_delay", msg: "10s must be less than startup_timeout (10s)"},
		{name: "max delay beyond a shorter startup timeout", doc: "limits:\n  startup_timeout: 3s\n  auth_failure_max_delay: 4s # <-\n" + user + dsqlRoute, key: "limits.auth_failure_max_delay", msg: "startup deadline"},
	}
	runProblemCases(t, "", tests)
}

func TestClientTLSMode(t *testing.T) {
	tests := []struct {
		name   string
		listen string
		tls    config.ClientTLS
		want   string
	}{
		{name: "loopback", listen: "127.0.0.1:6432", want: config.TLSDisable},
		{name: "loopback any port", listen: "127.0.0.1:0", want: config.TLSDisable},
		{name: "loopback range", listen: "127.255.0.9:6432", want: config.TLSDisable},
		{name: "ipv6 loopback", listen: "[::1]:6432", want: config.TLSDisable},
		{name: "ipv6 loopback with zone", listen: "[::1%lo]:6432", want: config.TLSDisable},
		{name: "ipv4-mapped loopback", listen: "[::ffff:127.0.0.1]:6432", want: config.TLSDisable},
		{name: "localhost", listen: "localhost:6432", want: config.TLSDisable},
		{name: "localhost upper case", listen: "LocalHost:6432", want: config.TLSDisable},
		{name: "loopback with certificate", listen: "127.0.0.1:6432", tls: config.ClientTLS{CertFile: "c", KeyFile: "k"}, want: config.TLSAllow},
		{name: "empty host", listen: ":6432", want: config.TLSRequire},
		{name: "unspecified ipv4", listen: "0.0.0.0:6432", want: config.TLSRequire},
		{name: "unspecified ipv6", listen: "[::]:6432", want: config.TLSRequire},
		{name: "private address", listen: "10.0.0.5:6432", want: config.TLSRequire},
		{name: "public address", listen: "203.0.113.7:6432", want: config.TLSRequire},
		{name: "next to loopback", listen: "128.0.0.1:6432", want: config.TLSRequire},
		{name: "link-local ipv6", listen: "[fe80::1%eth0]:6432", want: config.TLSRequire},
		{name: "host name", listen: "gateway.example.com:6432", want: config.TLSRequire},
		{name: "localhost look-alike", listen: "localhost.example.com:6432", want: config.TLSRequire},
		{name: "public with certificate", listen: "0.0.0.0:6432", tls: config.ClientTLS{CertFile: "c", KeyFile: "k"}, want: config.TLSRequire},
		{name: "unparsable is not loopback", listen: "127.0.0.1", want: config.TLSRequire},
		{name: "empty is not loopback", listen: "", want: config.TLSRequire},
		{name: "explicit disable on every interface", listen: ":6432", tls: config.ClientTLS{Mode: config.TLSDisable}, want: config.TLSDisable},
		{name: "explicit allow on every interface", listen: ":6432", tls: config.ClientTLS{Mode: config.TLSAllow}, want: config.TLSAllow},
		{name: "explicit require on loopback", listen: "127.0.0.1:6432", tls: config.ClientTLS{Mode: config.TLSRequire}, want: config.TLSRequire},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := &config.Config{Listen: tt.listen, ClientTLS: tt.tls}
			if got := c.ClientTLSMode(); got != tt.want {
				t.Errorf("ClientTLSMode() with listen %q = %q, want %q", tt.listen, got, tt.want)
			}
		})
	}
}
