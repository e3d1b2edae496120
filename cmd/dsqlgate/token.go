package main

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/dsqlgate/dsqlgate/authbridge"
	"github.com/dsqlgate/dsqlgate/config"
)

type tokenFlags struct {
	endpoint string
	region   string
	role     string
	expiry   time.Duration
	profile  string
}

func newTokenCommand(st streams) *cobra.Command {
	var f tokenFlags
	cmd := &cobra.Command{
		Use:   "token",
		Short: "Print an IAM authentication token for a DSQL endpoint (for debugging with psql)",
		Long: `Mint the token the gateway would use to connect to a DSQL cluster as a role, with
AWS credentials from the default chain. Use it as the password of a direct
connection, e.g. PGPASSWORD=$(dsqlgate token --endpoint HOST) psql
"host=HOST user=admin dbname=postgres sslmode=verify-full sslrootcert=system".
The flags are checked as a kind dsql route's endpoint, region, role and
token_expiry are in the configuration; an invalid one exits 2.
The token is a secret for as long as it lives.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			r, err := tokenRoute(f)
			if err != nil {
				return &exitError{code: 2, err: err}
			}
			log, _, err := newLogger("warn", "console", st.err) // the SDK's own warnings
			if err != nil {
				return err
			}
			creds, err := authbridge.LoadCredentials(cmd.Context(), f.profile, log)
			if err != nil {
				return err
			}
			m := authbridge.NewTokenMinter(r.Host(), r.ResolvedRegion(), r.Role, r.TokenExpiry.D(), creds)
			token, err := m.Mint(cmd.Context())
			if err != nil {
				return err
			}
			fmt.Fprintln(st.out, token)
			return nil
		},
	}
	cmd.Flags().StringVar(&f.endpoint, "endpoint", "", "cluster endpoint host, <id>.dsql.<region>.on.aws")
	cmd.Flags().StringVar(&f.region, "region", "", "AWS region (default: parsed from the endpoint, which it must match)")
	cmd.Flags().StringVar(&f.role, "role", authbridge.AdminRole, "database role; admin gets an admin token")
	cmd.Flags().DurationVar(&f.expiry, "expiry", 15*time.Minute, "token lifetime, from 1s to 168h")
	cmd.Flags().StringVar(&f.profile, "profile", "", "AWS shared-config profile (default: AWS_PROFILE, else default)")
	cmd.MarkFlagRequired("endpoint")
	return cmd
}

// tokenFlagKeys maps the keys of a route to the token flags that set them.
var tokenFlagKeys = map[string]string{
	"endpoint":     "--endpoint",
	"region":       "--region",
	"role":         "--role",
	"token_expiry": "--expiry",
}

// tokenRoute is the kind dsql route the flags describe, validated by the
// configuration's own rules for one, so that token refuses what serve
// would. Its error is a *config.ValidationError whose problems name the
// flags.
func tokenRoute(f tokenFlags) (config.Route, error) {
	r := config.DefaultRoute(config.KindDSQL, "token")
	r.Endpoint, r.Region, r.Role, r.TokenExpiry = f.endpoint, f.region, f.role, config.Duration(f.expiry)
	cfg := config.Default()
	cfg.Routes = []config.Route{r}
	var ve *config.ValidationError
	if err := cfg.Validate(); !errors.As(err, &ve) {
		return r, err
	}
	var problems []config.Problem
	for _, p := range ve.Problems {
		key, ok := strings.CutPrefix(p.Key, "routes[0].")
		if !ok {
			continue // the rest of a configuration (users, ...) is not the token's
		}
		if flag, ok := tokenFlagKeys[key]; ok {
			p.Flag, p.Key = flag, ""
		}
		problems = append(problems, p)
	}
	return r, config.NewValidationError(problems)
}
