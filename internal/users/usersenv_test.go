package users_test

import (
	"strings"
	"testing"

	"github.com/dsqlgate/dsqlgate/config"
	"github.com/dsqlgate/dsqlgate/internal/users"
)

// TestUsersEnv loads users from a variable named by users_env, as ECS puts
// a Secrets Manager secret in the environment: the users file format,
// problems placed at users_env with the variable and line, and nothing of
// the value in any message.
func TestUsersEnv(t *testing.T) {
	secret := makeVerifier("salt-env-0123456", "stored-env", "server-env")
	list := "# gateway users\n\"alice\" \"" + secret + "\"\n\"bob\" \"" + testVerifier + "\"\n"
	tests := []struct {
		name    string
		doc     string
		value   *string // nil: unset
		want    []string
		problem string
	}{
		{name: "only users_env", doc: "users_env: TEST_USERS\n", value: &list, want: []string{"alice", "bob"}},
		{name: "with users", doc: "users_env: TEST_USERS\nusers: [{name: carol, verifier: '" + testVerifier + "'}]\n", value: &list, want: []string{"carol", "alice", "bob"}},
		{name: "unset", doc: "users_env: TEST_USERS\n", problem: "test.yaml:1: users_env: environment variable TEST_USERS is not set: it should hold users in the users_file format"},
		{name: "no user at all", doc: "users_env: TEST_USERS\n", value: ptr("# nobody yet\n"), problem: "test.yaml:1: users_env: TEST_USERS holds no user, and neither users nor users_file holds one"},
		{name: "a user twice", doc: "users_env: TEST_USERS\nusers: [{name: alice, verifier: '" + testVerifier + "'}]\n", value: &list, problem: "users_env: $TEST_USERS:2: this user is already defined in users[0]; define each user once"},
		{name: "a password, not a verifier", doc: "users_env: TEST_USERS\n", value: ptr("\"alice\" \"" + "hunter2-plaintext" + "\"\n"), problem: "users_env: $TEST_USERS:1: "},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := config.Parse([]byte(tt.doc+dsqlRoute), "test.yaml")
			if err != nil {
				t.Fatal(err)
			}
			env := func(name string) (string, bool) {
				if name != "TEST_USERS" || tt.value == nil {
					return "", false
				}
				return *tt.value, true
			}
			got, _, err := users.Load(c, env)
			if tt.problem != "" {
				if err == nil || !strings.Contains(err.Error(), tt.problem) {
					t.Fatalf("Load = %v, want a problem containing %q", err, tt.problem)
				}
				for _, s := range []string{secret, "hunter2-plaintext"} {
					if strings.Contains(err.Error(), s) {
						t.Errorf("the problem shows a secret: %v", err)
					}
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var names []string
			for _, u := range got {
				names = append(names, u.Name)
			}
			if strings.Join(names, ",") != strings.Join(tt.want, ",") {
				t.Errorf("users %v, want %v", names, tt.want)
			}
		})
	}
}

func ptr(s string) *string { return &s }
