package pgwire

import (
	"bytes"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/dsqlgate/dsqlgate/internal/scram"
)

// certCheckInterval is how often, at most, a handshake looks at the
// certificate and key files for a change.
const certCheckInterval = time.Second

// certStore holds the certificate and key of the client-facing TLS listener
// and replaces them, without a restart, when their files change (an ACME
// client renewed them) or when Reload is called (SIGHUP); or, built with a
// CertificateSource (the gateway's own ACME manager), presents at each
// handshake the certificate the source gives and reads no file. A replacement
// affects new handshakes only: established connections keep the session
// they negotiated. A replacement that does not load (a half-written pair,
// a key that does not match) leaves the pair in use in place.
//
// It also remembers, per connection, which pair that connection's
// handshake presented, so that SCRAM-SHA-256-PLUS binds to the certificate
// the client actually saw even when the files change between the handshake
// and authentication (bindingFor, forget).
//
// Concurrency: every method is safe for concurrent use. state is read
// without locks by every handshake. mu serialises loading (the file check of
// a handshake, Reload) and guards checked, loaded and failed. connsMu guards
// conns. The two locks are never held together.
type certStore struct {
	certFile, keyFile string
	// source, when set, supplies the certificate instead of the files
	// (ACME): each handshake asks it, and the files are never read.
	source CertificateSource
	now    func() time.Time
	log    *zap.Logger

	state atomic.Pointer[certState] // the pair in use; never nil once newCertStore returns (a source store: nil until its first handshake)
	// sourceStates are the source's certificates derived so far, the
	// latest last, at most maxSourceStates (replaced whole under mu).
	sourceStates atomic.Pointer[[]*certState]

	mu      sync.Mutex
	checked time.Time  // when the files were last looked at, by now
	loaded  pairStamp  // the files as they were just before state was read from them
	failed  *pairStamp // the files at the last load that failed (already reported); nil after a success

	connsMu sync.Mutex
	conns   map[net.Conn]*certState // by connKey: the pair each handshake presented, until forget
}

// certState is one loaded certificate and key. It is never modified after
// it is stored; the connections that presented it may keep using it after
// a replacement.
type certState struct {
	cert           *tls.Certificate  // the chain and private key, as tls.Config wants them
	leaf           *x509.Certificate // cert's first certificate, parsed
	channelBinding []byte            // scram.TLSServerEndPoint(leaf); nil when undefined (Ed25519): no SCRAM-PLUS
	loaded         time.Time         // when it was read, by the store's clock
}

// pairStamp tells whether the certificate and key files changed: a nil
// FileInfo is a file that could not be looked at.
type pairStamp struct {
	cert, key os.FileInfo
}

// newCertStore loads the certificate (PEM, with its chain) and private key
// (PEM) from their files. now is the clock (nil: time.Now) and log receives
// a line per loaded pair and a warning per replacement that does not load
// (nil: no logs). The error, like every log line, names the files but never
// holds key material.
func newCertStore(certFile, keyFile string, now func() time.Time, log *zap.Logger) (*certStore, error) {
	if now == nil {
		now = time.Now
	}
	if log == nil {
		log = zap.NewNop()
	}
	c := &certStore{
		certFile: certFile,
		keyFile:  keyFile,
		now:      now,
		log:      log,
		conns:    map[net.Conn]*certState{},
	}
	c.checked = c.now()
	if err := c.loadLocked(statPair(certFile, keyFile), c.checked); err != nil { // nobody else has c yet
		return nil, err
	}
	return c, nil
}

// CertificateSource supplies the client listener's certificate per
// handshake instead of files: internal/acme's Manager, which renews it.
// The store derives a certificate's channel binding once, and knows a
// certificate it has seen by its DER bytes. GetCertificate must be safe
// for concurrent use.
type CertificateSource interface {
	GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error)
}

// newSourceCertStore is a store whose certificates come from source. It
// holds no certificate until the first handshake asks for one.
func newSourceCertStore(source CertificateSource, now func() time.Time, log *zap.Logger) *certStore {
	if now == nil {
		now = time.Now
	}
	if log == nil {
		log = zap.NewNop()
	}
	return &certStore{source: source, now: now, log: log, conns: map[net.Conn]*certState{}}
}

// Reload reads the certificate and key files now, whether they changed or
// not. On an error the pair in use stays in place and the error is for the
// caller to report; the file check of later handshakes does not report the
// same unchanged files again.
func (c *certStore) Reload() error {
	if c.source != nil {
		return nil // the source renews its certificate itself
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.checked = c.now()
	return c.loadLocked(statPair(c.certFile, c.keyFile), c.checked)
}

// current is the pair new handshakes present.
func (c *certStore) current() *certState { return c.state.Load() }

// tlsConfig is a TLS configuration (TLS 1.2 and later) whose handshakes
// present the pair in use at that moment; with alpn it is for direct TLS and
// negotiates ALPN "postgresql" (a client offering only other protocols
// fails the handshake). Each call returns a new Config; the caller must not
// change it once it is in use.
//
// Session tickets are off, as in PostgreSQL: a resumed session presents no
// certificate, so its channel binding could not be known (and after a
// replacement would be the old certificate's).
//
// TLS 1.2 is limited to tls12CipherSuites; TLS 1.3's suites (all AEAD)
// are Go's.
func (c *certStore) tlsConfig(alpn bool) *tls.Config {
	cfg := &tls.Config{
		MinVersion:             tls.VersionTLS12,
		CipherSuites:           tls12CipherSuites,
		GetCertificate:         c.getCertificate,
		SessionTicketsDisabled: true,
	}
	if alpn {
		cfg.NextProtos = []string{"postgresql"}
	}
	return cfg
}

// tls12CipherSuites are the TLS 1.2 suites offered to clients: forward
// secret (ECDHE) and AEAD (AES-GCM, ChaCha20-Poly1305) only, as Mozilla's
// "intermediate" profile; no CBC with SHA-1 MACs, no RSA key exchange.
var tls12CipherSuites = []uint16{
	tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
	tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
	tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
	tls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
	tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
	tls.TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
}

// bindingFor is the tls-server-end-point channel binding of the certificate
// that conn's handshake presented, or nil when there is none (an Ed25519
// certificate, a connection this store did not handshake or already
// forgot): then only SCRAM-SHA-256 may be offered. The caller must not
// modify the returned bytes.
func (c *certStore) bindingFor(conn *tls.Conn) []byte {
	key := connKey(conn)
	c.connsMu.Lock()
	st := c.conns[key]
	c.connsMu.Unlock()
	if st == nil {
		return nil
	}
	return st.channelBinding
}

// forget drops what the store remembers about conn: call it once the
// connection no longer needs bindingFor (after authentication, or when the
// session ends), for every connection that went through a handshake with
// one of the store's configs, even a failed one. conn may be the accepted
// connection or any wrapper of it the handshake saw (the *tls.Conn, the
// prefixConn of direct TLS); they are the same entry.
func (c *certStore) forget(conn net.Conn) {
	key := connKey(conn)
	c.connsMu.Lock()
	delete(c.conns, key)
	c.connsMu.Unlock()
}

// getCertificate is tls.Config.GetCertificate: it looks for changed files
// (at most once per certCheckInterval), records the pair it presents for
// hello.Conn and returns it.
func (c *certStore) getCertificate(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
	var st *certState
	if c.source != nil {
		var err error
		if st, err = c.fromSource(hello); err != nil {
			return nil, err
		}
	} else {
		c.checkFiles()
		st = c.state.Load()
	}
	if hello.Conn != nil {
		key := connKey(hello.Conn)
		c.connsMu.Lock()
		c.conns[key] = st
		c.connsMu.Unlock()
	}
	return st.cert, nil
}

// fromSource asks the source for hello's certificate and returns its
// state, derived once per certificate: a certificate other than the one
// in use (a renewal) is parsed, logged and put in use.
func (c *certStore) fromSource(hello *tls.ClientHelloInfo) (*certState, error) {
	cert, err := c.source.GetCertificate(hello)
	if err != nil {
		return nil, err
	}
	if cert == nil || len(cert.Certificate) == 0 {
		return nil, errors.New("client tls: no certificate available")
	}
	if st := c.state.Load(); st != nil && (st.cert == cert || bytes.Equal(st.leaf.Raw, cert.Certificate[0])) {
		return st, nil // the certificate in use (certmagic hands out copies)
	}
	// Another certificate the source serves (one per domain): derived
	// once, not at each handshake that names another domain than the one
	// before.
	if known := c.sourceStates.Load(); known != nil {
		for _, st := range *known {
			if bytes.Equal(st.leaf.Raw, cert.Certificate[0]) {
				c.state.Store(st)
				return st, nil
			}
		}
	}
	leaf := cert.Leaf
	if leaf == nil {
		if leaf, err = x509.ParseCertificate(cert.Certificate[0]); err != nil {
			return nil, fmt.Errorf("parse client tls certificate: %w", err)
		}
	}
	binding, _ := scram.TLSServerEndPoint(leaf)
	now := c.now()
	st := &certState{cert: cert, leaf: leaf, channelBinding: binding, loaded: now}
	c.state.Store(st)
	c.mu.Lock()
	var next []*certState
	if known := c.sourceStates.Load(); known != nil {
		next = append(next, (*known)[max(0, len(*known)-maxSourceStates+1):]...)
	}
	next = append(next, st)
	c.sourceStates.Store(&next)
	c.mu.Unlock()
	c.logLoaded(st, now)
	return st, nil
}

// maxSourceStates is how many certificates of a source a store keeps
// derived: more than the domains one gateway serves, with their renewals.
const maxSourceStates = 64

// checkFiles reloads the pair when the size, modification time or identity
// (a file renamed over it) of either file changed since the pair in use was
// read. It looks at most once per certCheckInterval; a handshake that finds
// another handshake or Reload already at it goes on with the pair in use.
// A replacement that does not load is reported once per change of the files.
func (c *certStore) checkFiles() {
	if !c.mu.TryLock() {
		return
	}
	defer c.mu.Unlock()
	now := c.now()
	if d := now.Sub(c.checked); d >= 0 && d < certCheckInterval {
		return
	}
	c.checked = now
	stamp := statPair(c.certFile, c.keyFile)
	if stamp.equal(c.loaded) || (c.failed != nil && stamp.equal(*c.failed)) {
		return
	}
	if err := c.loadLocked(stamp, now); err != nil {
		c.log.Warn("client tls certificate files changed but do not load; keeping the previous certificate",
			zap.Error(err))
	}
}

// loadLocked reads the pair and, when it loads, puts it in use. stamp is
// the files as they were looked at just before: a change during the read is
// then seen by the next check. c.mu is held.
func (c *certStore) loadLocked(stamp pairStamp, now time.Time) error {
	st, err := loadCertState(c.certFile, c.keyFile, now)
	if err != nil {
		c.failed = &stamp
		return err
	}
	c.state.Store(st)
	c.loaded, c.failed = stamp, nil
	c.logLoaded(st, now)
	return nil
}

// logLoaded reports the certificate of a pair just put in use: who it
// names, until when, its fingerprint. Never the key.
func (c *certStore) logLoaded(st *certState, now time.Time) {
	leaf := st.leaf
	fields := []zap.Field{
		zap.String("cert_file", c.certFile),
		zap.String("subject", leaf.Subject.String()),
		zap.Strings("dns_names", leaf.DNSNames),
		zap.Stringers("ip_addresses", leaf.IPAddresses),
		zap.Time("not_before", leaf.NotBefore),
		zap.Time("not_after", leaf.NotAfter),
		zap.String("sha256", certFingerprint(leaf.Raw)),
	}
	c.log.Info("client tls certificate loaded", append(fields, zap.Bool("channel_binding", st.channelBinding != nil))...)
	if now.Before(leaf.NotBefore) || now.After(leaf.NotAfter) {
		c.log.Warn("client tls certificate is outside its validity period", fields...)
	}
}

// loadCertState reads and parses a certificate and key pair. Errors name
// the files and the reason, never the key's bytes.
func loadCertState(certFile, keyFile string, now time.Time) (*certState, error) {
	certPEM, err := os.ReadFile(certFile)
	if err != nil {
		return nil, fmt.Errorf("read client tls certificate: %w", err)
	}
	keyPEM, err := os.ReadFile(keyFile)
	if err != nil {
		return nil, fmt.Errorf("read client tls key: %w", err)
	}
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	clear(keyPEM) // wipe the PEM copy of the key; the parsed key lives in cert
	if err != nil {
		return nil, fmt.Errorf("load client tls certificate %s with key %s: %w", certFile, keyFile, err)
	}
	leaf := cert.Leaf
	if leaf == nil { // GODEBUG=x509keypairleaf=0
		if leaf, err = x509.ParseCertificate(cert.Certificate[0]); err != nil {
			return nil, fmt.Errorf("parse client tls certificate %s: %w", certFile, err)
		}
	}
	binding, _ := scram.TLSServerEndPoint(leaf) // undefined for some algorithms: nil, no SCRAM-PLUS
	return &certState{cert: &cert, leaf: leaf, channelBinding: binding, loaded: now}, nil
}

// statPair looks at both files (following symbolic links, as ACME clients'
// live/ directories use them).
func statPair(certFile, keyFile string) pairStamp {
	var s pairStamp
	s.cert, _ = os.Stat(certFile)
	s.key, _ = os.Stat(keyFile)
	return s
}

func (s pairStamp) equal(t pairStamp) bool {
	return sameFileInfo(s.cert, t.cert) && sameFileInfo(s.key, t.key)
}

// sameFileInfo reports whether a and b describe the same unchanged file;
// two files that could not be looked at are the same.
func sameFileInfo(a, b os.FileInfo) bool {
	if a == nil || b == nil {
		return a == nil && b == nil
	}
	return a.Size() == b.Size() && a.ModTime().Equal(b.ModTime()) && os.SameFile(a, b)
}

// connKey is the connection beneath the wrappers a handshake or its caller
// may hold (a *tls.Conn, the prefixConn of direct TLS), so that every form
// of one accepted connection finds the same entry. Connections are
// pointers, usable as map keys.
func connKey(conn net.Conn) net.Conn {
	for {
		var inner net.Conn
		switch c := conn.(type) {
		case *prefixConn:
			inner = c.Conn
		case interface{ NetConn() net.Conn }: // *tls.Conn
			inner = c.NetConn()
		}
		if inner == nil || inner == conn {
			return conn
		}
		conn = inner
	}
}

// certFingerprint is the SHA-256 of a certificate's DER bytes as OpenSSL
// prints it (AB:CD:...).
func certFingerprint(der []byte) string {
	sum := sha256.Sum256(der)
	return strings.ReplaceAll(fmt.Sprintf("% X", sum[:]), " ", ":")
}
