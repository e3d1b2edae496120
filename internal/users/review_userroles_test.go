package users_test

import (
	"strings"
	"testing"

	"github.com/dsqlgate/dsqlgate/config"
	"github.com/dsqlgate/dsqlgate/internal/users"
)

// TestUserRolesNameAUserOfTheVariable: with users_env (or users_file),
// Validate cannot know the users, so Load must check that each user_roles
// entry names one, as it does for admin.users. A typo ("alcie") otherwise
// leaves alice on the route's role, admin by default.
func TestUserRolesNameAUserOfTheVariable(t *testing.T) {
	doc := "users_env: TEST_USERS\n" + dsqlRoute + "    user_roles: {alcie: app_reader}\n"
	c, err := config.Parse([]byte(doc), "test.yaml")
	if err != nil {
		t.Fatal(err)
	}
	env := func(name string) (string, bool) {
		if name == "TEST_USERS" {
			return "\"alice\" \"" + testVerifier + "\"\n", true
		}
		return "", false
	}
	_, _, err = users.Load(c, env)
	if err == nil {
		t.Fatalf("Load accepted user_roles naming no user; alice runs upstream as %q", c.Routes[0].RoleFor("alice"))
	}
	if !strings.Contains(err.Error(), "routes[0].user_roles.alcie") {
		t.Errorf("the problem does not name the entry: %v", err)
	}
}
