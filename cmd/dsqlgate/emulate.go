package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"time"

	"github.com/spf13/cobra"
	"go.uber.org/zap"

	"github.com/dsqlgate/dsqlgate/internal/dsqlsim"
)

type emulateFlags struct {
	listen          string
	region          string
	hostnames       []string
	caFile          string
	socketDir       string
	port            int
	database        string
	superuser       string
	maxConnDuration time.Duration
	connRate        float64
	maxConns        int
	control         string
	logLevel        string
}

func newEmulateCommand(st streams) *cobra.Command {
	var f emulateFlags
	cmd := &cobra.Command{
		Use:   "emulate",
		Short: "Run the local Aurora DSQL stand-in in front of a PostgreSQL",
		Long: `Run the DSQL emulator: TLS only (its generated CA is written to --ca-file), SNI
required, IAM tokens verified as real SigV4 signatures against the static AWS
credentials in AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (and
AWS_SESSION_TOKEN when set), DSQL's refusals and limits, and a maximum
connection duration, forwarding sessions to a PostgreSQL reached over its unix
socket (trusted, as each DSQL role name). At start it installs, as
--backend-superuser, a schema dsqlsim with the triggers that enforce DSQL's
per-transaction row and size limits and its DDL rules on tables created through
it.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx, cancel := signalContext(cmd.Context())
			defer cancel()
			return runEmulate(ctx, f, st)
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&f.listen, "listen", "127.0.0.1:5433", "address to listen on")
	fl.StringVar(&f.region, "region", "us-east-1", "AWS region tokens must be signed for")
	fl.StringSliceVar(&f.hostnames, "hostname", []string{"abcdefghijklmnopqrstuvwxyz.dsql.us-east-1.on.aws"}, "cluster host names (SNI and token host); repeatable")
	fl.StringVar(&f.caFile, "ca-file", "dsqlsim-ca.pem", "where to write the generated CA certificate")
	fl.StringVar(&f.socketDir, "backend-socket-dir", "/var/run/postgresql", "PostgreSQL unix socket directory")
	fl.IntVar(&f.port, "backend-port", 5432, "PostgreSQL port (names the socket)")
	fl.StringVar(&f.database, "backend-database", "postgres", "PostgreSQL database that DSQL's database postgres maps to")
	fl.StringVar(&f.superuser, "backend-superuser", "admin", "PostgreSQL superuser that installs the emulator's transaction limits and DDL rules (schema dsqlsim)")
	fl.DurationVar(&f.maxConnDuration, "max-conn-duration", time.Hour, "close connections abruptly at this age, as DSQL does")
	fl.Float64Var(&f.connRate, "conn-rate", 100, "new connections per second before 53400")
	fl.IntVar(&f.maxConns, "max-conns", 10000, "open connections before 53300")
	fl.StringVar(&f.control, "control", "", "address for the HTTP control API (sessions, kill); empty: off")
	fl.StringVar(&f.logLevel, "log-level", "info", "debug, info, warn or error")
	return cmd
}

func runEmulate(ctx context.Context, f emulateFlags, st streams) error {
	log, _, err := newLogger(f.logLevel, "console", st.err)
	if err != nil {
		return err
	}
	defer log.Sync()
	akid, secret := os.Getenv("AWS_ACCESS_KEY_ID"), os.Getenv("AWS_SECRET_ACCESS_KEY")
	if akid == "" || secret == "" {
		return errors.New("set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY to the credentials the emulator should accept")
	}
	srv, err := dsqlsim.Start(ctx, dsqlsim.Config{
		ListenAddr:       f.listen,
		Region:           f.region,
		Hostnames:        f.hostnames,
		Credentials:      []dsqlsim.Credential{{AccessKeyID: akid, SecretAccessKey: secret, SessionToken: os.Getenv("AWS_SESSION_TOKEN")}},
		CAFile:           f.caFile,
		BackendSocketDir: f.socketDir,
		BackendPort:      f.port,
		BackendDatabase:  f.database,
		BackendSuperuser: f.superuser,
		MaxConnDuration:  f.maxConnDuration,
		ConnRate:         f.connRate,
		MaxConns:         f.maxConns,
		Logger:           log,
	})
	if err != nil {
		return fmt.Errorf("start emulator: %w", err)
	}
	defer srv.Close()
	log.Info("dsql emulator listening", zap.String("address", srv.Addr()), zap.String("ca_file", f.caFile), zap.Strings("hostnames", f.hostnames))
	if f.control != "" {
		l, err := net.Listen("tcp", f.control)
		if err != nil {
			return fmt.Errorf("control listener: %w", err)
		}
		hs := &http.Server{Handler: srv.ControlHandler(), ReadHeaderTimeout: 5 * time.Second}
		go hs.Serve(l)
		defer hs.Close()
		log.Info("emulator control api listening", zap.String("address", l.Addr().String()))
	}
	<-ctx.Done()
	return nil
}
