package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"
)

// TestServeRefusesWithoutCredentials: with a kind dsql route and no AWS
// credentials, serve does not start: it says so once, with the sources
// tried and what to do, and in JSON log format prints no line of the
// SDK's own format.
func TestServeRefusesWithoutCredentials(t *testing.T) {
	noAWSCredentials(t)
	path := writeCheckConfig(t, "  - {database: app, endpoint: abcdefghijklmnopqrstuvwxyz.dsql.us-east-1.on.aws}\n")
	var out, errOut bytes.Buffer
	cmd := newRootCommand(streams{in: strings.NewReader(""), out: &out, err: &errOut})
	cmd.SetArgs([]string{"serve", "-c", path, "--listen", "127.0.0.1:0", "--log-format", "json"})
	t.Setenv("DSQLGATE_METRICS_LISTEN", "127.0.0.1:0")
	// Should serve start after all, the context ends it.
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	err := cmd.ExecuteContext(ctx)
	if err == nil {
		t.Fatalf("serve started without credentials; log:\n%s", errOut.String())
	}
	msg := err.Error()
	if !strings.HasPrefix(msg, "start gateway: no AWS credentials found.") {
		t.Errorf("error:\n%s", msg)
	}
	for _, s := range []string{"no AWS credentials found", "AWS_EC2_METADATA_DISABLED", "1. environment variables", "6. EC2 instance metadata (IMDS)"} {
		if n := strings.Count(msg, s); n != 1 {
			t.Errorf("%q appears %d times in:\n%s", s, n, msg)
		}
	}
	for _, line := range strings.Split(strings.TrimSpace(errOut.String()), "\n") {
		if line != "" && !strings.HasPrefix(line, "{") {
			t.Errorf("a log line that is not JSON: %q", line)
		}
	}
}
