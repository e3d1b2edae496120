package dsqlsim

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// jsSignerDir holds a pinned @aws-sdk/dsql-signer (package.json and
// package-lock.json are committed; node_modules is not) and mint.js.
const jsSignerDir = "testdata/jssigner"

var (
	jsSignerOnce sync.Once
	jsSignerErr  string // why the JS signer cannot run, or ""
)

// needJSSigner makes sure node and the signer's node_modules are there,
// running `npm ci` once when they are not. A missing tool fails the test.
func needJSSigner(t *testing.T) {
	t.Helper()
	jsSignerOnce.Do(func() {
		if _, err := exec.LookPath("node"); err != nil {
			jsSignerErr = "node is not installed (apt-get install nodejs npm): " + err.Error()
			return
		}
		if _, err := os.Stat(filepath.Join(jsSignerDir, "node_modules", "@aws-sdk", "dsql-signer")); err == nil {
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		cmd := exec.CommandContext(ctx, "npm", "ci", "--no-audit", "--no-fund", "--prefix", jsSignerDir)
		if out, err := cmd.CombinedOutput(); err != nil {
			jsSignerErr = "npm ci --prefix " + jsSignerDir + " failed: " + err.Error() + "\n" + string(out)
		}
	})
	if jsSignerErr != "" {
		t.Fatal(jsSignerErr)
	}
}

// jsTokens mints a user and an admin token for testHost with
// @aws-sdk/dsql-signer, once per credential (node takes a second to load the
// SDK). Credentials go through the environment, never argv.
func jsTokens(t *testing.T, cred Credential) map[string]string {
	t.Helper()
	needJSSigner(t)
	jsTokenMu.Lock()
	defer jsTokenMu.Unlock()
	if tokens, ok := jsTokenCache[cred.AccessKeyID+cred.SessionToken]; ok {
		return tokens
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	actions := []string{actionConnect, actionConnectAdmin}
	cmd := exec.CommandContext(ctx, "node", append([]string{filepath.Join(jsSignerDir, "mint.js"), testHost, testRegion, "900"}, actions...)...)
	cmd.Env = append(os.Environ(), "DSQLSIM_AKID="+cred.AccessKeyID, "DSQLSIM_SECRET="+cred.SecretAccessKey,
		"DSQLSIM_SESSION_TOKEN="+cred.SessionToken, "AWS_EC2_METADATA_DISABLED=true")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("node mint.js: %v\n%s", err, stderr.String())
	}
	lines := strings.Fields(string(out))
	if len(lines) != len(actions) {
		t.Fatalf("node mint.js printed %d tokens, want %d", len(lines), len(actions))
	}
	tokens := map[string]string{}
	for i, action := range actions {
		tokens[action] = lines[i]
	}
	jsTokenCache[cred.AccessKeyID+cred.SessionToken] = tokens
	return tokens
}

var (
	jsTokenMu    sync.Mutex
	jsTokenCache = map[string]map[string]string{}
)

func TestVerifyTokenJSSigner(t *testing.T) {
	tests := []struct {
		name   string
		action string
		role   string
		cred   Credential
		reason TokenReason // "" means accepted
	}{
		{name: "user token", action: actionConnect, role: "app", cred: testCred},
		{name: "admin token", action: actionConnectAdmin, role: "admin", cred: testCred},
		{name: "temporary credentials", action: actionConnect, role: "app", cred: testSessionCred},
		{name: "admin token for a user role", action: actionConnectAdmin, role: "app", cred: testCred, reason: ReasonAction},
		{name: "user token for admin", action: actionConnect, role: "admin", cred: testCred, reason: ReasonAction},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			token := jsTokens(t, tt.cred)[tt.action]
			now := tokenDate(t, token).Add(time.Minute)
			err := VerifyToken(token, testHost, tt.role, testRegion, testCreds, now, testSkew)
			if tt.reason == "" {
				if err != nil {
					t.Fatalf("VerifyToken(%s) = %v", strings.SplitN(token, "?", 2)[0], err)
				}
				return
			}
			assertReason(t, err, tt.reason)
		})
	}
}

// TestJSSignerPayloadHash records what the JS signer signs as the payload
// hash: the SHA-256 of the empty string, as the Go SDK and botocore do, not
// UNSIGNED-PAYLOAD. The verifier accepts only that. (The JS signer also
// writes "host/?query", like the AWS CLI.)
func TestJSSignerPayloadHash(t *testing.T) {
	token := jsTokens(t, testCred)[actionConnect]
	now := tokenDate(t, token).Add(time.Minute)
	if err := VerifyToken(token, testHost, "app", testRegion, testCreds, now, testSkew); err != nil {
		t.Fatalf("JS token with the empty-payload hash: %v", err)
	}
	unsigned := unsignedPayloadToken(t, token, testCred.SecretAccessKey)
	err := VerifyToken(unsigned, testHost, "app", testRegion, testCreds, now, testSkew)
	assertReason(t, err, ReasonSignatureMismatch)
}
