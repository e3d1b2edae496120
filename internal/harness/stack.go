// Package harness starts the whole chain the end-to-end tests, the demo and
// the benchmarks run: a private PostgreSQL (from pgtest), the DSQL emulator
// in front of it, and a gateway whose route goes to the emulator.
//
// Production code other than the demo command must not import it.
package harness

import (
	"context"
	"crypto/rand"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"go.uber.org/zap"

	"github.com/dsqlgate/dsqlgate/config"
	"github.com/dsqlgate/dsqlgate/internal/dsqlsim"
	"github.com/dsqlgate/dsqlgate/internal/gateway"
	"github.com/dsqlgate/dsqlgate/internal/pgtest"
	"github.com/dsqlgate/dsqlgate/internal/scram"
	"github.com/dsqlgate/dsqlgate/internal/selfsigned"
)

// Names the stack uses.
const (
	StackRegion    = "us-east-1"
	StackClusterID = "abcdefghijklmnopqrstuvwxyz" // 26 lowercase letters, as DSQL's ids
	StackHost      = StackClusterID + ".dsql." + StackRegion + ".on.aws"
	StackDatabase  = "postgres" // the route name clients ask for
	StackUser      = "demo"
)

// StackOptions tunes StartStack. The zero value gives the demo setup.
type StackOptions struct {
	Logger   *zap.Logger // nil: no logs
	Postgres pgtest.PostgresOptions
	// Emulator adjusts the emulator's configuration before it starts.
	Emulator func(*dsqlsim.Config)
	// Gateway adjusts the gateway's configuration before it starts (after
	// the demo user and the route to the emulator are in it).
	Gateway func(*config.Config)
	// ClientTLS gives the gateway a self-signed certificate for localhost,
	// 127.0.0.1 and ::1 (client_tls mode allow); Stack.ClientCAFile trusts it.
	ClientTLS bool
	// Plain makes the gateway's route go straight to the stack's
	// PostgreSQL instead of the emulator: kind postgres, plain TCP, the
	// superuser's static password (the emulator still runs).
	Plain bool
	// Control serves the emulator's HTTP control API (sessions, kill) on a
	// free loopback port: Stack.ControlURL. For client programs that cut
	// their own upstream between two queries.
	Control bool
	// Shutdown is what the admin console's SHUTDOWN runs (nil: the
	// console refuses it).
	Shutdown func()
}

// Stack is a private PostgreSQL, a DSQL emulator in front of it, and a
// gateway whose route "postgres" goes to the emulator, with one user.
type Stack struct {
	PG       *pgtest.Postgres
	Emulator *dsqlsim.Server
	Gateway  *gateway.Gateway
	// User and Password log in to the gateway.
	User, Password string
	// Credentials are the throwaway static AWS credentials the emulator
	// accepts and the gateway signs with.
	Credentials aws.Credentials
	// CAFile holds the emulator's CA certificate.
	CAFile string
	// ClientCAFile, ClientKeyFile hold the gateway's own self-signed
	// certificate and key when StackOptions.ClientTLS was set.
	ClientCAFile, ClientKeyFile string
	// ControlURL is the emulator's control API (http://127.0.0.1:port)
	// when StackOptions.Control was set: POST /kill?all=1 cuts every
	// upstream session.
	ControlURL string
	control    *http.Server
	dir        string
}

// StartStack starts PostgreSQL, the emulator and the gateway. The caller
// must Close the result.
func StartStack(ctx context.Context, opts StackOptions) (st *Stack, err error) {
	log := opts.Logger
	if log == nil {
		log = zap.NewNop()
	}
	st = &Stack{User: StackUser, Password: pgtest.RandomHex(12)}
	defer func() {
		if err != nil {
			st.Close()
		}
	}()
	st.PG, err = pgtest.StartPostgres(ctx, opts.Postgres)
	if err != nil {
		return nil, err
	}
	// DSQL's admin role; the emulator connects to PostgreSQL as the role
	// the client names.
	if _, err = st.PG.Psql(ctx, "postgres", "-qc", "CREATE ROLE admin SUPERUSER LOGIN"); err != nil {
		return nil, err
	}
	st.dir, err = os.MkdirTemp("", "dsqlgate-stack-")
	if err != nil {
		return nil, err
	}
	st.CAFile = filepath.Join(st.dir, "emulator-ca.pem")
	st.Credentials = aws.Credentials{
		AccessKeyID:     "AKIA" + strings.ToUpper(pgtest.RandomHex(8)),
		SecretAccessKey: randomSecret(),
		Source:          "dsqlgate demo",
	}
	emuCfg := dsqlsim.Config{
		ListenAddr:       "127.0.0.1:0",
		Region:           StackRegion,
		Hostnames:        []string{StackHost},
		Credentials:      []dsqlsim.Credential{{AccessKeyID: st.Credentials.AccessKeyID, SecretAccessKey: st.Credentials.SecretAccessKey}},
		CAFile:           st.CAFile,
		BackendSocketDir: st.PG.SocketDir,
		BackendPort:      st.PG.Port,
		Logger:           log.Named("emulator"),
	}
	if opts.Emulator != nil {
		opts.Emulator(&emuCfg)
	}
	// The emulator lives until Close, not until ctx (which bounds the start).
	st.Emulator, err = dsqlsim.Start(context.Background(), emuCfg)
	if err != nil {
		return nil, fmt.Errorf("start emulator: %w", err)
	}

	if opts.Control {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		st.control = &http.Server{Handler: st.Emulator.ControlHandler(), ReadHeaderTimeout: 5 * time.Second}
		go st.control.Serve(l)
		st.ControlURL = "http://" + l.Addr().String()
	}

	verifier, err := scram.GenerateVerifier(st.Password)
	if err != nil {
		return nil, err
	}
	cfg := config.Default()
	cfg.Listen = "127.0.0.1:0"
	cfg.Metrics.Listen = "127.0.0.1:0"
	cfg.Users = []config.User{{Name: st.User, Verifier: verifier.Encode()}}
	route := config.DefaultRoute(config.KindDSQL, StackDatabase)
	route.Endpoint = StackHost
	route.DialAddress = st.Emulator.Addr()
	route.CAFile = st.CAFile
	if opts.Plain {
		route = config.DefaultRoute(config.KindPostgres, StackDatabase)
		route.Endpoint, route.TLS = st.PG.Addr(), "disable"
		route.User, route.Password = "postgres", st.PG.Password
	}
	cfg.Routes = []config.Route{route}
	if opts.ClientTLS {
		pair, err := selfsigned.Generate([]string{"localhost", "127.0.0.1", "::1"}, time.Now(), 30*24*time.Hour)
		if err != nil {
			return nil, err
		}
		st.ClientCAFile = filepath.Join(st.dir, "gateway.crt")
		st.ClientKeyFile = filepath.Join(st.dir, "gateway.key")
		if err := os.WriteFile(st.ClientCAFile, pair.CertPEM, 0o644); err != nil {
			return nil, err
		}
		if err := os.WriteFile(st.ClientKeyFile, pair.KeyPEM, 0o600); err != nil {
			return nil, err
		}
		cfg.ClientTLS = config.ClientTLS{Mode: config.TLSAllow, CertFile: st.ClientCAFile, KeyFile: st.ClientKeyFile}
	}
	if opts.Gateway != nil {
		opts.Gateway(cfg)
	}
	st.Gateway, err = gateway.Start(ctx, cfg, gateway.Options{
		Logger:      log.Named("gateway"),
		Credentials: credentials.StaticCredentialsProvider{Value: st.Credentials},
		Shutdown:    opts.Shutdown,
	})
	if err != nil {
		return nil, err
	}
	return st, nil
}

// URL is a postgres:// URL that logs in to the gateway as the stack's
// user; extra is appended as query parameters (e.g. "sslmode=disable").
func (st *Stack) URL(extra string) string {
	u := url.URL{Scheme: "postgres", User: url.UserPassword(st.User, st.Password), Host: st.Gateway.Addr, Path: "/" + StackDatabase}
	if extra != "" {
		u.RawQuery = extra
	}
	return u.String()
}

// Close stops everything StartStack started, in reverse order.
func (st *Stack) Close() {
	if st == nil {
		return
	}
	if st.Gateway != nil {
		st.Gateway.Close()
	}
	if st.control != nil {
		st.control.Close()
	}
	if st.Emulator != nil {
		st.Emulator.Close()
	}
	if st.PG != nil {
		st.PG.Close()
	}
	if st.dir != "" {
		os.RemoveAll(st.dir)
	}
}

// randomSecret makes a 40-character secret access key look-alike.
func randomSecret() string {
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
	b := make([]byte, 40)
	rand.Read(b)
	for i := range b {
		b[i] = alphabet[int(b[i])%len(alphabet)]
	}
	return string(b)
}
