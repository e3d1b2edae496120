package acme_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/dsqlgate/dsqlgate/config"
	"github.com/dsqlgate/dsqlgate/internal/acme"
	"github.com/dsqlgate/dsqlgate/internal/pgtest"
)

// pebbleVersion is the Pebble (Let's Encrypt's ACME test server) the tests
// build from the module proxy; it is not a dependency of the module.
const pebbleVersion = "v2.10.3"

// pebbleModule is Pebble's module path.
const pebbleModule = "github.com/letsencrypt/pebble/v2"

// pebbleBuild is Pebble's two commands, built once per test binary, and
// its module directory (test/certs holds its HTTPS certificate and the
// minica root that signs it).
type pebbleBuild struct {
	pebble, challtestsrv, moduleDir string
}

var (
	pebbleOnce sync.Once
	pebbleBin  *pebbleBuild
	pebbleErr  error
)

// buildPebble builds pebble and pebble-challtestsrv into a directory of
// its own with `go install ...@version` (outside this module, so go.mod
// does not change), or skips the test when that cannot be done (no module
// proxy).
func buildPebble(t *testing.T) *pebbleBuild {
	t.Helper()
	pebbleOnce.Do(func() {
		dir, err := os.MkdirTemp("", "dsqlgate-pebble-")
		if err != nil {
			pebbleErr = err
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
		defer cancel()
		cmd := exec.CommandContext(ctx, "go", "install",
			pebbleModule+"/cmd/pebble@"+pebbleVersion, pebbleModule+"/cmd/pebble-challtestsrv@"+pebbleVersion)
		cmd.Dir = dir
		cmd.Env = append(os.Environ(), "GOBIN="+dir, "GOFLAGS=-mod=mod", "GOWORK=off")
		if out, err := cmd.CombinedOutput(); err != nil {
			os.RemoveAll(dir)
			pebbleErr = fmt.Errorf("go install pebble %s: %v\n%s", pebbleVersion, err, out)
			return
		}
		cmd = exec.CommandContext(ctx, "go", "mod", "download", "-json", pebbleModule+"@"+pebbleVersion)
		cmd.Dir = dir
		cmd.Env = append(os.Environ(), "GOFLAGS=-mod=mod", "GOWORK=off")
		out, err := cmd.Output()
		if err != nil {
			os.RemoveAll(dir)
			pebbleErr = fmt.Errorf("go mod download pebble %s: %v", pebbleVersion, err)
			return
		}
		var mod struct{ Dir string }
		if err := json.Unmarshal(out, &mod); err != nil || mod.Dir == "" {
			os.RemoveAll(dir)
			pebbleErr = fmt.Errorf("go mod download pebble: no module directory in %q", out)
			return
		}
		pebbleBin = &pebbleBuild{
			pebble:       filepath.Join(dir, "pebble"),
			challtestsrv: filepath.Join(dir, "pebble-challtestsrv"),
			moduleDir:    mod.Dir,
		}
	})
	if pebbleErr != nil {
		t.Skipf("Pebble cannot be built here (no module proxy?), so the ACME tests cannot run: %v", pebbleErr)
	}
	return pebbleBin
}

// pebbleServer is a running Pebble with its challenge test server.
type pebbleServer struct {
	Directory  string // the ACME directory URL
	CAFile     string // the minica root of Pebble's own HTTPS
	ChallURL   string // pebble-challtestsrv's management API
	mgmt       string // Pebble's management API, https://host:port
	httpPort   int    // where Pebble looks for http-01 answers on 127.0.0.1
	httpClient *http.Client
	log        *syncBuffer // Pebble's output
}

// startPebble starts pebble-challtestsrv (DNS only, every name resolving
// to 127.0.0.1) and Pebble, which validates DNS-01 against it (no
// PEBBLE_VA_ALWAYS_VALID) and HTTP-01 by connecting to httpPort on
// 127.0.0.1, issuing certificates valid for validity. Both stop with the
// test.
func startPebble(t *testing.T, validity time.Duration, httpPort int) *pebbleServer {
	t.Helper()
	b := buildPebble(t)
	dir := t.TempDir()
	ports := freePorts(t, 4)
	dnsAddr := "127.0.0.1:" + strconv.Itoa(ports[0])
	chall := "127.0.0.1:" + strconv.Itoa(ports[1])
	acmeAddr := "127.0.0.1:" + strconv.Itoa(ports[2])
	mgmtAddr := "127.0.0.1:" + strconv.Itoa(ports[3])

	challLog := &syncBuffer{}
	startProcess(t, "pebble-challtestsrv", challLog, nil, b.challtestsrv,
		"-dnsserver", dnsAddr, "-management", chall,
		"-http01", "", "-https01", "", "-doh", "", "-tlsalpn01", "", "-defaultIPv6", "")

	certs := filepath.Join(b.moduleDir, "test", "certs")
	cfg := map[string]any{"pebble": map[string]any{
		"listenAddress":                  acmeAddr,
		"managementListenAddress":        mgmtAddr,
		"certificate":                    filepath.Join(certs, "localhost", "cert.pem"),
		"privateKey":                     filepath.Join(certs, "localhost", "key.pem"),
		"httpPort":                       httpPort,
		"tlsPort":                        5001,
		"ocspResponderURL":               "",
		"externalAccountBindingRequired": false,
		"retryAfter":                     map[string]int{"authz": 1, "order": 1},
		"keyAlgorithm":                   "ecdsa",
		"profiles": map[string]any{"default": map[string]any{
			"description":    "short-lived, for renewal tests",
			"validityPeriod": int(validity / time.Second),
		}},
	}}
	cfgFile := filepath.Join(dir, "pebble-config.json")
	data, _ := json.Marshal(cfg)
	if err := os.WriteFile(cfgFile, data, 0o600); err != nil {
		t.Fatal(err)
	}
	p := &pebbleServer{
		Directory: "https://" + acmeAddr + "/dir",
		CAFile:    filepath.Join(certs, "pebble.minica.pem"),
		ChallURL:  "http://" + chall,
		mgmt:      "https://" + mgmtAddr,
		httpPort:  httpPort,
		log:       &syncBuffer{},
	}
	// Nonces are never rejected at random (certmagic would retry, but
	// the test stays quick), no validation sleeps, no authorization reuse
	// (each order is validated through DNS).
	env := []string{"PEBBLE_VA_NOSLEEP=1", "PEBBLE_WFE_NONCEREJECT=0", "PEBBLE_AUTHZREUSE=0"}
	startProcess(t, "pebble", p.log, env, b.pebble, "-config", cfgFile, "-dnsserver", dnsAddr, "-strict=false")

	roots := x509.NewCertPool()
	caPEM, err := os.ReadFile(p.CAFile)
	if err != nil {
		t.Fatal(err)
	}
	roots.AppendCertsFromPEM(caPEM)
	p.httpClient = &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots}}}
	t.Cleanup(p.httpClient.CloseIdleConnections)
	waitFor(t, 30*time.Second, "Pebble's directory", func() error {
		resp, err := p.httpClient.Get(p.Directory)
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return errors.New(resp.Status)
		}
		return nil
	})
	waitFor(t, 10*time.Second, "pebble-challtestsrv", func() error {
		conn, err := net.DialTimeout("tcp", chall, time.Second)
		if err == nil {
			conn.Close()
		}
		return err
	})
	return p
}

// Root returns the root that issues Pebble's certificates (generated at
// each start), from its management API.
func (p *pebbleServer) Root(t *testing.T) *x509.Certificate {
	t.Helper()
	resp, err := p.httpClient.Get(p.mgmt + "/roots/0")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	block, _ := pem.Decode(body)
	if resp.StatusCode != http.StatusOK || block == nil {
		t.Fatalf("Pebble's root: %s %q", resp.Status, body)
	}
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return cert
}

// Orders counts the orders Pebble has received, from its log.
func (p *pebbleServer) Orders() int { return strings.Count(p.log.String(), "Added order ") }

// replacementRE is Pebble's log line for an order that renews a
// certificate (ARI's "replaces"): the new order, then the one it replaces.
var replacementRE = regexp.MustCompile(`ARI: order "([^"]+)" is a replacement of "([^"]+)"`)

// NewOrders counts the orders that renew nothing: a first certificate.
// (Pebble's ARI window spans the whole validity of a short certificate,
// so certmagic may renew at any moment; renewals name what they replace.)
func (p *pebbleServer) NewOrders() int {
	return p.Orders() - len(replacementRE.FindAllString(p.log.String(), -1))
}

// ReplacedTwice returns the orders that more than one renewal replaced:
// two replicas renewing the same certificate.
func (p *pebbleServer) ReplacedTwice() []string {
	seen := map[string]int{}
	var twice []string
	for _, m := range replacementRE.FindAllStringSubmatch(p.log.String(), -1) {
		if seen[m[2]]++; seen[m[2]] == 2 {
			twice = append(twice, m[2])
		}
	}
	return twice
}

// Issued counts the certificates Pebble has issued, from its log.
func (p *pebbleServer) Issued() int {
	return strings.Count(p.log.String(), "Issued certificate serial ")
}

// startProcess starts a program whose output goes to out, and stops it
// (SIGKILL, then wait) when the test ends.
func startProcess(t *testing.T, name string, out io.Writer, env []string, path string, args ...string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(path, args...)
	cmd.Stdout, cmd.Stderr = out, out
	cmd.Env = append(os.Environ(), env...)
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
	})
	return cmd
}

// freePorts returns n distinct loopback ports that were free a moment ago.
func freePorts(t *testing.T, n int) []int {
	t.Helper()
	seen := map[int]bool{}
	var ports []int
	for len(ports) < n {
		p, err := pgtest.FreePort()
		if err != nil {
			t.Fatal(err)
		}
		if !seen[p] {
			seen[p] = true
			ports = append(ports, p)
		}
	}
	return ports
}

// waitFor polls check until it succeeds, failing the test after d.
func waitFor(t *testing.T, d time.Duration, what string, check func() error) {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		err := check()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s not ready after %s: %v", what, d, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// syncBuffer is a buffer safe for concurrent writers.
type syncBuffer = pgtest.SyncBuffer

// http01ACME is an ACME configuration for domain that this Pebble
// validates over http-01 (the manager answers on the port Pebble
// connects to), with a storage directory of the test's own.
func (p *pebbleServer) http01ACME(t *testing.T, domain string) config.ACME {
	a := config.DefaultACME()
	a.Domains = []string{domain}
	a.Directory = p.Directory
	a.CAFile = p.CAFile
	a.Challenge = config.ACMEChallengeHTTP01
	a.HTTPListen = "127.0.0.1:" + strconv.Itoa(p.httpPort)
	a.Storage = filepath.Join(t.TempDir(), "acme")
	return a
}

// managerWithoutCluster is a Manager for a with a route: storage whose
// every dial fails, and the count of those dials: for the tests that
// prove a request never reaches the storage.
func managerWithoutCluster(t *testing.T, a config.ACME) (*acme.Manager, *atomic.Int64) {
	t.Helper()
	var dials atomic.Int64
	a.Storage = "route:app"
	m, err := acme.New(a, acme.Options{Dial: func(ctx context.Context) (*pgconn.PgConn, error) {
		dials.Add(1)
		return nil, errors.New("no cluster here")
	}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(m.Close)
	return m, &dials
}
