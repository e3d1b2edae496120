package pgwire

import (
	"bytes"
	"crypto/tls"
	"errors"
	"sync/atomic"
	"testing"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"
)

// swapSource is a CertificateSource whose certificate the test replaces,
// as ACME's renewal does.
type swapSource struct {
	cert atomic.Pointer[tls.Certificate]
}

func (s *swapSource) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	if c := s.cert.Load(); c != nil {
		cp := *c // a copy each time, as certmagic hands out
		return &cp, nil
	}
	return nil, errors.New("no certificate yet")
}

func (s *swapSource) set(t *testing.T, certPEM, keyPEM []byte) {
	t.Helper()
	c, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	s.cert.Store(&c)
}

// TestCertStoreSource: with a certificate source (ACME), each handshake
// presents the source's certificate of the moment, the channel binding
// of each connection is that of the certificate it saw, also after the
// source renewed it, and a new certificate is logged once.
func TestCertStoreSource(t *testing.T) {
	ca := newTestCA(t)
	cert1, key1 := ca.issue(t, 1)
	cert2, key2 := ca.issue(t, 2)
	src := &swapSource{}
	core, logs := observer.New(zap.InfoLevel)
	c := newSourceCertStore(src, nil, zap.New(core))
	cliCfg := &tls.Config{RootCAs: ca.pool, ServerName: "localhost", NextProtos: []string{"postgresql"}}

	if _, _, err := pipeHandshake(c.tlsConfig(true), cliCfg); err == nil {
		t.Fatal("a handshake succeeded before the source had a certificate")
	}
	if err := c.Reload(); err != nil {
		t.Errorf("Reload of a source store = %v, want nil", err)
	}

	src.set(t, cert1, key1)
	cli1, srv1 := mustHandshake(t, c.tlsConfig(true), cliCfg)
	cli1b, srv1b := mustHandshake(t, c.tlsConfig(false), cliCfg)
	if peerSerial(cli1) != 1 || peerSerial(cli1b) != 1 {
		t.Fatalf("serials %d, %d, want 1", peerSerial(cli1), peerSerial(cli1b))
	}
	src.set(t, cert2, key2) // renewed
	cli2, srv2 := mustHandshake(t, c.tlsConfig(true), cliCfg)
	if got := peerSerial(cli2); got != 2 {
		t.Fatalf("serial after renewal %d, want 2", got)
	}
	for _, conn := range []struct {
		name     string
		cli, srv *tls.Conn
	}{{"first", cli1, srv1}, {"second on the first certificate", cli1b, srv1b}, {"after renewal", cli2, srv2}} {
		if got, want := c.bindingFor(conn.srv), peerBinding(t, conn.cli); got == nil || !bytes.Equal(got, want) {
			t.Errorf("%s: bindingFor = %x, want %x (the certificate it saw)", conn.name, got, want)
		}
		if err := echo(conn.cli, conn.srv); err != nil {
			t.Errorf("%s: established connection broken: %v", conn.name, err)
		}
		c.forget(conn.srv)
	}
	if n := c.connCount(); n != 0 {
		t.Errorf("%d connections remembered after forget", n)
	}
	if n := logs.FilterMessage("client tls certificate loaded").Len(); n != 2 {
		t.Errorf("%d certificates logged as loaded, want 2 (one per certificate, not per handshake)", n)
	}
}

// sniSource is a CertificateSource with one certificate per server name,
// as certmagic keeps one per configured domain.
type sniSource struct {
	certs map[string]*tls.Certificate
}

func (s *sniSource) GetCertificate(h *tls.ClientHelloInfo) (*tls.Certificate, error) {
	if c := s.certs[h.ServerName]; c != nil {
		cp := *c
		return &cp, nil
	}
	return nil, errors.New("no certificate for " + h.ServerName)
}

// TestCertStoreSourceDomains: with several domains (certmagic orders one
// certificate per domain), handshakes that alternate between their names
// present each its own certificate, bound correctly, and each certificate
// is parsed and logged once, not at every change of name: a client must
// not be able to make every handshake log a line.
func TestCertStoreSourceDomains(t *testing.T) {
	ca := newTestCA(t)
	src := &sniSource{certs: map[string]*tls.Certificate{}}
	for i, name := range []string{"localhost", "other.localhost"} {
		certPEM, keyPEM := ca.issue(t, int64(i+1))
		c, err := tls.X509KeyPair(certPEM, keyPEM)
		if err != nil {
			t.Fatal(err)
		}
		src.certs[name] = &c
	}
	core, logs := observer.New(zap.InfoLevel)
	c := newSourceCertStore(src, nil, zap.New(core))
	for i := range 20 {
		name := []string{"localhost", "other.localhost"}[i%2]
		cli, srv := mustHandshake(t, c.tlsConfig(true), &tls.Config{RootCAs: ca.pool, ServerName: name, NextProtos: []string{"postgresql"}, InsecureSkipVerify: true})
		if got, want := c.bindingFor(srv), peerBinding(t, cli); got == nil || !bytes.Equal(got, want) {
			t.Errorf("handshake %d (%s): bindingFor = %x, want %x", i, name, got, want)
		}
		c.forget(srv)
	}
	if n := logs.FilterMessage("client tls certificate loaded").Len(); n != 2 {
		t.Errorf("%d certificates logged as loaded over 20 handshakes, want 2 (one per certificate)", n)
	}
}
