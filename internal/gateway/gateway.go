// Package gateway wires a validated configuration into a running gateway:
// the route secrets (users.ResolveRoutes), the authbridge routes and pools,
// the pgwire server and its client listener, and the HTTP listener for
// metrics and health (both with SO_REUSEPORT when reuse_port is set, on
// unix systems: listen_unix.go; refused elsewhere: listen_other.go). It is the one place that sees both
// sides: upstream.go adapts authbridge to the interfaces pgwire declares,
// without allocating. Gateway.Reload puts a new configuration in force in
// two phases, preparing the routes (Bridge.Prepare) and the server
// (Server.PrepareConfig) and committing both only when both succeeded. The
// serve and demo commands and the test harness all start gateways through
// it.
package gateway

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"reflect"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/dsqlgate/dsqlgate/authbridge"
	"github.com/dsqlgate/dsqlgate/config"
	"github.com/dsqlgate/dsqlgate/internal/acme"
	"github.com/dsqlgate/dsqlgate/internal/metrics"
	"github.com/dsqlgate/dsqlgate/internal/peers"
	"github.com/dsqlgate/dsqlgate/internal/users"
	"github.com/dsqlgate/dsqlgate/pgwire"
)

// Options are what Start needs beyond the configuration.
type Options struct {
	Logger      *zap.Logger
	Credentials aws.CredentialsProvider // nil: the AWS default chain
	// Version is reported by the admin console and the logs.
	Version string
	// Reload, when set, is what the admin console's RELOAD runs; serve
	// passes the same function it runs on SIGHUP.
	Reload func() error
	// Shutdown, when set, is what the admin console's SHUTDOWN runs; it
	// must start the drain SIGTERM starts and return without waiting.
	Shutdown func()
}

// Gateway is a running gateway.
type Gateway struct {
	Bridge  *authbridge.Bridge
	Server  *pgwire.Server
	Metrics *metrics.Metrics
	Addr    string // the client listener's host:port
	// OpsAddr is the HTTP listener's host:port ("" when metrics.listen is
	// empty).
	OpsAddr string
	health  *health
	ops     *http.Server
	// sharedOps is the metrics listener when reuse_port shares it with a
	// successor process; the drain closes it at once, so that health
	// checks reach the successor rather than a gateway on its way out.
	sharedOps net.Listener
	served    chan error
	log       *zap.Logger
	// reloadMu serialises reloads: each prepares against the
	// configuration the one before it put in force.
	reloadMu sync.Mutex
	// acme obtains and renews the client certificate when
	// client_tls.acme is on; nil otherwise.
	acme *acme.Manager
	// restClosed makes closeRest run once: Close after Shutdown (the
	// demo drains, then its stack closes) must not wait for served again.
	restClosed sync.Once
	// peers are the other replicas (peers.*), to forward cancels to; nil
	// when none is configured.
	peers *peers.Set
}

// acmeConnParams are the startup parameters of the ACME storage's
// connection to its route's cluster.
var acmeConnParams = map[string]string{"application_name": "dsqlgate acme storage"}

// startACME builds the ACME manager when client_tls.acme is on and waits
// until it has the certificate (or ctx ends); nil when ACME is off. A
// "route:" storage dials through the route in force at each dial, with
// the route's credentials and dial rate.
func startACME(ctx context.Context, cfg *config.Config, bridge *authbridge.Bridge, log *zap.Logger) (*acme.Manager, error) {
	a := cfg.ClientTLS.ACME
	if !a.Enabled() || cfg.ClientTLSMode() == config.TLSDisable {
		return nil, nil
	}
	opts := acme.Options{Logger: log.Named("acme"), AWSProfile: cfg.AWS.Profile}
	if db, ok := a.StorageRoute(); ok {
		opts.Dial = func(ctx context.Context) (*pgconn.PgConn, error) {
			r := bridge.Route(db)
			if r == nil {
				return nil, fmt.Errorf("route %q (client_tls.acme.storage) is not configured", db)
			}
			return r.DialLocks(ctx, acmeConnParams)
		}
	}
	m, err := acme.New(a, opts)
	if err != nil {
		return nil, err
	}
	if err := m.Start(ctx); err != nil {
		m.Close()
		return nil, err
	}
	return m, nil
}

// Start validates cfg, reads the secrets it names, builds the bridge and
// server, and serves on cfg.Listen (port 0 picks a free one) and
// cfg.Metrics.Listen. The caller must Close (or Shutdown) it.
func Start(ctx context.Context, cfg *config.Config, opts Options) (*Gateway, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg, err := users.ResolveRoutes(cfg, os.LookupEnv)
	if err != nil {
		return nil, err
	}
	if opts.Logger == nil {
		opts.Logger = zap.NewNop()
	}
	m := metrics.New()
	m.SetBuildInfo(buildVersion(opts.Version), runtime.Version())
	m.ConfigLastReloadSuccess.SetToCurrentTime()
	bridge, err := authbridge.New(ctx, cfg, authbridge.Options{Credentials: opts.Credentials, Logger: opts.Logger, Metrics: m})
	if err != nil {
		return nil, err
	}
	// Both ports first, so that a port in use fails the start at once;
	// then the health endpoints answer (/livez, /startupz 503 "starting")
	// while ACME obtains the certificate, which a first order through
	// DNS-01 can take minutes to do. The client listener accepts nothing
	// until the server is built.
	l, err := listen(cfg.Listen, cfg.ReusePort)
	if err != nil {
		bridge.Close()
		return nil, fmt.Errorf("listen on %s: %w", cfg.Listen, err)
	}
	g := &Gateway{Bridge: bridge, Metrics: m, Addr: l.Addr().String(), served: make(chan error, 1), log: opts.Logger}
	g.health = newHealth(g)
	// The certificate's expiry, from start-up (0 until the server is
	// built: with ACME, while the first certificate is obtained).
	var server atomic.Pointer[pgwire.Server]
	m.Registry.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Namespace: "dsqlgate", Name: "client_tls_certificate_expiry_timestamp_seconds",
		Help: "When the certificate new client TLS handshakes get stops being valid, in Unix time; 0 without client TLS. Alert well before it: an ACME renewal or a certificate file replacement that keeps failing shows here.",
	}, func() float64 {
		if s := server.Load(); s != nil {
			if t := s.CertificateExpiry(); !t.IsZero() {
				return float64(t.Unix())
			}
		}
		return 0
	}))
	if cfg.Metrics.Listen != "" {
		// Shared only with reuse_port, for a rolling restart on one host:
		// then a scrape or a health check reaches either process.
		ol, err := listen(cfg.Metrics.Listen, cfg.ReusePort)
		if err != nil {
			l.Close()
			bridge.Close()
			return nil, fmt.Errorf("metrics.listen %s: %w", cfg.Metrics.Listen, err)
		}
		g.OpsAddr = ol.Addr().String()
		g.ops = newOpsServer(g.health.handler())
		if cfg.ReusePort {
			g.sharedOps = ol
		}
		go g.ops.Serve(ol)
	}
	failEarly := func() {
		l.Close()
		if g.ops != nil {
			g.ops.Close()
		}
		if g.acme != nil {
			g.acme.Close()
		}
		bridge.Close()
	}
	// With ACME the certificate is obtained (or loaded from the shared
	// storage) before any client is served, so the gateway is never ready
	// without it.
	g.acme, err = startACME(ctx, cfg, bridge, opts.Logger)
	if err != nil {
		failEarly()
		return nil, err
	}
	popts := pgwire.Options{Logger: opts.Logger, Metrics: m, Version: opts.Version, Reload: opts.Reload, Shutdown: opts.Shutdown}
	if g.acme != nil {
		popts.Certificates = g.acme
	}
	if err := g.startPeers(ctx, cfg.Peers, l.Addr(), &popts); err != nil {
		failEarly()
		return nil, err
	}
	g.Server, err = pgwire.NewServer(cfg, upstreams{bridge}, popts)
	if err != nil {
		g.closePeers()
		failEarly()
		return nil, err
	}
	srv := g.Server
	server.Store(srv)
	go func() { g.served <- srv.Serve(l) }()
	g.health.started()
	return g, nil
}

// Limits of the metrics and health listener. Its endpoints answer at once
// (no streaming, no pprof), so a client that sends or reads slowly, or
// keeps an idle keep-alive connection, is cut off after these.
const (
	opsReadHeaderTimeout = 5 * time.Second
	opsReadTimeout       = 10 * time.Second
	opsWriteTimeout      = 30 * time.Second // a /metrics scrape included
	opsIdleTimeout       = 60 * time.Second
	opsMaxHeaderBytes    = 16 << 10
)

// newOpsServer is the metrics and health listener's HTTP server.
func newOpsServer(h http.Handler) *http.Server {
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: opsReadHeaderTimeout,
		ReadTimeout:       opsReadTimeout,
		WriteTimeout:      opsWriteTimeout,
		IdleTimeout:       opsIdleTimeout,
		MaxHeaderBytes:    opsMaxHeaderBytes,
	}
}

// Config is the configuration in force; a reload replaces it. Callers
// must not modify it.
func (g *Gateway) Config() *config.Config { return g.Server.Config() }

// buildVersion is the version label of dsqlgate_build_info: v, or
// "unknown" when the caller gave none (tests, the harness).
func buildVersion(v string) string {
	if v == "" {
		return "unknown"
	}
	return v
}

// Reload puts a new, validated configuration in force without dropping
// sessions: routes and pools, users, client TLS, limits, and the peers'
// addresses, DNS name and refresh (reloadPeers, once the rest is in
// force). It returns what changed. It first prepares both sides, the routes and the server's
// users and TLS, reading every file; only when both succeed does it put
// them in force, so a reload that fails leaves the previous configuration
// in force, routes included. The idle upstreams of replaced pools close
// in the background.
//
// Each call counts in dsqlgate_config_reloads_total; one that succeeds
// sets dsqlgate_config_last_reload_success_timestamp_seconds.
func (g *Gateway) Reload(ctx context.Context, cfg *config.Config) ([]string, error) {
	g.reloadMu.Lock()
	defer g.reloadMu.Unlock()
	changes, err := g.reload(ctx, cfg)
	if err != nil {
		g.ReloadFailed()
		return nil, err
	}
	g.Metrics.ConfigReloadsTotal.WithLabelValues("ok").Inc()
	g.Metrics.ConfigLastReloadSuccess.SetToCurrentTime()
	return changes, nil
}

// ReloadFailed counts a reload that failed. Reload counts its own; a
// caller whose configuration did not even load (bad YAML, a key that does
// not validate) never reaches Reload and reports it here, so that an
// alert on failed reloads sees every one.
func (g *Gateway) ReloadFailed() {
	g.Metrics.ConfigReloadsTotal.WithLabelValues("error").Inc()
}

// reload is Reload under reloadMu, without the metrics.
func (g *Gateway) reload(ctx context.Context, cfg *config.Config) ([]string, error) {
	if acmeChanged(g.Config().ClientTLS.ACME, cfg.ClientTLS.ACME) {
		return nil, errors.New("client_tls.acme changed: ACME settings need a restart; the configuration in force is kept")
	}
	cfg, err := users.ResolveRoutes(cfg, os.LookupEnv)
	if err != nil {
		return nil, err
	}
	routes, err := g.Bridge.Prepare(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("routes: %w", err)
	}
	defer routes.Discard() // after Commit, nothing
	server, err := g.Server.PrepareConfig(cfg)
	if err != nil {
		return nil, err
	}
	changes := routes.Commit()
	changes = append(changes, server.Commit()...)
	return append(changes, g.reloadPeers(cfg.Peers)...), nil
}

// startPeers builds the peer set when replicas are configured, once the
// client listener is bound (its port is this replica's own), and hands it
// to the server; the peers gauge counts this replica alone otherwise.
func (g *Gateway) startPeers(ctx context.Context, cfg config.Peers, listen net.Addr, popts *pgwire.Options) error {
	g.Metrics.Peers.Set(1)
	if !cfg.Enabled() {
		return nil
	}
	set, err := peers.New(ctx, cfg, listen, peers.Options{Log: g.log, OnChange: func(n int) { g.Metrics.Peers.Set(float64(n)) }})
	if err != nil {
		return err
	}
	g.peers, popts.Peers = set, set
	g.log.Info("cancel requests are forwarded between replicas", zap.String("self", set.Self()), zap.Uint16("peer_id", set.ID()), zap.Int("replicas", set.Len()))
	return nil
}

// reloadPeers follows a reload's peers.addresses, dns and refresh. Turning
// peers on or off needs a restart: the identifier in live cancel keys
// would change.
func (g *Gateway) reloadPeers(cfg config.Peers) []string {
	switch {
	case g.peers == nil && cfg.Enabled():
		return []string{"peers: turning peers on needs a restart; this replica still serves only its own cancel keys"}
	case g.peers == nil:
		return nil
	case !cfg.Enabled():
		return []string{"peers: turning peers off needs a restart; the peers in force are kept"}
	}
	g.peers.Update(cfg)
	return nil
}

// closePeers stops the peer set's DNS refreshes.
func (g *Gateway) closePeers() {
	if g.peers != nil {
		g.peers.Close()
	}
}

// acmeChanged reports whether a reload from old to next changes ACME in
// force, which the running manager cannot follow: on or off, or any of its
// keys while it is on.
func acmeChanged(old, next config.ACME) bool {
	if !old.Enabled() && !next.Enabled() {
		return false
	}
	return !slices.Equal(old.Domains, next.Domains) || !reflect.DeepEqual(withoutDomains(old), withoutDomains(next))
}

// withoutDomains is a with no domains, to compare the other keys.
func withoutDomains(a config.ACME) config.ACME {
	a.Domains = nil
	return a
}

// Shutdown drains: no new clients, each client closed at its next safe
// point, until ctx ends; then everything closes.
func (g *Gateway) Shutdown(ctx context.Context) error {
	g.health.draining()
	if g.sharedOps != nil {
		g.sharedOps.Close()
	}
	err := g.Server.Shutdown(ctx)
	g.closeRest()
	return err
}

// Close stops the gateway at once: listener, client sessions, then pools.
func (g *Gateway) Close() error {
	err := g.Server.Close()
	g.closeRest()
	return err
}

func (g *Gateway) closeRest() { g.restClosed.Do(g.closeRestOnce) }

func (g *Gateway) closeRestOnce() {
	select {
	case <-g.served:
	case <-time.After(10 * time.Second):
	}
	if g.ops != nil {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		g.ops.Shutdown(ctx)
		cancel()
	}
	if g.acme != nil {
		g.acme.Close() // before the bridge: a route: storage dials through it
	}
	g.closePeers()
	g.Bridge.Close()
}
