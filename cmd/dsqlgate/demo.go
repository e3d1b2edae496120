package main

import (
	"context"
	"fmt"
	"net"
	"net/url"
	"sync"
	"time"

	"github.com/spf13/cobra"

	"github.com/dsqlgate/dsqlgate/config"
	"github.com/dsqlgate/dsqlgate/internal/harness"
)

type demoFlags struct {
	listen   string
	logLevel string
}

func newDemoCommand(st streams) *cobra.Command {
	var f demoFlags
	cmd := &cobra.Command{
		Use:   "demo",
		Short: "Run the gateway against a local DSQL emulator and a private PostgreSQL (no AWS needed)",
		Long: `Start a private PostgreSQL (initdb in a temporary directory), the DSQL emulator
in front of it (TLS, SNI and real SigV4 token checks, with throwaway AWS
credentials), and the gateway with a demo user. It prints a psql command that
connects through the gateway and one for the admin console (the demo user is
its admin), runs in the foreground, and removes everything on Ctrl-C or the
console's SHUTDOWN.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx, cancel := signalContext(cmd.Context())
			defer cancel()
			return runDemo(ctx, f, st)
		},
	}
	cmd.Flags().StringVar(&f.listen, "listen", "127.0.0.1:6432", "client listen address host:port (port 0 picks a free one)")
	cmd.Flags().StringVar(&f.logLevel, "log-level", "info", "debug, info, warn or error")
	return cmd
}

func runDemo(ctx context.Context, f demoFlags, st streams) error {
	log, _, err := newLogger(f.logLevel, "console", st.err)
	if err != nil {
		return err
	}
	defer log.Sync()
	if _, _, err := net.SplitHostPort(f.listen); err != nil {
		return fmt.Errorf("--listen %q: %w", f.listen, err)
	}
	fmt.Fprintln(st.err, "starting PostgreSQL, the DSQL emulator and the gateway...")
	startCtx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	// The console's SHUTDOWN takes Ctrl-C's path: it ends the wait below.
	stop := make(chan struct{})
	var stopOnce sync.Once
	var consoleDB string
	stack, err := harness.StartStack(startCtx, harness.StackOptions{
		Logger:    log,
		ClientTLS: true,
		Gateway: func(c *config.Config) {
			c.Listen = f.listen
			// The demo user may open the admin console (the default
			// configuration admits nobody).
			c.Admin.Users = []string{harness.StackUser}
			consoleDB = c.Admin.Database
		},
		Shutdown: func() { stopOnce.Do(func() { close(stop) }) },
	})
	if err != nil {
		return fmt.Errorf("start demo: %w", err)
	}
	defer stack.Close()

	q := url.Values{"sslmode": {"verify-full"}, "sslrootcert": {stack.ClientCAFile}}
	u := url.URL{Scheme: "postgres", User: url.UserPassword(stack.User, stack.Password),
		Host: stack.Gateway.Addr, Path: "/" + harness.StackDatabase, RawQuery: q.Encode()}
	console := u
	console.Path = "/" + consoleDB
	fmt.Fprintf(st.out, `
dsqlgate demo is running: psql → gateway %s (TLS, SCRAM) → DSQL emulator %s (IAM tokens checked) → PostgreSQL %d.
Connect with:

psql "%s"

Admin console (SHOW HELP lists its commands):

psql "%s"

Metrics and health: http://%s/metrics, /readyz.
Press Ctrl-C to stop and remove everything.
`, stack.Gateway.Addr, stack.Emulator.Addr(), stack.PG.Port, u.String(), console.String(), stack.Gateway.OpsAddr)
	select {
	case <-ctx.Done():
	case <-stop:
		fmt.Fprintln(st.err, "shutdown requested from the admin console")
	}
	fmt.Fprintln(st.err, "stopping...")
	sctx, cancel := context.WithTimeout(context.Background(), stack.Gateway.Config().ShutdownTimeout.D())
	defer cancel()
	stack.Gateway.Shutdown(sctx) // drains as serve does; Close then removes the rest
	return nil
}
