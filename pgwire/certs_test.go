package pgwire

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"go.uber.org/goleak"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/dsqlgate/dsqlgate/internal/scram"
)

// testCA issues the certificates of the certStore tests.
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pool *x509.CertPool
}

func newTestCA(t *testing.T) *testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "dsqlgate test ca"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return &testCA{cert: cert, key: key, pool: pool}
}

// issue returns a new server certificate for localhost with serial, and its
// key, both PEM.
func (ca *testCA) issue(t *testing.T, serial int64) (certPEM, keyPEM []byte) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(serial),
		Subject:      pkix.Name{CommonName: fmt.Sprintf("gateway %d", serial)},
		DNSNames:     []string{"localhost"},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER})
}

// testPair is a certificate and key pair in files.
type testPair struct {
	certFile, keyFile string
}

func writeTestPair(t *testing.T, certPEM, keyPEM []byte) testPair {
	t.Helper()
	dir := t.TempDir()
	p := testPair{certFile: filepath.Join(dir, "server.crt"), keyFile: filepath.Join(dir, "server.key")}
	replaceFile(t, p.keyFile, keyPEM)
	replaceFile(t, p.certFile, certPEM)
	return p
}

// replace puts a new pair in place, key first, as an ACME client does.
func (p testPair) replace(t *testing.T, certPEM, keyPEM []byte) {
	t.Helper()
	if err := p.replaceFiles(certPEM, keyPEM); err != nil {
		t.Fatal(err)
	}
}

// replaceFiles is replace for goroutines other than the test's.
func (p testPair) replaceFiles(certPEM, keyPEM []byte) error {
	return errors.Join(renameOver(p.keyFile, keyPEM), renameOver(p.certFile, certPEM))
}

// replaceFile writes data under a temporary name beside path and renames it
// over path.
func replaceFile(t *testing.T, path string, data []byte) {
	t.Helper()
	if err := renameOver(path, data); err != nil {
		t.Fatal(err)
	}
}

func renameOver(path string, data []byte) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// fakeClock is a clock that moves only when told.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func newFakeClock() *fakeClock { return &fakeClock{t: time.Now()} }

func (c *fakeClock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// newTestCertStore loads p with clock and a log that the test can read.
func newTestCertStore(t *testing.T, p testPair, clock *fakeClock) (*certStore, *observer.ObservedLogs) {
	t.Helper()
	core, logs := observer.New(zapcore.InfoLevel)
	c, err := newCertStore(p.certFile, p.keyFile, clock.now, zap.New(core))
	if err != nil {
		t.Fatal(err)
	}
	return c, logs
}

// clientConfig trusts ca and expects localhost.
func clientConfig(ca *testCA) *tls.Config {
	return &tls.Config{RootCAs: ca.pool, ServerName: "localhost"}
}

// pipeHandshake runs a TLS handshake over net.Pipe between a server with
// srvCfg and a client with cliCfg. On success the caller owns both
// connections; on an error both are closed.
func pipeHandshake(srvCfg, cliCfg *tls.Config) (client, server *tls.Conn, err error) {
	cliRaw, srvRaw := net.Pipe()
	client, server = tls.Client(cliRaw, cliCfg), tls.Server(srvRaw, srvCfg)
	srvErr := make(chan error, 1)
	go func() { srvErr <- server.Handshake() }()
	cliErr := client.Handshake()
	if cliErr != nil {
		cliRaw.Close() // unblocks a server still writing
	}
	if err := errors.Join(cliErr, <-srvErr); err != nil {
		cliRaw.Close()
		srvRaw.Close()
		return nil, nil, err
	}
	return client, server, nil
}

// mustHandshake is pipeHandshake for tests that expect success; the
// connections close at the end of the test.
func mustHandshake(t *testing.T, srvCfg, cliCfg *tls.Config) (client, server *tls.Conn) {
	t.Helper()
	client, server, err := pipeHandshake(srvCfg, cliCfg)
	if err != nil {
		t.Fatalf("handshake: %v", err)
	}
	t.Cleanup(func() {
		client.NetConn().Close()
		server.NetConn().Close()
	})
	return client, server
}

func peerSerial(c *tls.Conn) int64 {
	return c.ConnectionState().PeerCertificates[0].SerialNumber.Int64()
}

// peerBinding is what the client computes for SCRAM-PLUS from the
// certificate it received.
func peerBinding(t *testing.T, c *tls.Conn) []byte {
	t.Helper()
	b, err := scram.TLSServerEndPoint(c.ConnectionState().PeerCertificates[0])
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// echo checks that an established connection still carries data both
// ways.
func echo(client, server *tls.Conn) error {
	done := make(chan error, 1)
	go func() {
		buf := make([]byte, 4)
		if _, err := io.ReadFull(server, buf); err != nil {
			done <- err
			return
		}
		if string(buf) != "ping" {
			done <- fmt.Errorf("server read %q", buf)
			return
		}
		_, err := server.Write([]byte("pong"))
		done <- err
	}()
	if _, err := client.Write([]byte("ping")); err != nil {
		return errors.Join(err, <-done)
	}
	buf := make([]byte, 4)
	if _, err := io.ReadFull(client, buf); err != nil {
		return errors.Join(err, <-done)
	}
	if err := <-done; err != nil {
		return err
	}
	if string(buf) != "pong" {
		return fmt.Errorf("client read %q", buf)
	}
	return nil
}

func (c *certStore) connCount() int {
	c.connsMu.Lock()
	defer c.connsMu.Unlock()
	return len(c.conns)
}

// assertNoKeyMaterial fails when text holds any part of a PEM key's body.
func assertNoKeyMaterial(t *testing.T, text string, keyPEMs ...[]byte) {
	t.Helper()
	for _, k := range keyPEMs {
		block, _ := pem.Decode(k)
		body := string(pem.EncodeToMemory(block))
		for _, line := range strings.Split(body, "\n")[1:] {
			if len(line) >= 16 && strings.Contains(text, line[:16]) {
				t.Errorf("key material in %q", text)
			}
		}
	}
}

// logText is every observed entry with its fields, for assertNoKeyMaterial.
func logText(logs *observer.ObservedLogs) string {
	var b strings.Builder
	for _, e := range logs.All() {
		fmt.Fprintf(&b, "%s %v\n", e.Message, e.ContextMap())
	}
	return b.String()
}

func TestCertStoreLoad(t *testing.T) {
	ca := newTestCA(t)
	cert1, key1 := ca.issue(t, 1)
	cert2, key2 := ca.issue(t, 2)
	good := writeTestPair(t, cert1, key1)
	clock := newFakeClock()
	c, logs := newTestCertStore(t, good, clock)

	st := c.current()
	if got := st.leaf.SerialNumber.Int64(); got != 1 {
		t.Errorf("serial = %d, want 1", got)
	}
	sum := sha256.Sum256(st.leaf.Raw) // the test CA signs with ECDSA-SHA256
	if !bytes.Equal(st.channelBinding, sum[:]) {
		t.Errorf("channel binding = %x, want %x", st.channelBinding, sum)
	}
	if !st.loaded.Equal(clock.now()) {
		t.Errorf("loaded = %v, want %v", st.loaded, clock.now())
	}
	loaded := logs.FilterMessage("client tls certificate loaded").All()
	if len(loaded) != 1 {
		t.Fatalf("%d loaded lines, want 1: %s", len(loaded), logText(logs))
	}
	fields := loaded[0].ContextMap()
	if diff := cmp.Diff(map[string]any{
		"cert_file":       good.certFile,
		"subject":         "CN=gateway 1",
		"dns_names":       []any{"localhost"},
		"ip_addresses":    []any{"127.0.0.1"},
		"not_before":      st.leaf.NotBefore,
		"not_after":       st.leaf.NotAfter,
		"sha256":          certFingerprint(st.leaf.Raw),
		"channel_binding": true,
	}, fields); diff != "" {
		t.Errorf("loaded fields (-want +got):\n%s", diff)
	}
	if fp := certFingerprint(st.leaf.Raw); len(fp) != 32*3-1 || strings.ToUpper(fp) != fp {
		t.Errorf("fingerprint %q is not AB:CD:... form", fp)
	}
	assertNoKeyMaterial(t, logText(logs), key1)

	dir := t.TempDir()
	write := func(name string, data []byte) string {
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
		return path
	}
	cases := []struct {
		name       string
		cert, key  string
		isNotExist bool
	}{
		{"missing certificate", filepath.Join(dir, "none.crt"), good.keyFile, true},
		{"missing key", good.certFile, filepath.Join(dir, "none.key"), true},
		{"key of another certificate", good.certFile, write("other.key", key2), false},
		{"certificate and key swapped", good.keyFile, good.certFile, false},
		{"not pem", write("junk.crt", []byte("junk")), good.keyFile, false},
		{"truncated certificate", write("half.crt", cert2[:len(cert2)/2]), good.keyFile, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c, err := newCertStore(tc.cert, tc.key, clock.now, nil)
			if err == nil {
				t.Fatalf("newCertStore = %v, want an error", c)
			}
			if got := errors.Is(err, fs.ErrNotExist); got != tc.isNotExist {
				t.Errorf("errors.Is(%v, fs.ErrNotExist) = %v, want %v", err, got, tc.isNotExist)
			}
			assertNoKeyMaterial(t, err.Error(), key1, key2)
		})
	}
}

func TestCertStoreEd25519HasNoChannelBinding(t *testing.T) {
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(9),
		DNSNames:     []string{"localhost"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, pub, priv)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	p := writeTestPair(t, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}))
	c, _ := newTestCertStore(t, p, newFakeClock())
	if cb := c.current().channelBinding; cb != nil {
		t.Errorf("channel binding = %x, want nil", cb)
	}
}

// TestCertStoreSwap replaces the files under a running store: new
// handshakes present the new certificate once the store has looked (at
// most once a second), a connection made before keeps working, and each
// connection's binding is that of the certificate it got.
func TestCertStoreSwap(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	ca := newTestCA(t)
	cert1, key1 := ca.issue(t, 1)
	cert2, key2 := ca.issue(t, 2)
	p := writeTestPair(t, cert1, key1)
	clock := newFakeClock()
	c, logs := newTestCertStore(t, p, clock)
	cfg := c.tlsConfig(false)

	cliA, srvA := mustHandshake(t, cfg, clientConfig(ca))
	if got := peerSerial(cliA); got != 1 {
		t.Fatalf("first handshake: serial %d, want 1", got)
	}

	p.replace(t, cert2, key2)
	clock.advance(certCheckInterval / 2)
	cliB, srvB := mustHandshake(t, cfg, clientConfig(ca))
	if got := peerSerial(cliB); got != 1 {
		t.Errorf("handshake within a second of the last check: serial %d, want 1 (not looked yet)", got)
	}

	clock.advance(certCheckInterval / 2)
	cliC, srvC := mustHandshake(t, cfg, clientConfig(ca))
	if got := peerSerial(cliC); got != 2 {
		t.Errorf("handshake after the swap: serial %d, want 2", got)
	}
	if got := c.current().leaf.SerialNumber.Int64(); got != 2 {
		t.Errorf("current serial %d, want 2", got)
	}

	for _, conn := range []struct {
		name           string
		client, server *tls.Conn
	}{{"a", cliA, srvA}, {"b", cliB, srvB}, {"c", cliC, srvC}} {
		if err := echo(conn.client, conn.server); err != nil {
			t.Errorf("connection %s after the swap: %v", conn.name, err)
		}
		if got, want := c.bindingFor(conn.server), peerBinding(t, conn.client); !bytes.Equal(got, want) {
			t.Errorf("connection %s: bindingFor = %x, want %x (the certificate it got)", conn.name, got, want)
		}
		c.forget(conn.server)
		if got := c.bindingFor(conn.server); got != nil {
			t.Errorf("connection %s: bindingFor after forget = %x, want nil", conn.name, got)
		}
	}
	if n := c.connCount(); n != 0 {
		t.Errorf("%d connections remembered after forget, want 0", n)
	}
	if n := logs.FilterMessage("client tls certificate loaded").Len(); n != 2 {
		t.Errorf("%d loaded lines, want 2: %s", n, logText(logs))
	}
	assertNoKeyMaterial(t, logText(logs), key1, key2)
}

// TestCertStoreBindingAcrossSwap replaces the pair between a handshake and
// the SCRAM exchange that would use its binding.
func TestCertStoreBindingAcrossSwap(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	ca := newTestCA(t)
	cert1, key1 := ca.issue(t, 1)
	cert2, key2 := ca.issue(t, 2)
	p := writeTestPair(t, cert1, key1)
	c, _ := newTestCertStore(t, p, newFakeClock())

	cli, srv := mustHandshake(t, c.tlsConfig(true), &tls.Config{RootCAs: ca.pool, ServerName: "localhost", NextProtos: []string{"postgresql"}})
	old := c.current().channelBinding
	p.replace(t, cert2, key2)
	if err := c.Reload(); err != nil {
		t.Fatal(err)
	}
	if bytes.Equal(c.current().channelBinding, old) {
		t.Fatal("the reload did not change the certificate")
	}
	if got, want := c.bindingFor(srv), peerBinding(t, cli); !bytes.Equal(got, want) || !bytes.Equal(got, old) {
		t.Errorf("bindingFor after the swap = %x, want %x (the old certificate, which the client saw)", got, want)
	}
}

func TestCertStoreBrokenReplacementKeepsOld(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	ca := newTestCA(t)
	cert1, key1 := ca.issue(t, 1)
	cert2, key2 := ca.issue(t, 2)
	cert3, key3 := ca.issue(t, 3)
	cases := []struct {
		name       string
		breakFiles func(t *testing.T, p testPair)
	}{
		{"truncated certificate", func(t *testing.T, p testPair) { replaceFile(t, p.certFile, cert2[:len(cert2)/2]) }},
		{"new certificate, old key", func(t *testing.T, p testPair) { replaceFile(t, p.certFile, cert2) }},
		{"new key, old certificate", func(t *testing.T, p testPair) { replaceFile(t, p.keyFile, key2) }},
		{"garbage key", func(t *testing.T, p testPair) { replaceFile(t, p.keyFile, []byte("-----BEGIN PRIVATE KEY-----\n")) }},
		{"key removed", func(t *testing.T, p testPair) {
			if err := os.Remove(p.keyFile); err != nil {
				t.Fatal(err)
			}
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p := writeTestPair(t, cert1, key1)
			clock := newFakeClock()
			c, logs := newTestCertStore(t, p, clock)
			cfg := c.tlsConfig(false)
			handshake := func(want int64) {
				t.Helper()
				cli, srv := mustHandshake(t, cfg, clientConfig(ca))
				if got := peerSerial(cli); got != want {
					t.Errorf("serial %d, want %d", got, want)
				}
				c.forget(srv)
			}
			warnings := func() int {
				return logs.FilterLevelExact(zapcore.WarnLevel).Len()
			}

			tc.breakFiles(t, p)
			for range 3 { // reported once, however often the store looks
				clock.advance(certCheckInterval)
				handshake(1)
			}
			if n := warnings(); n != 1 {
				t.Errorf("%d warnings, want 1: %s", n, logText(logs))
			}
			w := logs.FilterMessage("client tls certificate files changed but do not load; keeping the previous certificate").All()
			if len(w) != 1 || w[0].ContextMap()["error"] == nil {
				t.Errorf("want one warning with the error: %s", logText(logs))
			}

			p.replace(t, cert3, key3) // the writer finishes
			clock.advance(certCheckInterval)
			handshake(3)
			if n := warnings(); n != 1 {
				t.Errorf("%d warnings after the repair, want 1: %s", n, logText(logs))
			}
			assertNoKeyMaterial(t, logText(logs), key1, key2, key3)
		})
	}
}

func TestCertStoreReload(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	ca := newTestCA(t)
	cert1, key1 := ca.issue(t, 1)
	cert2, key2 := ca.issue(t, 2)
	p := writeTestPair(t, cert1, key1)
	clock := newFakeClock() // never moves: only Reload can see a change
	c, logs := newTestCertStore(t, p, clock)
	cfg := c.tlsConfig(false)

	if err := c.Reload(); err != nil {
		t.Fatalf("Reload of unchanged files: %v", err)
	}
	p.replace(t, cert2, key2)
	if err := c.Reload(); err != nil {
		t.Fatalf("Reload: %v", err)
	}
	cli, srv := mustHandshake(t, cfg, clientConfig(ca))
	if got := peerSerial(cli); got != 2 {
		t.Errorf("serial after Reload %d, want 2", got)
	}
	c.forget(srv)

	cases := []struct {
		name       string
		breakFiles func(t *testing.T)
		isNotExist bool
	}{
		{"certificate removed", func(t *testing.T) {
			if err := os.Remove(p.certFile); err != nil {
				t.Fatal(err)
			}
		}, true},
		{"key of another certificate", func(t *testing.T) { replaceFile(t, p.certFile, cert1) }, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			tc.breakFiles(t)
			before := logs.Len()
			err := c.Reload()
			if err == nil {
				t.Fatal("Reload of a broken pair succeeded")
			}
			if got := errors.Is(err, fs.ErrNotExist); got != tc.isNotExist {
				t.Errorf("errors.Is(%v, fs.ErrNotExist) = %v, want %v", err, got, tc.isNotExist)
			}
			assertNoKeyMaterial(t, err.Error(), key1, key2)
			if got := c.current().leaf.SerialNumber.Int64(); got != 2 {
				t.Errorf("current serial after a failed Reload %d, want 2", got)
			}
			clock.advance(certCheckInterval)
			cli, srv := mustHandshake(t, cfg, clientConfig(ca))
			if got := peerSerial(cli); got != 2 {
				t.Errorf("serial after a failed Reload %d, want 2", got)
			}
			c.forget(srv)
			if n := logs.Len() - before; n != 0 {
				t.Errorf("%d log lines after a failed Reload, want 0 (the caller reports it): %s", n, logText(logs))
			}
		})
	}
}

func TestCertStoreConfig(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	ca := newTestCA(t)
	cert1, key1 := ca.issue(t, 1)
	c, _ := newTestCertStore(t, writeTestPair(t, cert1, key1), newFakeClock())

	for _, alpn := range []bool{false, true} {
		cfg := c.tlsConfig(alpn)
		if cfg.MinVersion != tls.VersionTLS12 || len(cfg.Certificates) != 0 || cfg.GetCertificate == nil {
			t.Errorf("tlsConfig(%v): MinVersion %x, %d fixed certificates, GetCertificate set %v; want TLS 1.2, none, true",
				alpn, cfg.MinVersion, len(cfg.Certificates), cfg.GetCertificate != nil)
		}
	}
	if got := c.tlsConfig(true).NextProtos; !cmp.Equal(got, []string{"postgresql"}) {
		t.Errorf("direct TLS NextProtos = %q", got)
	}
	if got := c.tlsConfig(false).NextProtos; got != nil {
		t.Errorf("SSLRequest NextProtos = %q, want none", got)
	}

	cases := []struct {
		name       string
		alpn       bool
		clientALPN []string
		minV, maxV uint16
		want       string // negotiated protocol
		wantErr    bool
	}{
		{name: "direct tls, alpn postgresql", alpn: true, clientALPN: []string{"postgresql"}, want: "postgresql"},
		{name: "direct tls, other alpn", alpn: true, clientALPN: []string{"http/1.1"}, wantErr: true},
		{name: "direct tls, no alpn", alpn: true}, // the handshake code refuses it afterwards
		{name: "sslrequest, alpn postgresql", clientALPN: []string{"postgresql"}},
		{name: "tls 1.2", minV: tls.VersionTLS12, maxV: tls.VersionTLS12},
		{name: "tls 1.3", minV: tls.VersionTLS13, maxV: tls.VersionTLS13},
		{name: "tls 1.1 refused", minV: tls.VersionTLS10, maxV: tls.VersionTLS11, wantErr: true},
		{name: "tls 1.0 refused", minV: tls.VersionTLS10, maxV: tls.VersionTLS10, wantErr: true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cliCfg := clientConfig(ca)
			cliCfg.NextProtos = tc.clientALPN
			cliCfg.MinVersion, cliCfg.MaxVersion = tc.minV, tc.maxV
			cli, srv, err := pipeHandshake(c.tlsConfig(tc.alpn), cliCfg)
			if tc.wantErr {
				if err == nil {
					cli.NetConn().Close()
					srv.NetConn().Close()
					t.Fatal("handshake succeeded, want a refusal")
				}
				if n := c.connCount(); n != 0 {
					t.Errorf("%d connections remembered after a refused handshake", n)
				}
				return
			}
			if err != nil {
				t.Fatalf("handshake: %v", err)
			}
			defer cli.NetConn().Close()
			defer srv.NetConn().Close()
			if got := srv.ConnectionState().NegotiatedProtocol; got != tc.want {
				t.Errorf("negotiated protocol %q, want %q", got, tc.want)
			}
			if got, want := c.bindingFor(srv), peerBinding(t, cli); !bytes.Equal(got, want) {
				t.Errorf("bindingFor = %x, want %x", got, want)
			}
			c.forget(srv)
		})
	}
}

// TestCertStoreNoResumption: a resumed session presents no certificate,
// so the store must not let one happen.
func TestCertStoreNoResumption(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	ca := newTestCA(t)
	cert1, key1 := ca.issue(t, 1)
	c, _ := newTestCertStore(t, writeTestPair(t, cert1, key1), newFakeClock())
	srvCfg := c.tlsConfig(false) // one config, as the server has: its ticket keys would decrypt its tickets
	for _, v := range []uint16{tls.VersionTLS12, tls.VersionTLS13} {
		cliCfg := clientConfig(ca)
		cliCfg.MaxVersion = v
		cliCfg.ClientSessionCache = tls.NewLRUClientSessionCache(4)
		for i := range 2 {
			cli, srv := mustHandshake(t, srvCfg, cliCfg)
			if err := echo(cli, srv); err != nil { // the client takes any ticket
				t.Fatal(err)
			}
			if cli.ConnectionState().DidResume {
				t.Errorf("version %x, handshake %d resumed a session", v, i)
			}
			if c.bindingFor(srv) == nil {
				t.Errorf("version %x, handshake %d: no binding", v, i)
			}
			c.forget(srv)
		}
	}
}

// TestCertStoreForgetAnyForm: the server may hold the accepted connection,
// the prefixConn of direct TLS or the *tls.Conn when the session ends.
func TestCertStoreForgetAnyForm(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	ca := newTestCA(t)
	cert1, key1 := ca.issue(t, 1)
	c, _ := newTestCertStore(t, writeTestPair(t, cert1, key1), newFakeClock())
	forms := []struct {
		name string
		of   func(raw net.Conn, prefix *prefixConn, tc *tls.Conn) net.Conn
	}{
		{"accepted connection", func(raw net.Conn, _ *prefixConn, _ *tls.Conn) net.Conn { return raw }},
		{"prefix connection", func(_ net.Conn, prefix *prefixConn, _ *tls.Conn) net.Conn { return prefix }},
		{"tls connection", func(_ net.Conn, _ *prefixConn, tc *tls.Conn) net.Conn { return tc }},
	}
	for _, f := range forms {
		t.Run(f.name, func(t *testing.T) {
			cliRaw, srvRaw := net.Pipe()
			defer cliRaw.Close()
			defer srvRaw.Close()
			prefix := &prefixConn{Conn: srvRaw}
			srv := tls.Server(prefix, c.tlsConfig(true))
			cli := tls.Client(cliRaw, &tls.Config{RootCAs: ca.pool, ServerName: "localhost", NextProtos: []string{"postgresql"}})
			srvErr := make(chan error, 1)
			go func() { srvErr <- srv.Handshake() }()
			if err := errors.Join(cli.Handshake(), <-srvErr); err != nil {
				t.Fatal(err)
			}
			if c.bindingFor(srv) == nil {
				t.Fatal("no binding after the handshake")
			}
			c.forget(f.of(srvRaw, prefix, srv))
			if n := c.connCount(); n != 0 {
				t.Errorf("%d connections remembered after forget", n)
			}
		})
	}
}

// TestCertStoreConcurrent handshakes from several goroutines while the
// files change and Reload runs; under -race this is the store's
// concurrency check. Every connection must bind to what it was shown.
func TestCertStoreConcurrent(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	ca := newTestCA(t)
	type pair struct{ cert, key []byte }
	var pairs []pair
	for i := range 3 {
		cert, key := ca.issue(t, int64(i+1))
		pairs = append(pairs, pair{cert, key})
	}
	p := writeTestPair(t, pairs[0].cert, pairs[0].key)
	clock := newFakeClock()
	c, _ := newTestCertStore(t, p, clock)
	cfg := c.tlsConfig(false)

	const workers, perWorker = 4, 10
	errs := make(chan error, workers*perWorker+1)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for range perWorker {
				cli, srv, err := pipeHandshake(cfg, clientConfig(ca))
				if err != nil {
					errs <- err
					continue
				}
				peer, _ := scram.TLSServerEndPoint(cli.ConnectionState().PeerCertificates[0])
				if got := c.bindingFor(srv); !bytes.Equal(got, peer) {
					errs <- fmt.Errorf("bindingFor = %x, the client saw %x", got, peer)
				}
				c.forget(srv)
				cli.NetConn().Close()
				srv.NetConn().Close()
			}
		})
	}
	swapped := make(chan struct{})
	go func() {
		defer close(swapped)
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			next := pairs[i%len(pairs)]
			if err := p.replaceFiles(next.cert, next.key); err != nil {
				errs <- err
				return
			}
			clock.advance(certCheckInterval)
			if i%2 == 0 {
				c.Reload() // may see a half-replaced pair; that is the point
			}
			time.Sleep(time.Millisecond) // pacing only: leave the handshakes some CPU
		}
	}()
	wg.Wait()
	close(stop)
	<-swapped
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if n := c.connCount(); n != 0 {
		t.Errorf("%d connections remembered after forget", n)
	}
}

// issueRSA is issue with an RSA key.
func (ca *testCA) issueRSA(t *testing.T, serial int64) (certPEM, keyPEM []byte) {
	t.Helper()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(serial),
		Subject:      pkix.Name{CommonName: fmt.Sprintf("gateway %d", serial)},
		DNSNames:     []string{"localhost"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(key)})
}

// TestCertStoreCipherSuites: over TLS 1.2 only ECDHE with an AEAD cipher
// is accepted, with an ECDSA and with an RSA certificate: a client that
// offers only CBC suites with SHA-1 MACs (or any CBC, or RSA key
// exchange) fails the handshake. TLS 1.3 is unchanged.
func TestCertStoreCipherSuites(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	for _, s := range tls12CipherSuites {
		name := tls.CipherSuiteName(s)
		if !strings.HasPrefix(name, "TLS_ECDHE_") || !(strings.Contains(name, "_GCM_") || strings.Contains(name, "CHACHA20_POLY1305")) {
			t.Errorf("TLS 1.2 suite %s is not ECDHE with AEAD", name)
		}
	}
	ca := newTestCA(t)
	ecCert, ecKey := ca.issue(t, 1)
	rsaCert, rsaKey := ca.issueRSA(t, 2)
	for _, kind := range []struct {
		name      string
		cert, key []byte
		aead      []uint16
		weak      []uint16
	}{
		{"ecdsa", ecCert, ecKey,
			[]uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256, tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384, tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305},
			[]uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA, tls.TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA, tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256}},
		{"rsa", rsaCert, rsaKey,
			[]uint16{tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256, tls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384, tls.TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305},
			[]uint16{tls.TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA, tls.TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA, tls.TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA256,
				tls.TLS_RSA_WITH_AES_128_CBC_SHA, tls.TLS_RSA_WITH_AES_128_GCM_SHA256}},
	} {
		c, _ := newTestCertStore(t, writeTestPair(t, kind.cert, kind.key), newFakeClock())
		for _, alpn := range []bool{false, true} {
			srvCfg := c.tlsConfig(alpn)
			handshake := func(maxVersion uint16, suites []uint16) (*tls.Conn, error) {
				cliCfg := clientConfig(ca)
				cliCfg.MaxVersion, cliCfg.CipherSuites = maxVersion, suites
				if alpn {
					cliCfg.NextProtos = []string{"postgresql"}
				}
				cli, srv, err := pipeHandshake(srvCfg, cliCfg)
				if err == nil {
					c.forget(srv)
					cli.NetConn().Close()
					srv.NetConn().Close()
				}
				return cli, err
			}
			for _, s := range kind.weak {
				if _, err := handshake(tls.VersionTLS12, []uint16{s}); err == nil {
					t.Errorf("%s, alpn %v: a TLS 1.2 handshake with only %s succeeded", kind.name, alpn, tls.CipherSuiteName(s))
				}
			}
			for _, s := range kind.aead {
				cli, err := handshake(tls.VersionTLS12, []uint16{s})
				if err != nil {
					t.Errorf("%s, alpn %v: TLS 1.2 with %s: %v", kind.name, alpn, tls.CipherSuiteName(s), err)
					continue
				}
				if st := cli.ConnectionState(); st.Version != tls.VersionTLS12 || st.CipherSuite != s {
					t.Errorf("%s: negotiated %x %s, want TLS 1.2 %s", kind.name, st.Version, tls.CipherSuiteName(st.CipherSuite), tls.CipherSuiteName(s))
				}
			}
			// TLS 1.3 does not use CipherSuites: it still works, with any client.
			cli, err := handshake(tls.VersionTLS13, kind.weak)
			if err != nil || cli.ConnectionState().Version != tls.VersionTLS13 {
				t.Errorf("%s, alpn %v: TLS 1.3: %v", kind.name, alpn, err)
			}
		}
	}
}
