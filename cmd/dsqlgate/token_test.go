package main

import (
	"net/url"
	"strings"
	"testing"
)

const tokenTestHost = "abcdefghijklmnopqrstuvwxyz.dsql.us-east-1.on.aws"

// TestTokenRefusesWhatTheConfigurationRefuses: token checks its flags by
// the configuration's rules for a kind dsql route and names the flag at
// fault, before it looks for credentials; it exits 2 and prints no token.
func TestTokenRefusesWhatTheConfigurationRefuses(t *testing.T) {
	t.Setenv("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "secret")
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"expiry over 168h", []string{"--endpoint", tokenTestHost, "--expiry", "200h"},
			"--expiry: 200h0m0s is out of range: DSQL tokens last from 1s to 168h"},
		{"expiry under 1s", []string{"--endpoint", tokenTestHost, "--expiry", "500ms"},
			"--expiry: 500ms is out of range: DSQL tokens last from 1s to 168h"},
		{"region not the endpoint's", []string{"--endpoint", tokenTestHost, "--region", "eu-west-1"},
			"--region: eu-west-1 differs from the endpoint's region us-east-1: a token signed for one region is refused in another"},
		{"not a region", []string{"--endpoint", "db.example.com", "--region", "useast"},
			`--region: "useast" is not an AWS region name such as us-east-1`},
		{"no region in a custom host name", []string{"--endpoint", "db.example.com"},
			"--region: required: db.example.com does not have the form <cluster-id>.dsql.<region>.on.aws, so the region cannot be read from it"},
		{"an IP address", []string{"--endpoint", "10.0.0.1", "--region", "us-east-1"},
			"--endpoint: must be the cluster's host name, not an IP address"},
		{"a URL", []string{"--endpoint", "https://" + tokenTestHost},
			`--endpoint: "https://` + tokenTestHost + `" is not a host name: write only the host`},
		{"a bad port", []string{"--endpoint", tokenTestHost + ":99999"},
			`--endpoint: port "99999" is not a number from 1 to 65535`},
		{"no role", []string{"--endpoint", tokenTestHost, "--role", ""},
			"--role: required: the DSQL database role to log in as, such as admin"},
		{"a NUL in the role", []string{"--endpoint", tokenTestHost, "--role", "a\x00b"},
			"--role: must not contain a NUL character"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, out, errOut := runCLI(t, append([]string{"token"}, tt.args...)...)
			if code != 2 || out != "" {
				t.Errorf("exit %d, stdout %q; want 2 and nothing", code, out)
			}
			if errOut != "dsqlgate: "+tt.want+"\n" && !strings.HasPrefix(errOut, "dsqlgate: "+tt.want) {
				t.Errorf("stderr:\n%s\nwant it to begin:\ndsqlgate: %s", errOut, tt.want)
			}
		})
	}

	// Every problem is listed, one a line.
	_, _, errOut := runCLI(t, "token", "--endpoint", tokenTestHost, "--role", "", "--expiry", "0s")
	if want := "dsqlgate: --role: required: the DSQL database role to log in as, such as admin\n" +
		"--expiry: 0s is out of range: DSQL tokens last from 1s to 168h\n"; errOut != want {
		t.Errorf("two problems: stderr\n%s\nwant\n%s", errOut, want)
	}
}

// TestTokenNoCredentials: without AWS credentials token says so as serve
// does, once, and prints no token.
func TestTokenNoCredentials(t *testing.T) {
	noAWSCredentials(t)
	code, out, errOut := runCLI(t, "token", "--endpoint", tokenTestHost)
	if code != 1 || out != "" {
		t.Errorf("exit %d, stdout %q; want 1 and nothing", code, out)
	}
	if !strings.HasPrefix(errOut, "dsqlgate: no AWS credentials found.") {
		t.Errorf("stderr:\n%s", errOut)
	}
	for _, s := range []string{"no AWS credentials found", "AWS_EC2_METADATA_DISABLED", "Set AWS_PROFILE"} {
		if n := strings.Count(errOut, s); n != 1 {
			t.Errorf("%q appears %d times in:\n%s", s, n, errOut)
		}
	}
}

// TestTokenMints: valid flags print a token for the endpoint's host (a
// port is not part of it), in the endpoint's region, with the action of
// the role and the lifetime asked for.
func TestTokenMints(t *testing.T) {
	noAWSCredentials(t)
	t.Setenv("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "secret")
	tests := []struct {
		args                   []string
		action, expires, scope string
	}{
		{[]string{"--endpoint", tokenTestHost}, "DbConnectAdmin", "900", "/us-east-1/dsql/"},
		{[]string{"--endpoint", tokenTestHost + ":5432", "--role", "reader", "--expiry", "168h", "--region", "us-east-1"},
			"DbConnect", "604800", "/us-east-1/dsql/"},
		{[]string{"--endpoint", "db.example.com", "--region", "eu-west-1", "--expiry", "1s"}, "DbConnectAdmin", "1", "/eu-west-1/dsql/"},
	}
	for _, tt := range tests {
		code, out, errOut := runCLI(t, append([]string{"token"}, tt.args...)...)
		if code != 0 {
			t.Errorf("%q: exit %d: %s", tt.args, code, errOut)
			continue
		}
		host, query, _ := strings.Cut(strings.TrimSpace(out), "?")
		q, err := url.ParseQuery(query)
		if err != nil {
			t.Fatal(err)
		}
		if want := strings.Split(tt.args[1], ":")[0]; host != want || q.Get("Action") != tt.action ||
			q.Get("X-Amz-Expires") != tt.expires || !strings.Contains(q.Get("X-Amz-Credential"), tt.scope) {
			t.Errorf("%q: host %s, Action %s, X-Amz-Expires %s, X-Amz-Credential %s; want %s, %s, %s, %s",
				tt.args, host, q.Get("Action"), q.Get("X-Amz-Expires"), q.Get("X-Amz-Credential"), want, tt.action, tt.expires, tt.scope)
		}
	}
}
