package main

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// runCLI runs the command line args as main does and returns the exit
// code and what went to standard output and standard error.
func runCLI(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errOut bytes.Buffer
	code = execute(args, streams{in: strings.NewReader(""), out: &out, err: &errOut})
	return code, out.String(), errOut.String()
}

// loadPair loads the pair the command wrote and checks what every pair
// must be: a self-signed ECDSA P-256 server certificate, a key file only
// its owner can read.
func loadPair(t *testing.T, certFile, keyFile string) *x509.Certificate {
	t.Helper()
	pair, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		t.Fatalf("load the pair: %v", err)
	}
	leaf := pair.Leaf
	if pub, ok := leaf.PublicKey.(*ecdsa.PublicKey); !ok || pub.Curve != elliptic.P256() {
		t.Errorf("public key %T, want ECDSA P-256", leaf.PublicKey)
	}
	if leaf.SerialNumber.Sign() <= 0 || leaf.SerialNumber.BitLen() < 64 {
		t.Errorf("serial %v, want a large random positive number", leaf.SerialNumber)
	}
	if leaf.KeyUsage != x509.KeyUsageDigitalSignature {
		t.Errorf("key usage %v, want digital signature", leaf.KeyUsage)
	}
	if diff := cmp.Diff([]x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, leaf.ExtKeyUsage); diff != "" {
		t.Errorf("extended key usage (-want +got):\n%s", diff)
	}
	if leaf.IsCA {
		t.Error("the certificate is a CA")
	}
	// CheckSignatureFrom wants a CA as the parent; this is a leaf that signs itself.
	if err := leaf.CheckSignature(leaf.SignatureAlgorithm, leaf.RawTBSCertificate, leaf.Signature); err != nil ||
		!bytes.Equal(leaf.RawIssuer, leaf.RawSubject) {
		t.Errorf("not self-signed: %v", err)
	}
	fi, err := os.Stat(keyFile)
	if err != nil {
		t.Fatal(err)
	}
	if mode := fi.Mode().Perm(); mode != 0o600 {
		t.Errorf("key file mode %o, want 600", mode)
	}
	return leaf
}

func ipStrings(ips []net.IP) []string {
	var s []string
	for _, ip := range ips {
		s = append(s, ip.String())
	}
	return s
}

func TestCertCommand(t *testing.T) {
	cases := []struct {
		name     string
		args     []string // after "cert"; files are relative to a new directory
		certFile string
		keyFile  string
		dnsNames []string
		ips      []string
		days     int
	}{
		{
			name:     "defaults",
			certFile: "dsqlgate.crt", keyFile: "dsqlgate.key",
			dnsNames: []string{"localhost"}, ips: []string{"127.0.0.1", "::1"}, days: 365,
		},
		{
			name:     "hosts, days and file names",
			args:     []string{"--host", "db.example.test", "--host", "10.1.2.3", "--host", "gw.example.test,fd00::5", "--days", "30", "--cert-file", "tls/gw.pem", "--key-file", "tls/gw-key.pem"},
			certFile: "tls/gw.pem", keyFile: "tls/gw-key.pem",
			dnsNames: []string{"db.example.test", "gw.example.test"}, ips: []string{"10.1.2.3", "fd00::5"}, days: 30,
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			t.Chdir(dir)
			if err := os.Mkdir("tls", 0o755); err != nil {
				t.Fatal(err)
			}
			before := time.Now()
			code, stdout, stderr := runCLI(t, append([]string{"cert"}, tc.args...)...)
			if code != 0 {
				t.Fatalf("exit code %d; stderr:\n%s", code, stderr)
			}
			leaf := loadPair(t, tc.certFile, tc.keyFile)
			if diff := cmp.Diff(tc.dnsNames, leaf.DNSNames); diff != "" {
				t.Errorf("DNS SANs (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tc.ips, ipStrings(leaf.IPAddresses)); diff != "" {
				t.Errorf("IP SANs (-want +got):\n%s", diff)
			}
			validity := time.Duration(tc.days) * 24 * time.Hour
			if leaf.NotBefore.After(before) || leaf.NotAfter.Before(before.Add(validity).Truncate(time.Second)) ||
				leaf.NotAfter.After(time.Now().Add(validity)) {
				t.Errorf("valid from %v to %v, want from before %v for %d days", leaf.NotBefore, leaf.NotAfter, before, tc.days)
			}
			roots := x509.NewCertPool()
			roots.AddCert(leaf)
			for _, host := range append(tc.dnsNames, tc.ips...) {
				if _, err := leaf.Verify(x509.VerifyOptions{DNSName: host, Roots: roots}); err != nil {
					t.Errorf("a client trusting the certificate refuses it for %s: %v", host, err)
				}
			}

			sum := sha256.Sum256(leaf.Raw)
			fingerprint := strings.ReplaceAll(fmt.Sprintf("% X", sum[:]), " ", ":")
			certPath, keyPath := filepath.Join(dir, tc.certFile), filepath.Join(dir, tc.keyFile)
			for _, want := range []string{
				certPath, keyPath, fingerprint,
				"client_tls: {cert_file: " + strconv.Quote(certPath) + ", key_file: " + strconv.Quote(keyPath) + "}",
			} {
				if !strings.Contains(stdout, want) {
					t.Errorf("output lacks %q:\n%s", want, stdout)
				}
			}
			if strings.Contains(stdout, "PRIVATE KEY") {
				t.Errorf("output holds the key:\n%s", stdout)
			}
			entries, err := os.ReadDir(filepath.Dir(certPath))
			if err != nil {
				t.Fatal(err)
			}
			for _, e := range entries {
				if strings.HasPrefix(e.Name(), ".") {
					t.Errorf("temporary file %s left behind", e.Name())
				}
			}
		})
	}
}

func TestCertCommandOverwrite(t *testing.T) {
	t.Chdir(t.TempDir())
	if code, _, stderr := runCLI(t, "cert"); code != 0 {
		t.Fatalf("first run: exit code %d: %s", code, stderr)
	}
	first := loadPair(t, "dsqlgate.crt", "dsqlgate.key")
	firstKey, err := os.ReadFile("dsqlgate.key")
	if err != nil {
		t.Fatal(err)
	}

	code, _, stderr := runCLI(t, "cert")
	if code == 0 || !strings.Contains(stderr, "--force") {
		t.Errorf("second run without --force: exit code %d, stderr %q; want a refusal naming --force", code, stderr)
	}
	if got := loadPair(t, "dsqlgate.crt", "dsqlgate.key"); !got.Equal(first) {
		t.Error("a refused run changed the certificate")
	}

	// Only the key exists (a certificate deleted by hand): still refused,
	// and no certificate for some other key appears.
	if err := os.Remove("dsqlgate.crt"); err != nil {
		t.Fatal(err)
	}
	if code, _, _ := runCLI(t, "cert"); code == 0 {
		t.Error("run with an existing key file succeeded without --force")
	}
	if _, err := os.Stat("dsqlgate.crt"); err == nil {
		t.Error("a refused run wrote the certificate")
	}
	if key, _ := os.ReadFile("dsqlgate.key"); !bytes.Equal(key, firstKey) {
		t.Error("a refused run changed the key")
	}

	// --force replaces both, and a key file left readable by others
	// becomes 0600 again.
	if err := os.Chmod("dsqlgate.key", 0o644); err != nil {
		t.Fatal(err)
	}
	if code, _, stderr := runCLI(t, "cert", "--force"); code != 0 {
		t.Fatalf("run with --force: exit code %d: %s", code, stderr)
	}
	second := loadPair(t, "dsqlgate.crt", "dsqlgate.key") // checks the mode
	if second.Equal(first) || second.SerialNumber.Cmp(first.SerialNumber) == 0 {
		t.Error("--force kept the old certificate")
	}
}

func TestCertCommandBadArguments(t *testing.T) {
	cases := []struct {
		name string
		args []string
	}{
		{"zero days", []string{"--days", "0"}},
		{"negative days", []string{"--days", "-3"}},
		{"centuries", []string{"--days", "99999999"}},
		{"empty host", []string{"--host", ""}},
		{"same file for both", []string{"--cert-file", "x.pem", "--key-file", "./x.pem"}},
		{"positional argument", []string{"localhost"}},
		{"missing directory", []string{"--cert-file", "nowhere/x.crt", "--key-file", "nowhere/x.key"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Chdir(t.TempDir())
			code, stdout, stderr := runCLI(t, append([]string{"cert"}, tc.args...)...)
			if code == 0 {
				t.Fatalf("exit code 0, want an error; stdout:\n%s", stdout)
			}
			if stderr == "" {
				t.Error("no error message")
			}
			entries, err := os.ReadDir(".")
			if err != nil {
				t.Fatal(err)
			}
			if len(entries) != 0 {
				t.Errorf("files written: %v", entries)
			}
		})
	}
}
