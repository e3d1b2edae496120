package acme_test

import (
	"context"
	"crypto/tls"
	"net"
	"testing"
	"time"

	"github.com/dsqlgate/dsqlgate/config"
)

// TestGetCertificateIgnoresTLSALPN: TLS-ALPN-01 is off, so a ClientHello
// offering only "acme-tls/1" (which any client can send on the
// SSLRequest path, where the gateway's TLS config names no ALPN protocol)
// must not make the handshake look for a challenge in the storage: with a
// route: storage each such handshake would be a statement on the
// storage's one connection to the cluster, queued before the renewals and
// the lock extensions, for whatever server name the client chose.
func TestGetCertificateIgnoresTLSALPN(t *testing.T) {
	a := config.DefaultACME()
	a.Domains = []string{"db.dsqlgate-acme.test"}
	m, dials := managerWithoutCluster(t, a)
	for _, name := range []string{"db.dsqlgate-acme.test", "attacker-chosen.example"} {
		// A real handshake (the ClientHello has its context), as on the
		// SSLRequest path: the server's config names no ALPN protocol.
		c1, c2 := net.Pipe()
		srv := tls.Server(c1, &tls.Config{GetCertificate: m.GetCertificate})
		cli := tls.Client(c2, &tls.Config{ServerName: name, NextProtos: []string{"acme-tls/1"}, InsecureSkipVerify: true})
		done := make(chan error, 1)
		go func() { done <- cli.Handshake(); c2.Close() }()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		srv.HandshakeContext(ctx)
		cancel()
		c1.Close()
		if err := <-done; err == nil {
			t.Errorf("%s: an acme-tls/1 handshake succeeded (a TLS-ALPN challenge certificate was served)", name)
		}
	}
	if n := dials.Load(); n != 0 {
		t.Errorf("acme-tls/1 handshakes reached the storage (%d dials)", n)
	}
}
