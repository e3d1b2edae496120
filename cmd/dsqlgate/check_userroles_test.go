package main

import (
	"fmt"
	"strings"
	"testing"

	"github.com/dsqlgate/dsqlgate/internal/harness"
)

// TestCheckUserRoles: check is "mint a token and dial every route", so that
// a deployment learns before its clients do that a route cannot connect.
// With user_roles a route connects as several roles, each needing its own
// IAM grant and role on the cluster; a role that cannot log in (here: it
// does not exist) must not pass check as ok, since every connection of
// the user mapped to it will fail.
func TestCheckUserRoles(t *testing.T) {
	st := checkStack(t)
	path := writeCheckConfig(t, fmt.Sprintf(`  - {database: app, endpoint: %s, dial_address: %q, ca_file: %q, user_roles: {alice: no_such_role}}
`, harness.StackHost, st.Emulator.Addr(), st.CAFile))
	code, out, errOut := runCLI(t, "check", "-c", path)
	t.Logf("stdout:\n%s\nstderr:\n%s", out, errOut)
	if code == 0 || !strings.Contains(out, "no_such_role") {
		t.Errorf("check exits %d and never tries role no_such_role, which alice logs in as upstream", code)
	}
}
