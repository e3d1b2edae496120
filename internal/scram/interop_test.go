package scram_test

// Interoperability with real clients: pgx's SCRAM client (over net.Pipe) and
// libpq's (psql, over loopback TCP), each with and without TLS channel
// binding. The server side is a minimal PostgreSQL stand-in built on
// pgproto3 that does what pgwire will do around this package.

import (
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/dsqlgate/dsqlgate/internal/scram"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"
	"go.uber.org/goleak"
)

// fakeServer is what the stand-in server knows about the one user "alice"
// and about its TLS endpoint.
type fakeServer struct {
	verifier  scram.Verifier
	cert      *tls.Certificate // nil: answer SSLRequest with 'N'
	binding   []byte           // ServerOptions.ChannelBinding
	advertise []string         // nil: scram.Mechanisms(binding != nil)
}

// authResult is what the stand-in saw: the mechanism the client chose and
// the error that ended authentication, if any.
type authResult struct {
	mechanism string
	err       error
}

// serve plays a PostgreSQL server for one client on conn until the client
// terminates or authentication fails. It closes conn, without a TLS
// close_notify: over net.Pipe, which has no buffer, both sides sending one at
// once would block until tls.Conn's 5 s close timeout.
func (s fakeServer) serve(conn net.Conn) (res authResult) {
	defer conn.Close()
	backend := pgproto3.NewBackend(conn, conn)
	for started := false; !started; {
		msg, err := backend.ReceiveStartupMessage()
		if err != nil {
			return authResult{err: fmt.Errorf("receive startup message: %w", err)}
		}
		switch msg.(type) {
		case *pgproto3.SSLRequest:
			if s.cert == nil {
				if _, err := conn.Write([]byte("N")); err != nil {
					return authResult{err: err}
				}
				continue
			}
			if _, err := conn.Write([]byte("S")); err != nil {
				return authResult{err: err}
			}
			conn = tls.Server(conn, &tls.Config{Certificates: []tls.Certificate{*s.cert}})
			backend = pgproto3.NewBackend(conn, conn)
		case *pgproto3.GSSEncRequest:
			if _, err := conn.Write([]byte("N")); err != nil {
				return authResult{err: err}
			}
		case *pgproto3.StartupMessage:
			started = true
		default:
			return authResult{err: fmt.Errorf("unexpected %T", msg)}
		}
	}

	fail := func(err error) authResult {
		backend.Send(&pgproto3.ErrorResponse{Severity: "FATAL", Code: sqlstate(err), Message: "authentication failed"})
		backend.Flush()
		res.err = err
		return res
	}
	mechanisms := s.advertise
	if mechanisms == nil {
		mechanisms = scram.Mechanisms(s.binding != nil)
	}
	backend.Send(&pgproto3.AuthenticationSASL{AuthMechanisms: mechanisms})
	if err := backend.Flush(); err != nil {
		return authResult{err: err}
	}
	if err := backend.SetAuthType(pgproto3.AuthTypeSASL); err != nil {
		return authResult{err: err}
	}
	msg, err := backend.Receive()
	if err != nil {
		return authResult{err: fmt.Errorf("receive SASLInitialResponse: %w", err)}
	}
	initial, ok := msg.(*pgproto3.SASLInitialResponse)
	if !ok {
		return authResult{err: fmt.Errorf("got %T, want SASLInitialResponse", msg)}
	}
	res.mechanism = initial.AuthMechanism
	exchange, err := scram.NewServerExchange(s.verifier, initial.AuthMechanism, scram.ServerOptions{ChannelBinding: s.binding})
	if err != nil {
		return fail(err)
	}
	serverFirst, err := exchange.ClientFirst(initial.Data)
	if err != nil {
		return fail(err)
	}
	backend.Send(&pgproto3.AuthenticationSASLContinue{Data: serverFirst})
	if err := backend.Flush(); err != nil {
		return authResult{err: err}
	}
	if err := backend.SetAuthType(pgproto3.AuthTypeSASLContinue); err != nil {
		return authResult{err: err}
	}
	msg, err = backend.Receive()
	if err != nil {
		return authResult{err: fmt.Errorf("receive SASLResponse: %w", err)}
	}
	response, ok := msg.(*pgproto3.SASLResponse)
	if !ok {
		return authResult{err: fmt.Errorf("got %T, want SASLResponse", msg)}
	}
	serverFinal, err := exchange.ClientFinal(response.Data)
	if err != nil {
		return fail(err)
	}
	backend.Send(&pgproto3.AuthenticationSASLFinal{Data: serverFinal})
	backend.Send(&pgproto3.AuthenticationOk{})
	for _, p := range [][2]string{{"server_version", "15.0"}, {"server_encoding", "UTF8"}, {"client_encoding", "UTF8"},
		{"standard_conforming_strings", "on"}, {"integer_datetimes", "on"}, {"DateStyle", "ISO, MDY"}} {
		backend.Send(&pgproto3.ParameterStatus{Name: p[0], Value: p[1]})
	}
	backend.Send(&pgproto3.BackendKeyData{ProcessID: 1, SecretKey: []byte{0, 0, 0, 1}})
	backend.Send(&pgproto3.ReadyForQuery{TxStatus: 'I'})
	if err := backend.Flush(); err != nil {
		return authResult{mechanism: res.mechanism, err: err}
	}

	// Answer every query with one row holding 1, until Terminate.
	for {
		msg, err := backend.Receive()
		if err != nil {
			return res // the client went away
		}
		switch msg.(type) {
		case *pgproto3.Terminate:
			return res
		case *pgproto3.Query:
			backend.Send(&pgproto3.RowDescription{Fields: []pgproto3.FieldDescription{
				{Name: []byte("?column?"), DataTypeOID: 23, DataTypeSize: 4, TypeModifier: -1}}})
			backend.Send(&pgproto3.DataRow{Values: [][]byte{[]byte("1")}})
			backend.Send(&pgproto3.CommandComplete{CommandTag: []byte("SELECT 1")})
			backend.Send(&pgproto3.ReadyForQuery{TxStatus: 'I'})
			if err := backend.Flush(); err != nil {
				return res
			}
		default:
			return authResult{mechanism: res.mechanism, err: fmt.Errorf("unexpected %T", msg)}
		}
	}
}

// sqlstate picks the SQLSTATE PostgreSQL reports for err.
func sqlstate(err error) string {
	switch {
	case errors.Is(err, scram.ErrAuthFailed):
		return "28P01"
	case errors.Is(err, scram.ErrChannelBinding):
		return "28000"
	case errors.Is(err, scram.ErrFeatureNotSupported):
		return "0A000"
	case errors.Is(err, scram.ErrProtocol):
		return "08P01"
	}
	return "XX000"
}

func ecdsaCertificate(t *testing.T, name string) (*tls.Certificate, []byte) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return selfSigned(t, name, key, key.Public())
}

func selfSigned(t *testing.T, name string, key any, pub any) (*tls.Certificate, []byte) {
	t.Helper()
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: name},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		DNSNames:     []string{"localhost"},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, pub, key)
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	binding, err := scram.TLSServerEndPoint(leaf)
	if err != nil {
		binding = nil // no tls-server-end-point for this algorithm
	}
	return &tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}, binding
}

// interopCase is one login attempt by a real client against fakeServer.
type interopCase struct {
	name          string
	server        fakeServer
	password      string // the client's
	params        string // added to the connection string
	wantMechanism string // "" when the attempt must fail before choosing
	wantErr       error  // nil for success
}

func interopCases(t *testing.T) []interopCase {
	cert, binding := ecdsaCertificate(t, "gateway")
	_, otherBinding := ecdsaCertificate(t, "somebody else")
	_, edKey, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	edCert, edBinding := selfSigned(t, "ed25519 gateway", edKey, edKey.Public())
	if edBinding != nil {
		t.Fatal("tls-server-end-point defined for Ed25519")
	}
	alice, err := scram.GenerateVerifier("correct horse")
	if err != nil {
		t.Fatal(err)
	}
	mock := scram.MockVerifier("alice", []byte("0123456789abcdef0123456789abcdef"))
	plain := fakeServer{verifier: alice}
	withTLS := fakeServer{verifier: alice, cert: cert, binding: binding}

	return []interopCase{
		{name: "plain TCP", server: plain, password: "correct horse", params: "sslmode=disable",
			wantMechanism: scram.MechanismSCRAM},
		{name: "TLS with channel binding", server: withTLS, password: "correct horse", params: "sslmode=require",
			wantMechanism: scram.MechanismSCRAMPlus},
		{name: "TLS with channel binding required", server: withTLS, password: "correct horse", params: "sslmode=require channel_binding=require",
			wantMechanism: scram.MechanismSCRAMPlus},
		{name: "TLS with channel binding disabled by the client", server: withTLS, password: "correct horse", params: "sslmode=require channel_binding=disable",
			wantMechanism: scram.MechanismSCRAM},
		{name: "TLS with an Ed25519 certificate, no binding data", server: fakeServer{verifier: alice, cert: edCert},
			password: "correct horse", params: "sslmode=require", wantMechanism: scram.MechanismSCRAM},
		{name: "TLS with PLUS stripped from the mechanisms (downgrade)",
			server:   fakeServer{verifier: alice, cert: cert, binding: binding, advertise: scram.Mechanisms(false)},
			password: "correct horse", params: "sslmode=require", wantMechanism: scram.MechanismSCRAM, wantErr: scram.ErrChannelBinding},
		{name: "TLS relayed by a man in the middle", server: fakeServer{verifier: alice, cert: cert, binding: otherBinding},
			password: "correct horse", params: "sslmode=require", wantMechanism: scram.MechanismSCRAMPlus, wantErr: scram.ErrChannelBinding},
		{name: "wrong password", server: plain, password: "battery staple", params: "sslmode=disable",
			wantMechanism: scram.MechanismSCRAM, wantErr: scram.ErrAuthFailed},
		{name: "wrong password with channel binding", server: withTLS, password: "battery staple", params: "sslmode=require",
			wantMechanism: scram.MechanismSCRAMPlus, wantErr: scram.ErrAuthFailed},
		{name: "unknown user", server: fakeServer{verifier: mock}, password: "correct horse", params: "sslmode=disable",
			wantMechanism: scram.MechanismSCRAM, wantErr: scram.ErrAuthFailed},
	}
}

// saslprepCases are passwords whose verifier was made from one spelling
// and that a client sends in another, or that SASLprep leaves as raw bytes.
var saslprepCases = []struct {
	name           string
	stored, client string
	pgxToo         bool // pgx prepares with PRECIS OpaqueString (NFC), which only agrees on some
}{
	{"no-break space", "pass\u00a0word", "pass\u00a0word", true},
	{"no-break space against a plain space", "pass word", "pass\u00a0word", true},
	{"soft hyphen", "soft\u00adhyphen", "soft\u00adhyphen", false},
	{"NFKC ligature", "\ufb01nance", "finance", false},
	{"NFKC combining accent", "cafe\u0301", "caf\u00e9", true},
	{"prohibited before NFKC, raw", "a\u0340", "a\u0340", false},
	{"mixed direction, raw", "\u05d0a", "\u05d0a", false},
	{"emoji, raw", "pass\U0001F600", "pass\U0001F600", true},
	{"ASCII control", "tab\there", "tab\there", true},
}

func TestPgxClient(t *testing.T) {
	defer goleak.VerifyNone(t)
	for _, tt := range interopCases(t) {
		t.Run(tt.name, func(t *testing.T) {
			res, err := connectPgx(t, tt.server, tt.password, tt.params)
			checkInterop(t, tt.wantMechanism, tt.wantErr, res, err)
		})
	}
	for _, tt := range saslprepCases {
		if !tt.pgxToo {
			continue
		}
		t.Run("SASLprep "+tt.name, func(t *testing.T) {
			server := fakeServer{verifier: scram.NewVerifier(tt.stored, []byte("0123456789abcdef"), 4096)}
			res, err := connectPgx(t, server, tt.client, "sslmode=disable")
			checkInterop(t, scram.MechanismSCRAM, nil, res, err)
		})
	}
}

// connectPgx connects pgconn to server over net.Pipe and reports what the
// server saw and what the client returned.
func connectPgx(t *testing.T, server fakeServer, password, params string) (authResult, error) {
	t.Helper()
	clientConn, serverConn := net.Pipe()
	results := make(chan authResult, 1)
	go func() { results <- server.serve(serverConn) }()

	config, err := pgconn.ParseConfig("host=127.0.0.1 port=5432 user=alice database=db " + params)
	if err != nil {
		t.Fatal(err)
	}
	config.Password = password
	config.DialFunc = func(context.Context, string, string) (net.Conn, error) { return clientConn, nil }
	config.LookupFunc = func(_ context.Context, host string) ([]string, error) { return []string{host}, nil }
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	conn, err := pgconn.ConnectConfig(ctx, config)
	if err == nil {
		if _, qerr := conn.Exec(ctx, "select 1").ReadAll(); qerr != nil {
			t.Errorf("query after login: %v", qerr)
		}
		conn.Close(ctx)
	} else {
		clientConn.Close()
	}
	select {
	case res := <-results:
		return res, err
	case <-ctx.Done():
		t.Fatal("server did not finish")
		return authResult{}, nil
	}
}

func TestPsqlClient(t *testing.T) {
	psql := findPsql(t)
	defer goleak.VerifyNone(t)
	for _, tt := range interopCases(t) {
		t.Run(tt.name, func(t *testing.T) {
			res, err := connectPsql(t, psql, tt.server, tt.password, tt.params)
			checkInterop(t, tt.wantMechanism, tt.wantErr, res, err)
		})
	}
	for _, tt := range saslprepCases {
		t.Run("SASLprep "+tt.name, func(t *testing.T) {
			server := fakeServer{verifier: scram.NewVerifier(tt.stored, []byte("0123456789abcdef"), 4096)}
			res, err := connectPsql(t, psql, server, tt.client, "sslmode=disable")
			checkInterop(t, scram.MechanismSCRAM, nil, res, err)
		})
	}
}

// findPsql returns the path of psql. Without it the test is skipped on a
// developer's machine and fails in CI, where it must run.
func findPsql(t *testing.T) string {
	t.Helper()
	path, err := exec.LookPath("psql")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("psql is required in CI: %v", err)
		}
		t.Skipf("psql not found: %v", err)
	}
	return path
}

// connectPsql runs psql against server on a loopback port and reports what
// the server saw and how psql ended.
func connectPsql(t *testing.T, psql string, server fakeServer, password, params string) (authResult, error) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	results := make(chan authResult, 1)
	go func() {
		conn, err := ln.Accept()
		if err != nil {
			results <- authResult{err: fmt.Errorf("accept: %w", err)}
			return
		}
		results <- server.serve(conn)
	}()

	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	port := strconv.Itoa(ln.Addr().(*net.TCPAddr).Port)
	cmd := exec.CommandContext(ctx, psql, "-X", "-A", "-t", "-w", "-c", "select 1",
		"host=127.0.0.1 port="+port+" user=alice dbname=db connect_timeout=10 gssencmode=disable "+params)
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + t.TempDir(), "PGPASSWORD=" + password, "LC_ALL=C"}
	out, runErr := cmd.CombinedOutput()
	if runErr == nil && strings.TrimSpace(string(out)) != "1" {
		t.Errorf("psql printed %q, want 1", out)
	}
	if runErr != nil {
		runErr = fmt.Errorf("psql: %w: %s", runErr, out)
	}
	ln.Close() // unblocks Accept if psql never connected
	select {
	case res := <-results:
		return res, runErr
	case <-ctx.Done():
		t.Fatal("server did not finish")
		return authResult{}, nil
	}
}

func checkInterop(t *testing.T, wantMechanism string, wantErr error, res authResult, clientErr error) {
	t.Helper()
	if res.mechanism != wantMechanism {
		t.Errorf("client chose %q, want %q", res.mechanism, wantMechanism)
	}
	if wantErr == nil {
		if res.err != nil || clientErr != nil {
			t.Fatalf("server error %v, client error %v; want success", res.err, clientErr)
		}
		return
	}
	if !errors.Is(res.err, wantErr) {
		t.Fatalf("server error %v, want %v", res.err, wantErr)
	}
	if clientErr == nil {
		t.Fatal("client logged in")
	}
	var pgErr *pgconn.PgError
	if errors.As(clientErr, &pgErr) && pgErr.Code != sqlstate(wantErr) {
		t.Errorf("client got SQLSTATE %s, want %s", pgErr.Code, sqlstate(wantErr))
	}
}
