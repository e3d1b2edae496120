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
	"io/fs"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
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
	// life bounds certmagic's background work (obtaining, renewing);
	// Close ends it.
	life    context.Context
	endLife context.CancelFunc
	// lastFailure is the last error certmagic reported obtaining or
	// renewing, for Start's error.
	lastFailure atomic.Pointer[string]
}

// startPoll is how often Start looks for the certificate.
const startPoll = 100 * time.Millisecond

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
	// As config compares them: lower case, without a trailing dot (how
	// certmagic indexes its certificates and a CA accepts a name).
	domains := make([]string, len(a.Domains))
	for i, d := range a.Domains {
		domains[i] = strings.ToLower(strings.TrimSuffix(strings.TrimSpace(d), "."))
	}
	a.Domains = domains
	m := &Manager{cfg: a, log: log}
	m.life, m.endLife = context.WithCancel(context.Background())
	storage, err := m.storage(opts)
	if err != nil {
		m.endLife()
		return nil, err
	}
	roots, err := trustedRoots(a.CAFile)
	if err != nil {
		m.endLife()
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
		OnEvent:            m.onEvent,
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
			m.Close()
			return nil, err
		}
	default:
		issuer.DNS01Solver = dnsSolver(a, opts.AWSProfile, log)
	}
	acmeIssuer := certmagic.NewACMEIssuer(m.magic, issuer)
	m.magic.Issuers = []certmagic.Issuer{acmeIssuer}
	if m.httpLn != nil {
		m.httpSrv = &http.Server{
			Handler:           m.domainsOnly(acmeIssuer.HTTPChallengeHandler(http.NotFoundHandler())),
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

// domainsOnly passes on the requests for one of the domains and answers
// 404 to the others: certmagic's challenge handler reads the storage for
// each request (a challenge another replica may have placed), and this
// port is open to the internet.
func (m *Manager) domainsOnly(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		host := r.Host
		if name, _, err := net.SplitHostPort(host); err == nil {
			host = name
		}
		host = strings.ToLower(strings.TrimSuffix(host, "."))
		for _, d := range m.cfg.Domains {
			if host == d {
				h.ServeHTTP(w, r)
				return
			}
		}
		http.NotFound(w, r)
	})
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
// load it), and keeps renewing it until Close. It returns once every
// domain has a certificate to serve, or, when ctx ends first, an error
// naming the domains, the directory and the last failure certmagic
// reported. Failed orders are retried in the background with backoff
// (certmagic's, from a minute up), never interactively: nothing is asked
// on the terminal.
func (m *Manager) Start(ctx context.Context) error {
	// certmagic gives a domain up for good when its first look in the
	// storage fails with anything but "not found": wait until the storage
	// answers (the cluster may not be reachable yet: a new role, a network
	// being set up).
	if err := m.waitForStorage(ctx); err != nil {
		return err
	}
	if err := m.magic.ManageAsync(m.life, m.cfg.Domains); err != nil {
		return fmt.Errorf("client_tls.acme: manage %v: %w", m.cfg.Domains, err)
	}
	for !m.ready() {
		if !sleepCtx(ctx, startPoll) {
			last := "none reported yet"
			if e := m.lastFailure.Load(); e != nil {
				last = *e
			}
			return fmt.Errorf("client_tls.acme: no certificate for %v from %s (last failure: %s): %w",
				m.cfg.Domains, m.cfg.Directory, last, ctx.Err())
		}
	}
	m.log.Info("acme certificate ready", zap.Strings("domains", m.cfg.Domains), zap.String("directory", m.cfg.Directory))
	return nil
}

// storageProbeKey is a key Start reads to see that the storage answers;
// nothing is stored there.
const storageProbeKey = "dsqlgate_storage_probe"

// Bounds of waitForStorage: each read, and the pauses between reads.
const (
	storageProbeTimeout  = 30 * time.Second
	storageProbePause    = time.Second
	storageProbePauseMax = 30 * time.Second
)

// waitForStorage reads a key from the storage until the storage answers
// (a missing key is an answer), with backoff, or ctx ends: then the error
// names the storage's last failure.
func (m *Manager) waitForStorage(ctx context.Context) error {
	pause := storageProbePause
	for {
		pctx, cancel := context.WithTimeout(ctx, storageProbeTimeout)
		_, err := m.magic.Storage.Load(pctx, storageProbeKey)
		cancel()
		if err == nil || errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		msg := fmt.Sprintf("storage %s: %v", m.storageName(), err)
		m.lastFailure.Store(&msg)
		m.log.Warn("acme storage does not answer; trying again", zap.String("storage", m.storageName()), zap.Error(err))
		if !sleepCtx(ctx, jitter(pause)) {
			return fmt.Errorf("client_tls.acme: no certificate for %v: the %s: %w", m.cfg.Domains, msg, ctx.Err())
		}
		pause = min(2*pause, storageProbePauseMax)
	}
}

// storageName names the configured storage for messages.
func (m *Manager) storageName() string {
	if m.table != nil {
		return m.table.String()
	}
	if m.cfg.Storage == "" {
		return "directory " + config.ACMEStorageDir
	}
	return "directory " + m.cfg.Storage
}

// ready reports whether every domain has a certificate in the cache.
func (m *Manager) ready() bool {
	for _, d := range m.cfg.Domains {
		if len(m.cache.AllMatchingCertificates(d)) == 0 {
			return false
		}
	}
	return true
}

// onEvent records certmagic's failures for Start's error.
func (m *Manager) onEvent(_ context.Context, event string, data map[string]any) error {
	if event == "cert_failed" {
		msg := fmt.Sprint(data["error"])
		m.lastFailure.Store(&msg)
	}
	return nil
}

// GetCertificate is tls.Config.GetCertificate: the managed certificate
// (renewed ones as they come) for hello's server name, or the first
// domain's when the client names none or another.
//
// A ClientHello offering only "acme-tls/1" is refused: TLS-ALPN-01 is
// off, and certmagic would otherwise look for a challenge in the storage
// at each such handshake (a statement on the shared table's connection,
// for a name the client chooses).
func (m *Manager) GetCertificate(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
	if len(hello.SupportedProtos) == 1 && hello.SupportedProtos[0] == acmez.ACMETLS1Protocol {
		return nil, errors.New("client tls: the acme-tls/1 challenge is not served here")
	}
	return m.magic.GetCertificate(hello)
}

// Close stops renewing, the http-01 listener and the storage connection.
// Connections already handshaken keep their certificate.
func (m *Manager) Close() {
	m.endLife()
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
