package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"os"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/spf13/cobra"

	"github.com/dsqlgate/dsqlgate/authbridge"
	"github.com/dsqlgate/dsqlgate/config"
	"github.com/dsqlgate/dsqlgate/internal/users"
)

type checkFlags struct {
	configPath string
	configEnv  string
	timeout    time.Duration
}

func newCheckCommand(st streams) *cobra.Command {
	var f checkFlags
	cmd := &cobra.Command{
		Use:   "check",
		Short: "Validate the configuration, mint a token and dial every route",
		Long: `Load and validate the configuration (with the environment applied, as serve
does), read the users and the secrets it names, resolve the AWS credentials
once (when a route is kind dsql), and for each route mint a token (kind dsql)
and open one upstream connection (one more, on a line of its own, for each
other role of its user_roles). Prints one line per route (route, kind,
endpoint, user or role, and ok with the latency or FAIL with a short reason),
then each failure's full error below the table, and exits 0 when every route
works, 1 when one does not, 2 when the configuration is invalid. It never
prints a secret.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return runCheck(cmd.Context(), f, st)
		},
	}
	cmd.Flags().StringVarP(&f.configPath, "config", "c", "", "configuration file")
	cmd.Flags().StringVar(&f.configEnv, "config-env", "", "environment variable holding the whole YAML configuration, instead of --config")
	cmd.Flags().DurationVar(&f.timeout, "timeout", 15*time.Second, "bound on each route's token and dial")
	cmd.MarkFlagsOneRequired("config", "config-env")
	cmd.MarkFlagsMutuallyExclusive("config", "config-env")
	return cmd
}

func runCheck(ctx context.Context, f checkFlags, st streams) error {
	cfg, err := loadConfig(serveFlags{configPath: f.configPath, configEnv: f.configEnv})
	if err != nil {
		return &exitError{code: 2, err: err}
	}
	for _, w := range cfg.Warnings() {
		fmt.Fprintf(st.out, "warning: %s (ignored)\n", w.Error())
	}
	list, _, err := users.Load(cfg, os.LookupEnv)
	if err != nil {
		return &exitError{code: 2, err: err}
	}
	if err := users.CheckNames(cfg, func(name string) bool {
		return slices.ContainsFunc(list, func(u users.User) bool { return u.Name == name })
	}); err != nil {
		return &exitError{code: 2, err: err}
	}
	if cfg, err = users.ResolveRoutes(cfg, os.LookupEnv); err != nil {
		return &exitError{code: 2, err: err}
	}
	source := f.configPath
	if f.configEnv != "" {
		source = "$" + f.configEnv
	}
	fmt.Fprintf(st.out, "configuration %s: valid (%d users, %d routes)\n", source, len(list), len(cfg.Routes))
	return checkRoutes(ctx, cfg, f.timeout, st)
}

// checkRoutes resolves the AWS credentials (once, when a route is kind
// dsql), checks every route, and prints one short line per route, then
// each failure's full error once, below the table. It returns an exit
// error when a route fails.
func checkRoutes(ctx context.Context, cfg *config.Config, timeout time.Duration, st streams) error {
	creds, credsErr := checkCredentials(ctx, cfg, st)
	runnable := *cfg // the routes that can be checked: without credentials, no dsql route
	runnable.Routes = nil
	for _, rc := range cfg.Routes {
		if rc.Kind != config.KindDSQL || credsErr == nil {
			runnable.Routes = append(runnable.Routes, rc)
		}
	}
	bridge, err := authbridge.New(ctx, &runnable, authbridge.Options{Credentials: creds})
	if err != nil {
		return &exitError{code: 1, err: err}
	}
	defer bridge.Close()
	rows := make([]checkRow, 0, len(cfg.Routes))
	failed := 0
	for i := range cfg.Routes {
		rc := &cfg.Routes[i]
		row := checkRow{route: rc.Database, kind: rc.Kind, endpoint: rc.Endpoint, user: rc.Role}
		if rc.Kind == config.KindPostgres {
			row.user = rc.User
		}
		switch {
		case rc.Kind == config.KindDSQL && credsErr != nil:
			row.reason = "AWS credentials unavailable (below)"
			var ce *authbridge.CredentialsError
			if errors.As(credsErr, &ce) && ce.NoneFound {
				row.reason = "no AWS credentials (below)"
			}
		default:
			row.latency, row.reason, row.err = checkRoute(ctx, bridge.Route(rc.Database), "", timeout)
		}
		if row.reason != "" {
			failed++
		}
		rows = append(rows, row)
		// Each other role of user_roles: a line of its own, dialled for
		// the first user mapped to it, as that user's connections are.
		byRole := map[string]string{}
		for _, user := range slices.Sorted(maps.Keys(rc.UserRoles)) {
			if role := rc.UserRoles[user]; role != rc.Role && byRole[role] == "" {
				byRole[role] = user
			}
		}
		for _, role := range slices.Sorted(maps.Keys(byRole)) {
			rrow := checkRow{route: rc.Database, kind: rc.Kind, endpoint: rc.Endpoint, user: role, reason: row.reason}
			if credsErr == nil {
				rrow.latency, rrow.reason, rrow.err = checkRoute(ctx, bridge.Route(rc.Database), byRole[role], timeout)
			}
			if rrow.reason != "" {
				failed++
			}
			rows = append(rows, rrow)
		}
	}
	printCheck(st.out, rows, credsErr)
	if failed > 0 {
		return &exitError{code: 1, err: fmt.Errorf("%d of %d routes failed", failed, len(rows))}
	}
	return nil
}

// checkCredentials loads and retrieves the AWS credentials when a route of
// cfg is kind dsql, as serve does, and says where they come from. It
// returns nil credentials and nil error when no route needs them.
func checkCredentials(ctx context.Context, cfg *config.Config, st streams) (aws.CredentialsProvider, error) {
	needed := false
	for i := range cfg.Routes {
		needed = needed || cfg.Routes[i].Kind == config.KindDSQL
	}
	if !needed {
		return nil, nil
	}
	log, _, err := newLogger("warn", "console", st.err) // the SDK's own warnings
	if err != nil {
		return nil, err
	}
	creds, err := authbridge.LoadCredentials(ctx, cfg.AWS.Profile, log)
	if err != nil {
		return nil, err
	}
	c, err := creds.Retrieve(ctx) // cached: LoadCredentials retrieved them
	if err != nil {
		return nil, err
	}
	fmt.Fprintf(st.out, "AWS credentials: %s\n", c.Source)
	return creds, nil
}

// checkRow is one route's line of the report.
type checkRow struct {
	route, kind, endpoint, user string
	latency                     time.Duration
	reason                      string // why it failed, in a few words; "" when it works
	err                         error  // the full error, printed below the table
}

// checkRoute mints a token (kind dsql) and opens one upstream connection
// for the gateway user user ("": the route's own role; else the role
// user_roles gives user, whose token the dial mints). On failure it
// returns a short reason and the full error.
func checkRoute(ctx context.Context, r *authbridge.Route, user string, timeout time.Duration) (time.Duration, string, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	start := time.Now()
	if m := r.Minter(); m != nil && user == "" {
		if _, err := m.Mint(ctx); err != nil {
			return time.Since(start), "cannot mint a token", err
		}
	}
	sc, err := r.Pool().TryAcquire(ctx, user)
	took := time.Since(start)
	if err != nil {
		var de *authbridge.DialError
		if errors.As(err, &de) && de.Err != nil {
			err = de.Err // the route is on the line already
		}
		return took, dialReason(err, timeout), err
	}
	if sc == nil {
		return took, "the pool is full", errors.New("no upstream connection is free and the pool is at its size")
	}
	r.Pool().Release(sc)
	return took, "", nil
}

// dialReason sums up a failed dial in a few words that the full error,
// printed below, does not repeat.
func dialReason(err error, timeout time.Duration) string {
	var pgErr *pgconn.PgError
	var certErr *tls.CertificateVerificationError
	var dnsErr *net.DNSError
	var opErr *net.OpError
	switch {
	case errors.As(err, &pgErr):
		return "upstream said no (SQLSTATE " + pgErr.Code + ")"
	case errors.As(err, &certErr):
		return "TLS certificate not trusted"
	case errors.As(err, &dnsErr):
		return "host name does not resolve"
	case errors.Is(err, context.DeadlineExceeded) || errors.Is(err, os.ErrDeadlineExceeded):
		return "no answer within " + timeout.String()
	case errors.As(err, &opErr) && opErr.Op == "dial":
		return "cannot connect"
	}
	return "cannot open a session"
}

// checkWidth is where the full errors below the table are wrapped.
const checkWidth = 100

// printCheck writes the table, one line per route, then each failure's
// full error once, wrapped and indented, then credsErr once.
func printCheck(w io.Writer, rows []checkRow, credsErr error) {
	tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ROUTE\tKIND\tENDPOINT\tUSER\tRESULT")
	n := 0
	for _, r := range rows {
		result := "ok  " + r.latency.Round(time.Millisecond).String()
		if r.reason != "" {
			result = "FAIL  " + r.reason
			if r.err != nil {
				n++
				result += fmt.Sprintf(" [%d]", n)
			}
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", r.route, r.kind, r.endpoint, r.user, result)
	}
	tw.Flush()
	n = 0
	for _, r := range rows {
		if r.err == nil {
			continue
		}
		n++
		head := fmt.Sprintf("[%d] %s: ", n, r.route)
		fmt.Fprintln(w)
		fmt.Fprintln(w, wrap(head+oneLine(r.err), checkWidth, "    "))
	}
	if credsErr != nil {
		fmt.Fprintln(w)
		for line := range strings.Lines(credsErr.Error()) {
			line = strings.TrimRight(line, "\n")
			indent := line[:len(line)-len(strings.TrimLeft(line, " "))]
			fmt.Fprintln(w, indent+wrap(line, checkWidth-len(indent), indent+"    "))
		}
	}
}

// oneLine is err's text with runs of white space made one space.
func oneLine(err error) string {
	return strings.Join(strings.Fields(err.Error()), " ")
}

// wrap breaks text at spaces into lines of at most width characters where
// it can (a longer word stays whole), each after the first starting with
// indent.
func wrap(text string, width int, indent string) string {
	var b strings.Builder
	line := 0
	for i, word := range strings.Fields(text) {
		switch {
		case i == 0:
		case line+1+len(word) > width:
			b.WriteString("\n" + indent)
			line = len(indent)
		default:
			b.WriteByte(' ')
			line++
		}
		b.WriteString(word)
		line += len(word)
	}
	return b.String()
}
