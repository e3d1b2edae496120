package config_test

import (
	"os"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/dsqlgate/dsqlgate/config"
)

// TestMain clears the DSQLGATE_ variables of whoever runs the tests: Parse
// applies them, and a developer's own must not change the results.
func TestMain(m *testing.M) {
	for _, kv := range os.Environ() {
		if name, _, _ := strings.Cut(kv, "="); strings.HasPrefix(name, config.EnvPrefix) {
			os.Unsetenv(name)
		}
	}
	os.Exit(m.Run())
}

func TestEnvVar(t *testing.T) {
	tests := []struct {
		key, want string
	}{
		{"listen", "DSQLGATE_LISTEN"},
		{"log.level", "DSQLGATE_LOG_LEVEL"},
		{"log.format", "DSQLGATE_LOG_FORMAT"},
		{"log.slow_query_threshold", "DSQLGATE_LOG_SLOW_QUERY_THRESHOLD"},
		{"log.slow_query_max_length", "DSQLGATE_LOG_SLOW_QUERY_MAX_LENGTH"},
		{"client_tls.mode", "DSQLGATE_CLIENT_TLS_MODE"},
		{"client_tls.cert_file", "DSQLGATE_CLIENT_TLS_CERT_FILE"},
		{"client_tls.key_file", "DSQLGATE_CLIENT_TLS_KEY_FILE"},
		{"limits.startup_timeout", "DSQLGATE_LIMITS_STARTUP_TIMEOUT"},
		{"limits.max_startup_packet", "DSQLGATE_LIMITS_MAX_STARTUP_PACKET"},
		{"limits.max_message_size", "DSQLGATE_LIMITS_MAX_MESSAGE_SIZE"},
		{"limits.max_client_conn", "DSQLGATE_LIMITS_MAX_CLIENT_CONN"},
		{"limits.auth_failure_limit", "DSQLGATE_LIMITS_AUTH_FAILURE_LIMIT"},
		{"limits.auth_failure_window", "DSQLGATE_LIMITS_AUTH_FAILURE_WINDOW"},
		{"limits.auth_failure_max_delay", "DSQLGATE_LIMITS_AUTH_FAILURE_MAX_DELAY"},
		{"limits.idle_in_transaction_timeout", "DSQLGATE_LIMITS_IDLE_IN_TRANSACTION_TIMEOUT"},
		{"limits.max_pending_replies", "DSQLGATE_LIMITS_MAX_PENDING_REPLIES"},
		{"limits.max_client_statements", "DSQLGATE_LIMITS_MAX_CLIENT_STATEMENTS"},
		{"limits.max_client_settings", "DSQLGATE_LIMITS_MAX_CLIENT_SETTINGS"},
		{"shutdown_timeout", "DSQLGATE_SHUTDOWN_TIMEOUT"},
		{"metrics.listen", "DSQLGATE_METRICS_LISTEN"},
		{"users_file", "DSQLGATE_USERS_FILE"},
		{"admin.users", "DSQLGATE_ADMIN_USERS"},
		{"admin.database", "DSQLGATE_ADMIN_DATABASE"},
		{"aws.profile", "DSQLGATE_AWS_PROFILE"},
		// Mappings, lists of mappings and what is inside them have none.
		{"log", ""},
		{"users", ""},
		{"users[0].name", ""},
		{"routes", ""},
		{"routes[0].pool.size", ""},
		{"routes[].pool.size", ""},
		{"routes[0].pool.max_user_connections", ""},
		{"no_such_key", ""},
	}
	for _, tt := range tests {
		if got := config.EnvVar(tt.key); got != tt.want {
			t.Errorf("EnvVar(%q) = %q, want %q", tt.key, got, tt.want)
		}
	}
}

// TestEnvVarEveryKey checks that every key outside a list, found by
// reflection here independently of the package's own walk, has a variable,
// and that no two share one: a new field gets its variable without code.
func TestEnvVarEveryKey(t *testing.T) {
	seen := map[string]string{}
	var walk func(typ reflect.Type, path string)
	walk = func(typ reflect.Type, path string) {
		for f := range typ.Fields() {
			name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
			if !f.IsExported() || name == "" || name == "-" {
				continue
			}
			key := strings.TrimPrefix(path+"."+name, ".")
			switch {
			case f.Type.Kind() == reflect.Struct:
				walk(f.Type, key)
			case f.Type.Kind() == reflect.Slice && f.Type.Elem().Kind() == reflect.Struct:
			default:
				v := config.EnvVar(key)
				if !strings.HasPrefix(v, config.EnvPrefix) {
					t.Errorf("key %s has no environment variable (EnvVar = %q)", key, v)
					continue
				}
				if other, dup := seen[v]; dup {
					t.Errorf("keys %s and %s share the variable %s", other, key, v)
				}
				seen[v] = key
			}
		}
	}
	walk(reflect.TypeFor[config.Config](), "")
}

// TestEnvOverrides sets each kind of variable through Parse, which applies
// the process environment, over a file that may set the same key.
func TestEnvOverrides(t *testing.T) {
	const users = "users: [{name: alice, verifier_env: TEST_VERIFIER}, {name: bob, verifier_env: TEST_VERIFIER}]\n"
	tests := []struct {
		name string
		doc  string // over dsqlRoute, and over users unless it names users
		env  map[string]string
		get  func(*config.Config) any
		want any
		// overrides is what EnvOverrides must return; nil: the one key of env.
		overrides map[string]string
	}{
		{name: "text", env: map[string]string{"DSQLGATE_LISTEN": "127.0.0.1:7000"}, get: func(c *config.Config) any { return c.Listen }, want: "127.0.0.1:7000"},
		{name: "text in a mapping", env: map[string]string{"DSQLGATE_LOG_LEVEL": "debug"}, get: func(c *config.Config) any { return c.Log.Level }, want: "debug"},
		{name: "text taken as written", env: map[string]string{"DSQLGATE_AWS_PROFILE": " null "}, get: func(c *config.Config) any { return c.AWS.Profile }, want: " null "},
		{name: "empty text turns metrics off", env: map[string]string{"DSQLGATE_METRICS_LISTEN": ""}, get: func(c *config.Config) any { return c.Metrics.Listen }, want: ""},
		{name: "duration", env: map[string]string{"DSQLGATE_SHUTDOWN_TIMEOUT": "45s"}, get: func(c *config.Config) any { return c.ShutdownTimeout }, want: config.Duration(45 * time.Second)},
		{name: "duration in a mapping", env: map[string]string{"DSQLGATE_LOG_SLOW_QUERY_THRESHOLD": "250ms"}, get: func(c *config.Config) any { return c.Log.SlowQueryThreshold }, want: config.Duration(250 * time.Millisecond)},
		{name: "size with a unit", env: map[string]string{"DSQLGATE_LIMITS_MAX_MESSAGE_SIZE": "1MiB"}, get: func(c *config.Config) any { return c.Limits.MaxMessageSize }, want: config.MiB},
		{name: "size in bytes", env: map[string]string{"DSQLGATE_LIMITS_MAX_STARTUP_PACKET": "2048"}, get: func(c *config.Config) any { return c.Limits.MaxStartupPacket }, want: 2 * config.KiB},
		{name: "whole number", env: map[string]string{"DSQLGATE_LIMITS_MAX_CLIENT_CONN": "50"}, get: func(c *config.Config) any { return c.Limits.MaxClientConn }, want: 50},
		{name: "idle in transaction timeout off", env: map[string]string{"DSQLGATE_LIMITS_IDLE_IN_TRANSACTION_TIMEOUT": "0s"}, get: func(c *config.Config) any { return c.Limits.IdleInTransactionTimeout }, want: config.Duration(0)},
		{name: "max pending replies", env: map[string]string{"DSQLGATE_LIMITS_MAX_PENDING_REPLIES": "500"}, get: func(c *config.Config) any { return c.Limits.MaxPendingReplies }, want: 500},
		{name: "list of text", env: map[string]string{"DSQLGATE_ADMIN_USERS": "alice, bob,"}, get: func(c *config.Config) any { return c.Admin.Users }, want: []string{"alice", "bob"}},
		{name: "empty list clears the file's", doc: "admin: {users: [alice]}\n", env: map[string]string{"DSQLGATE_ADMIN_USERS": ""}, get: func(c *config.Config) any { return c.Admin.Users }, want: []string(nil)},
		{
			name: "users file", env: map[string]string{"DSQLGATE_USERS_FILE": usersFile},
			get: func(c *config.Config) any { return c.UsersFile }, want: usersFile,
		},
		{name: "environment over file", doc: "listen: 127.0.0.1:7001\n", env: map[string]string{"DSQLGATE_LISTEN": "127.0.0.1:7002"}, get: func(c *config.Config) any { return c.Listen }, want: "127.0.0.1:7002"},
		{
			name: "file where the environment is silent", doc: "log: {level: warn}\n", env: map[string]string{"DSQLGATE_LOG_FORMAT": "json"},
			get: func(c *config.Config) any { return []string{c.Log.Level, c.Log.Format} }, want: []string{"warn", "json"},
		},
		{
			name: "variables named by _env keys hold secrets, not settings",
			doc:  "users: [{name: carol, verifier_env: DSQLGATE_CAROL_VERIFIER}]\n",
			env:  map[string]string{"DSQLGATE_CAROL_VERIFIER": testVerifier},
			get:  func(c *config.Config) any { return c.Users[0].VerifierEnv }, want: "DSQLGATE_CAROL_VERIFIER",
			overrides: map[string]string{},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := parseWithEnv(t, tt.doc, tt.env, users)
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			if diff := cmp.Diff(tt.want, tt.get(c)); diff != "" {
				t.Errorf("value mismatch (-want +got):\n%s", diff)
			}
			wantOverrides := tt.overrides
			if wantOverrides == nil {
				wantOverrides = map[string]string{}
				for name := range tt.env {
					wantOverrides[envKey(t, name)] = name
				}
			}
			if diff := cmp.Diff(wantOverrides, c.EnvOverrides()); diff != "" {
				t.Errorf("EnvOverrides mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

// hasUsers reports whether doc sets the top-level key users.
func hasUsers(doc string) bool {
	return strings.HasPrefix(doc, "users:") || strings.Contains(doc, "\nusers:")
}

// envKey returns the key path whose variable is name.
func envKey(t *testing.T, name string) string {
	t.Helper()
	for _, key := range []string{"listen", "log.level", "log.format", "log.slow_query_threshold", "aws.profile", "metrics.listen", "shutdown_timeout",
		"limits.max_message_size", "limits.max_startup_packet", "limits.max_client_conn", "limits.idle_in_transaction_timeout", "limits.max_pending_replies", "admin.users", "users_file"} {
		if config.EnvVar(key) == name {
			return key
		}
	}
	t.Fatalf("no key for %s in envKey's list", name)
	return ""
}

// TestEnvProblems pins what a user sees for each kind of bad variable, and
// for a validation problem with a value from the environment: the variable
// instead of a file line.
func TestEnvProblems(t *testing.T) {
	const secret = "Sekr1tValue"
	tests := []struct {
		name string
		doc  string // over dsqlRoute; user unless it names users
		env  map[string]string
		want []config.Problem
	}{
		{
			name: "duration without a unit",
			env:  map[string]string{"DSQLGATE_SHUTDOWN_TIMEOUT": "30"},
			want: []config.Problem{{Env: "DSQLGATE_SHUTDOWN_TIMEOUT", Key: "shutdown_timeout", Message: `duration 30 has no unit; write "30s"`}},
		},
		{
			name: "word for a whole number",
			env:  map[string]string{"DSQLGATE_LIMITS_MAX_CLIENT_CONN": "many"},
			want: []config.Problem{{Env: "DSQLGATE_LIMITS_MAX_CLIENT_CONN", Key: "limits.max_client_conn", Message: `expected a whole number, got "many"`}},
		},
		{
			name: "decimal size unit",
			env:  map[string]string{"DSQLGATE_LIMITS_MAX_MESSAGE_SIZE": "64MB"},
			want: []config.Problem{{Env: "DSQLGATE_LIMITS_MAX_MESSAGE_SIZE", Key: "limits.max_message_size", Message: `unknown unit "MB" in "64MB"; use B, KiB, MiB or GiB (powers of 1024)`}},
		},
		{
			name: "empty duration",
			env:  map[string]string{"DSQLGATE_LOG_SLOW_QUERY_THRESHOLD": ""},
			want: []config.Problem{{Env: "DSQLGATE_LOG_SLOW_QUERY_THRESHOLD", Key: "log.slow_query_threshold", Message: `is empty: set it to a duration such as "30s", or unset it to keep the value from the file`}},
		},
		{
			name: "a bad value leaves the file's, which is checked",
			doc:  "limits:\n  max_client_conn: 0\n",
			env:  map[string]string{"DSQLGATE_LIMITS_MAX_CLIENT_CONN": "1.5"},
			want: []config.Problem{
				{Env: "DSQLGATE_LIMITS_MAX_CLIENT_CONN", Key: "limits.max_client_conn", Message: `expected a whole number, got "1.5"`},
				{File: "test.yaml", Line: 2, Key: "limits.max_client_conn", Message: "must be at least 1"},
			},
		},
		{
			name: "validation names the variable",
			env:  map[string]string{"DSQLGATE_SHUTDOWN_TIMEOUT": "0s"},
			want: []config.Problem{{Env: "DSQLGATE_SHUTDOWN_TIMEOUT", Key: "shutdown_timeout", Message: `must be positive, such as "30s"`}},
		},
		{
			name: "validation names the variable, not the file's line",
			doc:  "listen: 127.0.0.1:6432\n",
			env:  map[string]string{"DSQLGATE_LISTEN": "localhost"},
			want: []config.Problem{{Env: "DSQLGATE_LISTEN", Key: "listen", Message: `"localhost" is not host:port, such as 127.0.0.1:6432 (an IPv6 address goes in brackets: [::1]:6432)`}},
		},
		{
			name: "validation of a list item names the variable",
			env:  map[string]string{"DSQLGATE_ADMIN_USERS": "alice,bob"},
			want: []config.Problem{{Env: "DSQLGATE_ADMIN_USERS", Key: "admin.users[1]", Message: `"bob" is not a user in users or users_file: only the gateway's own users can open the admin console`}},
		},
		{
			name: "a secret in an override variable",
			doc:  "users:\n  - name: alice\n    password_env: DSQLGATE_LOG_LEVEL\n",
			env:  map[string]string{"DSQLGATE_LOG_LEVEL": secret},
			want: []config.Problem{{File: "test.yaml", Line: 3, Key: "users[0].password_env", Message: "DSQLGATE_LOG_LEVEL overrides log.level, so it cannot also hold a secret: name another variable"}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := parseWithEnv(t, tt.doc, tt.env, user)
			if diff := cmp.Diff(tt.want, asValidation(t, err)); diff != "" {
				t.Errorf("problems mismatch (-want +got):\n%s", diff)
			}
			if strings.Contains(err.Error(), secret) {
				t.Errorf("error shows a variable's value:\n%v", err)
			}
		})
	}
}

// TestEnvWarnings pins what a user sees for a DSQLGATE_ variable that
// overrides no key: a warning naming it (with a hint when it looks
// misspelt), never an error, so a gateway still starts; and nothing at all
// for the variables Kubernetes injects for a Service named dsqlgate.
func TestEnvWarnings(t *testing.T) {
	const secret = "Sekr1tValue"
	tests := []struct {
		name string
		env  map[string]string
		want []config.Problem
	}{
		{
			name: "misspelt variable",
			env:  map[string]string{"DSQLGATE_LISTN": "127.0.0.1:7000"},
			want: []config.Problem{{Env: "DSQLGATE_LISTN", Message: "unknown variable; did you mean DSQLGATE_LISTEN?"}},
		},
		{
			name: "misspelt nested variable",
			env:  map[string]string{"DSQLGATE_LOG_LEVLE": "debug"},
			want: []config.Problem{{Env: "DSQLGATE_LOG_LEVLE", Message: "unknown variable; did you mean DSQLGATE_LOG_LEVEL?"}},
		},
		{
			name: "unknown variable holding a secret",
			env:  map[string]string{"DSQLGATE_BOB_PASSWORD": secret},
			want: []config.Problem{{Env: "DSQLGATE_BOB_PASSWORD", Message: "unknown variable: it overrides no key (docs/CONFIG.md lists the variables) and no verifier_env, password_env or users_env key names it"}},
		},
		{
			name: "a list of mappings",
			env:  map[string]string{"DSQLGATE_ROUTES": "app"},
			want: []config.Problem{{Env: "DSQLGATE_ROUTES", Message: "unknown variable: routes is a list of mappings, which the environment cannot set; write it in the configuration file"}},
		},
		{
			name: "a key inside a list of mappings",
			env:  map[string]string{"DSQLGATE_ROUTES_0_POOL_SIZE": "5", "DSQLGATE_USERS_0_NAME": "bob"},
			want: []config.Problem{
				{Env: "DSQLGATE_ROUTES_0_POOL_SIZE", Message: "unknown variable: routes is a list of mappings, which the environment cannot set; write it in the configuration file"},
				{Env: "DSQLGATE_USERS_0_NAME", Message: "unknown variable: users is a list of mappings, which the environment cannot set; write it in the configuration file"},
			},
		},
		{
			name: "kubernetes service links",
			env: map[string]string{
				"DSQLGATE_PORT":                       "tcp://10.96.0.12:5432",
				"DSQLGATE_PORT_5432_TCP":              "tcp://10.96.0.12:5432",
				"DSQLGATE_PORT_5432_TCP_PROTO":        "tcp",
				"DSQLGATE_PORT_5432_TCP_PORT":         "5432",
				"DSQLGATE_PORT_5432_TCP_ADDR":         "10.96.0.12",
				"DSQLGATE_SERVICE_HOST":               "10.96.0.12",
				"DSQLGATE_SERVICE_PORT":               "5432",
				"DSQLGATE_SERVICE_PORT_POSTGRES":      "5432",
				"DSQLGATE_METRICS_PORT":               "tcp://10.96.0.13:9187",
				"DSQLGATE_METRICS_SERVICE_HOST":       "10.96.0.13",
				"DSQLGATE_METRICS_PORT_9187_TCP_ADDR": "10.96.0.13",
			},
		},
		{
			name: "a _PORT variable that holds no address is not a service link",
			env:  map[string]string{"DSQLGATE_METRICS_PORT": "9187"},
			want: []config.Problem{{Env: "DSQLGATE_METRICS_PORT", Message: "unknown variable; did you mean DSQLGATE_METRICS_LISTEN?"}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := parseWithEnv(t, "", tt.env, user)
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			if diff := cmp.Diff(tt.want, c.Warnings()); diff != "" {
				t.Errorf("warnings mismatch (-want +got):\n%s", diff)
			}
			for _, w := range c.Warnings() {
				if strings.Contains(w.Error(), secret) {
					t.Errorf("warning shows a variable's value: %v", w)
				}
			}
		})
	}
}

// TestEnvProblemError pins the format of a problem with a variable.
func TestEnvProblemError(t *testing.T) {
	p := config.Problem{Env: "DSQLGATE_SHUTDOWN_TIMEOUT", Key: "shutdown_timeout", Message: `must be positive, such as "30s"`}
	if got, want := p.Error(), `DSQLGATE_SHUTDOWN_TIMEOUT: shutdown_timeout: must be positive, such as "30s"`; got != want {
		t.Errorf("Error() = %q, want %q", got, want)
	}
}

// TestApplyEnvInCode applies an environment to a Config built in code, as a
// test or a reload does, and checks that Validate then names the variable.
func TestApplyEnvInCode(t *testing.T) {
	t.Setenv("TEST_VERIFIER", testVerifier)
	c := config.Default()
	c.Users = []config.User{{Name: "alice", VerifierEnv: "TEST_VERIFIER"}}
	r := config.DefaultRoute(config.KindDSQL, "app")
	r.Endpoint = "abcdefghijklmnopqrstuvwxyz.dsql.us-east-1.on.aws"
	c.Routes = []config.Route{r}

	err := c.ApplyEnv([]string{"HOME=/root", "DSQLGATE_NO_EQUALS_SIGN", "DSQLGATE_LOG_FORMAT=json", "DSQLGATE_ADMIN_DATABASE=app", "DSQLGATE_SHUTDOWN_TIMEOUT=-1s", "dsqlgate_listen=lower case is not ours"})
	if err != nil {
		t.Fatalf("ApplyEnv: %v", err)
	}
	if c.Log.Format != "json" || c.Admin.Database != "app" || c.ShutdownTimeout != config.Duration(-time.Second) {
		t.Errorf("after ApplyEnv: format %q, admin database %q, shutdown timeout %s", c.Log.Format, c.Admin.Database, c.ShutdownTimeout)
	}
	want := []config.Problem{
		{Env: "DSQLGATE_SHUTDOWN_TIMEOUT", Key: "shutdown_timeout", Message: `must be positive, such as "30s"`},
		{Env: "DSQLGATE_ADMIN_DATABASE", Key: "admin.database", Message: `"app" is also the database of routes[0]: the admin console needs a name no route uses`},
	}
	if diff := cmp.Diff(want, asValidation(t, c.Validate())); diff != "" {
		t.Errorf("Validate problems mismatch (-want +got):\n%s", diff)
	}

	err = c.ApplyEnv([]string{"DSQLGATE_SHUTDOWN_TIMEOUT=1m", "DSQLGATE_ADMIN_DATABASE=admin", "DSQLGATE_LIMITS_MAX_CLIENT_CONNS=5"})
	if err != nil {
		t.Errorf("ApplyEnv with a misspelt variable = %v, want a warning, not an error", err)
	}
	if w := c.Warnings(); len(w) != 1 || w[0].Env != "DSQLGATE_LIMITS_MAX_CLIENT_CONNS" {
		t.Errorf("Warnings after a misspelt variable = %v, want one naming it", w)
	}
	if err := c.Validate(); err != nil {
		t.Errorf("Validate after fixing the environment: %v", err)
	}
	wantOverrides := map[string]string{"log.format": "DSQLGATE_LOG_FORMAT", "admin.database": "DSQLGATE_ADMIN_DATABASE", "shutdown_timeout": "DSQLGATE_SHUTDOWN_TIMEOUT"}
	if diff := cmp.Diff(wantOverrides, c.EnvOverrides()); diff != "" {
		t.Errorf("EnvOverrides mismatch (-want +got):\n%s", diff)
	}
	if got := config.Default().EnvOverrides(); len(got) != 0 {
		t.Errorf("Default().EnvOverrides() = %v, want empty", got)
	}
}

// parseWithEnv parses doc (with usersDoc added when it has no users of its
// own, and a DSQL route) with env set, and TEST_VERIFIER holding a
// verifier.
func parseWithEnv(t *testing.T, doc string, env map[string]string, usersDoc string) (*config.Config, error) {
	t.Helper()
	t.Setenv("TEST_VERIFIER", testVerifier)
	for k, v := range env {
		t.Setenv(k, v)
	}
	if !hasUsers(doc) {
		doc += usersDoc
	}
	return config.Parse([]byte(doc+dsqlRoute), "test.yaml")
}
