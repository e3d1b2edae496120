package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"
	"go.uber.org/zap"

	"github.com/dsqlgate/dsqlgate/config"
	"github.com/dsqlgate/dsqlgate/internal/gateway"
)

type serveFlags struct {
	configPath string
	listen     string
	logLevel   string
	logFormat  string
}

func newServeCommand(st streams) *cobra.Command {
	var f serveFlags
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Run the gateway with a configuration file",
		Long: `Run the gateway: listen for PostgreSQL clients, authenticate them against the
configured users, and serve each route from pooled upstream connections
(Aurora DSQL with IAM tokens, or a plain PostgreSQL for kind postgres).

AWS credentials come from the default chain (environment, shared config and
profile, SSO, web identity, ECS/EC2 metadata), or the profile in aws.profile.
SIGINT or SIGTERM stops the gateway; SIGHUP reloads the users file and the
client TLS certificate (both are also reloaded when their files change).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx, cancel := signalContext(cmd.Context())
			defer cancel()
			return runServe(ctx, f, st)
		},
	}
	cmd.Flags().StringVarP(&f.configPath, "config", "c", "", "configuration file (YAML; see testdata/dsqlgate.sample.yaml)")
	cmd.Flags().StringVar(&f.listen, "listen", "", "client listen address host:port (overrides listen)")
	cmd.Flags().StringVar(&f.logLevel, "log-level", "", "debug, info, warn or error (overrides log.level)")
	cmd.Flags().StringVar(&f.logFormat, "log-format", "", "console or json (overrides log.format)")
	cmd.MarkFlagRequired("config")
	return cmd
}

// runServe loads and validates the configuration before anything listens,
// then serves until ctx ends.
func runServe(ctx context.Context, f serveFlags, st streams) error {
	cfg, err := config.Load(f.configPath)
	if err != nil {
		return err
	}
	if f.listen != "" {
		cfg.Listen = f.listen
	}
	if f.logLevel != "" {
		cfg.Log.Level = f.logLevel
	}
	if f.logFormat != "" {
		cfg.Log.Format = f.logFormat
	}
	if err := cfg.Validate(); err != nil {
		return err
	}
	log, err := newLogger(cfg.Log.Level, cfg.Log.Format, st.err)
	if err != nil {
		return err
	}
	defer log.Sync()
	gw, err := gateway.Start(ctx, cfg, gateway.Options{Logger: log})
	if err != nil {
		return fmt.Errorf("start gateway: %w", err)
	}
	log.Info("dsqlgate listening", zap.String("address", gw.Addr), zap.String("version", versionString()), zap.Int("routes", len(cfg.Routes)))
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	for {
		select {
		case <-ctx.Done():
			log.Info("shutting down")
			return gw.Close()
		case <-hup:
			// The users file and the client certificate are also reloaded
			// when their files change; SIGHUP does it now.
			if err := gw.Server.Reload(); err != nil {
				log.Warn("reload failed; the previous users and certificate stay", zap.Error(err))
			} else {
				log.Info("reloaded users and client certificate")
			}
		}
	}
}
