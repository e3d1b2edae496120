package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/spf13/cobra"

	"github.com/dsqlgate/dsqlgate/config"
)

// TestServeResolutionOrder: serve resolves each setting from the defaults,
// then the file, then DSQLGATE_* variables, then its flags, each over the
// ones before, and validates only the result.
func TestServeResolutionOrder(t *testing.T) {
	path := filepath.Join(t.TempDir(), "dsqlgate.yaml")
	write := func(doc string) {
		t.Helper()
		base := "users: [{name: alice, verifier: 'SCRAM-SHA-256$4096:c2FsdA==$" +
			"n4bQgYhMfWWaL+qgxVrQFaO/TxsrC4Is0V1sFbDwCgg=:n4bQgYhMfWWaL+qgxVrQFaO/TxsrC4Is0V1sFbDwCgg='}]\n" +
			"routes: [{database: app, endpoint: abcdefghijklmnopqrstuvwxyz.dsql.us-east-1.on.aws}]\n"
		if err := os.WriteFile(path, []byte(base+doc), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	load := func(args ...string) (*config.Config, error) {
		t.Helper()
		var f serveFlags
		cmd := &cobra.Command{}
		addServeFlags(cmd, &f)
		if err := cmd.ParseFlags(append([]string{"-c", path}, args...)); err != nil {
			t.Fatalf("flags %q: %v", args, err)
		}
		return loadConfig(f)
	}
	get := func(c *config.Config) string { return c.Listen + " " + c.Log.Level + " " + c.Log.Format }

	tests := []struct {
		name string
		file string
		env  map[string]string
		args []string
		want string
	}{
		{name: "defaults", want: "127.0.0.1:6432 info console"},
		{name: "file over defaults", file: "listen: 127.0.0.1:7001\nlog: {level: warn}\n", want: "127.0.0.1:7001 warn console"},
		{
			name: "environment over file", file: "listen: 127.0.0.1:7001\nlog: {level: warn}\n",
			env: map[string]string{"DSQLGATE_LISTEN": "127.0.0.1:7002", "DSQLGATE_LOG_FORMAT": "json"}, want: "127.0.0.1:7002 warn json",
		},
		{
			name: "flags over environment and file", file: "listen: 127.0.0.1:7001\nlog: {level: warn}\n",
			env:  map[string]string{"DSQLGATE_LISTEN": "127.0.0.1:7002", "DSQLGATE_LOG_LEVEL": "error"},
			args: []string{"--listen", "127.0.0.1:7003", "--log-format=json"}, want: "127.0.0.1:7003 error json",
		},
		{name: "the last of a repeated flag", args: []string{"--log-level", "debug", "--log-level", "warn"}, want: "127.0.0.1:6432 warn console"},
		{
			// Alone the file is invalid (a listener on every interface
			// needs TLS): the flag is applied before validation.
			name: "a flag corrects the file", file: "listen: 0.0.0.0:6432\n",
			args: []string{"--listen", "127.0.0.1:7004"}, want: "127.0.0.1:7004 info console",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for name, v := range tt.env {
				t.Setenv(name, v)
			}
			write(tt.file)
			c, err := load(tt.args...)
			if err != nil {
				t.Fatalf("loadConfig: %v", err)
			}
			if got := get(c); got != tt.want {
				t.Errorf("listen, log.level, log.format = %q, want %q", got, tt.want)
			}
		})
	}

	// A bad value is a problem named by its flag.
	write("listen: 127.0.0.1:7001\n")
	_, err := load("--log-level", "loud")
	if err == nil || !strings.Contains(err.Error(), `--log-level: log.level: "loud" is not one of debug, info, warn, error`) {
		t.Errorf("a bad --log-level: %v", err)
	}
}
