package e2e

import (
	"bytes"
	"crypto/md5"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"runtime"
	"runtime/pprof"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/dsqlgate/dsqlgate/config"
	"github.com/dsqlgate/dsqlgate/internal/harness"
	"github.com/dsqlgate/dsqlgate/internal/pgtest"
	"github.com/dsqlgate/dsqlgate/internal/scram"
	"github.com/dsqlgate/dsqlgate/internal/scramclient"
	"github.com/dsqlgate/dsqlgate/internal/users"
)

// The security stack is a gateway with client TLS (the harness's
// self-signed certificate for localhost, 127.0.0.1 and ::1), small limits,
// one user per authentication method, a second route, and logs at debug
// level (gateway and emulator) in a buffer. The bad-input catalogue, the
// channel-binding and the log-redaction tests share it. It starts on first
// use and TestMain closes it with the other stacks.

// Users of the security stack besides the harness's SCRAM user (demo).
const (
	md5User    = "md5_user"     // auth md5, from a stored md5 hash
	clearUser  = "clear_user"   // auth password: cleartext, over TLS only
	scopedUser = "scoped_user"  // SCRAM, may use database postgres only
	envUser    = "env_user"     // SCRAM, password from password_env
	envMD5User = "env_md5_user" // auth md5, password from password_env
)

// otherDatabase is the security stack's second route (to the same
// emulator), which scopedUser may not use.
const otherDatabase = "other"

// Limits of the security stack.
const (
	secStartupTimeout = 3 * time.Second
	secMaxStartup     = 16 * config.KiB        // startup and authentication messages, bytes
	secMaxMessage     = 64 * config.KiB        // messages after authentication, bytes
	secIdleTimeout    = 500 * time.Millisecond // idle upstreams close quickly, so the pool shrinks back
)

// securityFixture is the running security stack and what its clients need.
type securityFixture struct {
	*harness.Stack
	// logs holds the gateway's and the emulator's logs, debug level, JSON.
	logs *syncBuffer
	// passwords are every user's password, by user name.
	passwords map[string]string
	// users are the gateway's users as it loaded them, secrets resolved.
	users []users.User
}

var (
	secMu sync.Mutex // guards sec; taken before stacksMu, never after
	sec   *securityFixture
)

// securityStack returns the security stack, starting it on first use.
func securityStack(t testing.TB) *securityFixture {
	t.Helper()
	secMu.Lock()
	defer secMu.Unlock()
	if sec != nil {
		return sec
	}
	f := &securityFixture{logs: &syncBuffer{}, passwords: map[string]string{}}
	for _, u := range []string{md5User, clearUser, scopedUser, envUser, envMD5User} {
		f.passwords[u] = pgtest.RandomHex(12)
	}
	// password_env is read when the gateway starts, and here after it.
	envVars := map[string]string{envUser: "DSQLGATE_E2E_ENV_USER_PASSWORD", envMD5User: "DSQLGATE_E2E_ENV_MD5_USER_PASSWORD"}
	for user, name := range envVars {
		os.Setenv(name, f.passwords[user])
	}
	defer func() {
		for _, name := range envVars {
			os.Unsetenv(name)
		}
	}()
	var hookErr error
	st, err := harness.StartStack(testCtx(t, 2*time.Minute), harness.StackOptions{
		Logger:    newTestLogger(f.logs),
		ClientTLS: true,
		Gateway: func(c *config.Config) {
			c.Limits.StartupTimeout = config.Duration(secStartupTimeout)
			c.Limits.MaxStartupPacket = secMaxStartup
			c.Limits.MaxMessageSize = secMaxMessage
			c.Limits.AuthFailureLimit = 0 // every case fails a login from 127.0.0.1: no backoff
			c.Limits.AuthFailureMaxDelay = config.Duration(time.Second)
			c.Routes[0].Pool.IdleTimeout = config.Duration(secIdleTimeout)
			other := c.Routes[0]
			other.Database = otherDatabase
			c.Routes = append(c.Routes, other)
			verifier := func(user string) string {
				v, err := scram.GenerateVerifier(f.passwords[user])
				hookErr = errors.Join(hookErr, err)
				return v.Encode()
			}
			c.Users = append(c.Users,
				config.User{Name: md5User, Auth: config.AuthMD5, MD5: md5Hash(f.passwords[md5User], md5User)},
				config.User{Name: clearUser, Auth: config.AuthPassword, Verifier: verifier(clearUser)},
				config.User{Name: scopedUser, Verifier: verifier(scopedUser), Databases: []string{harness.StackDatabase}},
				config.User{Name: envUser, PasswordEnv: envVars[envUser]},
				config.User{Name: envMD5User, Auth: config.AuthMD5, PasswordEnv: envVars[envMD5User]},
			)
		},
	})
	if err == nil && hookErr != nil {
		st.Close()
		err = hookErr
	}
	if err != nil {
		t.Fatalf("start the security stack: %v", err)
	}
	f.Stack = st
	f.passwords[st.User] = st.Password
	if f.users, _, err = users.Load(st.Gateway.Config(), os.LookupEnv); err != nil {
		st.Close()
		t.Fatalf("load the security stack's users: %v", err)
	}
	stacksMu.Lock()
	stacks["security"] = st
	stacksMu.Unlock()
	sec = f
	return f
}

// md5Hash is PostgreSQL's stored md5 password: "md5" + hex(md5(password + user)).
func md5Hash(password, user string) string {
	sum := md5.Sum([]byte(password + user))
	return "md5" + hex.EncodeToString(sum[:])
}

// md5Response is a client's answer to AuthenticationMD5Password.
func md5Response(password, user string, salt [4]byte) string {
	sum := md5.Sum(append([]byte(md5Hash(password, user)[3:]), salt[:]...))
	return "md5" + hex.EncodeToString(sum[:])
}

// secrets are the values that must never reach a log line or a client:
// every password, every md5 hash (with and without its prefix), the
// StoredKey and ServerKey (base64) of every SCRAM verifier in force, and
// the AWS secret access key.
func (f *securityFixture) secrets(t testing.TB) []string {
	t.Helper()
	var out []string
	for _, p := range f.passwords {
		out = append(out, p)
	}
	for _, u := range f.users {
		if h := u.MD5; h != "" {
			out = append(out, h, strings.TrimPrefix(h, "md5"))
		}
		if v := u.Verifier; v != nil {
			out = append(out, base64.StdEncoding.EncodeToString(v.StoredKey[:]), base64.StdEncoding.EncodeToString(v.ServerKey[:]))
		}
	}
	for user := range f.passwords {
		if user != md5User { // md5User's is in the configuration already
			h := md5Hash(f.passwords[user], user)
			out = append(out, h, strings.TrimPrefix(h, "md5"))
		}
	}
	return append(out, f.Credentials.SecretAccessKey)
}

// tlsURL is a URL for user and password on the stack's gateway, over TLS
// with the certificate checked (verify-full against the gateway's own
// certificate), with extra query parameters.
func (f *securityFixture) tlsURL(user, password, db, extra string) string {
	u, _ := url.Parse(f.URL("sslmode=verify-full&sslrootcert=" + url.QueryEscape(f.ClientCAFile)))
	u.User = url.UserPassword(user, password)
	u.Path = "/" + db
	if extra != "" {
		u.RawQuery += "&" + extra
	}
	return u.String()
}

// plainURL is tlsURL without TLS.
func (f *securityFixture) plainURL(user, password, db string) string {
	u, _ := url.Parse(f.URL("sslmode=disable"))
	u.User = url.UserPassword(user, password)
	u.Path = "/" + db
	return u.String()
}

// clientTLS is a TLS client configuration that trusts only the
// certificate now in certFile and checks that it names 127.0.0.1.
func clientTLS(t testing.TB, certFile string) *tls.Config {
	t.Helper()
	pem, err := os.ReadFile(certFile)
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(pem) {
		t.Fatalf("no certificate in %s", certFile)
	}
	return &tls.Config{RootCAs: roots, ServerName: "127.0.0.1", MinVersion: tls.VersionTLS12}
}

// ---- protocol-level clients ----

// Startup-phase request codes.
const (
	sslRequestCode    = 80877103
	gssEncRequestCode = 80877104
	cancelRequestCode = 80877102
)

// requestPacket is an SSLRequest, GSSENCRequest or any other 8-byte
// startup-phase packet with just a code.
func requestPacket(code uint32) []byte {
	return binary.BigEndian.AppendUint32([]byte{0, 0, 0, 8}, code)
}

// dialRaw opens a TCP connection to addr with a deadline for the whole
// conversation; it closes with the test.
func dialRaw(t testing.TB, addr string) net.Conn {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	conn.SetDeadline(time.Now().Add(20 * time.Second))
	t.Cleanup(func() { conn.Close() })
	return conn
}

// negotiateTLS sends an SSLRequest on conn, expects 'S' and completes a
// TLS handshake with cfg. Nothing of conn has been read through a buffer,
// so no byte can be lost between the two layers.
func negotiateTLS(conn net.Conn, cfg *tls.Config) (*tls.Conn, error) {
	if _, err := conn.Write(requestPacket(sslRequestCode)); err != nil {
		return nil, err
	}
	var answer [1]byte
	if _, err := io.ReadFull(conn, answer[:]); err != nil {
		return nil, fmt.Errorf("read SSLRequest answer: %w", err)
	}
	if answer[0] != 'S' {
		return nil, fmt.Errorf("SSLRequest answered %q, want 'S'", answer[0])
	}
	tc := tls.Client(conn, cfg)
	if err := tc.Handshake(); err != nil {
		return nil, err
	}
	return tc, nil
}

// sendStartup sends a protocol 3.0 StartupMessage and returns a frontend
// for the rest of the conversation.
func sendStartup(conn net.Conn, params map[string]string) (*pgproto3.Frontend, error) {
	fe := pgproto3.NewFrontend(conn, conn)
	fe.Send(&pgproto3.StartupMessage{ProtocolVersion: pgproto3.ProtocolVersionNumber, Parameters: params})
	return fe, fe.Flush()
}

// receive reads one backend message; an ErrorResponse is copied (Receive
// reuses its structs) and returned as the error *errorResponse.
func receive(fe *pgproto3.Frontend) (pgproto3.BackendMessage, error) {
	msg, err := fe.Receive()
	if err != nil {
		return nil, err
	}
	if er, ok := msg.(*pgproto3.ErrorResponse); ok {
		c := *er
		return nil, (*errorResponse)(&c)
	}
	return msg, nil
}

// errorResponse is an ErrorResponse received where the conversation
// expected something else.
type errorResponse pgproto3.ErrorResponse

func (e *errorResponse) Error() string {
	return fmt.Sprintf("server error %s %s: %s", e.Severity, e.Code, e.Message)
}

// asErrorResponse returns the ErrorResponse err carries, or nil.
func asErrorResponse(err error) *pgproto3.ErrorResponse {
	var er *errorResponse
	if errors.As(err, &er) {
		return (*pgproto3.ErrorResponse)(er)
	}
	return nil
}

// expect reads the next message and checks that it is a T.
func expect[T pgproto3.BackendMessage](fe *pgproto3.Frontend) (T, error) {
	var zero T
	msg, err := receive(fe)
	if err != nil {
		return zero, err
	}
	m, ok := msg.(T)
	if !ok {
		return zero, fmt.Errorf("got %T, want %T", msg, zero)
	}
	return m, nil
}

// newSCRAMClient starts a client exchange (scramclient: written from the
// RFCs, sharing no code with the gateway); with tc it binds to tc's server
// certificate (SCRAM-SHA-256-PLUS).
func newSCRAMClient(password string, tc *tls.Conn) *scramclient.Client {
	if tc == nil {
		return scramclient.New(password, nil)
	}
	return scramclient.New(password, scramclient.TLSServerEndPoint(tc.ConnectionState().PeerCertificates[0]))
}

// beginSCRAM reads AuthenticationSASL, sends the client-first message
// (with SCRAM-SHA-256-PLUS on a TLS connection) and returns the
// server-first message.
func beginSCRAM(fe *pgproto3.Frontend, c *scramclient.Client) ([]byte, error) {
	sasl, err := expect[*pgproto3.AuthenticationSASL](fe)
	if err != nil {
		return nil, err
	}
	offered := strings.Join(sasl.AuthMechanisms, " ")
	if !strings.Contains(" "+offered+" ", " "+c.Mechanism()+" ") {
		return nil, fmt.Errorf("server offers %q, not %s", offered, c.Mechanism())
	}
	fe.Send(&pgproto3.SASLInitialResponse{AuthMechanism: c.Mechanism(), Data: c.First()})
	if err := fe.Flush(); err != nil {
		return nil, err
	}
	cont, err := expect[*pgproto3.AuthenticationSASLContinue](fe)
	if err != nil {
		return nil, err
	}
	return bytes.Clone(cont.Data), nil
}

// login runs the startup phase on conn (TCP or TLS) as user: SCRAM (PLUS
// over TLS), md5 or cleartext, whatever the gateway asks for, up to the
// first ReadyForQuery. A refusal is returned as an error that
// asErrorResponse unwraps.
func login(conn net.Conn, user, password, db string) (*pgproto3.Frontend, error) {
	fe, _, err := loginWithKey(conn, user, password, db)
	return fe, err
}

// loginWithKey is login, returning the BackendKeyData the gateway sent too.
func loginWithKey(conn net.Conn, user, password, db string) (fe *pgproto3.Frontend, key *pgproto3.BackendKeyData, err error) {
	fe, err = sendStartup(conn, map[string]string{"user": user, "database": db})
	if err != nil {
		return nil, nil, err
	}
	tc, _ := conn.(*tls.Conn)
	for {
		msg, err := receive(fe)
		if err != nil {
			return nil, nil, err
		}
		switch m := msg.(type) {
		case *pgproto3.AuthenticationSASL:
			c := newSCRAMClient(password, tc)
			fe.Send(&pgproto3.SASLInitialResponse{AuthMechanism: c.Mechanism(), Data: c.First()})
			if err := fe.Flush(); err != nil {
				return nil, nil, err
			}
			cont, err := expect[*pgproto3.AuthenticationSASLContinue](fe)
			if err != nil {
				return nil, nil, err
			}
			final, err := c.Final(cont.Data)
			if err != nil {
				return nil, nil, err
			}
			fe.Send(&pgproto3.SASLResponse{Data: final})
			if err := fe.Flush(); err != nil {
				return nil, nil, err
			}
			done, err := expect[*pgproto3.AuthenticationSASLFinal](fe)
			if err != nil {
				return nil, nil, err
			}
			if err := c.Verify(done.Data); err != nil {
				return nil, nil, err
			}
		case *pgproto3.AuthenticationMD5Password:
			fe.Send(&pgproto3.PasswordMessage{Password: md5Response(password, user, m.Salt)})
			if err := fe.Flush(); err != nil {
				return nil, nil, err
			}
		case *pgproto3.AuthenticationCleartextPassword:
			fe.Send(&pgproto3.PasswordMessage{Password: password})
			if err := fe.Flush(); err != nil {
				return nil, nil, err
			}
		case *pgproto3.BackendKeyData:
			key = &pgproto3.BackendKeyData{ProcessID: m.ProcessID, SecretKey: bytes.Clone(m.SecretKey)}
		case *pgproto3.ReadyForQuery:
			return fe, key, nil
		}
	}
}

// simpleQuery runs one simple query and returns the first column of its
// rows, and the transaction status of the ReadyForQuery that ends it.
func simpleQuery(fe *pgproto3.Frontend, sql string) (rows []string, status byte, err error) {
	fe.Send(&pgproto3.Query{String: sql})
	if err := fe.Flush(); err != nil {
		return nil, 0, err
	}
	var failed error
	for {
		msg, err := receive(fe)
		switch {
		case asErrorResponse(err) != nil && failed == nil:
			failed = err
			continue
		case err != nil:
			return nil, 0, err
		}
		switch m := msg.(type) {
		case *pgproto3.DataRow:
			rows = append(rows, string(m.Values[0]))
		case *pgproto3.ReadyForQuery:
			return rows, m.TxStatus, failed
		}
	}
}

// ---- goroutine accounting ----

// goroutineBaseline is the number of goroutines of the test process when
// everything it runs is idle: the lowest count over a short window, so
// that the goroutines a busy client has for a moment (the gateway's
// server-to-client relay while a query runs) are not in it.
func goroutineBaseline() int {
	low := runtime.NumGoroutine()
	for deadline := time.Now().Add(300 * time.Millisecond); time.Now().Before(deadline); time.Sleep(time.Millisecond) {
		low = min(low, runtime.NumGoroutine())
	}
	return low
}

// goroutinesSettle waits up to d for the goroutine count to come back to
// baseline, and fails the test with a goroutine dump when it does not.
func goroutinesSettle(t testing.TB, baseline int, d time.Duration) {
	t.Helper()
	n := 0
	for deadline := time.Now().Add(d); time.Now().Before(deadline); time.Sleep(2 * time.Millisecond) {
		if n = runtime.NumGoroutine(); n <= baseline {
			return
		}
	}
	var dump strings.Builder
	pprof.Lookup("goroutine").WriteTo(&dump, 1)
	t.Errorf("%d goroutines %v after the case, baseline %d: a leak?\n%s", n, d, baseline, dump.String())
}
