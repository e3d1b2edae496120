package e2e

import (
	"context"
	"errors"
	"net/url"
	"slices"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/dsqlgate/dsqlgate/config"
	"github.com/dsqlgate/dsqlgate/internal/harness"
	"github.com/dsqlgate/dsqlgate/internal/scram"
)

// TestUserRoles maps a second gateway user to a DSQL role of its own
// (routes[].user_roles) on the same route as the demo user, who stays
// admin: each logs in upstream as its own role with a token for that role
// (the emulator checks that a non-admin role's token asks for DbConnect),
// so the reporting user can read what it was granted and nothing more.
// The pool keeps warm connections opened before any user asked (min_idle),
// which are admin's: the reporting user must never be handed one, in
// either pool mode.
func TestUserRoles(t *testing.T) {
	for _, mode := range []string{config.PoolTransaction, config.PoolSession} {
		t.Run(mode, func(t *testing.T) {
			ctx := testCtx(t, 2*time.Minute)
			st, reporterURL := reporterStack(ctx, t, func(c *config.Config) {
				c.Admin.Users = []string{harness.StackUser}
				r := &c.Routes[0]
				r.UserRoles = map[string]string{reporter: "reporting"}
				r.Pool.Mode = mode
				r.Pool.MinIdle = 2 // warm admin connections, owned by nobody yet
			})

			// Wait for the warm connections, so that the reporting user
			// finds one idle and unowned when it first asks.
			pool := st.Gateway.Bridge.Route(harness.StackDatabase).Pool()
			for deadline := time.Now().Add(20 * time.Second); pool.Stats().Idle < 2; time.Sleep(20 * time.Millisecond) {
				if time.Now().After(deadline) {
					t.Fatalf("min_idle connections never opened: %+v", pool.Stats())
				}
			}
			admin := connect(t, st, "")
			var who string
			if err := admin.QueryRow(ctx, "select current_user").Scan(&who); err != nil || who != "admin" {
				t.Fatalf("the demo user is %q upstream (%v), want admin", who, err)
			}
			for _, q := range []string{"create table reports_t (id int primary key, v text)", "insert into reports_t values (1, 'one')", "grant select on reports_t to reporting"} {
				if _, err := admin.Exec(ctx, q); err != nil {
					t.Fatalf("%s: %v", q, err)
				}
			}

			rep, err := pgx.Connect(ctx, reporterURL)
			if err != nil {
				t.Fatal(err)
			}
			defer rep.Close(context.Background())
			for i := range 5 {
				if err := rep.QueryRow(ctx, "select current_user").Scan(&who); err != nil || who != "reporting" {
					t.Fatalf("query %d: the reporting user is %q upstream (%v), want reporting", i, who, err)
				}
				var v string
				if err := rep.QueryRow(ctx, "select v from reports_t where id = 1").Scan(&v); err != nil || v != "one" {
					t.Fatalf("query %d: a granted read: %q, %v", i, v, err)
				}
			}
			_, err = rep.Exec(ctx, "insert into reports_t values (2, 'two')")
			var pgErr *pgconn.PgError
			if !errors.As(err, &pgErr) || pgErr.Code != "42501" {
				t.Fatalf("an insert the reporting role was not granted: %v, want SQLSTATE 42501", err)
			}
			// The console's SHOW SERVERS names each connection's own role.
			console := url.URL{Scheme: "postgres", User: url.UserPassword(st.User, st.Password), Host: st.Gateway.Addr, Path: "/dsqlgate", RawQuery: "sslmode=disable"}
			roles := column(adminPsql(t, st, console.String(), "SHOW SERVERS"), "user")
			if !slices.Contains(roles, "reporting") || !slices.Contains(roles, "admin") {
				t.Errorf("SHOW SERVERS users %v, want both admin and reporting", roles)
			}
			// The admin user still logs in as admin after the other has
			// used the pool.
			if err := admin.QueryRow(ctx, "select current_user").Scan(&who); err != nil || who != "admin" {
				t.Fatalf("the demo user is %q upstream after the reporting user (%v), want admin", who, err)
			}
		})
	}
}

// reporter is the second gateway user of the user_roles tests.
const reporter, reporterPassword = "reporter", "report-password-1"

// reporterStack starts a stack whose gateway also has the user reporter,
// with adjust applied to its configuration, and the role reporting on the
// cluster (as `CREATE ROLE reporting WITH LOGIN` by admin makes it on
// DSQL). It returns the stack, which stops with the test, and a URL that
// logs in as reporter.
func reporterStack(ctx context.Context, t *testing.T, adjust func(*config.Config)) (*harness.Stack, string) {
	t.Helper()
	v, err := scram.GenerateVerifier(reporterPassword)
	if err != nil {
		t.Fatal(err)
	}
	st, err := harness.StartStack(ctx, harness.StackOptions{Gateway: func(c *config.Config) {
		c.Users = append(c.Users, config.User{Name: reporter, Verifier: v.Encode()})
		adjust(c)
	}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(st.Close)
	if _, err := st.PG.Psql(ctx, "postgres", "-qc", "CREATE ROLE reporting LOGIN"); err != nil {
		t.Fatal(err)
	}
	u := url.URL{Scheme: "postgres", User: url.UserPassword(reporter, reporterPassword), Host: st.Gateway.Addr, Path: "/" + harness.StackDatabase, RawQuery: "sslmode=disable"}
	return st, u.String()
}
