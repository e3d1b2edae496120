package users_test

import (
	"strings"
	"testing"

	"github.com/dsqlgate/dsqlgate/config"
	"github.com/dsqlgate/dsqlgate/internal/users"
)

// TestUserRolesNameAUserOfTheVariable: with users_env (or users_file),
// Validate cannot know the users, so a server checks (CheckRoleNames) at
// start-up and reload that each user_roles entry names one. A typo
// ("alcie") otherwise leaves alice on the route's role, admin by default.
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
	list, _, err := users.Load(c, env)
	if err != nil {
		// Load also serves the users file's own reloads: refusing there
		// would keep a user the file no longer holds.
		t.Fatalf("Load refused the users over user_roles: %v", err)
	}
	err = users.CheckNames(c, func(name string) bool {
		for _, u := range list {
			if u.Name == name {
				return true
			}
		}
		return false
	})
	if err == nil {
		t.Fatalf("CheckRoleNames accepted user_roles naming no user; alice runs upstream as %q", c.Routes[0].RoleFor("alice"))
	}
	if !strings.Contains(err.Error(), "routes[0].user_roles.alcie") {
		t.Errorf("the problem does not name the entry: %v", err)
	}
}
