package e2e

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/dsqlgate/dsqlgate/config"
)

// TestUserRolesGreeting: the greeting (ParameterStatus at login) comes from
// the route's cached upstream parameters, those of whichever role dialled
// last. With user_roles they are no longer the same for every user of a
// route: a user mapped to a non-admin role must not be told that its
// session_authorization is admin (nor is_superuser of admin's), which psql
// shows in its prompt and clients use to decide what they may do.
func TestUserRolesGreeting(t *testing.T) {
	ctx := testCtx(t, 2*time.Minute)
	st, reporterURL := reporterStack(ctx, t, func(c *config.Config) {
		c.Routes[0].UserRoles = map[string]string{reporter: "reporting"}
	})
	admin := connect(t, st, "") // the route's parameters are now admin's
	if got := admin.PgConn().ParameterStatus("session_authorization"); got != "" && got != "admin" {
		t.Fatalf("admin greeted with session_authorization %q", got)
	}
	rep, err := pgx.Connect(ctx, reporterURL)
	if err != nil {
		t.Fatal(err)
	}
	defer rep.Close(context.Background())
	var who string
	if err := rep.QueryRow(ctx, "select current_user").Scan(&who); err != nil || who != "reporting" {
		t.Fatalf("reporter is %q upstream (%v)", who, err)
	}
	if got := rep.PgConn().ParameterStatus("session_authorization"); got != "" && got != "reporting" {
		t.Errorf("the reporting user was greeted with session_authorization %q; it runs upstream as reporting", got)
	}
	if a, r := admin.PgConn().ParameterStatus("is_superuser"), rep.PgConn().ParameterStatus("is_superuser"); r != "" && r == "on" && a == "on" {
		t.Errorf("the reporting user was greeted with admin's is_superuser %q", r)
	}
}

// TestUserRolesReload: a reload that changes user_roles replaces the route
// (sameUpstream compares them): a new login of the user gets its new role
// at once, while a session already running keeps the role it had until it
// ends (the documented "for new connections"); and no session of another
// user is moved to the mapped role.
func TestUserRolesReload(t *testing.T) {
	ctx := testCtx(t, 2*time.Minute)
	st, reporterURL := reporterStack(ctx, t, func(c *config.Config) {
		c.Routes[0].Pool.MinIdle = 2
	})
	whoami := func(c *pgx.Conn) string {
		t.Helper()
		var who string
		if err := c.QueryRow(ctx, "select current_user").Scan(&who); err != nil {
			t.Fatal(err)
		}
		return who
	}
	before, err := pgx.Connect(ctx, reporterURL)
	if err != nil {
		t.Fatal(err)
	}
	defer before.Close(context.Background())
	if got := whoami(before); got != "admin" {
		t.Fatalf("unmapped reporter is %q", got)
	}
	admin := connect(t, st, "")

	next := *st.Gateway.Config()
	next.Routes = slices.Clone(next.Routes)
	next.Routes[0].UserRoles = map[string]string{reporter: "reporting"}
	if _, err := st.Gateway.Reload(ctx, &next); err != nil {
		t.Fatal(err)
	}
	after, err := pgx.Connect(ctx, reporterURL)
	if err != nil {
		t.Fatal(err)
	}
	defer after.Close(context.Background())
	for i := range 3 {
		if got := whoami(after); got != "reporting" {
			t.Fatalf("query %d: a login after the reload is %q, want reporting", i, got)
		}
		if got := whoami(admin); got != "admin" {
			t.Fatalf("query %d: the admin user's running session is %q", i, got)
		}
		if got := whoami(connect(t, st, "")); got != "admin" {
			t.Fatalf("query %d: a new admin login is %q", i, got)
		}
	}
	// Documented: the session from before keeps its role until it ends.
	t.Logf("reporter's session from before the reload now runs as %q", whoami(before))
}
