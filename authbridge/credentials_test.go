package authbridge

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/smithy-go/logging"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/dsqlgate/dsqlgate/config"
	"github.com/dsqlgate/dsqlgate/internal/pgtest"
)

// clearAWSEnv leaves the default chain nothing to find: no key variables,
// empty shared files, no web identity or container credentials, and
// instance metadata switched off (it answers at once).
func clearAWSEnv(t *testing.T) {
	t.Helper()
	dir := t.TempDir()
	empty := filepath.Join(dir, "empty")
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
	t.Setenv("AWS_REGION", "us-east-1")
}

// jsonLogger is a logger writing JSON lines, as serve's --log-format json
// does, into the returned buffer.
func jsonLogger(level zapcore.Level) (*zap.Logger, *syncBuffer) {
	buf := &syncBuffer{}
	enc := zapcore.NewJSONEncoder(zap.NewProductionEncoderConfig())
	return zap.New(zapcore.NewCore(enc, zapcore.AddSync(buf), level)), buf
}

// syncBuffer is a buffer safe for concurrent writers.
type syncBuffer = pgtest.SyncBuffer

// logLines decodes every JSON line written, failing on any that is not JSON.
func logLines(t *testing.T, b *syncBuffer) []map[string]any {
	t.Helper()
	var out []map[string]any
	for _, l := range strings.Split(strings.TrimSpace(b.String()), "\n") {
		if l == "" {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatalf("a log line is not JSON: %q: %v", l, err)
		}
		out = append(out, m)
	}
	return out
}

// TestSDKLoggerJSON: the SDK's warnings and debug lines come out as the
// gateway's own JSON lines, at the matching level, marked
// component=aws-sdk; debug lines are dropped at level info.
func TestSDKLoggerJSON(t *testing.T) {
	log, buf := jsonLogger(zapcore.InfoLevel)
	l := SDKLogger(log)
	l.Logf(logging.Warn, "Response has no supported checksum. Not validating response payload.")
	l.Logf(logging.Debug, "retrying request %s, attempt %d", "GetRoleCredentials", 2)
	got := logLines(t, buf)
	if len(got) != 1 {
		t.Fatalf("got %d lines at level info, want the warning only:\n%s", len(got), buf)
	}
	want := map[string]any{"level": "warn", "component": "aws-sdk", "msg": "Response has no supported checksum. Not validating response payload."}
	for k, v := range want {
		if got[0][k] != v {
			t.Errorf("%s = %v, want %v (line %v)", k, got[0][k], v, got[0])
		}
	}
	if strings.Contains(buf.String(), "SDK ") {
		t.Errorf("the SDK's own prefix leaked: %s", buf)
	}

	log, buf = jsonLogger(zapcore.DebugLevel)
	SDKLogger(log).Logf(logging.Debug, "retrying request %s, attempt %d", "GetRoleCredentials", 2)
	got = logLines(t, buf)
	if len(got) != 1 || got[0]["level"] != "debug" || got[0]["msg"] != "retrying request GetRoleCredentials, attempt 2" {
		t.Errorf("a debug line at level debug: %v", got)
	}
}

// TestLoadCredentialsNoneFound: with nothing for the chain to find, the
// error says so, lists the sources tried in order with the profile and
// files in use, says what to do, and ends with the SDK's error, once.
func TestLoadCredentialsNoneFound(t *testing.T) {
	clearAWSEnv(t)
	cfgFile := filepath.Join(t.TempDir(), "config")
	if err := os.WriteFile(cfgFile, []byte("[profile staging]\nregion = eu-west-1\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("AWS_CONFIG_FILE", cfgFile)
	t.Setenv("AWS_PROFILE", "staging")
	start := time.Now()
	_, err := LoadCredentials(context.Background(), "", nil)
	if took := time.Since(start); took > CredentialsTimeout {
		t.Errorf("took %s, more than the %s bound", took, CredentialsTimeout)
	}
	var ce *CredentialsError
	if !errors.As(err, &ce) || !ce.NoneFound {
		t.Fatalf("err = %v, want a *CredentialsError with NoneFound", err)
	}
	msg := err.Error()
	t.Logf("the message:\n%s", msg)
	inOrder := []string{
		"no AWS credentials found",
		"1. environment variables AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY: not set",
		`2. shared config and credentials files, profile "staging" (AWS_PROFILE): no keys`,
		"\n     (" + cfgFile + " (AWS_CONFIG_FILE), " + os.Getenv("AWS_SHARED_CREDENTIALS_FILE") + " (AWS_SHARED_CREDENTIALS_FILE))",
		"3. SSO",
		"4. web identity (AWS_WEB_IDENTITY_TOKEN_FILE): not set",
		"5. ECS container credentials (AWS_CONTAINER_CREDENTIALS_RELATIVE_URI / _FULL_URI): not set",
		"6. EC2 instance metadata (IMDS)",
		"Set AWS_PROFILE or AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, or run with an IAM role",
		"The last source's error: ",
		"AWS_EC2_METADATA_DISABLED",
	}
	rest := msg
	for _, w := range inOrder {
		i := strings.Index(rest, w)
		if i < 0 {
			t.Fatalf("the message lacks %q (or has it out of order):\n%s", w, msg)
		}
		rest = rest[i+len(w):]
	}
	if n := strings.Count(msg, "AWS_EC2_METADATA_DISABLED"); n != 1 {
		t.Errorf("the SDK's error appears %d times, want once:\n%s", n, msg)
	}
}

// TestLoadCredentialsMissingProfile: a profile in neither shared file is
// named with the files looked in.
func TestLoadCredentialsMissingProfile(t *testing.T) {
	clearAWSEnv(t)
	t.Setenv("AWS_PROFILE", "staging")
	_, err := LoadCredentials(context.Background(), "", nil)
	want := `AWS profile "staging" (AWS_PROFILE) is in neither ` + os.Getenv("AWS_CONFIG_FILE") + " (AWS_CONFIG_FILE) nor "
	if err == nil || !strings.HasPrefix(err.Error(), want) {
		t.Errorf("err = %v, want it to begin %q", err, want)
	}
}

// TestLoadCredentialsHalfSetKeys: one key variable without the other is
// named, the usual slip.
func TestLoadCredentialsHalfSetKeys(t *testing.T) {
	clearAWSEnv(t)
	t.Setenv("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE")
	_, err := LoadCredentials(context.Background(), "", nil)
	if err == nil || !strings.Contains(err.Error(), "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY: AWS_SECRET_ACCESS_KEY is not set") {
		t.Errorf("err = %v, want it to say AWS_SECRET_ACCESS_KEY is not set", err)
	}
}

// TestLoadCredentialsFound: keys in the environment, or in the shared
// credentials file under the profile aws.profile names, are retrieved.
func TestLoadCredentialsFound(t *testing.T) {
	t.Run("environment", func(t *testing.T) {
		clearAWSEnv(t)
		t.Setenv("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE")
		t.Setenv("AWS_SECRET_ACCESS_KEY", "secret")
		p, err := LoadCredentials(context.Background(), "", nil)
		if err != nil {
			t.Fatal(err)
		}
		c, err := p.Retrieve(context.Background())
		if err != nil || c.AccessKeyID != "AKIDEXAMPLE" {
			t.Errorf("Retrieve = %v, %v", c.AccessKeyID, err)
		}
	})
	t.Run("profile", func(t *testing.T) {
		clearAWSEnv(t)
		creds := filepath.Join(t.TempDir(), "credentials")
		doc := "[dev]\naws_access_key_id = AKIDDEV\naws_secret_access_key = secret\n"
		if err := os.WriteFile(creds, []byte(doc), 0o600); err != nil {
			t.Fatal(err)
		}
		t.Setenv("AWS_SHARED_CREDENTIALS_FILE", creds)
		p, err := LoadCredentials(context.Background(), "dev", nil)
		if err != nil {
			t.Fatal(err)
		}
		if c, err := p.Retrieve(context.Background()); err != nil || c.AccessKeyID != "AKIDDEV" {
			t.Errorf("Retrieve = %v, %v", c.AccessKeyID, err)
		}
	})
}

// TestLoadCredentialsSourceFails: when the chain finds a source that then
// fails (here container credentials answering 500), the error names that
// source rather than claiming none was found.
func TestLoadCredentialsSourceFails(t *testing.T) {
	clearAWSEnv(t)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, `{"code":"Broken","message":"the agent is down"}`, http.StatusInternalServerError)
	}))
	defer srv.Close()
	t.Setenv("AWS_CONTAINER_CREDENTIALS_FULL_URI", srv.URL+"/creds")
	_, err := LoadCredentials(context.Background(), "", nil)
	var ce *CredentialsError
	if !errors.As(err, &ce) || ce.NoneFound {
		t.Fatalf("err = %v, want a *CredentialsError naming its source", err)
	}
	if msg := err.Error(); !strings.HasPrefix(msg, "AWS credentials from ECS container credentials") || strings.Contains(msg, "no AWS credentials found") {
		t.Errorf("message: %s", msg)
	}
}

// TestLoadCredentialsSDKLogsAsJSON: the SDK's own warning on the way
// through the chain (instance metadata refusing an IMDSv2 token, here a
// local server standing in for it) reaches the gateway's JSON log, not
// stderr in the SDK's format.
func TestLoadCredentialsSDKLogsAsJSON(t *testing.T) {
	clearAWSEnv(t)
	var calls atomic.Int32
	imds := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		if r.Method == http.MethodPut { // the IMDSv2 token
			http.Error(w, "forbidden", http.StatusForbidden)
			return
		}
		http.NotFound(w, r)
	}))
	defer imds.Close()
	t.Setenv("AWS_EC2_METADATA_DISABLED", "")
	t.Setenv("AWS_EC2_METADATA_SERVICE_ENDPOINT", imds.URL)
	log, buf := jsonLogger(zapcore.InfoLevel)
	_, err := LoadCredentials(context.Background(), "", log)
	var ce *CredentialsError
	if !errors.As(err, &ce) || !ce.NoneFound {
		t.Fatalf("err = %v, want none found", err)
	}
	if calls.Load() == 0 {
		t.Fatal("the metadata stand-in was never asked")
	}
	var sdkWarned bool
	for _, l := range logLines(t, buf) {
		if l["component"] == "aws-sdk" && l["level"] == "warn" && strings.Contains(l["msg"].(string), "IMDSv1") {
			sdkWarned = true
		}
	}
	if !sdkWarned {
		t.Errorf("no aws-sdk warning about the IMDSv1 fallback in the JSON log:\n%s", buf)
	}
}

// TestNewRefusesWithoutCredentials: a bridge with a kind dsql route and no
// credentials is not built (the gateway does not start); with credentials
// given in Options nothing is looked up.
func TestNewRefusesWithoutCredentials(t *testing.T) {
	clearAWSEnv(t)
	cfg := config.Default()
	r := config.DefaultRoute(config.KindDSQL, "app")
	r.Endpoint = "abcdefghijklmnopqrstuvwxyz.dsql.us-east-1.on.aws"
	cfg.Routes = []config.Route{r}
	_, err := New(context.Background(), cfg, Options{})
	var ce *CredentialsError
	if !errors.As(err, &ce) || !ce.NoneFound {
		t.Fatalf("New without credentials: err = %v, want a *CredentialsError", err)
	}
}
