package main

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/dsqlgate/dsqlgate/internal/harness"
)

// TestCheckUserRoles: check is "mint a token and dial every route", so that
// a deployment learns before its clients do that a route cannot connect.
// With user_roles a route connects as several roles, each needing its own
// IAM grant and role on the cluster; a role that cannot log in (here: it
// does not exist) must not pass check as ok, since every connection of
// the user mapped to it will fail.
func TestCheckUserRoles(t *testing.T) {
	if testing.Short() {
		t.Skip("starts PostgreSQL and the DSQL emulator")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	st, err := harness.StartStack(ctx, harness.StackOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	noAWSCredentials(t)
	t.Setenv("AWS_ACCESS_KEY_ID", st.Credentials.AccessKeyID)
	t.Setenv("AWS_SECRET_ACCESS_KEY", st.Credentials.SecretAccessKey)
	path := writeCheckConfig(t, fmt.Sprintf(`  - {database: app, endpoint: %s, dial_address: %q, ca_file: %q, user_roles: {alice: no_such_role}}
`, harness.StackHost, st.Emulator.Addr(), st.CAFile))
	code, out, errOut := runCLI(t, "check", "-c", path)
	t.Logf("stdout:\n%s\nstderr:\n%s", out, errOut)
	if code == 0 || !strings.Contains(out, "no_such_role") {
		t.Errorf("check exits %d and never tries role no_such_role, which alice logs in as upstream", code)
	}
}
