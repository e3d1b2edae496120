package main

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/dsqlgate/dsqlgate/internal/harness"
)

// testUsers is a users list for check's configurations (the password
// does not matter: check logs nobody in).
const testUsers = "users: [{name: alice, verifier: 'SCRAM-SHA-256$4096:c2FsdA==$" +
	"n4bQgYhMfWWaL+qgxVrQFaO/TxsrC4Is0V1sFbDwCgg=:n4bQgYhMfWWaL+qgxVrQFaO/TxsrC4Is0V1sFbDwCgg='}]\n"

// writeCheckConfig writes a configuration with testUsers and routes (a
// YAML list) and returns its path.
func writeCheckConfig(t *testing.T, routes string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "dsqlgate.yaml")
	if err := os.WriteFile(path, []byte(testUsers+"routes:\n"+routes), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// noAWSCredentials leaves the AWS default chain nothing to find: no key
// variables, empty shared files, no web identity or container
// credentials, and instance metadata switched off (it answers at once).
func noAWSCredentials(t *testing.T) {
	t.Helper()
	empty := filepath.Join(t.TempDir(), "empty")
	if err := os.WriteFile(empty, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, v := range []string{"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_ACCESS_KEY", "AWS_SECRET_KEY",
		"AWS_SESSION_TOKEN", "AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_WEB_IDENTITY_TOKEN_FILE", "AWS_ROLE_ARN",
		"AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", "AWS_CONTAINER_CREDENTIALS_FULL_URI", "AWS_EC2_METADATA_SERVICE_ENDPOINT"} {
		t.Setenv(v, "")
	}
	t.Setenv("AWS_CONFIG_FILE", empty)
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", empty)
	t.Setenv("AWS_EC2_METADATA_DISABLED", "true")
}

// closedPort is a loopback address nothing listens on.
func closedPort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}

// checkOutputWidth is the longest line check prints, apart from the
// table, whose width is the longest route's.
const checkOutputWidth = 100

// assertReadable fails when a line after the table is longer than
// checkOutputWidth, or when the output holds text twice.
func assertReadable(t *testing.T, out string, once ...string) {
	t.Helper()
	table := true
	for _, line := range strings.Split(out, "\n") {
		if line == "" {
			table = false
		}
		if !table && len(line) > checkOutputWidth {
			t.Errorf("a line of %d characters:\n%s", len(line), line)
		}
	}
	for _, s := range once {
		if n := strings.Count(out, s); n != 1 {
			t.Errorf("%q appears %d times, want once:\n%s", s, n, out)
		}
	}
}

// TestCheckRouteFails: a route whose upstream refuses the connection is
// one short line with FAIL and a reason, and its full error appears once,
// below the table, wrapped; check exits 1.
func TestCheckRouteFails(t *testing.T) {
	addr := closedPort(t)
	path := writeCheckConfig(t, fmt.Sprintf(`  - {database: pg, kind: postgres, endpoint: %q, user: app, password: secret-pw,
     tls: disable, tls_negotiation: postgres, upstream_database: postgres, pool: {dial_timeout: 2s}}
`, addr))
	code, out, errOut := runCLI(t, "check", "-c", path, "--timeout", "5s")
	t.Logf("stdout:\n%s\nstderr:\n%s", out, errOut)
	if code != 1 {
		t.Errorf("exit %d, want 1", code)
	}
	row := regexp.MustCompile(`(?m)^pg\s+postgres\s+` + regexp.QuoteMeta(addr) + `\s+app\s+FAIL  cannot connect \[1\]$`)
	if !row.MatchString(out) {
		t.Errorf("no short FAIL line for route pg:\n%s", out)
	}
	if !regexp.MustCompile(`(?m)^\[1\] pg: failed to connect to`).MatchString(out) || !strings.Contains(out, "\n    ") {
		t.Errorf("the full error is not below the table, wrapped and indented:\n%s", out)
	}
	assertReadable(t, out, "failed to connect", "connection refused")
	if strings.Contains(out+errOut, "secret-pw") {
		t.Errorf("the route's password was printed")
	}
	if !strings.Contains(errOut, "1 of 1 routes failed") {
		t.Errorf("stderr: %q", errOut)
	}
}

// TestCheckNoCredentials: without AWS credentials each dsql route's line
// says so in a few words, the full explanation (sources tried, what to do,
// the SDK's error) appears once, kind postgres routes are still checked,
// and check exits 1.
func TestCheckNoCredentials(t *testing.T) {
	noAWSCredentials(t)
	addr := closedPort(t)
	path := writeCheckConfig(t, fmt.Sprintf(`  - {database: app, endpoint: abcdefghijklmnopqrstuvwxyz.dsql.us-east-1.on.aws}
  - {database: reports, endpoint: abcdefghijklmnopqrstuvwxyz.dsql.us-east-1.on.aws, role: reader}
  - {database: pg, kind: postgres, endpoint: %q, user: app, password: secret-pw,
     tls: disable, tls_negotiation: postgres, upstream_database: postgres, pool: {dial_timeout: 2s}}
`, addr))
	start := time.Now()
	code, out, errOut := runCLI(t, "check", "-c", path, "--timeout", "5s")
	t.Logf("stdout:\n%s\nstderr:\n%s", out, errOut)
	if took := time.Since(start); took > 15*time.Second {
		t.Errorf("took %s", took)
	}
	if code != 1 {
		t.Errorf("exit %d, want 1", code)
	}
	for _, re := range []string{
		`(?m)^app\s+dsql\s+abcdefghijklmnopqrstuvwxyz\.dsql\.us-east-1\.on\.aws\s+admin\s+FAIL  no AWS credentials \(below\)$`,
		`(?m)^reports\s+dsql\s+\S+\s+reader\s+FAIL  no AWS credentials \(below\)$`,
		`(?m)^pg\s+postgres\s+\S+\s+app\s+FAIL  cannot connect \[1\]$`,
	} {
		if !regexp.MustCompile(re).MatchString(out) {
			t.Errorf("no line matching %s:\n%s", re, out)
		}
	}
	assertReadable(t, out, "no AWS credentials found", "Set AWS_PROFILE or AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY",
		"AWS_EC2_METADATA_DISABLED", "connection refused")
	if strings.Contains(errOut, "SDK ") {
		t.Errorf("the SDK printed its own lines:\n%s", errOut)
	}
}

// TestCheckPasses: against the DSQL emulator (with the credentials it
// accepts in the environment) and a plain PostgreSQL, every route is ok
// with its latency, the credentials' source is named, nothing secret is
// printed, and check exits 0.
func TestCheckPasses(t *testing.T) {
	st := checkStack(t)
	path := writeCheckConfig(t, fmt.Sprintf(`  - {database: app, endpoint: %s, dial_address: %q, ca_file: %q}
  - {database: pg, kind: postgres, endpoint: %q, user: postgres, password: %q,
     tls: disable, tls_negotiation: postgres, upstream_database: postgres}
`, harness.StackHost, st.Emulator.Addr(), st.CAFile, st.PG.Addr(), st.PG.Password))
	code, out, errOut := runCLI(t, "check", "-c", path)
	t.Logf("stdout:\n%s\nstderr:\n%s", out, errOut)
	if code != 0 {
		t.Errorf("exit %d, want 0", code)
	}
	for _, re := range []string{
		`(?m)^AWS credentials: EnvConfigCredentials$`,
		`(?m)^app\s+dsql\s+` + regexp.QuoteMeta(harness.StackHost) + `\s+admin\s+ok  \d+ms$`,
		`(?m)^pg\s+postgres\s+` + regexp.QuoteMeta(st.PG.Addr()) + `\s+postgres\s+ok  \d+ms$`,
	} {
		if !regexp.MustCompile(re).MatchString(out) {
			t.Errorf("no line matching %s:\n%s", re, out)
		}
	}
	for _, secret := range []string{st.Credentials.SecretAccessKey, st.PG.Password, "X-Amz-Signature", "FAIL"} {
		if strings.Contains(out+errOut, secret) {
			t.Errorf("the output holds %q", secret)
		}
	}
}

// TestCheckConfigEnv: check reads the configuration from the variable
// --config-env names (as the container does), names it as the source,
// prints a warning for a DSQLGATE_ variable it ignores, and says clearly
// when the variable is missing.
func TestCheckConfigEnv(t *testing.T) {
	addr := closedPort(t)
	doc := testUsers + fmt.Sprintf("routes:\n  - {database: pg, kind: postgres, endpoint: %q, user: app, password: pw, tls: disable, pool: {dial_timeout: 2s}}\n", addr)
	t.Setenv("DSQLGATE_CONFIG_YAML", doc)
	t.Setenv("DSQLGATE_SHUTDOWN_TIMOUT", "10s")
	code, out, errOut := runCLI(t, "check", "--config-env", "DSQLGATE_CONFIG_YAML", "--timeout", "5s")
	if code != 1 || !strings.Contains(out, "configuration $DSQLGATE_CONFIG_YAML: valid (1 users, 1 routes)") {
		t.Errorf("exit %d:\n%s\n%s", code, out, errOut)
	}
	if !strings.Contains(out, "warning: DSQLGATE_SHUTDOWN_TIMOUT: unknown variable; did you mean DSQLGATE_SHUTDOWN_TIMEOUT? (ignored)") {
		t.Errorf("no warning for the misspelt variable:\n%s", out)
	}
	if strings.Contains(out, "warning: DSQLGATE_CONFIG_YAML") {
		t.Errorf("the configuration's own variable was reported:\n%s", out)
	}
	code, _, errOut = runCLI(t, "check", "--config-env", "DSQLGATE_NO_SUCH_CONFIG")
	if code != 2 || !strings.Contains(errOut, "environment variable DSQLGATE_NO_SUCH_CONFIG is not set: it should hold the whole YAML configuration") {
		t.Errorf("an unset --config-env variable: exit %d, %q", code, errOut)
	}
	code, _, errOut = runCLI(t, "check", "--config-env", "DSQLGATE_CONFIG_YAML", "-c", "x.yaml")
	if code == 0 || !strings.Contains(errOut, "none of the others can be") {
		t.Errorf("both --config and --config-env: exit %d, %q", code, errOut)
	}
}

// checkStack starts PostgreSQL and the DSQL emulator (skipped with
// -short) and leaves the AWS default chain only the emulator's
// credentials, in the environment. The stack stops with the test.
func checkStack(t *testing.T) *harness.Stack {
	t.Helper()
	if testing.Short() {
		t.Skip("starts PostgreSQL and the DSQL emulator")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	st, err := harness.StartStack(ctx, harness.StackOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(st.Close)
	noAWSCredentials(t)
	t.Setenv("AWS_ACCESS_KEY_ID", st.Credentials.AccessKeyID)
	t.Setenv("AWS_SECRET_ACCESS_KEY", st.Credentials.SecretAccessKey)
	return st
}
