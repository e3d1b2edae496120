package acme_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/dsqlgate/dsqlgate/internal/harness"
	"github.com/dsqlgate/dsqlgate/internal/scram"
)

// acmeDomain is the name the test's certificates are for; only Pebble's
// test DNS server knows it.
const acmeDomain = "db.dsqlgate-acme.test"

// certValidity is how long Pebble's certificates last in the test: short
// enough that certmagic renews one (in its last third) while the test runs.
const certValidity = 45 * time.Second

// replica is one dsqlgate process.
type replica struct {
	name        string
	addr, admin string // the client listener and the metrics/health listener
	cfgFile     string
	log         *syncBuffer
	cmd         *exec.Cmd
	exited      chan struct{} // closed once the process has exited
}

// TestReplicasShareOneCertificate runs two dsqlgate processes (built from
// cmd/dsqlgate once here) in front of one DSQL emulator with client_tls.acme
// against Pebble, DNS-01 through pebble-challtestsrv, and storage
// route:postgres, the emulated cluster itself. It checks that:
//
//   - the two replicas, started together, placed exactly one order for a
//     new certificate and serve the same certificate;
//   - a client that trusts only Pebble's issuing root verifies that
//     certificate for the domain (verify-full: chain and name) and logs in
//     with SCRAM-SHA-256-PLUS bound to it (pgx, and psql with libpq);
//   - the short-lived certificate is renewed while a session is open: a
//     new connection sees a new serial, both replicas serve the renewed
//     certificate, no certificate was renewed twice (Pebble logs which
//     certificate each renewal order replaces), and the old session still
//     runs queries.
func TestReplicasShareOneCertificate(t *testing.T) {
	if testing.Short() {
		t.Skip("starts Pebble, PostgreSQL, the emulator and two gateway processes")
	}
	pebble := startPebble(t, certValidity, 5002) // no HTTP-01 here
	bin := buildGateway(t)

	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	st, err := harness.StartStack(ctx, harness.StackOptions{})
	if err != nil {
		t.Fatalf("start the emulator stack: %v", err)
	}
	t.Cleanup(st.Close)

	verifier, err := scram.GenerateVerifier(st.Password)
	if err != nil {
		t.Fatal(err)
	}
	env := []string{
		"ACME_TEST_VERIFIER=" + verifier.Encode(),
		"AWS_ACCESS_KEY_ID=" + st.Credentials.AccessKeyID,
		"AWS_SECRET_ACCESS_KEY=" + st.Credentials.SecretAccessKey,
		"AWS_REGION=" + harness.StackRegion,
		"AWS_EC2_METADATA_DISABLED=true",
		"AWS_CONFIG_FILE=" + filepath.Join(t.TempDir(), "none"),
		"AWS_SHARED_CREDENTIALS_FILE=" + filepath.Join(t.TempDir(), "none"),
	}
	var replicas []*replica
	for _, name := range []string{"a", "b"} {
		replicas = append(replicas, startReplica(t, bin, name, env, st, pebble))
	}
	for _, r := range replicas {
		r.waitReady(t, 2*time.Minute)
	}

	if n := pebble.NewOrders(); n != 1 {
		t.Errorf("the two replicas placed %d orders for a new certificate, want 1 (one shared certificate)\n%s", n, logsOf(replicas))
	}
	first := sameCert(t, replicas)
	t.Logf("both replicas serve serial %s, valid %s to %s", first.SerialNumber, first.NotBefore, first.NotAfter)

	root := pebble.Root(t)
	roots := x509.NewCertPool()
	roots.AddCert(root)
	rootFile := filepath.Join(t.TempDir(), "root.pem")
	if err := os.WriteFile(rootFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: root.Raw}), 0o600); err != nil {
		t.Fatal(err)
	}

	// A session open across the renewal, verified and bound to the
	// certificate it saw.
	session, serial := connectVerified(t, ctx, replicas[0].addr, st, roots)
	psqlVerified(t, st, replicas[1].addr, rootFile)
	// A client that trusts Pebble's root but asks for another name is
	// refused by its own verification.
	if _, err := tryConnect(ctx, replicas[1].addr, st, roots, "other.dsqlgate-acme.test"); err == nil ||
		!strings.Contains(err.Error(), "certificate") {
		t.Errorf("a client expecting another name connected or failed otherwise: %v", err)
	}

	// Renewal, by certmagic's maintenance (every renew_check_interval):
	// Pebble's renewal window spans the whole validity of so short a
	// certificate, so it comes at any moment before the end.
	waitFor(t, certValidity+30*time.Second, "a renewed certificate on replica a", func() error {
		if c := servedCert(t, replicas[0].addr); c.SerialNumber.String() == serial {
			return fmt.Errorf("still serial %s", c.SerialNumber)
		}
		return nil
	})
	renewed := sameCert(t, replicas)
	t.Logf("renewed: serial %s, valid %s to %s; %d orders in all", renewed.SerialNumber, renewed.NotBefore, renewed.NotAfter, pebble.Orders())
	if n := pebble.NewOrders(); n != 1 {
		t.Errorf("%d orders for a new certificate, want 1: every later order renews it\n%s", n, logsOf(replicas))
	}
	if twice := pebble.ReplacedTwice(); len(twice) > 0 {
		t.Errorf("certificates renewed twice (by both replicas): orders %q\n%s", twice, logsOf(replicas))
	}
	if !renewed.NotAfter.After(first.NotAfter) {
		t.Errorf("the renewed certificate ends %s, not after the first (%s)", renewed.NotAfter, first.NotAfter)
	}
	// The expiry gauge follows the renewal, so an alert on it sees a
	// renewal that keeps failing.
	const expiry = "dsqlgate_client_tls_certificate_expiry_timestamp_seconds"
	if got, ok := harness.Scrape(t, replicas[0].admin)[expiry]; !ok || int64(got) != renewed.NotAfter.Unix() {
		t.Errorf("%s = %v (present %v), want the renewed certificate's %d", expiry, got, ok, renewed.NotAfter.Unix())
	}

	var one int
	if err := session.QueryRow(ctx, "select 1").Scan(&one); err != nil || one != 1 {
		t.Errorf("the session opened before the renewal: select 1 = %d, %v", one, err)
	}
	// The storage's tables hold the private key, on the cluster the
	// clients use with the same role: out of their reach.
	for _, sql := range []string{"select key, value from acme_certs", "delete from acme_certs_locks"} {
		var pgErr *pgconn.PgError
		if _, err := session.Exec(ctx, sql); !errors.As(err, &pgErr) || pgErr.Code != "42501" {
			t.Errorf("a client ran %q through the gateway: %v, want 42501", sql, err)
		}
	}
	fresh, freshSerial := connectVerified(t, ctx, replicas[1].addr, st, roots)
	if freshSerial == serial {
		t.Errorf("a new connection saw serial %s, the old session's, after the renewal", freshSerial)
	}
	if err := fresh.QueryRow(ctx, "select 1").Scan(&one); err != nil {
		t.Errorf("select on a new connection: %v", err)
	}
	reloadRefused(t, replicas[1])
	for _, r := range replicas {
		if strings.Contains(r.log.String(), st.Password) {
			t.Errorf("replica %s logged the password", r.name)
		}
		if strings.Contains(r.log.String(), "PRIVATE KEY") {
			t.Errorf("replica %s logged a private key", r.name)
		}
	}
}

// sameCert waits until every replica serves the same certificate, and
// returns it: a replica learns of another's renewal when its own copy's
// renewal time comes and it finds the new one in the storage.
func sameCert(t *testing.T, replicas []*replica) *x509.Certificate {
	t.Helper()
	var cert *x509.Certificate
	waitFor(t, 30*time.Second, "the same certificate on every replica", func() error {
		cert = servedCert(t, replicas[0].addr)
		for _, r := range replicas[1:] {
			if c := servedCert(t, r.addr); !c.Equal(cert) {
				return fmt.Errorf("replica %s serves serial %s, replica %s %s", replicas[0].name, cert.SerialNumber, r.name, c.SerialNumber)
			}
		}
		return nil
	})
	return cert
}

// reloadRefused checks SIGHUP on r: a reload that leaves client_tls.acme
// as it is goes through, one that changes it is refused as needing a
// restart, and the replica keeps serving.
func reloadRefused(t *testing.T, r *replica) {
	t.Helper()
	hup := func(marker string) {
		t.Helper()
		before := strings.Count(r.log.String(), marker)
		if err := r.cmd.Process.Signal(syscall.SIGHUP); err != nil {
			t.Fatal(err)
		}
		waitFor(t, 20*time.Second, "the reload's log line "+strconv.Quote(marker), func() error {
			if strings.Count(r.log.String(), marker) == before {
				return errors.New("not logged yet")
			}
			return nil
		})
	}
	hup("reloaded")
	doc, err := os.ReadFile(r.cfgFile)
	if err != nil {
		t.Fatal(err)
	}
	changed := strings.Replace(string(doc), "renew_check_interval: 1s", "renew_check_interval: 2s", 1)
	if err := os.WriteFile(r.cfgFile, []byte(changed), 0o600); err != nil {
		t.Fatal(err)
	}
	hup("client_tls.acme changed: ACME settings need a restart")
	servedCert(t, r.addr)
}

// buildGateway builds cmd/dsqlgate into a temporary directory.
func buildGateway(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "dsqlgate")
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "go", "build", "-o", bin, "./cmd/dsqlgate")
	cmd.Dir = harness.ModuleRootOf(t)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build dsqlgate: %v\n%s", err, out)
	}
	return bin
}

// startReplica writes a configuration for one replica and starts
// `dsqlgate serve` with it, in a working directory of its own.
func startReplica(t *testing.T, bin, name string, env []string, st *harness.Stack, p *pebbleServer) *replica {
	t.Helper()
	ports := freePorts(t, 2)
	r := &replica{
		name:  name,
		addr:  "127.0.0.1:" + strconv.Itoa(ports[0]),
		admin: "127.0.0.1:" + strconv.Itoa(ports[1]),
		log:   &syncBuffer{},
	}
	dir := t.TempDir()
	doc := fmt.Sprintf(`listen: %s
log: {level: info, format: json}
metrics: {listen: %s}
client_tls:
  mode: require
  acme:
    domains: [%s]
    email: ops@dsqlgate-acme.test
    directory: %s
    ca_file: %s
    challenge: dns-01
    dns_provider: pebble-challtestsrv
    challtestsrv_url: %s
    storage: route:%s
    storage_table: acme_certs
    renew_check_interval: 1s
users:
  - name: %s
    verifier_env: ACME_TEST_VERIFIER
routes:
  - database: %s
    endpoint: %s
    dial_address: %s
    ca_file: %s
`, r.addr, r.admin, acmeDomain, p.Directory, p.CAFile, p.ChallURL, harness.StackDatabase,
		st.User, harness.StackDatabase, harness.StackHost, st.Emulator.Addr(), st.CAFile)
	cfgFile := filepath.Join(dir, "dsqlgate.yaml")
	r.cfgFile = cfgFile
	if err := os.WriteFile(cfgFile, []byte(doc), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "serve", "--config", cfgFile)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdout, cmd.Stderr = r.log, r.log
	if err := cmd.Start(); err != nil {
		t.Fatalf("start replica %s: %v", name, err)
	}
	r.cmd = cmd
	r.exited = make(chan struct{})
	go func() { cmd.Wait(); close(r.exited) }()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-r.exited
		if t.Failed() {
			t.Logf("replica %s log:\n%s", name, tail(r.log.String(), 12000))
		}
	})
	return r
}

// waitReady waits for the replica's /readyz, failing with its log when it
// exits or takes longer than d.
func (r *replica) waitReady(t *testing.T, d time.Duration) {
	t.Helper()
	client := &http.Client{Timeout: time.Second}
	deadline := time.Now().Add(d)
	for {
		select {
		case <-r.exited:
			t.Fatalf("replica %s exited: %s\n%s", r.name, r.cmd.ProcessState, tail(r.log.String(), 8000))
		default:
		}
		resp, err := client.Get("http://" + r.admin + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("replica %s not ready after %s (last: %v)\n%s", r.name, d, err, tail(r.log.String(), 8000))
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// servedCert is the certificate a replica presents now, from a direct TLS
// handshake (ALPN postgresql) that verifies nothing.
func servedCert(t *testing.T, addr string) *x509.Certificate {
	t.Helper()
	d := &net.Dialer{Timeout: 5 * time.Second}
	conn, err := tls.DialWithDialer(d, "tcp", addr, &tls.Config{
		InsecureSkipVerify: true, ServerName: acmeDomain, NextProtos: []string{"postgresql"},
	})
	if err != nil {
		t.Fatalf("TLS handshake with %s: %v", addr, err)
	}
	defer conn.Close()
	return conn.ConnectionState().PeerCertificates[0]
}

// connectVerified logs in through addr as the stack's user, trusting only
// roots and expecting the domain's certificate, with SCRAM-SHA-256-PLUS
// required; it returns the connection (closed with the test) and the
// serial of the certificate it verified.
func connectVerified(t *testing.T, ctx context.Context, addr string, st *harness.Stack, roots *x509.CertPool) (*pgx.Conn, string) {
	t.Helper()
	conn, err := tryConnect(ctx, addr, st, roots, acmeDomain)
	if err != nil {
		t.Fatalf("verified login through %s: %v", addr, err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	tc, ok := conn.PgConn().Conn().(*tls.Conn)
	if !ok {
		t.Fatalf("connection through %s is not TLS (%T)", addr, conn.PgConn().Conn())
	}
	return conn, tc.ConnectionState().PeerCertificates[0].SerialNumber.String()
}

// tryConnect is connectVerified's login, expecting serverName.
func tryConnect(ctx context.Context, addr string, st *harness.Stack, roots *x509.CertPool, serverName string) (*pgx.Conn, error) {
	u := url.URL{Scheme: "postgres", User: url.UserPassword(st.User, st.Password), Host: addr, Path: "/" + harness.StackDatabase,
		RawQuery: "sslmode=require&channel_binding=require&connect_timeout=10"}
	cfg, err := pgx.ParseConfig(u.String())
	if err != nil {
		return nil, err
	}
	// verify-full: the chain up to roots only, and the name.
	cfg.TLSConfig = &tls.Config{RootCAs: roots, ServerName: serverName, MinVersion: tls.VersionTLS12}
	cfg.Fallbacks = nil
	return pgx.ConnectConfig(ctx, cfg)
}

// psqlVerified logs in with psql (libpq) with sslmode=verify-full against
// the domain's name (hostaddr gives the address), trusting only rootFile,
// with channel binding required.
func psqlVerified(t *testing.T, st *harness.Stack, addr, rootFile string) {
	t.Helper()
	host, port, _ := net.SplitHostPort(addr)
	conninfo := fmt.Sprintf("host=%s hostaddr=%s port=%s dbname=%s user=%s sslmode=verify-full sslrootcert=%s channel_binding=require connect_timeout=10",
		acmeDomain, host, port, harness.StackDatabase, st.User, rootFile)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, filepath.Join(st.PG.BinDir(), "psql"), "-X", "-At", "-d", conninfo, "-c", "select 42")
	cmd.Env = append(os.Environ(), "PGPASSWORD="+st.Password)
	out, err := cmd.CombinedOutput()
	if err != nil || strings.TrimSpace(string(out)) != "42" {
		t.Fatalf("psql verify-full through %s: %v\n%s", addr, err, out)
	}
}

// logsOf is the tail of every replica's log, for a failure message.
func logsOf(rs []*replica) string {
	var b strings.Builder
	for _, r := range rs {
		fmt.Fprintf(&b, "--- replica %s ---\n%s\n", r.name, tail(r.log.String(), 6000))
	}
	return b.String()
}

// tail is the last n bytes of s.
func tail(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return "..." + s[len(s)-n:]
}
