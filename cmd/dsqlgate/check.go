package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/dsqlgate/dsqlgate/authbridge"
	"github.com/dsqlgate/dsqlgate/config"
	"github.com/dsqlgate/dsqlgate/internal/users"
)

type checkFlags struct {
	configPath string
	timeout    time.Duration
}

func newCheckCommand(st streams) *cobra.Command {
	var f checkFlags
	cmd := &cobra.Command{
		Use:   "check",
		Short: "Validate the configuration, mint a token and dial every route",
		Long: `Load and validate the configuration (with the environment applied, as serve
does), read the users and the secrets it names, resolve the AWS credentials, and for each
route mint a token (kind dsql) and open one upstream connection. Prints a table
(route, endpoint, region, role, credentials source, result, latency) and exits
0 when every route works, 1 when one does not, 2 when the configuration is
invalid. It never prints a secret.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return runCheck(cmd.Context(), f, st)
		},
	}
	cmd.Flags().StringVarP(&f.configPath, "config", "c", "", "configuration file")
	cmd.Flags().DurationVar(&f.timeout, "timeout", 15*time.Second, "bound on each route's token and dial")
	cmd.MarkFlagRequired("config")
	return cmd
}

// checkRow is one route's line of the report.
type checkRow struct {
	route, endpoint, region, role, creds, result string
	latency                                      time.Duration
	ok                                           bool
}

func runCheck(ctx context.Context, f checkFlags, st streams) error {
	cfg, err := config.Load(f.configPath)
	if err != nil {
		return &exitError{code: 2, err: err}
	}
	list, _, err := users.Load(cfg, os.LookupEnv)
	if err != nil {
		return &exitError{code: 2, err: err}
	}
	if cfg, err = users.ResolveRoutes(cfg, os.LookupEnv); err != nil {
		return &exitError{code: 2, err: err}
	}
	fmt.Fprintf(st.out, "configuration %s: valid (%d users, %d routes)\n", f.configPath, len(list), len(cfg.Routes))
	bridge, err := authbridge.New(ctx, cfg, authbridge.Options{})
	if err != nil {
		return &exitError{code: 1, err: err}
	}
	defer bridge.Close()
	source := "-"
	for _, r := range cfg.Routes {
		if r.Kind == config.KindDSQL {
			cctx, cancel := context.WithTimeout(ctx, f.timeout)
			src, err := bridge.CredentialsSource(cctx)
			cancel()
			if err != nil {
				source = "unavailable: " + oneLine(err)
			} else {
				source = src
			}
			break
		}
	}
	var rows []checkRow
	failed := 0
	for i := range cfg.Routes {
		rc := &cfg.Routes[i]
		row := checkRow{route: rc.Database, endpoint: rc.Host(), region: rc.ResolvedRegion(), role: rc.Role, creds: source}
		if rc.Kind == config.KindPostgres {
			row.role, row.region, row.creds = rc.User, "-", "static password"
		}
		row.result, row.latency, row.ok = checkRoute(ctx, bridge.Route(rc.Database), f.timeout)
		if !row.ok {
			failed++
		}
		rows = append(rows, row)
	}
	printCheck(st.out, rows)
	if failed > 0 {
		return &exitError{code: 1, err: fmt.Errorf("%d of %d routes failed", failed, len(rows))}
	}
	return nil
}

// checkRoute mints a token (kind dsql) and opens one upstream connection.
func checkRoute(ctx context.Context, r *authbridge.Route, timeout time.Duration) (string, time.Duration, bool) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	start := time.Now()
	if m := r.Minter(); m != nil {
		if _, err := m.Mint(ctx); err != nil {
			return "token: " + oneLine(err), time.Since(start), false
		}
	}
	sc, err := r.Pool().TryAcquire(ctx, "")
	took := time.Since(start)
	if err != nil {
		return "dial: " + oneLine(err), took, false
	}
	if sc == nil {
		return "dial: the pool is full", took, false
	}
	r.Pool().Release(sc)
	return "ok", took, true
}

func oneLine(err error) string {
	var de *authbridge.DialError
	if errors.As(err, &de) && de.Err != nil {
		err = de.Err
	}
	return strings.Join(strings.Fields(err.Error()), " ")
}

func printCheck(w io.Writer, rows []checkRow) {
	tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ROUTE\tENDPOINT\tREGION\tROLE\tCREDENTIALS\tRESULT\tLATENCY")
	for _, r := range rows {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", r.route, r.endpoint, r.region, r.role, r.creds, r.result, r.latency.Round(time.Millisecond))
	}
	tw.Flush()
}
