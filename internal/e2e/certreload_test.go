package e2e

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"os"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/dsqlgate/dsqlgate/internal/harness"
	"github.com/dsqlgate/dsqlgate/internal/selfsigned"
)

// TestCertificateReload: when the certificate and key files are replaced
// (renamed over, as ACME clients do), the next handshake after the
// store's once-a-second check presents the new certificate, to a client
// that trusts only the new one, with SCRAM-SHA-256-PLUS bound to it; a
// client that trusts only the old one is refused; and a connection opened
// before keeps working on the old one.
func TestCertificateReload(t *testing.T) {
	ctx := testCtx(t, 2*time.Minute)
	st, err := harness.StartStack(ctx, harness.StackOptions{ClientTLS: true})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	tlsURL := func(root string) string {
		return st.URL("sslmode=verify-full&channel_binding=require&sslrootcert=" + root)
	}
	oldRoot := t.TempDir() + "/old.crt"
	oldPEM, err := os.ReadFile(st.ClientCAFile)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(oldRoot, oldPEM, 0o644); err != nil {
		t.Fatal(err)
	}
	oldCert := presentedCertificate(t, st.Gateway.Addr, clientTLS(t, oldRoot))

	a, err := pgx.Connect(ctx, tlsURL(oldRoot))
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close(ctx)
	queryOne(t, a, "A before the replacement")

	pair, err := selfsigned.Generate([]string{"localhost", "127.0.0.1", "::1"}, time.Now(), 30*24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	replace := func(path string, data []byte, mode os.FileMode) {
		tmp := path + ".new"
		if err := os.WriteFile(tmp, data, mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, path); err != nil {
			t.Fatal(err)
		}
	}
	replace(st.ClientKeyFile, pair.KeyPEM, 0o600)
	replace(st.ClientCAFile, pair.CertPEM, 0o644)
	time.Sleep(1200 * time.Millisecond) // the store looks at the files at most once a second

	var seen *x509.Certificate
	cfg, err := pgx.ParseConfig(tlsURL(st.ClientCAFile)) // the new certificate is the only root
	if err != nil {
		t.Fatal(err)
	}
	cfg.TLSConfig.VerifyConnection = func(cs tls.ConnectionState) error {
		seen = cs.PeerCertificates[0]
		return nil
	}
	b, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		t.Fatalf("B, trusting only the new certificate: %v", err)
	}
	defer b.Close(ctx)
	queryOne(t, b, "B")
	if seen == nil || !bytes.Equal(seen.Raw, pair.Cert.Raw) {
		t.Fatalf("B was shown certificate %s, want the new one %s", fingerprint(seen), fingerprint(pair.Cert))
	}
	if got := presentedCertificate(t, st.Gateway.Addr, clientTLS(t, st.ClientCAFile)); !bytes.Equal(got.Raw, pair.Cert.Raw) || bytes.Equal(got.Raw, oldCert.Raw) {
		t.Fatalf("a raw handshake was shown %s, want the new %s (old %s)", fingerprint(got), fingerprint(pair.Cert), fingerprint(oldCert))
	}
	if c, err := pgx.Connect(ctx, tlsURL(oldRoot)); err == nil {
		c.Close(ctx)
		t.Fatal("a client trusting only the old certificate still connects")
	}

	queryOne(t, a, "A after the replacement")
}

// presentedCertificate makes a TLS handshake with the gateway at addr
// (SSLRequest, then TLS with cfg) and returns the certificate it shows.
func presentedCertificate(t *testing.T, addr string, cfg *tls.Config) *x509.Certificate {
	t.Helper()
	conn := dialRaw(t, addr)
	defer conn.Close()
	tc, err := negotiateTLS(conn, cfg)
	if err != nil {
		t.Fatalf("tls handshake: %v", err)
	}
	return tc.ConnectionState().PeerCertificates[0]
}

// queryOne runs a query on conn, failing the test when it does not work.
func queryOne(t *testing.T, conn *pgx.Conn, who string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var v int
	if err := conn.QueryRow(ctx, "select 41 + 1").Scan(&v); err != nil || v != 42 {
		t.Fatalf("%s: %v", who, err)
	}
}

// fingerprint is a certificate's SHA-256, for messages.
func fingerprint(c *x509.Certificate) string {
	if c == nil {
		return "none"
	}
	sum := sha256.Sum256(c.Raw)
	return hex.EncodeToString(sum[:8])
}
