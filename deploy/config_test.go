package deploy

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/dsqlgate/dsqlgate/internal/harness"
	"github.com/dsqlgate/dsqlgate/internal/pgtest"
	"github.com/dsqlgate/dsqlgate/internal/scram"
)

// testUser is the first user's name in the tests.
const testUser = "app"

// templateVars are the test values of the parameters and pseudo parameters
// the template's !Sub strings name: the emulator's cluster, region and
// database, and a domain.
func templateVars() map[string]string {
	return map[string]string{
		"AWS::StackName": "dsqlgate-test",
		"AWS::Region":    harness.StackRegion,
		"AWS::Partition": "aws",
		"AWS::AccountId": "123456789012",
		"ClusterId":      harness.StackClusterID,
		"DatabaseName":   harness.StackDatabase,
		"DomainName":     "db.example.com",
		"HostedZoneId":   "Z0123456789ABCDEFGHIJ",
		"AcmeEmail":      "ops@example.com",
		"AcmeDirectory":  "https://acme-v02.api.letsencrypt.org/directory",
	}
}

// evalSub is sub with the values of the !Sub's own mapping evaluated first
// when they are !Sub themselves (the cluster endpoint); other values (an
// !If, a !GetAtt) must have a test value by name.
func evalSub(t testing.TB, n *yaml.Node, vars map[string]string) string {
	t.Helper()
	if n.Kind == yaml.SequenceNode && n.Tag == "!Sub" {
		inner := make(map[string]string, len(vars))
		for k, v := range vars {
			inner[k] = v
		}
		m := n.Content[1]
		for i := 0; i+1 < len(m.Content); i += 2 {
			if v := m.Content[i+1]; v.Tag == "!Sub" {
				inner[m.Content[i].Value] = evalSub(t, v, vars)
			}
		}
		vars = inner
	}
	return sub(t, n, vars)
}

// testVerifier makes a SCRAM verifier as `dsqlgate passwd` does.
func testVerifier(t testing.TB, password string) string {
	t.Helper()
	v, err := scram.GenerateVerifier(password)
	if err != nil {
		t.Fatal(err)
	}
	return v.Encode()
}

// forEmulator makes the only change a local run needs: the first route
// dials the emulator (dial_address) and trusts its CA (ca_file), keeping
// its endpoint, which names the cluster the emulator plays. ACME stays as
// written: check validates it but obtains no certificate.
func forEmulator(t testing.TB, config string, st *harness.Stack) string {
	t.Helper()
	var doc yaml.Node
	if err := yaml.Unmarshal([]byte(config), &doc); err != nil {
		t.Fatalf("the configuration is not YAML: %v\n%s", err, config)
	}
	route := get(t, doc.Content[0], "routes", "[0]")
	if ep := get(t, route, "endpoint").Value; ep != harness.StackHost {
		t.Fatalf("routes[0].endpoint is %q, want the emulated cluster %s", ep, harness.StackHost)
	}
	for _, kv := range [][2]string{{"dial_address", st.Emulator.Addr()}, {"ca_file", st.CAFile}} {
		if lookup(route, kv[0]) != nil {
			t.Fatalf("routes[0] already sets %s, which only a local run needs", kv[0])
		}
		route.Content = append(route.Content,
			&yaml.Node{Kind: yaml.ScalarNode, Value: kv[0]},
			&yaml.Node{Kind: yaml.ScalarNode, Value: kv[1]})
	}
	var out strings.Builder
	enc := yaml.NewEncoder(&out)
	enc.SetIndent(2)
	if err := enc.Encode(&doc); err != nil {
		t.Fatal(err)
	}
	enc.Close()
	return out.String()
}

var (
	stackOnce sync.Once
	stack     *harness.Stack
	stackErr  error
	binOnce   sync.Once
	binPath   string
	binErr    error
)

// TestMain closes the emulator stack the tests shared.
func TestMain(m *testing.M) {
	code := m.Run()
	if stack != nil {
		stack.Close()
	}
	if binPath != "" {
		os.RemoveAll(filepath.Dir(binPath))
	}
	os.Exit(code)
}

// emulator starts, once, a PostgreSQL with the DSQL emulator in front of it
// (the gateway harness.StartStack also starts stays idle).
func emulator(t testing.TB) *harness.Stack {
	t.Helper()
	stackOnce.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		stack, stackErr = harness.StartStack(ctx, harness.StackOptions{})
	})
	if stackErr != nil {
		t.Fatalf("start PostgreSQL and the DSQL emulator: %v", stackErr)
	}
	return stack
}

// gatewayBinary builds cmd/dsqlgate once.
func gatewayBinary(t testing.TB) string {
	t.Helper()
	binOnce.Do(func() {
		dir, err := os.MkdirTemp("", "dsqlgate-deploy-bin-")
		if err != nil {
			binErr = err
			return
		}
		binPath = filepath.Join(dir, "dsqlgate")
		out, err := exec.Command("go", "build", "-o", binPath, "github.com/dsqlgate/dsqlgate/cmd/dsqlgate").CombinedOutput()
		if err != nil {
			binErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if binErr != nil {
		t.Fatal(binErr)
	}
	return binPath
}

// runCheck runs `dsqlgate check args...` with env on top of an environment
// cleared of DSQLGATE_* and AWS_* variables (and of any AWS configuration
// file), with the emulator's throwaway credentials. It returns the output
// and the exit code.
func runCheck(t testing.TB, st *harness.Stack, env []string, args ...string) (string, int) {
	t.Helper()
	var base []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "DSQLGATE_") && !strings.HasPrefix(kv, "AWS_") {
			base = append(base, kv)
		}
	}
	none := filepath.Join(t.TempDir(), "none")
	base = append(base,
		"AWS_ACCESS_KEY_ID="+st.Credentials.AccessKeyID,
		"AWS_SECRET_ACCESS_KEY="+st.Credentials.SecretAccessKey,
		"AWS_CONFIG_FILE="+none, "AWS_SHARED_CREDENTIALS_FILE="+none,
		"AWS_EC2_METADATA_DISABLED=true")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, gatewayBinary(t), append([]string{"check", "--timeout", "10s"}, args...)...)
	cmd.Env = append(base, env...)
	out, err := cmd.CombinedOutput()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("run dsqlgate check: %v", err)
	}
	return string(out), code
}

// assertCheckPassed asserts check's report: the configuration valid with
// one user (from the secret) and one route, which works as admin, and no
// secret printed.
func assertCheckPassed(t testing.TB, st *harness.Stack, out string, code int, secrets ...string) {
	t.Helper()
	if code != 0 {
		t.Fatalf("dsqlgate check: exit %d, want 0\n%s", code, out)
	}
	if !regexp.MustCompile(`valid \(1 users?, 1 routes?\)`).MatchString(out) {
		t.Errorf("dsqlgate check does not report one user and one route:\n%s", out)
	}
	if !routeOK(out, harness.StackDatabase, harness.StackHost, "admin") {
		t.Errorf("dsqlgate check: no working route %s to %s as admin:\n%s", harness.StackDatabase, harness.StackHost, out)
	}
	for _, s := range append(secrets, st.Credentials.SecretAccessKey) {
		if strings.Contains(out, s) {
			t.Errorf("dsqlgate check printed a secret")
		}
	}
}

// routeOK reports whether check's table has the route's line, naming the
// endpoint and the role, with the result ok: a line whose first column is
// the route and whose columns include the endpoint, the role and "ok" (the
// order of the other columns is check's to choose).
func routeOK(out, route, endpoint, role string) bool {
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		if len(f) > 0 && f[0] == route && slices.Contains(f, endpoint) && slices.Contains(f, role) &&
			slices.Contains(f, "ok") && !slices.Contains(f, "FAIL") {
			return true
		}
	}
	return false
}

// TestTemplateConfigChecks is the configuration-drift test of the
// CloudFormation stack: the DSQLGATE_CONFIG_YAML the task definition
// carries, with the template's variables given test values and the route
// pointed at the emulator, passes the real binary's `dsqlgate check
// --config-env DSQLGATE_CONFIG_YAML`, with DSQLGATE_USERS holding what the
// users secret holds when the stack is created.
func TestTemplateConfigChecks(t *testing.T) {
	if testing.Short() {
		t.Skip("starts PostgreSQL and runs the gateway binary")
	}
	tpl := loadYAML(t, templatePath)
	vars := templateVars()
	c := containerDef(t, tpl)
	config := evalSub(t, get(t, namedEntry(t, get(t, c, "Environment"), "DSQLGATE_CONFIG_YAML"), "Value"), vars)

	// The users secret's initial content, from the first user's parameters.
	password := pgtest.RandomHex(12)
	verifier := testVerifier(t, password)
	vars["FirstUserName"], vars["FirstUserVerifier"] = testUser, verifier
	users := evalSub(t, get(t, tpl, "Resources", "UsersSecret", "Properties", "SecretString"), vars)
	if want := fmt.Sprintf("%q %q", testUser, verifier); strings.TrimSpace(users) != want {
		t.Errorf("the users secret's initial content is %q, want the userlist line %q", users, want)
	}
	// The secret reaches the container under the name users_env gives.
	secret := namedEntry(t, get(t, c, "Secrets"), "DSQLGATE_USERS")
	if v := get(t, secret, "ValueFrom"); v.Tag != "!Ref" || v.Value != "UsersSecret" {
		t.Errorf("DSQLGATE_USERS comes from %s %s, want !Ref UsersSecret", v.Tag, v.Value)
	}
	var parsed struct {
		UsersEnv string `yaml:"users_env"`
	}
	if err := yaml.Unmarshal([]byte(config), &parsed); err != nil || parsed.UsersEnv != "DSQLGATE_USERS" {
		t.Errorf("the configuration's users_env is %q (%v), want DSQLGATE_USERS, the task's secret", parsed.UsersEnv, err)
	}

	st := emulator(t)
	out, code := runCheck(t, st, []string{
		"DSQLGATE_CONFIG_YAML=" + forEmulator(t, config, st),
		"DSQLGATE_USERS=" + users,
	}, "--config-env", "DSQLGATE_CONFIG_YAML")
	assertCheckPassed(t, st, out, code, verifier)
}

// TestKubernetesConfigChecks is the same for the Kubernetes ConfigMap's
// dsqlgate.yaml, checked as the Deployment runs it: from a file (--config),
// with the users in the variable its users_env names.
func TestKubernetesConfigChecks(t *testing.T) {
	if testing.Short() {
		t.Skip("starts PostgreSQL and runs the gateway binary")
	}
	config, usersEnv := kubernetesConfig(t)
	st := emulator(t)
	path := filepath.Join(t.TempDir(), "dsqlgate.yaml")
	if err := os.WriteFile(path, []byte(forEmulator(t, config, st)), 0o600); err != nil {
		t.Fatal(err)
	}
	verifier := testVerifier(t, pgtest.RandomHex(12))
	out, code := runCheck(t, st, []string{
		usersEnv + "=" + fmt.Sprintf("%q %q\n", testUser, verifier),
	}, "--config", path)
	assertCheckPassed(t, st, out, code, verifier)
}
