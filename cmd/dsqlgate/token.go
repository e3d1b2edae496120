package main

import (
	"fmt"
	"time"

	awsconfig "github.com/aws/aws-sdk-go-v2/config"
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
The token is a secret for as long as it lives.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			region := f.region
			if region == "" {
				r, ok := config.RegionFromEndpoint(f.endpoint)
				if !ok {
					return fmt.Errorf("cannot tell the region from %q: pass --region", f.endpoint)
				}
				region = r
			}
			awsCfg, err := awsconfig.LoadDefaultConfig(cmd.Context(), awsconfig.WithSharedConfigProfile(f.profile))
			if err != nil {
				return fmt.Errorf("load AWS configuration: %w", err)
			}
			m := authbridge.NewTokenMinter(f.endpoint, region, f.role, f.expiry, awsCfg.Credentials)
			token, err := m.Mint(cmd.Context())
			if err != nil {
				return err
			}
			fmt.Fprintln(st.out, token)
			return nil
		},
	}
	cmd.Flags().StringVar(&f.endpoint, "endpoint", "", "cluster endpoint host, <id>.dsql.<region>.on.aws")
	cmd.Flags().StringVar(&f.region, "region", "", "AWS region (default: parsed from the endpoint)")
	cmd.Flags().StringVar(&f.role, "role", "admin", "database role; admin gets an admin token")
	cmd.Flags().DurationVar(&f.expiry, "expiry", 15*time.Minute, "token lifetime (at most 168h)")
	cmd.Flags().StringVar(&f.profile, "profile", "", "AWS shared-config profile")
	cmd.MarkFlagRequired("endpoint")
	return cmd
}
