// Package acme obtains and renews the client listener's certificate from an
// ACME certificate authority (Let's Encrypt; Pebble in tests) with
// certmagic, as configured by client_tls.acme.
//
// A Manager builds one certmagic.Config: an ACMEIssuer for the configured
// directory (its own HTTPS trusted through ca_file), with the dns-01
// challenge through a libdns provider (Route 53, or pebble-challtestsrv in
// tests) or the http-01 challenge answered on http_listen; TLS-ALPN is
// off (the client port speaks PostgreSQL). Its storage is either a
// directory (certmagic.FileStorage) or a TableStorage on a route's cluster,
// which every replica behind a load balancer shares: certmagic takes a
// lock in the storage before it orders a certificate and looks in the
// storage again once it holds it, so that one replica orders and the
// others load what it stored, at start and at each renewal.
package acme

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"time"

	"github.com/caddyserver/certmagic"
	"github.com/libdns/route53"
	"github.com/mholt/acmez/v3"
	"go.uber.org/zap"

	"github.com/dsqlgate/dsqlgate/config"
)

// Options are what New needs beyond the configuration.
type Options struct {
	// Logger receives the manager's and certmagic's logs; nil: none.
	Logger *zap.Logger
	// Dial opens a connection to the storage route's cluster; required
	// for a "route:" storage, unused otherwise.
	Dial DialFunc
	// AWSProfile is the shared-config profile for Route 53 (aws.profile);
	// empty: the default chain.
	AWSProfile string
}

// Manager obtains, keeps and renews the certificate for the configured
// domains, and hands it to TLS handshakes (GetCertificate). Start it once,
// Close it once.
type Manager struct {
	cfg     config.ACME
	log     *zap.Logger
	magic   *certmagic.Config
	cache   *certmagic.Cache
	table   *TableStorage // nil for a directory storage
	httpSrv *http.Server  // the http-01 listener; nil for dns-01
	httpLn  net.Listener
}

// Backoff of Start between attempts to obtain the certificate.
const (
	startRetryMin = 2 * time.Second
	startRetryMax = 5 * time.Minute
)

// New builds a Manager from a validated client_tls.acme with domains set.
// For http-01 it listens on http_listen at once. It orders nothing: Start
// does.
func New(a config.ACME, opts Options) (*Manager, error) {
	if !a.Enabled() {
		return nil, errors.New("client_tls.acme: no domains")
	}
	log := opts.Logger
	if log == nil {
		log = zap.NewNop()
	}
	m := &Manager{cfg: a, log: log}
	storage, err := m.storage(opts)
	if err != nil {
		return nil, err
	}
	roots, err := trustedRoots(a.CAFile)
	if err != nil {
		return nil, err
	}
	m.cache = certmagic.NewCache(certmagic.CacheOptions{
		GetConfigForCert:   func(certmagic.Certificate) (*certmagic.Config, error) { return m.magic, nil },
		RenewCheckInterval: a.RenewCheckInterval.D(),
		Logger:             log,
	})
	m.magic = certmagic.New(m.cache, certmagic.Config{
		Storage:            storage,
		Logger:             log,
		DefaultServerName:  a.Domains[0], // clients that send no SNI (an IP address)
		FallbackServerName: a.Domains[0], // and those that name another host
		OCSP:               certmagic.OCSPConfig{DisableStapling: true},
	})
	issuer := certmagic.ACMEIssuer{
		CA:                      a.Directory,
		Email:                   a.Email,
		Agreed:                  true,
		TrustedRoots:            roots,
		DisableTLSALPNChallenge: true,
		DisableHTTPChallenge:    a.Challenge != config.ACMEChallengeHTTP01,
		Logger:                  log,
	}
	switch a.Challenge {
	case config.ACMEChallengeHTTP01:
		if err := m.listenHTTP(&issuer); err != nil {
			m.cache.Stop()
			return nil, err
		}
	default:
		issuer.DNS01Solver = dnsSolver(a, opts.AWSProfile, log)
	}
	acmeIssuer := certmagic.NewACMEIssuer(m.magic, issuer)
	m.magic.Issuers = []certmagic.Issuer{acmeIssuer}
	if m.httpLn != nil {
		m.httpSrv = &http.Server{
			Handler:           acmeIssuer.HTTPChallengeHandler(http.NotFoundHandler()),
			ReadHeaderTimeout: 10 * time.Second,
			ReadTimeout:       10 * time.Second,
			WriteTimeout:      10 * time.Second,
			IdleTimeout:       time.Minute,
			MaxHeaderBytes:    16 << 10,
		}
		go m.httpSrv.Serve(m.httpLn)
	}
	return m, nil
}

// storage is the configured storage: a table on the route's cluster, or
// a directory.
func (m *Manager) storage(opts Options) (certmagic.Storage, error) {
	if db, ok := m.cfg.StorageRoute(); ok {
		if opts.Dial == nil {
			return nil, fmt.Errorf("client_tls.acme.storage %s: no connection to route %q", m.cfg.Storage, db)
		}
		m.table = NewTableStorage(opts.Dial, m.cfg.StorageTable, m.log.Named("storage"))
		return m.table, nil
	}
	dir := m.cfg.Storage
	if dir == "" {
		dir = config.ACMEStorageDir
	}
	return &certmagic.FileStorage{Path: dir}, nil
}

// trustedRoots reads the PEM roots of ca_file; nil (the system's) when
// it is empty.
func trustedRoots(caFile string) (*x509.CertPool, error) {
	if caFile == "" {
		return nil, nil
	}
	pem, err := config.ReadSmallFile(caFile)
	if err != nil {
		return nil, fmt.Errorf("client_tls.acme.ca_file %s: %w", caFile, err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("client_tls.acme.ca_file %s holds no PEM certificate", caFile)
	}
	return pool, nil
}

// dnsSolver is the dns-01 solver of the configured provider.
func dnsSolver(a config.ACME, awsProfile string, log *zap.Logger) acmez.Solver {
	if a.DNSProvider == config.ACMEDNSChalltestsrv {
		// The test DNS server shows records at once and answers no SOA
		// query, so no zone is looked up and no propagation waited for.
		return zoneSolver{provider: &ChalltestsrvProvider{URL: a.ChalltestsrvURL}}
	}
	return &certmagic.DNS01Solver{DNSManager: certmagic.DNSManager{
		DNSProvider: &route53.Provider{
			HostedZoneID:       a.Route53HostedZoneID,
			Profile:            awsProfile,
			WaitForRoute53Sync: true,
		},
		Logger: log,
	}}
}

// listenHTTP listens on http_listen for http-01 challenges and points the
// issuer at it, so that certmagic finds the port taken by a listener that
// answers (every replica answers every challenge from the shared storage).
func (m *Manager) listenHTTP(issuer *certmagic.ACMEIssuer) error {
	ln, err := net.Listen("tcp", m.cfg.HTTPListen)
	if err != nil {
		return fmt.Errorf("client_tls.acme.http_listen %s: %w", m.cfg.HTTPListen, err)
	}
	host, port, _ := net.SplitHostPort(ln.Addr().String())
	if m.cfg.HTTPListen != "" {
		if h, _, err := net.SplitHostPort(m.cfg.HTTPListen); err == nil && h == "" {
			host = "" // every interface, as configured
		}
	}
	issuer.ListenHost = host
	issuer.AltHTTPPort, _ = strconv.Atoi(port)
	m.httpLn = ln
	return nil
}

// HTTPAddr is the http-01 listener's address, or "" for dns-01.
func (m *Manager) HTTPAddr() string {
	if m.httpLn == nil {
		return ""
	}
	return m.httpLn.Addr().String()
}

// Start loads the certificate for the domains from the storage, or
// obtains it (one replica orders it; the others wait for its lock and
// load it), and starts renewing it. It returns once the certificate can be
// served, retrying with backoff after failures, or with an error naming
// the last failure when ctx ends first.
func (m *Manager) Start(ctx context.Context) error {
	wait := startRetryMin
	for {
		err := m.magic.ManageSync(ctx, m.cfg.Domains)
		if err == nil {
			m.log.Info("acme certificate ready", zap.Strings("domains", m.cfg.Domains), zap.String("directory", m.cfg.Directory))
			return nil
		}
		if ctx.Err() != nil {
			return fmt.Errorf("client_tls.acme: no certificate for %v from %s: %w (gave up: %v)", m.cfg.Domains, m.cfg.Directory, err, ctx.Err())
		}
		m.log.Error("acme: could not obtain the certificate; trying again", zap.Strings("domains", m.cfg.Domains),
			zap.Duration("in", wait), zap.Error(err))
		if !sleepCtx(ctx, wait) {
			return fmt.Errorf("client_tls.acme: no certificate for %v from %s: %w (gave up: %v)", m.cfg.Domains, m.cfg.Directory, err, ctx.Err())
		}
		wait = min(2*wait, startRetryMax)
	}
}

// GetCertificate is tls.Config.GetCertificate: the managed certificate
// (renewed ones as they come) for hello's server name, or the first
// domain's when the client names none or another.
func (m *Manager) GetCertificate(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
	return m.magic.GetCertificate(hello)
}

// Close stops renewing, the http-01 listener and the storage connection.
// Connections already handshaken keep their certificate.
func (m *Manager) Close() {
	m.cache.Stop()
	if m.httpSrv != nil {
		m.httpSrv.Close()
	} else if m.httpLn != nil {
		m.httpLn.Close()
	}
	if m.table != nil {
		m.table.Close()
	}
}
