package pgwire

import (
	"bytes"
	"slices"
	"strings"
	"testing"

	"github.com/dsqlgate/dsqlgate/config"
)

// TestSplitAdminQuery: a console query splits at each ';' outside quotes,
// empty commands are dropped, and more than maxAdminCommands is refused.
func TestSplitAdminQuery(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want []string
	}{
		{"SHOW POOLS", []string{"SHOW POOLS"}},
		{"SHOW POOLS; SHOW STATS;", []string{"SHOW POOLS", "SHOW STATS"}},
		{" ; ;;SHOW POOLS;;  ;\n", []string{"SHOW POOLS"}},
		{"", nil},
		{";;;", nil},
		{`KILL "a;b"; SHOW POOLS`, []string{`KILL "a;b"`, "SHOW POOLS"}},
		{`KILL 'it''s;x';RELOAD`, []string{`KILL 'it''s;x'`, "RELOAD"}},
		{`KILL "say ""hi"";";PAUSE`, []string{`KILL "say ""hi"";"`, "PAUSE"}},
		{`KILL "it's";RESUME`, []string{`KILL "it's"`, "RESUME"}},
	} {
		got, err := splitAdminQuery(tc.in)
		if err != nil || !slices.Equal(got, tc.want) {
			t.Errorf("splitAdminQuery(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
		}
	}
	for _, in := range []string{`KILL "db;`, `SHOW POOLS; KILL 'x`} {
		if got, err := splitAdminQuery(in); err == nil || !strings.Contains(err.Error(), "unterminated") {
			t.Errorf("splitAdminQuery(%q) = %q, %v; want an unterminated string refused", in, got, err)
		}
	}
	at := strings.Repeat("SHOW VERSION;", maxAdminCommands)
	if got, err := splitAdminQuery(at + ";;"); err != nil || len(got) != maxAdminCommands {
		t.Errorf("%d commands: %d, %v; want all of them", maxAdminCommands, len(got), err)
	}
	if _, err := splitAdminQuery(at + "SHOW VERSION"); err == nil || !strings.Contains(err.Error(), "more than 64 commands") {
		t.Errorf("%d commands: %v; want refused", maxAdminCommands+1, err)
	}
}

// TestAdminQueryStopsAtError: the commands after a failed one do not run,
// and an over-long script is refused as a whole with 42601.
func TestAdminQueryStopsAtError(t *testing.T) {
	g := startMemGateway(t, config.PoolTransaction)
	setAdmins(g.srv, "ops")
	out, shutdown := adminQueryBytes(g.srv, "SHOW VERSION; SHOW NOPE; SHUTDOWN", "ops")
	if shutdown {
		t.Error("SHUTDOWN after a failed command was run")
	}
	if n := strings.Count(string(out), "dsqlgate "); n != 1 {
		t.Errorf("SHOW VERSION answered %d times, want once", n)
	}
	if !strings.Contains(string(out), "unknown SHOW NOPE") || !strings.Contains(string(out), "KILL_CLIENT id") {
		t.Errorf("reply %q: want the unknown SHOW refused with the command list", out)
	}
	out, _ = adminQueryBytes(g.srv, strings.Repeat("SHOW VERSION;", maxAdminCommands+1), "ops")
	if strings.Contains(string(out), "dsqlgate ") || !strings.Contains(string(out), "42601") {
		t.Errorf("reply to %d commands %q: want one 42601 error and nothing run", maxAdminCommands+1, out)
	}
	out, shutdown = adminQueryBytes(g.srv, "SHUTDOWN", "ops")
	if shutdown || !strings.Contains(string(out), "0A000") {
		t.Errorf("SHUTDOWN without a hook: %q, %t; want 0A000", out, shutdown)
	}
}

// setAdmins puts admin.users = names in force, as a reload would.
func setAdmins(s *Server, names ...string) {
	cfg := *s.currentConfig()
	cfg.Admin.Users = names
	s.conf.Store(&cfg)
}

// TestAdminQueryDemotedAdmin: an admin that a reload removed from
// admin.users can run no more commands on the console it opened before
// (KILL, SHUTDOWN, RELOAD...): the check is made per query, not only at
// login.
func TestAdminQueryDemotedAdmin(t *testing.T) {
	g := startMemGateway(t, config.PoolTransaction)
	setAdmins(g.srv, "ops")
	if out, _ := adminQueryBytes(g.srv, "SHOW VERSION", "ops"); !strings.Contains(string(out), "dsqlgate ") {
		t.Fatalf("an admin's SHOW VERSION: %q", out)
	}
	setAdmins(g.srv, "someone-else")
	out, _ := adminQueryBytes(g.srv, "SHOW VERSION", "ops")
	if strings.Contains(string(out), "dsqlgate ") || !strings.Contains(string(out), "42501") {
		t.Fatalf("a demoted admin's SHOW VERSION: %q; want 42501 and nothing run", out)
	}
}

// adminQueryBytes is adminQuery's whole reply to one query.
func adminQueryBytes(s *Server, text, user string) ([]byte, bool) {
	var b bytes.Buffer
	shutdown := s.adminQuery(&b, text, user, s.log)
	return b.Bytes(), shutdown
}
