package config_test

import (
	"strings"
	"testing"

	"github.com/dsqlgate/dsqlgate/config"
)

// TestUserRolesNameAUser: a user_roles entry whose name is no gateway user
// (a typo: "alcie" for "alice") must be refused. Accepted, alice silently
// logs in upstream as the route's role, admin by default: the very user the
// operator meant to restrict gets every privilege.
func TestUserRolesNameAUser(t *testing.T) {
	t.Setenv("TEST_VERIFIER", testVerifier)
	doc := user + dsqlRoute + "    user_roles: {alcie: app_reader}\n"
	c, err := config.Parse([]byte(doc), "test.yaml")
	if err == nil {
		t.Fatalf("Parse accepted user_roles naming no user; alice runs upstream as %q", c.Routes[0].RoleFor("alice"))
	}
	if !strings.Contains(err.Error(), "routes[0].user_roles.alcie") {
		t.Errorf("the problem does not name the entry: %v", err)
	}
}
