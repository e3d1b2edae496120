package e2e

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/dsqlgate/dsqlgate/authbridge"
	"github.com/dsqlgate/dsqlgate/config"
	"github.com/dsqlgate/dsqlgate/internal/gateway"
	"github.com/dsqlgate/dsqlgate/internal/harness"
	"github.com/dsqlgate/dsqlgate/internal/scramclient"
)

// catalogue is what the bad-input cases play against.
type catalogue struct {
	f *securityFixture
	// limitedAddr is a second gateway in front of the same emulator that
	// serves at most one client (limits.max_client_conn 1).
	limitedAddr string
	// baseline is the goroutine count of the test process with every
	// client idle (the good client between two queries).
	baseline int
}

// pool is the upstream pool of the security stack's main route.
func (c *catalogue) pool() *authbridge.Pool {
	return c.f.Gateway.Bridge.Route(harness.StackDatabase).Pool()
}

// settle waits for the goroutines of a finished case to end: the
// gateway's session, its relay, the emulator's side of any upstream the
// case closed.
func (c *catalogue) settle(t *testing.T) {
	t.Helper()
	// The gateway gives a disconnected client's unfinished work
	// abandonTimeout (5s) before it closes the upstream.
	goroutinesSettle(t, c.baseline, 10*time.Second)
}

// badInputCase is one hostile or broken client.
type badInputCase struct {
	name string
	// play acts as the client and returns the ErrorResponse the gateway
	// answered with, nil when it answered none (a silent close, or a
	// behaviour the gateway must simply accept). It fails t itself when the
	// gateway does anything else that is wrong.
	play func(t *testing.T, c *catalogue) *pgproto3.ErrorResponse
	// severity and code are the ErrorResponse's; code "" wants none.
	severity, code string
	contains       string // the message must contain it
}

// TestBadInputCatalogue plays every hostile or broken client behaviour we
// know of against a gateway with client TLS and small limits. Each one
// gets PostgreSQL's answer (the exact SQLSTATE and severity, or a silent
// close where PostgreSQL closes silently); meanwhile a good client runs
// queries without a break, and after each case the process's goroutines
// come back to their idle count (nothing leaks, no session hangs).
func TestBadInputCatalogue(t *testing.T) {
	f := securityStack(t)
	ctx := testCtx(t, 5*time.Minute)
	limited := startLimitedGateway(t, f)
	c := &catalogue{f: f, limitedAddr: limited.Addr}

	setup := connect(t, f.Stack, "")
	// One DDL statement per transaction, as DSQL runs them.
	for _, q := range []string{"drop table if exists catalogue_tx, catalogue_copy", "create table catalogue_tx (v int)", "create table catalogue_copy (v int)"} {
		if _, err := setup.Exec(ctx, q); err != nil {
			t.Fatal(err)
		}
	}
	setup.Close(ctx)

	good := startGoodClient(t, f)
	defer good.stop(t)
	// Idle is: the good client between two queries with the one upstream
	// it keeps using, every other upstream (of the setup, of the limited
	// gateway's warm-up) closed for idleness.
	good.waitProgress(t)
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		main, other := c.pool().Stats(), limited.Bridge.Route(harness.StackDatabase).Pool().Stats()
		if main.Open <= 1 && other.Open == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the pools did not shrink to idle: %+v, %+v", main, other)
		}
	}
	// A case runs in a subtest: its goroutine comes on top of this one.
	c.baseline = goroutineBaseline() + 1

	for _, tc := range badInputCases() {
		t.Run(tc.name, func(t *testing.T) {
			before := good.queries.Load()
			// Registered first, so it runs last: after the case's own
			// cleanups have closed its connections.
			t.Cleanup(func() {
				if good.queries.Load() == before {
					good.waitProgress(t)
				}
				c.settle(t)
			})
			got := tc.play(t, c)
			if got != nil {
				t.Logf("%s %s: %s", got.Severity, got.Code, got.Message)
			}
			switch {
			case tc.code == "" && got != nil:
				t.Errorf("got %s %s %q, want no error", got.Severity, got.Code, got.Message)
			case tc.code != "" && got == nil:
				t.Errorf("got no error, want %s %s", tc.severity, tc.code)
			case got != nil && (got.Code != tc.code || got.Severity != tc.severity || got.SeverityUnlocalized != tc.severity || !strings.Contains(got.Message, tc.contains)):
				t.Errorf("got %s (%s) %s %q, want %s %s containing %q", got.Severity, got.SeverityUnlocalized, got.Code, got.Message, tc.severity, tc.code, tc.contains)
			}
		})
		if err := good.err(); err != nil {
			t.Fatalf("the good client failed during %q: %v", tc.name, err)
		}
	}
}

// badInputCases is the catalogue. Startup-phase packets go over plain TCP
// unless the case is about TLS.
func badInputCases() []badInputCase {
	user := harness.StackUser
	demoStartup := startupPacket(map[string]string{"user": user, "database": harness.StackDatabase})
	return []badInputCase{
		// ---- the startup packet ----
		{name: "startup packet truncated, then close", play: sendRaw(demoStartup[:len(demoStartup)/2], true)},
		{name: "Terminate before the startup packet", play: sendRaw([]byte{'X', 0, 0, 0, 4}, false)},
		{name: "startup packet above max_startup_packet", severity: "FATAL", code: "08P01", contains: "exceeds the limit",
			play: sendRaw(startupPacket(map[string]string{"user": user, "application_name": strings.Repeat("x", 2*int(secMaxStartup))}), false)},
		{name: "startup length of 2 GiB announced, nothing sent", severity: "FATAL", code: "08P01", contains: "exceeds the limit",
			play: sendRaw([]byte{0x7f, 0xff, 0xff, 0xff}, false)},
		{name: "startup length below 8", severity: "FATAL", code: "08P01", contains: "invalid length of startup packet",
			play: sendRaw([]byte{0, 0, 0, 3, 1, 2, 3}, false)},
		{name: "http request instead of startup", severity: "FATAL", code: "08P01", contains: "exceeds the limit",
			play: sendRaw([]byte("GET / HTTP/1.1\r\nHost: localhost\r\n\r\n"), false)},
		{name: "protocol 2.0", severity: "FATAL", code: "0A000", contains: "unsupported frontend protocol 2.0",
			play: sendRaw(versionPacket(2, 0), false)},
		{name: "protocol 4.0", severity: "FATAL", code: "0A000", contains: "unsupported frontend protocol 4.0",
			play: sendRaw(versionPacket(4, 0), false)},
		{name: "startup without user", severity: "FATAL", code: "28000", contains: "no PostgreSQL user name",
			play: sendRaw(startupPacket(map[string]string{"database": "postgres"}), false)},
		{name: "unterminated startup parameters", severity: "FATAL", code: "08P01", contains: "invalid startup packet layout",
			play: sendRaw(lengthPrefixed(append(binary.BigEndian.AppendUint32(nil, 3<<16), "user\x00demo"...)), false)},
		{name: "startup parameter without value", severity: "FATAL", code: "08P01", contains: "invalid startup packet layout",
			play: sendRaw(lengthPrefixed(append(binary.BigEndian.AppendUint32(nil, 3<<16), "user\x00demo\x00database\x00"...)), false)},
		{name: "replication=true", severity: "FATAL", code: "0A000", contains: "replication",
			play: sendRaw(startupPacket(map[string]string{"user": user, "database": "postgres", "replication": "true"}), false)},
		{name: "replication=database", severity: "FATAL", code: "0A000", contains: "replication",
			play: sendRaw(startupPacket(map[string]string{"user": user, "database": "postgres", "replication": "database"}), false)},
		{name: "slowloris: half a startup packet, then silence", severity: "FATAL", code: "08P01", contains: "startup_timeout", play: playSlowloris},
		{name: "slowloris over TLS: silence mid SCRAM", severity: "FATAL", code: "08P01", contains: "startup_timeout", play: playSlowSCRAM},
		{name: "max_client_conn exceeded", severity: "FATAL", code: "53300", contains: "too many clients", play: playTooManyClients},
		{name: "CancelRequest with an unknown key",
			play: sendRaw(cancelPacket(0, 0, 0, 1, 1, 2, 3, 4), true)},
		{name: "CancelRequest too short",
			play: sendRaw(cancelPacket(0, 0, 0, 1), true)},

		// ---- TLS negotiation ----
		{name: "SSLRequest twice", severity: "FATAL", code: "0A000", contains: "unsupported frontend protocol 1234.5679", play: playSSLRequestTwice},
		{name: "SSLRequest with unencrypted bytes after it", severity: "FATAL", code: "08P01", contains: "unencrypted data after SSL request",
			play: sendRaw(append(requestPacket(sslRequestCode), demoStartup...), false)},
		{name: "GSSENCRequest, then SSLRequest, then startup", play: playGSSThenSSL},
		{name: "GSSENCRequest twice", severity: "FATAL", code: "0A000", contains: "unsupported frontend protocol 1234.5680", play: playGSSENCTwice},
		{name: "garbage instead of a TLS ClientHello after S", play: playGarbageAfterS},
		{name: "silence instead of a TLS ClientHello after S", play: playSilenceAfterS},
		{name: "direct TLS: half a ClientHello, then silence", play: playHalfDirectTLS},
		{name: "direct TLS without ALPN", play: playDirectTLS(nil)},
		{name: "direct TLS with ALPN h2 only", play: playDirectTLS([]string{"h2"})},
		{name: "SSLRequest inside direct TLS", severity: "FATAL", code: "0A000", contains: "unsupported frontend protocol 1234.5679", play: playSSLRequestInDirectTLS},
		{name: "abrupt close after SSLRequest", play: playCloseAfterSSLRequest},
		{name: "abrupt close mid TLS handshake", play: playCloseMidTLSHandshake},

		// ---- authentication ----
		{name: "wrong SCRAM password", severity: "FATAL", code: "28P01", contains: `password authentication failed for user "demo"`,
			play: pgxLogin(func(f *securityFixture) string { return f.plainURL(harness.StackUser, "wrong", "postgres") })},
		// Over TLS, whichever method an unknown name is asked for (it
		// looks like a real user's), it fails like a wrong password.
		{name: "unknown user", severity: "FATAL", code: "28P01", contains: `password authentication failed for user "nobody"`,
			play: pgxLogin(func(f *securityFixture) string { return f.tlsURL("nobody", "whatever", "postgres", "") })},
		{name: "unknown database", severity: "FATAL", code: "3D000", contains: `database "nosuchdb" does not exist`,
			play: pgxLogin(func(f *securityFixture) string { return f.plainURL(harness.StackUser, f.Password, "nosuchdb") })},
		{name: "user not allowed on a database", severity: "FATAL", code: "28000", contains: `user "scoped_user" may not connect to database "other"`,
			play: pgxLogin(func(f *securityFixture) string { return f.plainURL(scopedUser, f.passwords[scopedUser], otherDatabase) })},
		{name: "SASL with a wrong mechanism name", severity: "FATAL", code: "08P01", contains: "invalid SASL authentication mechanism",
			play: playSCRAMMechanism("SCRAM-SHA-1")},
		{name: "SCRAM-SHA-256-PLUS over plain TCP", severity: "FATAL", code: "08P01", contains: "invalid SASL authentication mechanism",
			play: playSCRAMMechanism(scramPlus)},
		{name: "SCRAM client says the server cannot bind (y) over TLS", severity: "FATAL", code: "28000", contains: "channel binding", play: playSCRAMDowngrade},
		{name: "SCRAM-PLUS bound to another certificate", severity: "FATAL", code: "28000", contains: "SCRAM channel binding check failed",
			play: playSCRAMFinal(true, func(nonce *string, cbind *[]byte) {
				other := sha256.Sum256([]byte("a man in the middle's certificate"))
				*cbind = append([]byte("p=tls-server-end-point,,"), other[:]...)
			})},
		{name: "wrong SCRAM nonce", severity: "FATAL", code: "08P01",
			play: playSCRAMFinal(false, func(nonce *string, _ *[]byte) { *nonce = changeLast(*nonce) })},
		{name: "probing an unknown user twice (its mock salt must not change)", severity: "FATAL", code: "28P01", contains: `password authentication failed for user "nobody`, play: playProbeUnknownUser},
		{name: "wrong SCRAM proof", severity: "FATAL", code: "28P01", contains: "password authentication failed", play: playWrongProof},
		{name: "replayed SCRAM client-final", severity: "FATAL", code: "08P01", play: playReplayedFinal},
		{name: "abrupt close mid SCRAM", play: playCloseMidSCRAM},
		{name: "Terminate instead of a SASL response", severity: "FATAL", code: "08P01", contains: "expected SASL response", play: playTerminateDuringAuth},
		{name: "md5 response to a SCRAM request", severity: "FATAL", code: "08P01", play: playMD5ForSCRAM},
		{name: "query instead of a SASL response", severity: "FATAL", code: "08P01", contains: "expected SASL response", play: playQueryDuringAuth},
		{name: "SASL response above max_startup_packet", severity: "FATAL", code: "08P01", contains: "exceeds the limit", play: playOversizeSASL},
		{name: "wrong md5 password", severity: "FATAL", code: "28P01", contains: `password authentication failed for user "md5_user"`, play: playWrongMD5},
		{name: "cleartext auth user over plain TCP", severity: "FATAL", code: "28000", contains: "only allowed over TLS", play: playCleartextOverTCP},
		{name: "wrong cleartext password over TLS", severity: "FATAL", code: "28P01", contains: `password authentication failed for user "clear_user"`, play: playWrongCleartext},

		// ---- after authentication ----
		{name: "Bind to a missing statement", severity: "ERROR", code: "26000", contains: "no_such_statement",
			play: playExtended(func(fe *pgproto3.Frontend) { fe.SendBind(&pgproto3.Bind{PreparedStatement: "no_such_statement"}) })},
		{name: "Bind to another client's named statement", severity: "ERROR", code: "26000", contains: "shared_statement",
			play: playOtherClientsStatement("shared_statement")},
		{name: "Bind to another client's unnamed statement", severity: "ERROR", code: "26000", contains: "unnamed prepared statement does not exist",
			play: playOtherClientsStatement("")},
		{name: "CancelRequest with a live session's pid and a wrong secret", play: playCancelWrongSecret},
		{name: "Execute of a missing portal", severity: "ERROR", code: "34000", contains: "no_such_portal",
			play: playExtended(func(fe *pgproto3.Frontend) { fe.SendExecute(&pgproto3.Execute{Portal: "no_such_portal"}) })},
		// After an error in a batch the server ignores everything up to
		// Sync, a Query or FunctionCall included: none of them may leave
		// the gateway waiting for a reply that never comes (it took the
		// route down when repeated pool.size times).
		{name: "Query after an error inside a batch, before Sync", severity: "ERROR", code: "22012", contains: "division by zero",
			play: playExtended(func(fe *pgproto3.Frontend) {
				fe.SendParse(&pgproto3.Parse{Query: "select 1/0"})
				fe.SendBind(&pgproto3.Bind{})
				fe.SendExecute(&pgproto3.Execute{})
				fe.Send(&pgproto3.Query{String: "select 1"})
			})},
		{name: "FunctionCall after a Bind to a missing statement, before Sync", severity: "ERROR", code: "26000", contains: "no_such_statement",
			play: playExtended(func(fe *pgproto3.Frontend) {
				fe.SendBind(&pgproto3.Bind{PreparedStatement: "no_such_statement"})
				fe.Send(&pgproto3.FunctionCall{Function: 1598})
			})},
		{name: "Close flood behind an owed reply", severity: "FATAL", code: "54000", contains: "replies pending",
			play: playAfterLogin(closeFlood(150_000), false)},
		{name: "message type that does not exist", severity: "FATAL", code: "08P01", contains: "invalid frontend message type",
			play: playAfterLogin([]byte{'y', 0, 0, 0, 4}, false)},
		{name: "message length below 4", severity: "FATAL", code: "08P01", contains: "invalid message length",
			play: playAfterLogin([]byte{'Q', 0, 0, 0, 3}, false)},
		{name: "query above max_message_size", severity: "FATAL", code: "54000", contains: "exceeds the gateway's limit",
			play: playAfterLogin(queryMessage("select '"+strings.Repeat("x", 2*int(secMaxMessage))+"'"), false)},
		{name: "COPY messages outside COPY", play: playCopyOutsideCopy},
		{name: "message truncated, then close", play: playAfterLogin(queryMessage("select 1")[:8], true)},
		{name: "abrupt close mid query", play: playCloseMidQuery},
		{name: "abrupt close mid COPY FROM STDIN", play: playCloseMidCopy},
		{name: "abrupt close inside an open transaction", play: playCloseInTransaction},
	}
}

const scramPlus = "SCRAM-SHA-256-PLUS"

// clientHelloFragment is the start of a TLS record announcing a 512-byte
// handshake message (a ClientHello) and the first bytes of it.
var clientHelloFragment = []byte{0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc, 0x03, 0x03}

// cancelPacket is a CancelRequest with body (process id and secret key,
// 8 bytes when well formed).
func cancelPacket(body ...byte) []byte {
	return lengthPrefixed(append(binary.BigEndian.AppendUint32(nil, cancelRequestCode), body...))
}

// ---- the good client ----

// goodClient runs queries on one pgx connection (TLS, verify-full) in a
// loop until stopped, and reports its first error on a channel.
type goodClient struct {
	queries atomic.Int64
	errc    chan error // buffered; the loop's only error
	quit    chan struct{}
	done    chan struct{}
}

func startGoodClient(t *testing.T, f *securityFixture) *goodClient {
	conn := connect(t, f.Stack, "sslmode=verify-full&sslrootcert="+f.ClientCAFile)
	g := &goodClient{errc: make(chan error, 1), quit: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(g.done)
		for i := 0; ; i++ {
			select {
			case <-g.quit:
				return
			case <-time.After(2 * time.Millisecond): // mostly idle, so an idle goroutine count is easy to see
			}
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			var v int
			err := conn.QueryRow(ctx, "select $1::int + 1", i).Scan(&v)
			cancel()
			if err == nil && v != i+1 {
				err = errors.New("wrong answer")
			}
			if err != nil {
				g.errc <- err
				return
			}
			g.queries.Add(1)
		}
	}()
	return g
}

// err returns the loop's error, if it stopped on one.
func (g *goodClient) err() error {
	select {
	case err := <-g.errc:
		g.errc <- err
		return err
	default:
		return nil
	}
}

// waitProgress waits for the good client's next query.
func (g *goodClient) waitProgress(t *testing.T) {
	t.Helper()
	n := g.queries.Load()
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(time.Millisecond) {
		if g.queries.Load() > n {
			return
		}
		if err := g.err(); err != nil {
			t.Fatalf("the good client failed: %v", err)
		}
	}
	t.Fatalf("the good client made no progress in 10s")
}

func (g *goodClient) stop(t *testing.T) {
	close(g.quit)
	<-g.done
	if err := g.err(); err != nil {
		t.Errorf("the good client failed: %v", err)
	}
	if g.queries.Load() == 0 {
		t.Errorf("the good client ran no query")
	}
}

// startLimitedGateway starts a second gateway with f's route and user
// that serves one client at most, and warms it up.
func startLimitedGateway(t *testing.T, f *securityFixture) *gateway.Gateway {
	cfg := *f.Gateway.Config()
	cfg.Listen = "127.0.0.1:0"
	cfg.Limits.MaxClientConn = 1
	// Own copies: Validate writes into users and routes.
	cfg.Users = []config.User{cfg.Users[0]}
	cfg.Routes = []config.Route{cfg.Routes[0]}
	gw, err := gateway.Start(testCtx(t, time.Minute), &cfg, gateway.Options{
		Credentials: credentials.StaticCredentialsProvider{Value: f.Credentials},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { gw.Close() })
	warm, err := pgx.Connect(testCtx(t, 30*time.Second), "postgres://"+f.User+":"+f.Password+"@"+gw.Addr+"/postgres?sslmode=disable")
	if err != nil {
		t.Fatal(err)
	}
	warm.Close(context.Background())
	return gw
}

// ---- plays ----

// sendRaw sends bytes on a new plain connection (half-closing it after
// them when closeWrite) and reads until the gateway closes. At most one
// ErrorResponse may come back.
func sendRaw(send []byte, closeWrite bool) func(*testing.T, *catalogue) *pgproto3.ErrorResponse {
	return func(t *testing.T, c *catalogue) *pgproto3.ErrorResponse {
		conn := dialRaw(t, c.f.Gateway.Addr)
		return writeThenRead(t, conn, send, closeWrite)
	}
}

// writeThenRead writes send while it reads the answer until the gateway
// closes. The write runs beside the read, as a real client's would: the
// gateway may refuse before it has read everything, and then the write
// may fail, which is fine.
func writeThenRead(t *testing.T, conn net.Conn, send []byte, closeWrite bool) *pgproto3.ErrorResponse {
	t.Helper()
	wrote := make(chan error, 1)
	go func() {
		_, err := conn.Write(send)
		if err == nil && closeWrite {
			err = closeWriteOf(conn)
		}
		wrote <- err
	}()
	got, err := readUntilClose(conn)
	<-wrote
	if err != nil {
		t.Fatalf("reading the answer: %v", err)
	}
	return onlyError(t, got)
}

func closeWriteOf(conn net.Conn) error {
	switch c := conn.(type) {
	case *net.TCPConn:
		return c.CloseWrite()
	case *tls.Conn:
		return c.CloseWrite()
	}
	return errors.New("cannot half-close")
}

// onlyError checks that msgs is nothing or one ErrorResponse.
func onlyError(t *testing.T, msgs []pgproto3.BackendMessage) *pgproto3.ErrorResponse {
	t.Helper()
	switch {
	case len(msgs) == 0:
		return nil
	case len(msgs) > 1:
		t.Fatalf("got %d messages %#v, want at most one ErrorResponse", len(msgs), msgs)
	}
	er, ok := msgs[0].(*pgproto3.ErrorResponse)
	if !ok {
		t.Fatalf("got %#v, want an ErrorResponse or nothing", msgs[0])
	}
	return er
}

// receiveUntilClose reads backend messages from fe until the gateway
// closes; ErrorResponses are copied.
func receiveUntilClose(t *testing.T, fe *pgproto3.Frontend) []pgproto3.BackendMessage {
	t.Helper()
	var got []pgproto3.BackendMessage
	for {
		msg, err := receive(fe)
		if er := asErrorResponse(err); er != nil {
			got = append(got, er)
			continue
		}
		if err != nil {
			if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || isReset(err) {
				return got
			}
			t.Fatalf("reading until close: %v (after %d messages)", err, len(got))
		}
		got = append(got, msg)
	}
}

func queryMessage(sql string) []byte {
	b, _ := (&pgproto3.Query{String: sql}).Encode(nil)
	return b
}

func playSlowloris(t *testing.T, c *catalogue) *pgproto3.ErrorResponse {
	conn := dialRaw(t, c.f.Gateway.Addr)
	start := time.Now()
	p := startupPacket(map[string]string{"user": harness.StackUser})
	if _, err := conn.Write(p[:len(p)/2]); err != nil {
		t.Fatal(err)
	}
	got, err := readUntilClose(conn)
	if err != nil {
		t.Fatal(err)
	}
	// Loose bounds: the gateway's clock starts at accept.
	if took := time.Since(start); took < secStartupTimeout/2 || took > secStartupTimeout+5*time.Second {
		t.Errorf("closed after %v, want about startup_timeout (%v)", took, secStartupTimeout)
	}
	return onlyError(t, got)
}

func playTooManyClients(t *testing.T, c *catalogue) *pgproto3.ErrorResponse {
	ctx := testCtx(t, 30*time.Second)
	first, err := pgx.Connect(ctx, "postgres://"+c.f.User+":"+c.f.Password+"@"+c.limitedAddr+"/postgres?sslmode=disable")
	if err != nil {
		t.Fatal(err)
	}
	defer first.Close(ctx)
	er := writeThenRead(t, dialRaw(t, c.limitedAddr), startupPacket(map[string]string{"user": c.f.User, "database": "postgres"}), false)
	if err := first.Ping(ctx); err != nil {
		t.Errorf("the client already served failed: %v", err)
	}
	return er
}

func playSSLRequestTwice(t *testing.T, c *catalogue) *pgproto3.ErrorResponse {
	tc, err := negotiateTLS(dialRaw(t, c.f.Gateway.Addr), clientTLS(t, c.f.ClientCAFile))
	if err != nil {
		t.Fatal(err)
	}
	return writeThenRead(t, tc, requestPacket(sslRequestCode), false)
}

func playGSSThenSSL(t *testing.T, c *catalogue) *pgproto3.ErrorResponse {
	conn := dialRaw(t, c.f.Gateway.Addr)
	sendRequest(t, conn, gssEncRequestCode, 'N')
	tc, err := negotiateTLS(conn, clientTLS(t, c.f.ClientCAFile))
	if err != nil {
		t.Fatal(err)
	}
	fe, err := login(tc, c.f.User, c.f.Password, "postgres")
	if er := asErrorResponse(err); er != nil {
		return er
	}
	if err != nil {
		t.Fatal(err)
	}
	if rows, status, err := simpleQuery(fe, "select 'fine'"); err != nil || len(rows) != 1 || rows[0] != "fine" || status != 'I' {
		t.Fatalf("query after GSSENC, SSL and SCRAM-PLUS: %v %c %v", rows, status, err)
	}
	fe.Send(&pgproto3.Terminate{})
	fe.Flush()
	return nil
}

// readTLSFailure reads what the gateway sends after a failed TLS
// negotiation until it closes: nothing, or TLS alert records, never a
// PostgreSQL message.
func readTLSFailure(t *testing.T, conn net.Conn) {
	t.Helper()
	b, err := io.ReadAll(conn)
	if err != nil && !isReset(err) {
		t.Fatalf("reading until close: %v", err)
	}
	if len(b) > 0 && b[0] != 0x15 { // 0x15: a TLS alert record
		t.Fatalf("got %q after a broken TLS handshake, want a close (or a TLS alert)", b)
	}
}

func playGarbageAfterS(t *testing.T, c *catalogue) *pgproto3.ErrorResponse {
	conn := dialRaw(t, c.f.Gateway.Addr)
	sendRequest(t, conn, sslRequestCode, 'S')
	if _, err := conn.Write([]byte("this is not a TLS ClientHello\r\n\r\n")); err != nil {
		t.Fatal(err)
	}
	readTLSFailure(t, conn)
	return nil
}

// playDirectTLS starts TLS at the first byte (sslnegotiation=direct)
// offering alpn. Without ALPN "postgresql" the gateway must refuse, as
// PostgreSQL 17 does: the handshake fails, or the connection closes right
// after it without a word.
func playDirectTLS(alpn []string) func(*testing.T, *catalogue) *pgproto3.ErrorResponse {
	return func(t *testing.T, c *catalogue) *pgproto3.ErrorResponse {
		cfg := clientTLS(t, c.f.ClientCAFile)
		cfg.NextProtos = alpn
		conn := dialRaw(t, c.f.Gateway.Addr)
		tc := tls.Client(conn, cfg)
		if err := tc.Handshake(); err != nil {
			t.Logf("refused in the handshake: %v", err)
			return nil
		}
		got, err := readUntilCloseAfter(tc, startupPacket(map[string]string{"user": c.f.User, "database": "postgres"}))
		if err != nil {
			t.Fatal(err)
		}
		if len(got) > 0 {
			t.Fatalf("direct TLS with ALPN %q was served: %#v", alpn, got)
		}
		t.Log("closed after the handshake")
		return nil
	}
}

// readUntilCloseAfter writes send (ignoring a failure: the gateway may
// have closed already) and reads until the gateway closes.
func readUntilCloseAfter(conn net.Conn, send []byte) ([]pgproto3.BackendMessage, error) {
	conn.Write(send)
	return readUntilClose(conn)
}

func playCloseAfterSSLRequest(t *testing.T, c *catalogue) *pgproto3.ErrorResponse {
	conn := dialRaw(t, c.f.Gateway.Addr)
	sendRequest(t, conn, sslRequestCode, 'S')
	conn.Close()
	return nil
}

func playCloseMidTLSHandshake(t *testing.T, c *catalogue) *pgproto3.ErrorResponse {
	conn := dialRaw(t, c.f.Gateway.Addr)
	sendRequest(t, conn, sslRequestCode, 'S')
	conn.Write(clientHelloFragment)
	conn.Close()
	return nil
}

// pgxLogin logs in with pgx and returns the server's refusal.
func pgxLogin(connString func(*securityFixture) string) func(*testing.T, *catalogue) *pgproto3.ErrorResponse {
	return func(t *testing.T, c *catalogue) *pgproto3.ErrorResponse {
		ctx := testCtx(t, 30*time.Second)
		conn, err := pgx.Connect(ctx, connString(c.f))
		if err == nil {
			conn.Close(ctx)
			return nil
		}
		var pgErr *pgconn.PgError
		if !errors.As(err, &pgErr) {
			t.Fatalf("error %v is not a server error", err)
		}
		return &pgproto3.ErrorResponse{Severity: pgErr.Severity, SeverityUnlocalized: pgErr.SeverityUnlocalized, Code: pgErr.Code, Message: pgErr.Message}
	}
}

// startDemo sends the demo user's startup on conn and returns a frontend.
func startDemo(t *testing.T, c *catalogue, conn net.Conn) *pgproto3.Frontend {
	t.Helper()
	fe, err := sendStartup(conn, map[string]string{"user": c.f.User, "database": "postgres"})
	if err != nil {
		t.Fatal(err)
	}
	return fe
}

// refusal reads the rest of the conversation, which must be one
// ErrorResponse and a close.
func refusal(t *testing.T, fe *pgproto3.Frontend) *pgproto3.ErrorResponse {
	t.Helper()
	return onlyError(t, receiveUntilClose(t, fe))
}

// playSCRAMMechanism answers AuthenticationSASL (over plain TCP) with
// mechanism.
func playSCRAMMechanism(mechanism string) func(*testing.T, *catalogue) *pgproto3.ErrorResponse {
	return func(t *testing.T, c *catalogue) *pgproto3.ErrorResponse {
		fe := startDemo(t, c, dialRaw(t, c.f.Gateway.Addr))
		if _, err := expect[*pgproto3.AuthenticationSASL](fe); err != nil {
			t.Fatal(err)
		}
		sc := newSCRAMClient(c.f.Password, nil)
		if mechanism == scramPlus {
			sc.GS2Header = "p=tls-server-end-point,,"
		}
		data := sc.First()
		fe.Send(&pgproto3.SASLInitialResponse{AuthMechanism: mechanism, Data: data})
		if err := fe.Flush(); err != nil {
			t.Fatal(err)
		}
		return refusal(t, fe)
	}
}

// playSCRAMDowngrade: over TLS, where the gateway offers
// SCRAM-SHA-256-PLUS, the client claims it could bind but the server
// cannot ("y"): a man in the middle stripped PLUS from the offer.
func playSCRAMDowngrade(t *testing.T, c *catalogue) *pgproto3.ErrorResponse {
	tc, err := negotiateTLS(dialRaw(t, c.f.Gateway.Addr), clientTLS(t, c.f.ClientCAFile))
	if err != nil {
		t.Fatal(err)
	}
	fe := startDemo(t, c, tc)
	sc := newSCRAMClient(c.f.Password, nil)
	sc.GS2Header = "y,,"
	if _, err := beginSCRAM(fe, sc); err != nil {
		return asErrorResponseOrFail(t, err)
	}
	t.Fatal("the gateway went on with a downgraded SCRAM exchange")
	return nil
}

// asErrorResponseOrFail returns the ErrorResponse in err, failing t when
// err is something else.
func asErrorResponseOrFail(t *testing.T, err error) *pgproto3.ErrorResponse {
	t.Helper()
	er := asErrorResponse(err)
	if er == nil {
		t.Fatal(err)
	}
	return er
}

// playSCRAMFinal runs SCRAM as the demo user (PLUS over TLS when plus)
// with the right password, editing the client-final message before the
// proof is computed.
func playSCRAMFinal(plus bool, edit func(nonce *string, cbind *[]byte)) func(*testing.T, *catalogue) *pgproto3.ErrorResponse {
	return func(t *testing.T, c *catalogue) *pgproto3.ErrorResponse {
		var conn net.Conn = dialRaw(t, c.f.Gateway.Addr)
		var tc *tls.Conn
		if plus {
			var err error
			if tc, err = negotiateTLS(conn, clientTLS(t, c.f.ClientCAFile)); err != nil {
				t.Fatal(err)
			}
			conn = tc
		}
		fe := startDemo(t, c, conn)
		sc := newSCRAMClient(c.f.Password, tc)
		return finishSCRAM(t, fe, sc, edit)
	}
}

// finishSCRAM runs the exchange from AuthenticationSASL and returns the
// refusal; an exchange that succeeds fails t.
func finishSCRAM(t *testing.T, fe *pgproto3.Frontend, sc *scramclient.Client, edit func(nonce *string, cbind *[]byte)) *pgproto3.ErrorResponse {
	t.Helper()
	serverFirst, err := beginSCRAM(fe, sc)
	if err != nil {
		return asErrorResponseOrFail(t, err)
	}
	sc.Edit = edit
	final, err := sc.Final(serverFirst)
	if err != nil {
		t.Fatal(err)
	}
	fe.Send(&pgproto3.SASLResponse{Data: final})
	if err := fe.Flush(); err != nil {
		t.Fatal(err)
	}
	got := receiveUntilClose(t, fe)
	if len(got) > 0 {
		if _, ok := got[0].(*pgproto3.AuthenticationSASLFinal); ok {
			t.Fatal("the gateway accepted the exchange")
		}
	}
	return onlyError(t, got)
}

// changeLast changes the last character of s.
func changeLast(s string) string {
	if strings.HasSuffix(s, "A") {
		return s[:len(s)-1] + "B"
	}
	return s[:len(s)-1] + "A"
}

func playWrongProof(t *testing.T, c *catalogue) *pgproto3.ErrorResponse {
	fe := startDemo(t, c, dialRaw(t, c.f.Gateway.Addr))
	return finishSCRAM(t, fe, newSCRAMClient("not the password", nil), nil)
}

// playReplayedFinal records a successful exchange's client-final message
// and replays it, with the same client nonce, in a later exchange.
func playReplayedFinal(t *testing.T, c *catalogue) *pgproto3.ErrorResponse {
	first := newSCRAMClient(c.f.Password, nil)
	fe := startDemo(t, c, dialRaw(t, c.f.Gateway.Addr))
	serverFirst, err := beginSCRAM(fe, first)
	if err != nil {
		t.Fatal(err)
	}
	recorded, err := first.Final(serverFirst)
	if err != nil {
		t.Fatal(err)
	}
	fe.Send(&pgproto3.SASLResponse{Data: recorded})
	if err := fe.Flush(); err != nil {
		t.Fatal(err)
	}
	if _, err := expect[*pgproto3.AuthenticationSASLFinal](fe); err != nil {
		t.Fatalf("the recorded exchange: %v", err)
	}
	fe.Send(&pgproto3.Terminate{})
	fe.Flush()

	replay := newSCRAMClient(c.f.Password, nil)
	replay.Nonce = first.Nonce
	fe = startDemo(t, c, dialRaw(t, c.f.Gateway.Addr))
	if _, err := beginSCRAM(fe, replay); err != nil {
		t.Fatal(err)
	}
	fe.Send(&pgproto3.SASLResponse{Data: recorded})
	if err := fe.Flush(); err != nil {
		t.Fatal(err)
	}
	return refusal(t, fe)
}

func playCloseMidSCRAM(t *testing.T, c *catalogue) *pgproto3.ErrorResponse {
	conn := dialRaw(t, c.f.Gateway.Addr)
	fe := startDemo(t, c, conn)
	if _, err := beginSCRAM(fe, newSCRAMClient(c.f.Password, nil)); err != nil {
		t.Fatal(err)
	}
	conn.Close()
	return nil
}

func playMD5ForSCRAM(t *testing.T, c *catalogue) *pgproto3.ErrorResponse {
	fe := startDemo(t, c, dialRaw(t, c.f.Gateway.Addr))
	if _, err := expect[*pgproto3.AuthenticationSASL](fe); err != nil {
		t.Fatal(err)
	}
	fe.Send(&pgproto3.PasswordMessage{Password: md5Response(c.f.Password, c.f.User, [4]byte{1, 2, 3, 4})})
	if err := fe.Flush(); err != nil {
		t.Fatal(err)
	}
	return refusal(t, fe)
}

func playQueryDuringAuth(t *testing.T, c *catalogue) *pgproto3.ErrorResponse {
	fe := startDemo(t, c, dialRaw(t, c.f.Gateway.Addr))
	if _, err := expect[*pgproto3.AuthenticationSASL](fe); err != nil {
		t.Fatal(err)
	}
	fe.Send(&pgproto3.Query{String: "select 1"})
	if err := fe.Flush(); err != nil {
		t.Fatal(err)
	}
	return refusal(t, fe)
}

func playOversizeSASL(t *testing.T, c *catalogue) *pgproto3.ErrorResponse {
	conn := dialRaw(t, c.f.Gateway.Addr)
	fe := startDemo(t, c, conn)
	if _, err := expect[*pgproto3.AuthenticationSASL](fe); err != nil {
		t.Fatal(err)
	}
	huge, _ := (&pgproto3.SASLInitialResponse{AuthMechanism: "SCRAM-SHA-256", Data: []byte("n,,n=,r=" + strings.Repeat("x", 2*int(secMaxStartup)))}).Encode(nil)
	wrote := make(chan error, 1)
	go func() { _, err := conn.Write(huge); wrote <- err }()
	got := receiveUntilClose(t, fe)
	<-wrote // it may fail: the gateway does not read what it refuses
	return onlyError(t, got)
}

func playWrongMD5(t *testing.T, c *catalogue) *pgproto3.ErrorResponse {
	fe, err := sendStartup(dialRaw(t, c.f.Gateway.Addr), map[string]string{"user": md5User, "database": "postgres"})
	if err != nil {
		t.Fatal(err)
	}
	req, err := expect[*pgproto3.AuthenticationMD5Password](fe)
	if err != nil {
		t.Fatal(err)
	}
	fe.Send(&pgproto3.PasswordMessage{Password: md5Response("not the password", md5User, req.Salt)})
	if err := fe.Flush(); err != nil {
		t.Fatal(err)
	}
	return refusal(t, fe)
}

// playCleartextOverTCP: a user with auth password connects without TLS.
// The gateway must refuse before it asks for the password, so that the
// client never sends it in clear.
func playCleartextOverTCP(t *testing.T, c *catalogue) *pgproto3.ErrorResponse {
	fe, err := sendStartup(dialRaw(t, c.f.Gateway.Addr), map[string]string{"user": clearUser, "database": "postgres"})
	if err != nil {
		t.Fatal(err)
	}
	got := receiveUntilClose(t, fe)
	for _, m := range got {
		if _, ok := m.(*pgproto3.AuthenticationCleartextPassword); ok {
			t.Fatal("the gateway asked for a cleartext password over plain TCP")
		}
	}
	return onlyError(t, got)
}

func playWrongCleartext(t *testing.T, c *catalogue) *pgproto3.ErrorResponse {
	tc, err := negotiateTLS(dialRaw(t, c.f.Gateway.Addr), clientTLS(t, c.f.ClientCAFile))
	if err != nil {
		t.Fatal(err)
	}
	fe, err := sendStartup(tc, map[string]string{"user": clearUser, "database": "postgres"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := expect[*pgproto3.AuthenticationCleartextPassword](fe); err != nil {
		t.Fatal(err)
	}
	fe.Send(&pgproto3.PasswordMessage{Password: "not the password"})
	if err := fe.Flush(); err != nil {
		t.Fatal(err)
	}
	return refusal(t, fe)
}

// session logs the demo user in over plain TCP.
func session(t *testing.T, c *catalogue) (net.Conn, *pgproto3.Frontend) {
	t.Helper()
	conn := dialRaw(t, c.f.Gateway.Addr)
	fe, err := login(conn, c.f.User, c.f.Password, "postgres")
	if err != nil {
		t.Fatalf("log in: %v", err)
	}
	return conn, fe
}

// playExtended sends extended-protocol messages and Sync in a session and
// returns the error it gets (after nothing but the ParseComplete and
// BindComplete of what succeeded before it); the session must then still
// work.
func playExtended(send func(*pgproto3.Frontend)) func(*testing.T, *catalogue) *pgproto3.ErrorResponse {
	return func(t *testing.T, c *catalogue) *pgproto3.ErrorResponse {
		_, fe := session(t, c)
		send(fe)
		fe.SendSync(&pgproto3.Sync{})
		if err := fe.Flush(); err != nil {
			t.Fatal(err)
		}
		var got *pgproto3.ErrorResponse
		for {
			msg, err := receive(fe)
			if er := asErrorResponse(err); er != nil && got == nil {
				got = er
				continue
			}
			if err != nil {
				t.Fatal(err)
			}
			if rfq, ok := msg.(*pgproto3.ReadyForQuery); ok {
				if rfq.TxStatus != 'I' {
					t.Errorf("ReadyForQuery %c, want I", rfq.TxStatus)
				}
				break
			}
			switch msg.(type) {
			case *pgproto3.ParseComplete, *pgproto3.BindComplete:
				if got == nil {
					continue // what succeeded before the error
				}
			}
			t.Fatalf("unexpected %T before ReadyForQuery", msg)
		}
		if rows, status, err := simpleQuery(fe, "select 'still here'"); err != nil || len(rows) != 1 || rows[0] != "still here" || status != 'I' {
			t.Errorf("the session after the error: %v %c %v", rows, status, err)
		}
		fe.Send(&pgproto3.Terminate{})
		fe.Flush()
		return got
	}
}

// closeFlood is a Parse of a new statement without Sync (the upstream owes
// its ParseComplete until a Sync or Flush) followed by n Close messages,
// each answered by the gateway itself: their answers wait behind the owed
// one.
func closeFlood(n int) []byte {
	out, _ := (&pgproto3.Parse{Name: "flood", Query: "select 1"}).Encode(nil)
	close, _ := (&pgproto3.Close{ObjectType: 'S', Name: "nosuch"}).Encode(nil)
	for range n {
		out = append(out, close...)
	}
	return out
}

// playAfterLogin sends raw bytes in a session and reads until the gateway
// closes (after half-closing when closeWrite).
func playAfterLogin(send []byte, closeWrite bool) func(*testing.T, *catalogue) *pgproto3.ErrorResponse {
	return func(t *testing.T, c *catalogue) *pgproto3.ErrorResponse {
		conn, fe := session(t, c)
		wrote := make(chan error, 1)
		go func() {
			_, err := conn.Write(send)
			if err == nil && closeWrite {
				err = closeWriteOf(conn)
			}
			wrote <- err
		}()
		got := receiveUntilClose(t, fe)
		<-wrote // it may fail: the gateway does not read what it refuses
		return onlyError(t, got)
	}
}

// checkUpstreams is run after a client vanished in the middle of some
// work on table: once the gateway has dealt with it, the work left no
// row, and every upstream the pool holds is clean and usable: three
// clients at once (so idle upstreams are all taken) each see an empty
// table from a fresh transaction. It returns how many upstreams the pool
// lost meanwhile.
func (c *catalogue) checkUpstreams(t *testing.T, table string, lostBefore uint64) (lost uint64) {
	t.Helper()
	c.settle(t)
	const clients = 3
	errc := make(chan error, clients)
	release := make(chan struct{})
	var ready sync.WaitGroup
	ready.Add(clients)
	for range clients {
		conn := connect(t, c.f.Stack, "")
		go func() {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			err := func() error {
				tx, err := conn.Begin(ctx)
				if err != nil {
					ready.Done()
					return err
				}
				defer tx.Rollback(ctx)
				var n int
				err = tx.QueryRow(ctx, "select count(*) from "+table).Scan(&n)
				ready.Done()
				if err == nil && n != 0 {
					err = errors.New(table + " has rows the vanished client never committed")
				}
				<-release
				return err
			}()
			conn.Close(ctx)
			errc <- err
		}()
	}
	ready.Wait()
	close(release)
	for range clients {
		if err := <-errc; err != nil {
			t.Error(err)
		}
	}
	return c.pool().Stats().Lost - lostBefore
}

func playCloseMidQuery(t *testing.T, c *catalogue) *pgproto3.ErrorResponse {
	lostBefore := c.pool().Stats().Lost
	conn, fe := session(t, c)
	fe.Send(&pgproto3.Query{String: "select pg_sleep(0.3)"})
	if err := fe.Flush(); err != nil {
		t.Fatal(err)
	}
	conn.Close()
	if lost := c.checkUpstreams(t, "catalogue_tx", lostBefore); lost != 0 {
		t.Errorf("the pool lost %d upstreams: a query that ends on its own should leave its upstream reusable", lost)
	}
	return nil
}

func playCloseMidCopy(t *testing.T, c *catalogue) *pgproto3.ErrorResponse {
	lostBefore := c.pool().Stats().Lost
	conn, fe := session(t, c)
	fe.Send(&pgproto3.Query{String: "copy catalogue_copy from stdin"})
	if err := fe.Flush(); err != nil {
		t.Fatal(err)
	}
	if _, err := expect[*pgproto3.CopyInResponse](fe); err != nil {
		t.Fatal(err)
	}
	fe.Send(&pgproto3.CopyData{Data: []byte("1\n2\n3\n")})
	if err := fe.Flush(); err != nil {
		t.Fatal(err)
	}
	conn.Close()
	lost := c.checkUpstreams(t, "catalogue_copy", lostBefore)
	t.Logf("upstreams lost after a client vanished mid-COPY: %d", lost)
	return nil
}

func playCloseInTransaction(t *testing.T, c *catalogue) *pgproto3.ErrorResponse {
	lostBefore := c.pool().Stats().Lost
	conn, fe := session(t, c)
	if _, status, err := simpleQuery(fe, "begin; insert into catalogue_tx values (1), (2)"); err != nil || status != 'T' {
		t.Fatalf("open a transaction: %c %v", status, err)
	}
	conn.Close()
	if lost := c.checkUpstreams(t, "catalogue_tx", lostBefore); lost != 0 {
		t.Errorf("the pool lost %d upstreams: an idle transaction should be rolled back and its upstream reused", lost)
	}
	return nil
}

func playSSLRequestInDirectTLS(t *testing.T, c *catalogue) *pgproto3.ErrorResponse {
	cfg := clientTLS(t, c.f.ClientCAFile)
	cfg.NextProtos = []string{"postgresql"}
	tc := tls.Client(dialRaw(t, c.f.Gateway.Addr), cfg)
	if err := tc.Handshake(); err != nil {
		t.Fatalf("direct TLS with ALPN postgresql: %v", err)
	}
	return writeThenRead(t, tc, requestPacket(sslRequestCode), false)
}

// playTerminateDuringAuth: PostgreSQL answers a Terminate where it waits
// for the password as it does any other message there (libpq, which sends
// it when it has no password to give, has closed by then).
func playTerminateDuringAuth(t *testing.T, c *catalogue) *pgproto3.ErrorResponse {
	fe := startDemo(t, c, dialRaw(t, c.f.Gateway.Addr))
	if _, err := expect[*pgproto3.AuthenticationSASL](fe); err != nil {
		t.Fatal(err)
	}
	fe.Send(&pgproto3.Terminate{})
	if err := fe.Flush(); err != nil {
		t.Fatal(err)
	}
	return refusal(t, fe)
}

// playOtherClientsStatement: client A prepares a statement called name
// (the unnamed one when name is ""), and client B, on the same gateway and
// pool, binds a statement of that name without preparing it. B must get
// 26000, never A's statement, and go on working.
func playOtherClientsStatement(name string) func(*testing.T, *catalogue) *pgproto3.ErrorResponse {
	return func(t *testing.T, c *catalogue) *pgproto3.ErrorResponse {
		_, a := session(t, c)
		a.SendParse(&pgproto3.Parse{Name: name, Query: "select 'client A''s statement'"})
		a.SendSync(&pgproto3.Sync{})
		if err := a.Flush(); err != nil {
			t.Fatal(err)
		}
		if msgs, err := untilReady(a); err != nil {
			t.Fatalf("client A's Parse: %v %#v", err, msgs)
		}
		defer func() {
			a.Send(&pgproto3.Terminate{})
			a.Flush()
		}()
		return playExtended(func(b *pgproto3.Frontend) {
			b.SendBind(&pgproto3.Bind{PreparedStatement: name})
			b.SendExecute(&pgproto3.Execute{})
		})(t, c)
	}
}

// untilReady reads up to ReadyForQuery; an ErrorResponse is an error.
// The messages returned are only valid until fe receives another message
// of the same type (pgproto3 reuses them).
func untilReady(fe *pgproto3.Frontend) ([]pgproto3.BackendMessage, error) {
	var msgs []pgproto3.BackendMessage
	for {
		msg, err := receive(fe)
		if err != nil {
			return msgs, err
		}
		if _, ok := msg.(*pgproto3.ReadyForQuery); ok {
			return msgs, nil
		}
		msgs = append(msgs, msg)
	}
}

// playCancelWrongSecret: a CancelRequest names the process id a running
// session was given, with a wrong secret. It is dropped silently and the
// session's query is not cancelled.
func playCancelWrongSecret(t *testing.T, c *catalogue) *pgproto3.ErrorResponse {
	conn := dialRaw(t, c.f.Gateway.Addr)
	fe, err := sendStartup(conn, map[string]string{"user": c.f.User, "database": "postgres"})
	if err != nil {
		t.Fatal(err)
	}
	var key *pgproto3.BackendKeyData
	sc := newSCRAMClient(c.f.Password, nil)
	serverFirst, err := beginSCRAM(fe, sc)
	if err != nil {
		t.Fatal(err)
	}
	final, err := sc.Final(serverFirst)
	if err != nil {
		t.Fatal(err)
	}
	fe.Send(&pgproto3.SASLResponse{Data: final})
	if err := fe.Flush(); err != nil {
		t.Fatal(err)
	}
	msgs, err := untilReady(fe)
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range msgs {
		if k, ok := m.(*pgproto3.BackendKeyData); ok {
			key = &pgproto3.BackendKeyData{ProcessID: k.ProcessID, SecretKey: bytes.Clone(k.SecretKey)}
		}
	}
	if key == nil || len(key.SecretKey) != 4 {
		t.Fatalf("no BackendKeyData with a 4-byte secret in %#v", msgs)
	}
	fe.Send(&pgproto3.Query{String: "select pg_sleep(0.5)"})
	if err := fe.Flush(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(100 * time.Millisecond) // the query is running upstream
	wrong := bytes.Clone(key.SecretKey)
	wrong[0] ^= 0xff
	body := append(binary.BigEndian.AppendUint32(nil, key.ProcessID), wrong...)
	if er := sendRaw(cancelPacket(body...), true)(t, c); er != nil {
		return er
	}
	if _, err := untilReady(fe); err != nil {
		t.Fatalf("the query was cancelled by a CancelRequest with a wrong secret: %v", err)
	}
	fe.Send(&pgproto3.Terminate{})
	fe.Flush()
	return nil
}

// playSlowSCRAM stops answering after the server-first message, over TLS:
// the startup deadline covers authentication too, through the TLS layer.
func playSlowSCRAM(t *testing.T, c *catalogue) *pgproto3.ErrorResponse {
	start := time.Now()
	tc, err := negotiateTLS(dialRaw(t, c.f.Gateway.Addr), clientTLS(t, c.f.ClientCAFile))
	if err != nil {
		t.Fatal(err)
	}
	fe := startDemo(t, c, tc)
	if _, err := beginSCRAM(fe, newSCRAMClient(c.f.Password, tc)); err != nil {
		t.Fatal(err)
	}
	er := refusal(t, fe)
	if took := time.Since(start); took < secStartupTimeout/2 || took > secStartupTimeout+5*time.Second {
		t.Errorf("closed after %v, want about startup_timeout (%v)", took, secStartupTimeout)
	}
	return er
}

// playSilenceAfterS sends SSLRequest and then nothing: once the gateway
// has answered 'S', only TLS may follow, so at startup_timeout it must
// close without writing a plaintext ErrorResponse the client's TLS layer
// cannot read (PostgreSQL closes silently).
func playSilenceAfterS(t *testing.T, c *catalogue) *pgproto3.ErrorResponse {
	conn := dialRaw(t, c.f.Gateway.Addr)
	sendRequest(t, conn, sslRequestCode, 'S')
	readTLSFailure(t, conn)
	return nil
}

// playCopyOutsideCopy sends CopyData, CopyDone and CopyFail when no COPY
// runs: PostgreSQL ignores them (a COPY that failed may leave a client
// still sending), and the session goes on.
func playCopyOutsideCopy(t *testing.T, c *catalogue) *pgproto3.ErrorResponse {
	_, fe := session(t, c)
	fe.Send(&pgproto3.CopyData{Data: []byte("1\n")})
	fe.Send(&pgproto3.CopyDone{})
	fe.Send(&pgproto3.CopyFail{Message: "never mind"})
	rows, status, err := simpleQuery(fe, "select 'still here'")
	if er := asErrorResponse(err); er != nil {
		return er
	}
	if err != nil || len(rows) != 1 || rows[0] != "still here" || status != 'I' {
		t.Fatalf("the session after stray COPY messages: %v %c %v", rows, status, err)
	}
	fe.Send(&pgproto3.Terminate{})
	fe.Flush()
	return nil
}

// playHalfDirectTLS starts direct TLS with a fragment of a ClientHello and
// stops: as after 'S', the gateway may only close (or send a TLS alert),
// never a plaintext ErrorResponse.
func playHalfDirectTLS(t *testing.T, c *catalogue) *pgproto3.ErrorResponse {
	conn := dialRaw(t, c.f.Gateway.Addr)
	if _, err := conn.Write(clientHelloFragment); err != nil {
		t.Fatal(err)
	}
	readTLSFailure(t, conn)
	return nil
}

func playGSSENCTwice(t *testing.T, c *catalogue) *pgproto3.ErrorResponse {
	conn := dialRaw(t, c.f.Gateway.Addr)
	sendRequest(t, conn, gssEncRequestCode, 'N')
	return writeThenRead(t, conn, requestPacket(gssEncRequestCode), false)
}

// playProbeUnknownUser starts SCRAM twice for a user that does not exist.
// Like PostgreSQL's mock authentication, the gateway must offer the same
// salt and iteration count both times (a real user's do not change
// either), so a prober cannot tell an unknown user from a known one; both
// exchanges fail as a wrong password does.
func playProbeUnknownUser(t *testing.T, c *catalogue) *pgproto3.ErrorResponse {
	// An unknown name is asked for the method of a configured user chosen
	// from the name; find one asked for SCRAM.
	name := ""
	for i := 0; i < 64 && name == ""; i++ {
		candidate := fmt.Sprintf("nobody%d", i)
		conn := dialRaw(t, c.f.Gateway.Addr)
		fe, err := sendStartup(conn, map[string]string{"user": candidate, "database": "postgres"})
		if err != nil {
			t.Fatal(err)
		}
		if msg, err := fe.Receive(); err == nil {
			if _, ok := msg.(*pgproto3.AuthenticationSASL); ok {
				name = candidate
			}
		}
		conn.Close()
	}
	if name == "" {
		t.Fatal("no unknown name among 64 was asked for SCRAM")
	}
	var firsts []string
	var er *pgproto3.ErrorResponse
	for range 2 {
		fe, err := sendStartup(dialRaw(t, c.f.Gateway.Addr), map[string]string{"user": name, "database": "postgres"})
		if err != nil {
			t.Fatal(err)
		}
		sc := newSCRAMClient("guess", nil)
		serverFirst, err := beginSCRAM(fe, sc)
		if err != nil {
			t.Fatal(err)
		}
		_, saltAndIterations, _ := strings.Cut(string(serverFirst), ",s=")
		firsts = append(firsts, saltAndIterations)
		final, err := sc.Final(serverFirst)
		if err != nil {
			t.Fatal(err)
		}
		fe.Send(&pgproto3.SASLResponse{Data: final})
		if err := fe.Flush(); err != nil {
			t.Fatal(err)
		}
		er = refusal(t, fe)
	}
	if firsts[0] != firsts[1] || firsts[0] == "" {
		t.Errorf("an unknown user's salt and iterations changed between attempts: %q, %q", firsts[0], firsts[1])
	}
	return er
}

// TestAnnouncedNotSent: clients that announce a message of
// max_startup_packet bytes (10,000 by default, PostgreSQL's own cap) before
// they have logged in, and send only its first bytes, must not make the
// gateway hold the announced size for each of them until startup_timeout:
// connections still in their startup phase are not counted by
// max_client_conn. Each connection may cost a fixed allowance (its
// goroutine and buffers) besides.
func TestAnnouncedNotSent(t *testing.T) {
	const clients = 100
	announced := int(shared.Gateway.Config().Limits.MaxStartupPacket)
	cases := []struct {
		name string
		send func(t *testing.T, conn net.Conn)
	}{
		{"startup packet", func(t *testing.T, conn net.Conn) {
			hdr := binary.BigEndian.AppendUint32(nil, uint32(announced))
			if _, err := conn.Write(binary.BigEndian.AppendUint32(hdr, 3<<16)); err != nil {
				t.Fatal(err)
			}
		}},
		{"SASL response", func(t *testing.T, conn net.Conn) {
			fe, err := sendStartup(conn, map[string]string{"user": shared.User, "database": "postgres"})
			if err != nil {
				t.Fatal(err)
			}
			if _, err := expect[*pgproto3.AuthenticationSASL](fe); err != nil {
				t.Fatal(err)
			}
			hdr := binary.BigEndian.AppendUint32([]byte{'p'}, uint32(announced-1))
			if _, err := conn.Write(append(hdr, "SCRAM-SHA-256\x00"...)); err != nil {
				t.Fatal(err)
			}
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			baseline := goroutineBaseline()
			// Registered first, so it runs after the connections are closed.
			t.Cleanup(func() { goroutinesSettle(t, baseline, 10*time.Second) })
			var before, after runtime.MemStats
			runtime.GC()
			runtime.ReadMemStats(&before)
			for range clients {
				tc.send(t, dialRaw(t, shared.Gateway.Addr))
			}
			time.Sleep(500 * time.Millisecond) // the gateway has read what was sent
			runtime.GC()
			runtime.ReadMemStats(&after)
			grown := int64(after.HeapInuse) - int64(before.HeapInuse)
			t.Logf("heap grew by %d KiB for %d connections that announced %d bytes", grown>>10, clients, announced)
			const perConn = 24 << 10 // a connection's own cost, whatever it announced
			if limit := int64(clients * (announced/4 + perConn)); grown > limit {
				t.Errorf("heap grew by %d KiB for %d connections that each announced %d bytes and sent a few (limit %d KiB): the announced size is allocated before it arrives",
					grown>>10, clients, announced, limit>>10)
			}
		})
	}
}

// sendRequest sends an SSLRequest or GSSENCRequest (code) on conn and
// fails t unless the one-byte answer is want.
func sendRequest(t *testing.T, conn net.Conn, code uint32, want byte) {
	t.Helper()
	if _, err := conn.Write(requestPacket(code)); err != nil {
		t.Fatal(err)
	}
	var answer [1]byte
	if _, err := io.ReadFull(conn, answer[:]); err != nil || answer[0] != want {
		t.Fatalf("request %d answered %q, %v; want %q", code, answer[0], err, want)
	}
}
