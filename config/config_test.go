package config_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"io/fs"
	"math/big"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/dsqlgate/dsqlgate/config"
)

// ignoreResolved leaves out the unexported fields: resolved secrets and
// the key-to-line map.
var ignoreResolved = cmpopts.IgnoreUnexported(config.Config{}, config.User{}, config.Route{})

// testVerifier is a syntactically valid SCRAM-SHA-256 verifier.
var testVerifier = makeVerifier("salt-0123456789", "stored", "server")

func makeVerifier(salt, stored, server string) string {
	b64 := base64.StdEncoding.EncodeToString
	sk, svk := sha256.Sum256([]byte(stored)), sha256.Sum256([]byte(server))
	return "SCRAM-SHA-256$4096:" + b64([]byte(salt)) + "$" + b64(sk[:]) + ":" + b64(svk[:])
}

// asValidation returns the problems in err, failing the test if err is not
// a *config.ValidationError.
func asValidation(t *testing.T, err error) []config.Problem {
	t.Helper()
	var ve *config.ValidationError
	if !errors.As(err, &ve) {
		t.Fatalf("error %v (%T) is not a *config.ValidationError", err, err)
	}
	return ve.Problems
}

func TestDefault(t *testing.T) {
	want := &config.Config{
		Listen: "127.0.0.1:6432",
		Log:    config.Log{Level: "info", Format: "console", SlowQueryThreshold: 0, SlowQueryMaxLength: 200, Connections: true, Disconnections: true},
		ClientTLS: config.ClientTLS{ACME: config.ACME{
			Directory: "https://acme-v02.api.letsencrypt.org/directory", Challenge: "dns-01", DNSProvider: "route53",
			HTTPListen: ":80", StorageTable: "dsqlgate_acme", RenewCheckInterval: config.Duration(10 * time.Minute),
		}},
		Limits: config.Limits{
			StartupTimeout:           config.Duration(10 * time.Second),
			MaxStartupPacket:         10000,
			MaxMessageSize:           64 << 20,
			MaxClientConn:            10000,
			AuthFailureLimit:         5,
			AuthFailureWindow:        config.Duration(time.Minute),
			AuthFailureMaxDelay:      config.Duration(5 * time.Second),
			IdleInTransactionTimeout: config.Duration(time.Minute),
			MaxPendingReplies:        100000,
			MaxClientStatements:      10000,
			MaxClientSettings:        1000,
		},
		ShutdownTimeout: config.Duration(30 * time.Second),
		Metrics:         config.Metrics{Listen: "127.0.0.1:9187"},
		Admin:           config.Admin{Users: nil, Database: "dsqlgate"},
		Peers:           config.Peers{Refresh: config.Duration(5 * time.Second)},
	}
	if diff := cmp.Diff(want, config.Default(), ignoreResolved); diff != "" {
		t.Errorf("Default() mismatch (-want +got):\n%s", diff)
	}
	// The defaults pass the rules that relate them.
	if d := config.Default(); d.Limits.AuthFailureMaxDelay >= d.Limits.StartupTimeout {
		t.Errorf("default auth_failure_max_delay %s is not less than startup_timeout %s", d.Limits.AuthFailureMaxDelay, d.Limits.StartupTimeout)
	}
	if got := config.Default().ClientTLSMode(); got != config.TLSDisable {
		t.Errorf("Default().ClientTLSMode() = %q, want %q", got, config.TLSDisable)
	}
}

// wantPool is DefaultPool spelled out.
var wantPool = config.Pool{
	Mode:                  "transaction",
	Size:                  20,
	MinIdle:               0,
	MaxUserConnections:    0,
	IdleTimeout:           config.Duration(10 * time.Minute),
	MaxLifetime:           config.Duration(55 * time.Minute),
	LifetimeJitter:        config.Duration(5 * time.Minute),
	QueryWaitTimeout:      config.Duration(2 * time.Minute),
	DialTimeout:           config.Duration(10 * time.Second),
	DialRate:              100,
	MaxPreparedStatements: 500,
}

// wantOCC is the OCC retry of a kind dsql route by default; wantOCCOff
// that of a kind postgres route.
var (
	wantOCC = config.OCCRetry{Enabled: true, MaxAttempts: 10, Backoff: config.Duration(5 * time.Millisecond),
		MaxBackoff: config.Duration(200 * time.Millisecond), Budget: config.Duration(5 * time.Second)}
	wantOCCOff = config.OCCRetry{Enabled: false, MaxAttempts: 10, Backoff: config.Duration(5 * time.Millisecond),
		MaxBackoff: config.Duration(200 * time.Millisecond), Budget: config.Duration(5 * time.Second)}
)

// TestOCCRetryKeys: occ_retry.enabled written in the file wins over the
// kind's default, either way; the other keys keep their defaults.
func TestOCCRetryKeys(t *testing.T) {
	t.Setenv("TEST_VERIFIER", testVerifier)
	t.Setenv("TEST_PASSWORD", "pw")
	const doc = `
users: [{name: alice, verifier_env: TEST_VERIFIER}]
routes:
  - database: app
    endpoint: abcdefghijklmnopqrstuvwxyz.dsql.us-east-1.on.aws
    occ_retry: {enabled: false}
  - database: bench
    kind: postgres
    endpoint: localhost:5433
    user: postgres
    password_env: TEST_PASSWORD
    occ_retry: {enabled: true, max_attempts: 3, budget: 500ms}
`
	c, err := config.Parse([]byte(doc), "test.yaml")
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	off := wantOCC
	off.Enabled = false
	on := wantOCCOff
	on.Enabled, on.MaxAttempts, on.Budget = true, 3, config.Duration(500*time.Millisecond)
	if diff := cmp.Diff(off, c.Routes[0].OCCRetry); diff != "" {
		t.Errorf("dsql route turned off (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(on, c.Routes[1].OCCRetry); diff != "" {
		t.Errorf("postgres route turned on (-want +got):\n%s", diff)
	}
}

func TestDefaultRoute(t *testing.T) {
	tests := []struct {
		name           string
		kind, database string
		want           config.Route
	}{
		{
			name: "dsql", kind: config.KindDSQL, database: "app",
			want: config.Route{
				Database: "app", Kind: "dsql", Role: "admin", TokenExpiry: config.Duration(15 * time.Minute),
				TLSNegotiation: "direct", UpstreamDatabase: "postgres", Pool: wantPool, Compat: config.DefaultCompat(), OCCRetry: wantOCC,
			},
		},
		{
			name: "empty kind is dsql", kind: "", database: "app",
			want: config.Route{
				Database: "app", Kind: "dsql", Role: "admin", TokenExpiry: config.Duration(15 * time.Minute),
				TLSNegotiation: "direct", UpstreamDatabase: "postgres", Pool: wantPool, Compat: config.DefaultCompat(), OCCRetry: wantOCC,
			},
		},
		{
			name: "postgres", kind: config.KindPostgres, database: "bench",
			want: config.Route{
				Database: "bench", Kind: "postgres", Role: "admin", TokenExpiry: config.Duration(15 * time.Minute),
				TLSNegotiation: "postgres", TLS: "verify-full", UpstreamDatabase: "bench", Pool: wantPool, Compat: config.DefaultCompat(), OCCRetry: wantOCCOff,
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if diff := cmp.Diff(tt.want, config.DefaultRoute(tt.kind, tt.database), ignoreResolved); diff != "" {
				t.Errorf("DefaultRoute mismatch (-want +got):\n%s", diff)
			}
		})
	}
	if diff := cmp.Diff(wantPool, config.DefaultPool()); diff != "" {
		t.Errorf("DefaultPool mismatch (-want +got):\n%s", diff)
	}
}

func TestParseRouteDefaults(t *testing.T) {
	t.Setenv("TEST_VERIFIER", testVerifier)
	t.Setenv("TEST_PASSWORD", "pw")
	const doc = `
users: [{name: alice, verifier_env: TEST_VERIFIER}]
routes:
  - database: app
    endpoint: abcdefghijklmnopqrstuvwxyz.dsql.us-east-1.on.aws
  - database: small
    endpoint: abcdefghijklmnopqrstuvwxyz.dsql.us-east-1.on.aws
    pool:
      size: 5
  - database: empty-pool
    endpoint: abcdefghijklmnopqrstuvwxyz.dsql.us-east-1.on.aws
    pool:
    token_expiry:
  - database: bench
    kind: postgres
    endpoint: localhost:5433
    user: postgres
    password_env: TEST_PASSWORD
`
	c, err := config.Parse([]byte(doc), "test.yaml")
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	const endpoint = "abcdefghijklmnopqrstuvwxyz.dsql.us-east-1.on.aws"
	dsql := func(db string, pool config.Pool) config.Route {
		return config.Route{
			Database: db, Kind: "dsql", Endpoint: endpoint, Role: "admin",
			TokenExpiry: config.Duration(15 * time.Minute), TLSNegotiation: "direct",
			UpstreamDatabase: "postgres", Pool: pool, Compat: config.DefaultCompat(), OCCRetry: wantOCC,
		}
	}
	smallPool := wantPool
	smallPool.Size = 5
	want := []config.Route{
		dsql("app", wantPool),
		dsql("small", smallPool),
		dsql("empty-pool", wantPool),
		{
			Database: "bench", Kind: "postgres", Endpoint: "localhost:5433", Role: "admin",
			TokenExpiry: config.Duration(15 * time.Minute), TLSNegotiation: "postgres", TLS: "verify-full",
			User: "postgres", PasswordEnv: "TEST_PASSWORD", UpstreamDatabase: "bench", Pool: wantPool, Compat: config.DefaultCompat(), OCCRetry: wantOCCOff,
		},
	}
	if diff := cmp.Diff(want, c.Routes, ignoreResolved); diff != "" {
		t.Errorf("routes mismatch (-want +got):\n%s", diff)
	}
	top := config.Default()
	top.Users, top.Routes = c.Users, c.Routes
	if diff := cmp.Diff(top, c, ignoreResolved); diff != "" {
		t.Errorf("top-level defaults mismatch (-want +got):\n%s", diff)
	}
}

const samplePath = "../examples/dsqlgate.yaml"

func TestSampleLoads(t *testing.T) {
	t.Setenv("DSQLGATE_ALICE_VERIFIER", testVerifier)
	t.Setenv("DSQLGATE_LOCAL_PASSWORD", "local-pw")
	c, err := config.Load(samplePath)
	if err != nil {
		t.Fatalf("Load(%s): %v", samplePath, err)
	}
	if len(c.Routes) != 3 {
		t.Fatalf("got %d routes, want 3", len(c.Routes))
	}

	// The sample states the defaults: its first route and its top level
	// are exactly what Default and DefaultRoute say.
	wantFirst := config.DefaultRoute(config.KindDSQL, "app")
	wantFirst.Endpoint = "abcdefghijklmnopqrstuvwxyz.dsql.us-east-1.on.aws"
	if diff := cmp.Diff(wantFirst, c.Routes[0], ignoreResolved); diff != "" {
		t.Errorf("sample's first route is not the defaults (-want +got):\n%s", diff)
	}
	top := config.Default()
	top.Users, top.Routes = c.Users, c.Routes
	if diff := cmp.Diff(top, c, ignoreResolved); diff != "" {
		t.Errorf("sample's top level is not the defaults (-want +got):\n%s", diff)
	}

	got := []string{
		c.Users[0].VerifierEnv, c.Users[0].ResolvedAuth(), c.Users[0].MD5, strconv.Itoa(len(c.Users[0].Databases)),
		c.Routes[1].Role, c.Routes[1].Pool.Mode, c.Routes[1].Pool.MaxLifetime.String(), c.Routes[1].ResolvedRegion(),
		c.Routes[1].Address(),
		c.Routes[2].Kind, c.Routes[2].Address(), c.Routes[2].PasswordEnv, c.Routes[2].UpstreamDatabase,
	}
	want := []string{
		"DSQLGATE_ALICE_VERIFIER", "scram-sha-256", "", "0",
		"reporting", "session", "55m0s", "us-east-1",
		"abcdefghijklmnopqrstuvwxyz.dsql.us-east-1.on.aws:5432",
		"postgres", "localhost:5432", "DSQLGATE_LOCAL_PASSWORD", "postgres",
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("sample values mismatch (-want +got):\n%s", diff)
	}
}

// TestSampleNamesEveryKey keeps the sample complete: every yaml key of every
// config type appears in it, set or in a commented example.
func TestSampleNamesEveryKey(t *testing.T) {
	data, err := os.ReadFile(samplePath)
	if err != nil {
		t.Fatal(err)
	}
	text := string(data)
	var walk func(reflect.Type)
	walk = func(typ reflect.Type) {
		for f := range typ.Fields() {
			name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
			if !f.IsExported() || name == "" || name == "-" {
				continue
			}
			if !strings.Contains(text, name+":") {
				t.Errorf("the sample does not mention %s.%s (key %q)", typ.Name(), f.Name, name)
			}
			switch {
			case f.Type.Kind() == reflect.Struct:
				walk(f.Type)
			case f.Type.Kind() == reflect.Slice && f.Type.Elem().Kind() == reflect.Struct:
				walk(f.Type.Elem())
			}
		}
	}
	walk(reflect.TypeFor[config.Config]())
}

func TestLoadMissingFile(t *testing.T) {
	_, err := config.Load(filepath.Join(t.TempDir(), "nope.yaml"))
	if !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Load of a missing file: got %v, want an error wrapping fs.ErrNotExist", err)
	}
}

func TestProblemError(t *testing.T) {
	tests := []struct {
		name string
		p    config.Problem
		want string
	}{
		{"everything", config.Problem{File: "dsqlgate.yaml", Line: 12, Key: "routes[0].pool.size", Message: "must be at least 1"}, "dsqlgate.yaml:12: routes[0].pool.size: must be at least 1"},
		{"no line", config.Problem{File: "dsqlgate.yaml", Key: "routes", Message: "at least one route is required"}, "dsqlgate.yaml: routes: at least one route is required"},
		{"no file", config.Problem{Key: "listen", Message: "required"}, "listen: required"},
		{"no key", config.Problem{File: "f.yaml", Line: 3, Message: "invalid YAML"}, "f.yaml:3: invalid YAML"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.p.Error(); got != tt.want {
				t.Errorf("Error() = %q, want %q", got, tt.want)
			}
		})
	}
	ve := &config.ValidationError{Problems: []config.Problem{tests[0].p, tests[2].p}}
	if got, want := ve.Error(), tests[0].want+"\n"+tests[2].want; got != want {
		t.Errorf("ValidationError.Error() = %q, want %q", got, want)
	}
}

// tlsFiles writes, into dir, a self-signed CA certificate that is also a
// server certificate (cert.pem) with its key (key.pem), a second key
// (other-key.pem) and a file that is not PEM (junk.pem).
func tlsFiles(t *testing.T, dir string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	other, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "dsqlgate test"},
		DNSNames:              []string{"localhost"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	write := func(name, typ string, b []byte) {
		t.Helper()
		if err := os.WriteFile(filepath.Join(dir, name), pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: b}), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write("cert.pem", "CERTIFICATE", der)
	for name, k := range map[string]*ecdsa.PrivateKey{"key.pem": key, "other-key.pem": other} {
		b, err := x509.MarshalECPrivateKey(k)
		if err != nil {
			t.Fatal(err)
		}
		write(name, "EC PRIVATE KEY", b)
	}
	if err := os.WriteFile(filepath.Join(dir, "junk.pem"), []byte("not a certificate\n"), 0o600); err != nil {
		t.Fatal(err)
	}
}
