package dsqlsim

import (
	"bufio"
	"bytes"
	"crypto/subtle"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgerrcode"
	"github.com/jackc/pgx/v5/pgproto3"
	"go.uber.org/zap"
)

// Limits and deadlines of the startup phase.
const (
	startupTimeout     = 10 * time.Second // from arrival until the backend's first ReadyForQuery
	backendDialTimeout = 10 * time.Second
	maxStartupPacket   = 10000   // bytes, PostgreSQL's MAX_STARTUP_PACKET_LENGTH
	maxPasswordMessage = 65535   // bytes, PostgreSQL's PG_MAX_AUTH_TOKEN_LENGTH; tokens are 1-2 KB
	maxBackendGreeting = 1 << 20 // bytes, one message of the backend's handshake
	connBufferSize     = 16 * 1024

	sslRequestCode     = 80877103
	gssEncRequestCode  = 80877104
	cancelRequestCode  = 80877102
	tlsHandshakeRecord = 0x16 // first byte of a TLS ClientHello: direct TLS
	alpnPostgres       = "postgresql"
)

// session is one client connection, from its arrival to its close. The
// goroutine running serveConn owns the connection's I/O; other goroutines
// only read the fields under mu or close the session with closeAbrupt.
type session struct {
	id       int64
	started  time.Time // arrival, on the server's clock
	rawConn  net.Conn  // the client's TCP connection; closing it is DSQL's abrupt close
	admitted bool      // counts toward MaxConns; written by admit and unadmit under Server.mu
	unadmit  func()    // gives the place under MaxConns back; set by admit, idempotent

	// Transaction tracking for the duration cap: written by the relay
	// goroutines, read by the reaper.
	pendingSyncs atomic.Int32  // Query, Sync and FunctionCall messages not yet answered by ReadyForQuery
	txStatus     atomic.Uint32 // status byte of the last ReadyForQuery ('I', 'T', 'E'); 0 before the first
	busySince    atomic.Int64  // when the session last left idle, unix nanoseconds on the server's clock; 0 while idle
	// lastKind is the stmtKind of the client's last Query or Parse
	// (written by clientToServer, read by serverToClient to tell a schema
	// conflict from a data conflict).
	lastKind atomic.Uint32

	mu         sync.Mutex // guards the fields below
	closed     bool
	role       string // the DSQL role once the backend's handshake is done, "" before
	backendPID uint32
	backendKey []byte
	serverConn net.Conn // the backend connection once dialled; closed with the session
}

// idle reports whether the session is between transactions with nothing
// outstanding: where DSQL's duration cap closes it at once.
func (c *session) idle() bool {
	status := c.txStatus.Load()
	return c.pendingSyncs.Load() <= 0 && (status == 0 || status == 'I')
}

// finishingTransaction reports whether the session is inside a transaction
// that began no later than capAt and is younger than maxTxn at now: DSQL
// lets it run on past the duration cap.
func (c *session) finishingTransaction(capAt, now time.Time, maxTxn time.Duration) bool {
	if c.idle() {
		return false
	}
	since := c.busySince.Load()
	if since == 0 {
		return false
	}
	began := time.Unix(0, since)
	return !began.After(capAt) && now.Sub(began) < maxTxn
}

// clientSent records a message from the client, at now (unix nanoseconds)
// when the session was idle.
func (c *session) clientSent(typ byte, now func() int64) {
	if c.busySince.Load() == 0 {
		c.busySince.CompareAndSwap(0, now())
	}
	switch typ {
	case 'Q', 'S', 'F': // each is answered by one ReadyForQuery
		c.pendingSyncs.Add(1)
	}
}

// readyForQuery records a ReadyForQuery with its transaction status.
func (c *session) readyForQuery(status byte) {
	c.txStatus.Store(uint32(status))
	if c.pendingSyncs.Add(-1) < 0 {
		c.pendingSyncs.Store(0)
	}
	if status == 'I' && c.pendingSyncs.Load() == 0 {
		c.busySince.Store(0)
	}
}

func (c *session) authenticated() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.role != ""
}

func (c *session) info() SessionInfo {
	c.mu.Lock()
	defer c.mu.Unlock()
	return SessionInfo{ID: c.id, Role: c.role, Started: c.started, BackendPID: c.backendPID}
}

func (c *session) hasBackendKey(pid uint32, key []byte) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.role != "" && c.backendPID == pid && subtle.ConstantTimeCompare(c.backendKey, key) == 1
}

// closeAbrupt closes both connections without a word to the client, as
// DSQL does at its duration cap. It reports whether this call closed them.
func (c *session) closeAbrupt() bool {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return false
	}
	c.closed = true
	serverConn := c.serverConn
	c.mu.Unlock()
	if c.unadmit != nil {
		c.unadmit()
	}
	c.rawConn.Close()
	if serverConn != nil {
		serverConn.Close()
	}
	return true
}

// closeGraceful ends a session that is over: TLS close_notify (crypto/tls
// bounds it with its own deadline) and close. Nothing happens when the
// session was closed already.
func (c *session) closeGraceful(clientConn net.Conn) {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return
	}
	c.closed = true
	serverConn := c.serverConn
	c.mu.Unlock()
	if c.unadmit != nil {
		c.unadmit()
	}
	clientConn.Close()
	c.rawConn.Close()
	if serverConn != nil {
		serverConn.Close()
	}
}

// setServerConn records the backend connection so that closing the session
// closes it too. It reports false, and the caller must close serverConn,
// when the session was closed meanwhile.
func (c *session) setServerConn(serverConn net.Conn) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return false
	}
	c.serverConn = serverConn
	return true
}

func (c *session) setAuthenticated(role string, backendPID uint32, backendKey []byte) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.role, c.backendPID, c.backendKey = role, backendPID, backendKey
}

// clientSide is the client's TLS connection with its buffers. The reader
// belongs to whoever reads the client (the startup code, then
// clientToServer), the writer to whoever writes it (the startup code, then
// serverToClient).
type clientSide struct {
	conn *tls.Conn
	r    *bufio.Reader
	w    *bufio.Writer
}

// send writes one message and flushes.
func (c *clientSide) send(msg pgproto3.BackendMessage) error {
	buf, err := msg.Encode(nil)
	if err != nil {
		return fmt.Errorf("encode %T: %w", msg, err)
	}
	if _, err := c.w.Write(buf); err != nil {
		return fmt.Errorf("write to client: %w", err)
	}
	if err := c.w.Flush(); err != nil {
		return fmt.Errorf("write to client: %w", err)
	}
	return nil
}

var (
	errPlainCancel = errors.New("cancel request without tls")
	errNoTLS       = errors.New("startup without tls")
	errNoALPN      = errors.New("direct tls without alpn postgresql")
	errBadProtocol = errors.New("unsupported protocol")
)

// serveConn runs one connection from arrival to close. refusal, when not
// nil, is the rate or connection limit's answer decided at arrival.
func (s *Server) serveConn(sess *session, refusal *pgproto3.ErrorResponse) {
	defer s.wg.Done()
	defer s.forget(sess)
	defer sess.closeAbrupt() // a no-op after a graceful close
	log := s.log.With(zap.Int64("conn_id", sess.id), zap.String("client_addr", sess.rawConn.RemoteAddr().String()))
	log.Debug("connection accepted")
	// A network deadline, so on the real clock, not Config.Now.
	_ = sess.rawConn.SetDeadline(time.Now().Add(startupTimeout))

	tlsConn, err := s.negotiateTLS(sess.rawConn)
	if err != nil {
		if errors.Is(err, errNoTLS) || errors.Is(err, errNoALPN) || errors.Is(err, errBadProtocol) {
			s.stats.startupRefused.Add(1)
			log.Info("connection refused", zap.Error(err))
		} else {
			log.Debug("connection closed during tls negotiation", zap.Error(err))
		}
		return
	}
	client := &clientSide{
		conn: tlsConn,
		r:    bufio.NewReaderSize(tlsConn, connBufferSize),
		w:    bufio.NewWriterSize(tlsConn, connBufferSize),
	}
	defer sess.closeGraceful(tlsConn)

	startup, ok := s.readStartup(client, refusal, log)
	if !ok {
		return
	}
	role, sni := startup.param("user"), tlsConn.ConnectionState().ServerName
	log = log.With(zap.String("role", role), zap.String("sni", sni))
	if !s.authenticate(client, sni, role, log) {
		return
	}
	server, ok := s.openBackend(sess, client, role, startup, log)
	if !ok {
		return
	}
	_ = sess.rawConn.SetDeadline(time.Time{})
	_ = server.conn.SetDeadline(time.Time{})
	s.stats.authenticated.Add(1)
	log.Info("session started", zap.Uint32("backend_pid", sess.info().BackendPID))

	err = s.relay(sess, client, server, log)
	log.Info("session ended", zap.Duration("age", s.cfg.Now().Sub(sess.started)), zap.NamedError("cause", err))
}

// readStartup reads the first packet inside TLS and applies DSQL's checks in
// order: SNI, the limits decided at arrival, protocol version, user,
// database, startup parameters. A CancelRequest is forwarded. It reports
// false, after answering the client, when the connection must close.
func (s *Server) readStartup(client *clientSide, refusal *pgproto3.ErrorResponse, log *zap.Logger) (startupMessage, bool) {
	body, err := readPacket(client.r, maxStartupPacket)
	if err != nil {
		log.Debug("read startup packet", zap.Error(err))
		return startupMessage{}, false
	}
	sni := client.conn.ConnectionState().ServerName
	switch code := binary.BigEndian.Uint32(body); {
	case code == cancelRequestCode:
		s.forwardCancel(sni, body, log)
		return startupMessage{}, false
	case code == sslRequestCode || code == gssEncRequestCode:
		s.refuseStartup(client, log, fatal(pgerrcode.ProtocolViolation, "encryption request inside TLS", ""))
		return startupMessage{}, false
	case code>>16 != 3:
		s.refuseStartup(client, log, fatal(pgerrcode.ProtocolViolation, "unsupported frontend protocol", ""))
		return startupMessage{}, false
	}

	if sni == "" {
		s.refuseStartup(client, log, fatal(pgerrcode.ProtocolViolation, msgNoSNI, ""))
		return startupMessage{}, false
	}
	if !s.knownHost(sni) {
		s.refuseStartup(client, log, fatal(pgerrcode.ProtocolViolation, msgUnknownSNI, ""))
		return startupMessage{}, false
	}
	if refusal != nil {
		log.Info("connection refused", zap.String("code", refusal.Code), zap.String("message", refusal.Message))
		_ = client.send(refusal)
		return startupMessage{}, false
	}
	startup, err := parseStartupMessage(body)
	if err != nil {
		s.refuseStartup(client, log, fatal(pgerrcode.ProtocolViolation, "invalid startup packet layout", ""))
		return startupMessage{}, false
	}
	if startup.minor > 0 || len(startup.protocolOptions) > 0 {
		// The emulator speaks protocol 3.0, like the PostgreSQL behind it.
		err := client.send(&pgproto3.NegotiateProtocolVersion{NewestMinorProtocol: 0, UnrecognizedOptions: startup.protocolOptions})
		if err != nil {
			return startupMessage{}, false
		}
	}
	role := startup.param("user")
	if role == "" {
		s.refuseStartup(client, log, fatal(pgerrcode.InvalidAuthorizationSpecification, msgNoUser, ""))
		return startupMessage{}, false
	}
	database := startup.param("database")
	if database == "" {
		database = role // PostgreSQL's default
	}
	if database != "postgres" {
		s.refuseStartup(client, log, fatal(pgerrcode.InvalidCatalogName, fmt.Sprintf("database %q does not exist", database), ""))
		return startupMessage{}, false
	}
	for _, p := range startup.params {
		if p.name != "user" && p.name != "database" && !allowedSetting(p.name) {
			s.refuseStartup(client, log, fatal(pgerrcode.FeatureNotSupported, unsupportedSettingMessage(p.name), ""))
			return startupMessage{}, false
		}
	}
	return startup, true
}

// refuseStartup sends a FATAL that refuses the connection before
// authentication; the caller then closes it.
func (s *Server) refuseStartup(client *clientSide, log *zap.Logger, msg *pgproto3.ErrorResponse) {
	s.stats.startupRefused.Add(1)
	log.Info("connection refused", zap.String("code", msg.Code), zap.String("message", msg.Message))
	_ = client.send(msg)
}

// negotiateTLS reads the first packets of a connection until TLS is up: a
// classic SSLRequest answered 'S', or a TLS ClientHello (direct TLS, which
// must negotiate ALPN "postgresql"). A GSSENCRequest is answered 'N'. A
// plain StartupMessage gets a FATAL in clear text, a plain CancelRequest is
// dropped. It reads the raw connection unbuffered, so that no byte meant for
// TLS is left behind in a buffer.
func (s *Server) negotiateTLS(raw net.Conn) (*tls.Conn, error) {
	for {
		var first [1]byte
		if _, err := io.ReadFull(raw, first[:]); err != nil {
			return nil, fmt.Errorf("read first byte: %w", err)
		}
		if first[0] == tlsHandshakeRecord {
			conn := tls.Server(&prefixConn{Conn: raw, prefix: first[:]}, s.tlsConfig)
			if err := conn.Handshake(); err != nil {
				return nil, fmt.Errorf("direct tls handshake: %w", err)
			}
			if conn.ConnectionState().NegotiatedProtocol != alpnPostgres {
				msg, _ := fatal(pgerrcode.ProtocolViolation, msgNoALPN, "").Encode(nil)
				conn.Write(msg)
				conn.Close()
				return nil, errNoALPN
			}
			return conn, nil
		}
		body, err := readPacket(io.MultiReader(bytes.NewReader(first[:]), raw), maxStartupPacket)
		if err != nil {
			return nil, err
		}
		switch code := binary.BigEndian.Uint32(body); {
		case code == sslRequestCode:
			if _, err := raw.Write([]byte{'S'}); err != nil {
				return nil, fmt.Errorf("answer ssl request: %w", err)
			}
			conn := tls.Server(raw, s.tlsConfig)
			if err := conn.Handshake(); err != nil {
				return nil, fmt.Errorf("tls handshake: %w", err)
			}
			return conn, nil
		case code == gssEncRequestCode:
			if _, err := raw.Write([]byte{'N'}); err != nil {
				return nil, fmt.Errorf("answer gssenc request: %w", err)
			}
		case code == cancelRequestCode:
			return nil, errPlainCancel
		case code>>16 == 3:
			msg, _ := fatal(pgerrcode.InvalidAuthorizationSpecification, msgTLSRequired, "").Encode(nil)
			raw.Write(msg)
			return nil, errNoTLS
		default:
			msg, _ := fatal(pgerrcode.ProtocolViolation, "unsupported frontend protocol", "").Encode(nil)
			raw.Write(msg)
			return nil, errBadProtocol
		}
	}
}

// prefixConn is a net.Conn whose first reads return prefix, bytes already
// read from Conn.
type prefixConn struct {
	net.Conn
	prefix []byte
}

var _ net.Conn = (*prefixConn)(nil)

func (c *prefixConn) Read(p []byte) (int, error) {
	if len(c.prefix) > 0 {
		n := copy(p, c.prefix)
		c.prefix = c.prefix[n:]
		return n, nil
	}
	return c.Conn.Read(p)
}

// readPacket reads a length-prefixed startup-phase packet (no type byte) of
// at most max bytes and returns its body. The body holds at least the
// 4-byte request code.
func readPacket(r io.Reader, max int) ([]byte, error) {
	var header [4]byte
	if _, err := io.ReadFull(r, header[:]); err != nil {
		return nil, fmt.Errorf("read packet length: %w", err)
	}
	n := int(binary.BigEndian.Uint32(header[:]))
	if n < 8 || n > max {
		return nil, fmt.Errorf("%w: packet length %d", errBadProtocol, n)
	}
	body := make([]byte, n-4)
	if _, err := io.ReadFull(r, body); err != nil {
		return nil, fmt.Errorf("read packet: %w", err)
	}
	return body, nil
}

// startupMessage is a decoded StartupMessage of protocol 3.x.
type startupMessage struct {
	minor           uint16
	params          []startupParam // in the client's order, without "_pq_." options
	protocolOptions []string       // "_pq_." names, which the emulator does not support
}

type startupParam struct{ name, value string }

func (m startupMessage) param(name string) string {
	value := ""
	for _, p := range m.params {
		if p.name == name {
			value = p.value // the last one wins, as in PostgreSQL
		}
	}
	return value
}

func parseStartupMessage(body []byte) (startupMessage, error) {
	m := startupMessage{minor: binary.BigEndian.Uint16(body[2:4])}
	rest := body[4:]
	for {
		if len(rest) == 1 && rest[0] == 0 {
			return m, nil
		}
		name, after, ok := bytes.Cut(rest, []byte{0})
		if !ok || len(name) == 0 {
			return m, errors.New("startup parameters are not NUL-terminated pairs")
		}
		value, after, ok := bytes.Cut(after, []byte{0})
		if !ok {
			return m, errors.New("startup parameters are not NUL-terminated pairs")
		}
		if strings.HasPrefix(string(name), "_pq_.") {
			m.protocolOptions = append(m.protocolOptions, string(name))
		} else {
			m.params = append(m.params, startupParam{string(name), string(value)})
		}
		rest = after
	}
}

// authenticate asks for the IAM token as a cleartext password and verifies
// it. On failure the client gets FATAL 28000 "IAM authentication failed"
// with the failed check as detail; the token is never echoed or logged.
func (s *Server) authenticate(client *clientSide, sni, role string, log *zap.Logger) bool {
	if err := client.send(&pgproto3.AuthenticationCleartextPassword{}); err != nil {
		return false
	}
	typ, body, err := readMessage(client.r, maxPasswordMessage)
	if err != nil {
		log.Debug("read password message", zap.Error(err))
		return false
	}
	if typ == 'X' {
		return false // the client gave up (psql does this to prompt for a password)
	}
	if typ != 'p' || len(body) == 0 || body[len(body)-1] != 0 {
		s.refuseStartup(client, log, fatal(pgerrcode.ProtocolViolation, "expected a password message", ""))
		return false
	}
	token := string(body[:len(body)-1])
	err = VerifyToken(token, sni, role, s.cfg.Region, s.cfg.Credentials, s.cfg.Now(), s.cfg.ClockSkew)
	if err == nil {
		return true
	}
	s.stats.authFailures.Add(1)
	detail := "invalid token"
	var te *TokenError
	if errors.As(err, &te) {
		detail = string(te.Reason)
	}
	log.Warn("iam authentication failed", zap.Error(err)) // TokenError holds no secret
	_ = client.send(fatal(pgerrcode.InvalidAuthorizationSpecification, msgAuthFailed, detail))
	return false
}

// serverSide is the backend connection with its buffers; after the
// handshake the reader belongs to serverToClient and the writer to
// clientToServer.
type serverSide struct {
	conn net.Conn
	r    *bufio.Reader
	w    *bufio.Writer
}

// openBackend connects to the real PostgreSQL as role, sends the client's
// allowed startup parameters, and relays the backend's handshake
// (AuthenticationOk, ParameterStatus, BackendKeyData, ReadyForQuery) to the
// client. It reports false when the session is over.
func (s *Server) openBackend(sess *session, client *clientSide, role string, startup startupMessage, log *zap.Logger) (*serverSide, bool) {
	conn, err := net.DialTimeout("unix", s.backendSocket(), backendDialTimeout)
	if err != nil {
		log.Error("dial backend", zap.Error(err))
		_ = client.send(fatal(pgerrcode.CannotConnectNow, msgBackendUnreached, ""))
		return nil, false
	}
	if !sess.setServerConn(conn) {
		conn.Close()
		return nil, false
	}
	_ = conn.SetDeadline(time.Now().Add(startupTimeout))
	server := &serverSide{conn: conn, r: bufio.NewReaderSize(conn, connBufferSize), w: bufio.NewWriterSize(conn, connBufferSize)}

	params := map[string]string{"user": role, "database": s.cfg.BackendDatabase}
	for _, p := range startup.params {
		if p.name != "user" && p.name != "database" {
			params[p.name] = p.value
		}
	}
	for name, value := range s.backendParams {
		params[name] = value
	}
	msg, err := (&pgproto3.StartupMessage{ProtocolVersion: pgproto3.ProtocolVersion30, Parameters: params}).Encode(nil)
	if err != nil {
		log.Error("encode backend startup message", zap.Error(err))
		return nil, false
	}
	if _, err := conn.Write(msg); err != nil {
		log.Error("write backend startup message", zap.Error(err))
		return nil, false
	}

	var pid uint32
	var key []byte
	for {
		typ, body, err := readMessage(server.r, maxBackendGreeting)
		if err != nil {
			log.Error("read backend handshake", zap.Error(err))
			return nil, false
		}
		switch typ {
		case 'R':
			if len(body) < 4 || binary.BigEndian.Uint32(body) != 0 {
				log.Error("backend asked for authentication")
				_ = client.send(fatal(pgerrcode.CannotConnectNow, msgBackendAuth, ""))
				return nil, false
			}
		case 'K':
			if len(body) < 8 {
				log.Error("short backend key data")
				return nil, false
			}
			pid = binary.BigEndian.Uint32(body)
			key = append([]byte(nil), body[4:]...)
		}
		if err := writeMessage(client.w, typ, handshakeMessage(typ, body)); err != nil {
			return nil, false
		}
		switch typ {
		case 'E':
			// A FATAL from the backend (no such role, too many clients):
			// the client has it; the session is over.
			_ = client.w.Flush()
			log.Info("backend refused the session")
			return nil, false
		case 'Z':
			if err := client.w.Flush(); err != nil {
				return nil, false
			}
			sess.setAuthenticated(role, pid, key)
			return server, true
		}
	}
}
