package acme_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/dsqlgate/dsqlgate/config"
	"github.com/dsqlgate/dsqlgate/internal/acme"
)

// TestManagerHTTP01: a Manager with the http-01 challenge, answered on
// http_listen, and a directory storage obtains a certificate from Pebble
// for its domain, hands it to handshakes with and without a server name,
// and a second Manager on the same directory loads it without an order.
func TestManagerHTTP01(t *testing.T) {
	if testing.Short() {
		t.Skip("starts Pebble")
	}
	httpPort := freePorts(t, 1)[0]
	pebble := startPebble(t, time.Hour, httpPort)
	a := pebble.http01ACME(t, "http01.dsqlgate-acme.test")

	core, logs := observer.New(zap.InfoLevel)
	m, err := acme.New(a, acme.Options{Logger: zap.New(core)})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	if got := m.HTTPAddr(); got != a.HTTPListen {
		t.Errorf("HTTPAddr = %q, want %q", got, a.HTTPListen)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := m.Start(ctx); err != nil {
		t.Fatalf("Start: %v", err)
	}
	if n := pebble.Orders(); n != 1 {
		t.Errorf("%d orders, want 1", n)
	}
	for _, name := range []string{a.Domains[0], ""} {
		cert, err := m.GetCertificate(hello(t, name))
		if err != nil {
			t.Fatalf("GetCertificate(%q): %v", name, err)
		}
		leaf, err := x509.ParseCertificate(cert.Certificate[0])
		if err != nil {
			t.Fatal(err)
		}
		if err := leaf.VerifyHostname(a.Domains[0]); err != nil {
			t.Errorf("GetCertificate(%q): %v", name, err)
		}
	}
	if entries, err := os.ReadDir(a.Storage); err != nil || len(entries) == 0 {
		t.Errorf("the storage directory %s holds nothing: %v", a.Storage, err)
	}
	if strings.Contains(logText(logs), "PRIVATE KEY") {
		t.Error("a private key reached the log")
	}
	// Nothing but challenges is served on the http-01 port.
	resp, err := http.Get("http://" + a.HTTPListen + "/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound {
		t.Errorf("GET / on the http-01 port: %s, want 404", resp.Status)
	}

	// Another manager on the same storage loads the certificate.
	a2 := a
	a2.HTTPListen = "127.0.0.1:0"
	m2, err := acme.New(a2, acme.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer m2.Close()
	if err := m2.Start(ctx); err != nil {
		t.Fatalf("second Start: %v", err)
	}
	if n := pebble.NewOrders(); n != 1 {
		t.Errorf("%d orders for a new certificate after a second manager on the same storage, want 1", n)
	}
}

// TestManagerStartGivesUp: Start against a directory that does not answer
// returns, once its context ends, an error that names the domains and the
// directory.
func TestManagerStartGivesUp(t *testing.T) {
	port := freePorts(t, 1)[0] // nothing listens there
	a := config.DefaultACME()
	a.Domains = []string{"nowhere.dsqlgate-acme.test"}
	a.Directory = "https://127.0.0.1:" + strconv.Itoa(port) + "/dir"
	a.DNSProvider = config.ACMEDNSChalltestsrv
	a.ChalltestsrvURL = "http://127.0.0.1:" + strconv.Itoa(port)
	a.Storage = filepath.Join(t.TempDir(), "acme")
	m, err := acme.New(a, acme.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	start := time.Now()
	err = m.Start(ctx)
	if err == nil {
		t.Fatal("Start succeeded without an ACME server")
	}
	if time.Since(start) > 20*time.Second {
		t.Errorf("Start took %s after its context ended", time.Since(start))
	}
	for _, want := range []string{"nowhere.dsqlgate-acme.test", a.Directory} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not name %s", err, want)
		}
	}
	if _, err := m.GetCertificate(hello(t, a.Domains[0])); err == nil {
		t.Error("GetCertificate succeeded without a certificate")
	}
}

// hello is a ClientHello for name on a connection (certmagic logs the
// remote address of a handshake it has no certificate for).
func hello(t *testing.T, name string) *tls.ClientHelloInfo {
	c1, c2 := net.Pipe()
	t.Cleanup(func() { c1.Close(); c2.Close() })
	return &tls.ClientHelloInfo{ServerName: name, Conn: c1}
}

// logText is every logged message and field, for searching.
func logText(logs *observer.ObservedLogs) string {
	var b strings.Builder
	for _, e := range logs.All() {
		fmt.Fprintln(&b, e.Message, e.ContextMap())
	}
	return b.String()
}
