package e2e

import (
	"context"
	"net/url"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/dsqlgate/dsqlgate/config"
	"github.com/dsqlgate/dsqlgate/internal/harness"
	"github.com/dsqlgate/dsqlgate/internal/scram"
)

// TestUserRolesGreeting: the greeting (ParameterStatus at login) comes from
// the route's cached upstream parameters, those of whichever role dialled
// last. With user_roles they are no longer the same for every user of a
// route: a user mapped to a non-admin role must not be told that its
// session_authorization is admin (nor is_superuser of admin's), which psql
// shows in its prompt and clients use to decide what they may do.
func TestUserRolesGreeting(t *testing.T) {
	ctx := testCtx(t, 2*time.Minute)
	const reporter, reporterPassword = "reporter", "report-password-1"
	v, err := scram.GenerateVerifier(reporterPassword)
	if err != nil {
		t.Fatal(err)
	}
	st, err := harness.StartStack(ctx, harness.StackOptions{Gateway: func(c *config.Config) {
		c.Users = append(c.Users, config.User{Name: reporter, Verifier: v.Encode()})
		c.Routes[0].UserRoles = map[string]string{reporter: "reporting"}
	}})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if _, err := st.PG.Psql(ctx, "postgres", "-qc", "CREATE ROLE reporting LOGIN"); err != nil {
		t.Fatal(err)
	}
	admin := connect(t, st, "") // the route's parameters are now admin's
	if got := admin.PgConn().ParameterStatus("session_authorization"); got != "" && got != "admin" {
		t.Fatalf("admin greeted with session_authorization %q", got)
	}
	u := url.URL{Scheme: "postgres", User: url.UserPassword(reporter, reporterPassword), Host: st.Gateway.Addr, Path: "/" + harness.StackDatabase, RawQuery: "sslmode=disable"}
	rep, err := pgx.Connect(ctx, u.String())
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
