package config_test

import (
	"testing"

	"github.com/dsqlgate/dsqlgate/config"
)

// TestUserRolesMergeList: textMap's comment says "Merge keys work as for
// other mappings", and the other mappings take << with a list of mappings
// (YAML's merge key: a mapping or a sequence of them); user_roles refuses
// the list.
func TestUserRolesMergeList(t *testing.T) {
	t.Setenv("TEST_VERIFIER", testVerifier)
	users := "users: [{name: alice, verifier_env: TEST_VERIFIER}, {name: bob, verifier_env: TEST_VERIFIER}]\n"
	// The same merge on another mapping of the route is accepted.
	if _, err := config.Parse([]byte(users+dsqlRoute+"    pool: {<<: [{size: 5}, {min_idle: 1}]}\n"), "t.yaml"); err != nil {
		t.Fatalf("a merged list on pool: %v", err)
	}
	c, err := config.Parse([]byte(users+dsqlRoute+"    user_roles: {<<: [{alice: a}, {bob: b}]}\n"), "t.yaml")
	if err != nil {
		t.Fatalf("a merged list on user_roles: %v", err)
	}
	if c.Routes[0].UserRoles["alice"] != "a" || c.Routes[0].UserRoles["bob"] != "b" {
		t.Errorf("user_roles %v", c.Routes[0].UserRoles)
	}
}
