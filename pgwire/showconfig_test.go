package pgwire

import (
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/dsqlgate/dsqlgate/config"
	"github.com/dsqlgate/dsqlgate/internal/scram"
)

// TestShowConfigChangeable: SHOW CONFIG's changeable column must say no for
// every key a reload cannot change (restartOnly), reuse_port included.
func TestShowConfigChangeable(t *testing.T) {
	g := startMemGateway(t, config.PoolTransaction)
	res := g.srv.showConfig()
	found := map[string]string{}
	for _, row := range res.rows {
		found[row[0]] = row[3]
	}
	for _, k := range restartOnly {
		if v, ok := found[k]; !ok || v != "no" {
			t.Errorf("SHOW CONFIG %s: changeable %q (present %t), want no: a reload refuses to change it", k, v, ok)
		}
	}
	// A reload that changes client_tls.acme is refused (gateway.Reload).
	acme := 0
	for k, v := range found {
		if strings.HasPrefix(k, "client_tls.acme.") {
			acme++
			if v != "no" {
				t.Errorf("SHOW CONFIG %s: changeable %q, want no: a reload that changes ACME is refused", k, v)
			}
		}
	}
	if acme == 0 {
		t.Error("SHOW CONFIG lists no client_tls.acme key")
	}
}

// TestUserRoleNamesAtStart: with users_env, a user_roles entry naming no
// user stops the server at start-up and refuses a configuration reload;
// a change of the users alone (ReloadUsers, the users file's watcher) still
// takes effect, so that removing a user revokes it even while user_roles
// names it.
func TestUserRoleNamesAtStart(t *testing.T) {
	g := startMemGateway(t, config.PoolTransaction)
	v, err := scram.GenerateVerifier(memPassword)
	if err != nil {
		t.Fatal(err)
	}
	t.Setenv("TEST_REVIEW_USERS", "\"alice\" \""+v.Encode()+"\"\n")
	cfg := *g.srv.currentConfig()
	cfg.Users = nil
	cfg.UsersEnv = "TEST_REVIEW_USERS"
	cfg.Routes = slices.Clone(cfg.Routes)
	cfg.Routes[0].UserRoles = map[string]string{"alcie": "app_reader"}
	if _, err := NewServer(&cfg, g.ups, Options{}); err == nil || !strings.Contains(err.Error(), "user_roles.alcie") {
		t.Errorf("NewServer: %v, want the misspelt user_roles entry refused", err)
	}
	if _, err := g.srv.PrepareConfig(&cfg); err == nil || !strings.Contains(err.Error(), "user_roles.alcie") {
		t.Errorf("PrepareConfig: %v, want the misspelt user_roles entry refused", err)
	}
	cfg.Routes[0].UserRoles = map[string]string{"alice": "app_reader"}
	srv, err := NewServer(&cfg, g.ups, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	// alice leaves the variable (as she would leave a users file): the
	// users reload takes effect although user_roles still names her.
	t.Setenv("TEST_REVIEW_USERS", "\"bob\" \""+v.Encode()+"\"\n")
	if err := srv.ReloadUsers(); err != nil {
		t.Fatalf("ReloadUsers refused a user's removal: %v", err)
	}
	if _, ok := srv.users.Load().byName["alice"]; ok {
		t.Error("alice is still a user")
	}
}

// TestAdminUserRemoval: removing a user from users_env (or users_file)
// must revoke it, also when admin.users names it: a users reload refused
// over admin.users keeps the removed user able to log in, to the admin
// console too.
func TestAdminUserRemoval(t *testing.T) {
	g := startMemGateway(t, config.PoolTransaction)
	v, err := scram.GenerateVerifier(memPassword)
	if err != nil {
		t.Fatal(err)
	}
	t.Setenv("TEST_REVIEW_USERS", "\"alice\" \""+v.Encode()+"\"\n\"bob\" \""+v.Encode()+"\"\n")
	cfg := *g.srv.currentConfig()
	cfg.Users = nil
	cfg.UsersEnv = "TEST_REVIEW_USERS"
	cfg.Admin.Users = []string{"alice"}
	srv, err := NewServer(&cfg, g.ups, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	t.Setenv("TEST_REVIEW_USERS", "\"bob\" \""+v.Encode()+"\"\n") // alice is revoked
	if err := srv.ReloadUsers(); err != nil {
		t.Errorf("ReloadUsers refused a user's removal: %v", err)
	}
	if _, ok := srv.users.Load().byName["alice"]; ok {
		t.Error("alice, removed, is still a user (and an admin console user)")
	}
}

// TestShowConfigUserRoles: SHOW CONFIG writes "every scalar under its yaml
// key path"; user_roles came out as Go's rendering of a map
// ("map[alice:app_reader]") under routes[0].user_roles.
func TestShowConfigUserRoles(t *testing.T) {
	cfg := config.Default()
	r := config.DefaultRoute(config.KindDSQL, "app")
	r.UserRoles = map[string]string{"alice": "app_reader", "bob": "app_writer"}
	cfg.Routes = []config.Route{r}
	out := map[string]string{}
	flatten("", reflect.ValueOf(*cfg), out)
	if out["routes[0].user_roles.alice"] != "app_reader" || out["routes[0].user_roles.bob"] != "app_writer" {
		t.Errorf("user_roles in SHOW CONFIG: %q, %q; routes[0].user_roles = %q", out["routes[0].user_roles.alice"], out["routes[0].user_roles.bob"], out["routes[0].user_roles"])
	}
}
