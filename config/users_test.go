package config_test

import (
	"crypto/md5"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/dsqlgate/dsqlgate/config"
	"github.com/dsqlgate/dsqlgate/internal/scram"
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

// userlistPath is the sample users file; its users are carol (SCRAM,
// carol-password), dave (md5, dave-password) and o"brien (SCRAM,
// obrien-password).
const userlistPath = "testdata/userlist.txt"

func TestValidateUserRules(t *testing.T) {
	dir := t.TempDir()
	tlsFiles(t, dir)
	t.Setenv("TEST_PLAIN", "secret")
	t.Setenv("TEST_EMPTY", "")
	t.Setenv("TEST_HOLDS_VERIFIER", testVerifier)
	t.Setenv("TEST_HOLDS_MD5", testMD5)
	const tls = "client_tls: {cert_file: {{dir}}/cert.pem, key_file: {{dir}}/key.pem}\n"
	nonCanonical := strings.Replace(testVerifier, "$4096:", "$04096:", 1)
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
		{name: "md5 too short", doc: "users:\n  - name: alice\n    auth: md5\n    md5: md5abc # <-\n" + dsqlRoute, key: "users[0].md5", msg: `expected "md5" and 32 lower-case hex digits`},
		{name: "md5 without prefix", doc: "users:\n  - name: alice\n    auth: md5\n    md5: " + strings.TrimPrefix(testMD5, "md5") + "abc # <-\n" + dsqlRoute, key: "users[0].md5", msg: `expected "md5"`},
		{name: "md5 upper case", doc: "users:\n  - name: alice\n    auth: md5\n    md5: md5" + strings.ToUpper(strings.TrimPrefix(testMD5, "md5")) + " # <-\n" + dsqlRoute, key: "users[0].md5", msg: "must be lower-case hex"},
		{name: "md5 holds a verifier", doc: "users:\n  - name: alice\n    auth: md5\n    md5: '" + testVerifier + "' # <-\n" + dsqlRoute, key: "users[0].md5", msg: "it is a SCRAM verifier"},
		{name: "md5 only without auth md5", doc: "users:\n  - name: alice # <-\n    md5: " + testMD5 + "\n" + dsqlRoute, key: "users[0].auth", msg: "scram-sha-256 needs verifier, verifier_env or password_env; a user with only md5 needs auth: md5"},
		{name: "auth md5 with only a verifier", doc: "users:\n  - name: alice\n    verifier_env: TEST_VERIFIER\n    auth: md5 # <-\n" + dsqlRoute, key: "users[0].auth", msg: "md5 needs md5"},
		{name: "auth md5 with nothing", doc: "users:\n  - name: alice # <-\n    auth: md5\n" + dsqlRoute, key: "users[0]", msg: "auth md5 needs md5"},
		{name: "auth password with md5 only", doc: tls + "users:\n  - name: alice\n    md5: " + testMD5 + "\n    auth: password # <-\n" + dsqlRoute, key: "users[0].auth", msg: "password needs verifier, verifier_env or password_env"},
		{name: "auth password without tls", doc: "users:\n  - name: alice\n    verifier_env: TEST_VERIFIER\n    auth: password # <-\n" + dsqlRoute, key: "users[0].auth", msg: "password sends the password in clear, so it needs client TLS, but client_tls.mode resolves to disable"},
		{name: "auth password with tls off explicitly", doc: "listen: 0.0.0.0:6432\nclient_tls: {mode: disable}\nusers:\n  - name: alice\n    verifier_env: TEST_VERIFIER\n    auth: password # <-\n" + dsqlRoute, key: "users[0].auth", msg: "resolves to disable"},
		{name: "password_env unset", doc: "users:\n  - name: alice\n    password_env: TEST_UNSET_VARIABLE # <-\n" + dsqlRoute, key: "users[0].password_env", msg: "environment variable TEST_UNSET_VARIABLE is not set"},
		{name: "password_env empty", doc: "users:\n  - name: alice\n    password_env: TEST_EMPTY # <-\n" + dsqlRoute, key: "users[0].password_env", msg: "environment variable TEST_EMPTY is empty"},
		{name: "password_env holds a verifier", doc: "users:\n  - name: alice\n    password_env: TEST_HOLDS_VERIFIER # <-\n" + dsqlRoute, key: "users[0].password_env", msg: "holds a SCRAM verifier, not a password"},
		{name: "password_env holds an md5 hash", doc: "users:\n  - name: alice\n    password_env: TEST_HOLDS_MD5 # <-\n" + dsqlRoute, key: "users[0].password_env", msg: "holds an md5 hash, not a password"},
		{name: "verifier not canonical", doc: "users:\n  - name: alice\n    verifier: '" + nonCanonical + "' # <-\n" + dsqlRoute, key: "users[0].verifier", msg: "iteration count"},
		{name: "unknown database", doc: "users:\n  - name: alice\n    verifier_env: TEST_VERIFIER\n    databases:\n      - app\n      - nope # <-\n" + dsqlRoute, key: "users[0].databases[1]", msg: `"nope" is not the database of any route (routes: app)`},
		{name: "empty database", doc: "users:\n  - name: alice\n    verifier_env: TEST_VERIFIER\n    databases: [''] # <-\n" + dsqlRoute, key: "users[0].databases[0]", msg: `"" is not the database of any route`},
		{name: "database not a list", doc: "users:\n  - name: alice\n    verifier_env: TEST_VERIFIER\n    databases: app # <-\n" + dsqlRoute, key: "users[0].databases", msg: "expected a list"},
		{name: "md5 not text", doc: "users:\n  - name: alice\n    verifier_env: TEST_VERIFIER\n    md5: [x] # <-\n" + dsqlRoute, key: "users[0].md5", msg: "expected text, got a list"},
	}
	runProblemCases(t, dir, tests)
}

func TestValidateUsersFile(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) {
		t.Helper()
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write("empty.txt", "; no users yet\n")
	write("plain.txt", "\"bob\" \""+testVerifier+"\"\n\"eve\" \"hunter2\"\n")
	write("dup.txt", "\"bob\" \""+testVerifier+"\"\n\"alice\" \""+testVerifier+"\"\n")
	tests := []problemCase{
		{name: "valid file only", doc: "users_file: " + userlistPath + "\n" + dsqlRoute},
		{name: "valid file and users", doc: user + "users_file: " + userlistPath + "\n" + dsqlRoute},
		{name: "valid empty file and users", doc: user + "users_file: {{dir}}/empty.txt\n" + dsqlRoute},

		{name: "file missing", doc: user + "users_file: {{dir}}/missing.txt # <-\n" + dsqlRoute, key: "users_file", msg: "read users file " + dir + "/missing.txt: no such file or directory"},
		{name: "file is a directory", doc: user + "users_file: {{dir}} # <-\n" + dsqlRoute, key: "users_file", msg: "it is a directory"},
		{name: "plaintext in file", doc: user + "users_file: {{dir}}/plain.txt # <-\n" + dsqlRoute, key: "users_file", msg: dir + "/plain.txt:2: the secret is neither a SCRAM-SHA-256 verifier nor an md5 hash"},
		{name: "user in both", doc: user + "users_file: {{dir}}/dup.txt # <-\n" + dsqlRoute, key: "users_file", msg: dir + "/dup.txt:2: this user is already defined in users[0]"},
		{name: "no user anywhere", doc: "users_file: {{dir}}/empty.txt # <-\n" + dsqlRoute, key: "users_file", msg: "empty.txt holds no user and users is empty"},
		{name: "users empty and no file", doc: "users: [] # <-\n" + dsqlRoute, key: "users", msg: "at least one user is required (in users or users_file)"},
	}
	runProblemCases(t, dir, tests)
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

// TestPasswordEnv checks what Validate makes of a password in the
// environment: PostgreSQL's md5 hash and a SCRAM verifier of it, and
// nothing that holds the password.
func TestPasswordEnv(t *testing.T) {
	const password = "secret"
	t.Setenv("TEST_PLAIN", password)
	t.Setenv("TEST_PLAIN_UNICODE", "pässwörd ")
	doc := "users:\n  - {name: alice, password_env: TEST_PLAIN, auth: md5}\n  - {name: bob, password_env: TEST_PLAIN}\n" +
		"  - {name: carol, password_env: TEST_PLAIN_UNICODE}\n" + dsqlRoute
	c, err := config.Parse([]byte(doc), "test.yaml")
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	tests := []struct {
		name     string
		user     config.User
		password string
		md5      string
	}{
		{name: "alice", user: c.Users[0], password: password, md5: md5Of(password, "alice")},
		{name: "bob", user: c.Users[1], password: password, md5: md5Of(password, "bob")},
		{name: "non-ascii with trailing space", user: c.Users[2], password: "pässwörd ", md5: md5Of("pässwörd ", "carol")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.user.ResolvedMD5(); got != tt.md5 {
				t.Errorf("ResolvedMD5() = %q, want %q", got, tt.md5)
			}
			v, err := scram.ParseVerifier(tt.user.ResolvedVerifier())
			if err != nil {
				t.Fatalf("ResolvedVerifier() does not parse: %v", err)
			}
			if !v.VerifyPassword(tt.password) || v.VerifyPassword(tt.password+"x") {
				t.Errorf("ResolvedVerifier() is not the verifier of the password")
			}
			if v.Iterations != scram.DefaultIterations {
				t.Errorf("verifier iterations = %d, want %d", v.Iterations, scram.DefaultIterations)
			}
		})
	}
	// PostgreSQL's documented example: md5 of "secret" + "alice".
	sum := md5.Sum([]byte("secretalice"))
	if want := "md5" + hex.EncodeToString(sum[:]); c.Users[0].ResolvedMD5() != want {
		t.Errorf("alice's md5 = %q, want %q", c.Users[0].ResolvedMD5(), want)
	}
	// Only the verifier and the hash are kept: the password is nowhere in
	// the Config, even in unexported fields.
	if dump := fmt.Sprintf("%#v", *c); strings.Contains(dump, password) {
		t.Errorf("the Config holds the password:\n%s", dump)
	}
	// The environment is read once; the next Validate reads it again.
	t.Setenv("TEST_PLAIN", "changed")
	if got := c.Users[0].ResolvedMD5(); got != md5Of(password, "alice") {
		t.Errorf("ResolvedMD5 changed with the environment before Validate")
	}
	if err := c.Validate(); err != nil {
		t.Fatalf("Validate: %v", err)
	}
	if got, want := c.Users[0].ResolvedMD5(), md5Of("changed", "alice"); got != want {
		t.Errorf("ResolvedMD5 after Validate = %q, want %q", got, want)
	}
}

func TestUserAccessors(t *testing.T) {
	t.Setenv("TEST_VERIFIER", testVerifier)
	dir := t.TempDir()
	tlsFiles(t, dir)
	tests := []struct {
		name     string
		user     config.User
		verifier string
		md5      string
		auth     string
		allowed  []string
		refused  []string
	}{
		{
			name: "defaults", user: config.User{Name: "a", Verifier: " " + testVerifier + "\n"},
			verifier: testVerifier, auth: config.AuthSCRAM, allowed: []string{"app", "reports", ""},
		},
		{
			name: "md5 only", user: config.User{Name: "a", MD5: testMD5, Auth: config.AuthMD5, Databases: []string{"reports"}},
			md5: testMD5, auth: config.AuthMD5, allowed: []string{"reports"}, refused: []string{"app", "", "Reports"},
		},
		{
			name: "verifier_env, password", user: config.User{Name: "a", VerifierEnv: "TEST_VERIFIER", Auth: config.AuthPassword, Databases: []string{"app", "reports"}},
			verifier: testVerifier, auth: config.AuthPassword, allowed: []string{"app", "reports"}, refused: []string{"local"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := config.Default()
			c.ClientTLS.CertFile, c.ClientTLS.KeyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
			c.Users = []config.User{tt.user}
			for _, db := range []string{"app", "reports", "local"} {
				r := config.DefaultRoute(config.KindDSQL, db)
				r.Endpoint = "abcdefghijklmnopqrstuvwxyz.dsql.us-east-1.on.aws"
				c.Routes = append(c.Routes, r)
			}
			if err := c.Validate(); err != nil {
				t.Fatalf("Validate: %v", err)
			}
			u := c.Users[0]
			got := []string{u.ResolvedVerifier(), u.ResolvedMD5(), u.ResolvedAuth()}
			if diff := cmp.Diff([]string{tt.verifier, tt.md5, tt.auth}, got); diff != "" {
				t.Errorf("resolved verifier, md5, auth mismatch (-want +got):\n%s", diff)
			}
			for _, db := range tt.allowed {
				if !u.AllowsDatabase(db) {
					t.Errorf("AllowsDatabase(%q) = false, want true", db)
				}
			}
			for _, db := range tt.refused {
				if u.AllowsDatabase(db) {
					t.Errorf("AllowsDatabase(%q) = true, want false", db)
				}
			}
		})
	}
}

func TestAllUsers(t *testing.T) {
	t.Setenv("TEST_VERIFIER", testVerifier)
	dir := t.TempDir()
	path := filepath.Join(dir, "userlist.txt")
	data, err := os.ReadFile(userlistPath)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := config.Parse([]byte(user+"users_file: "+path+"\n"+dsqlRoute), "test.yaml")
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	names := func(us []config.User) []string {
		var ns []string
		for _, u := range us {
			ns = append(ns, u.Name+"/"+u.ResolvedAuth())
		}
		return ns
	}
	want := []string{"alice/scram-sha-256", "carol/scram-sha-256", "dave/md5", `o"brien/scram-sha-256`}
	if diff := cmp.Diff(want, names(c.AllUsers())); diff != "" {
		t.Errorf("AllUsers mismatch (-want +got):\n%s", diff)
	}
	if len(c.Users) != 1 {
		t.Errorf("Users has %d users, want the 1 of the configuration: AllUsers must not change it", len(c.Users))
	}

	// The file is read by each Validate, not in between.
	if err := os.WriteFile(path, []byte(`"erin" "`+testVerifier+`"`+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(want, names(c.AllUsers())); diff != "" {
		t.Errorf("AllUsers changed before Validate (-want +got):\n%s", diff)
	}
	if err := c.Validate(); err != nil {
		t.Fatalf("Validate: %v", err)
	}
	if diff := cmp.Diff([]string{"alice/scram-sha-256", "erin/scram-sha-256"}, names(c.AllUsers())); diff != "" {
		t.Errorf("AllUsers after Validate mismatch (-want +got):\n%s", diff)
	}

	// Without users_file, AllUsers is Users.
	c.UsersFile = ""
	if err := c.Validate(); err != nil {
		t.Fatalf("Validate: %v", err)
	}
	if diff := cmp.Diff([]string{"alice/scram-sha-256"}, names(c.AllUsers())); diff != "" {
		t.Errorf("AllUsers without users_file mismatch (-want +got):\n%s", diff)
	}
}
