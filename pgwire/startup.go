package pgwire

import (
	"bufio"
	"crypto/rand"
	"crypto/subtle"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"slices"
	"strings"

	"go.uber.org/zap"

	"github.com/dsqlgate/dsqlgate/config"
	"github.com/dsqlgate/dsqlgate/internal/scram"
	"github.com/jackc/pgerrcode"
	"github.com/jackc/pgx/v5/pgproto3"
)

// Startup packet codes (the int32 after the length).
const (
	protocolVersion30  = 3 << 16
	protocolVersion32  = 3<<16 | 2
	codeSSLRequest     = 80877103
	codeGSSENCRequest  = 80877104
	codeCancelRequest  = 80877102
	tlsRecordHandshake = 0x16 // first byte of a TLS ClientHello: direct TLS
)

// startupInfo is what a client asked for in its StartupMessage.
type startupInfo struct {
	user                   string
	database               string
	params                 map[string]string // every other parameter, as sent
	minor                  uint32            // requested protocol minor version
	unknownProtocolOptions []string          // _pq_.* options we do not support
}

// errClientGone is a client that closed the connection during the
// handshake; nothing is reported.
var errClientGone = errors.New("client closed the connection")

// tlsHandshakeError is a TLS handshake that failed (or timed out). The
// client has started TLS, so a plaintext ErrorResponse would be garbage
// to it: the gateway closes (crypto/tls has sent an alert if it could),
// as PostgreSQL does.
type tlsHandshakeError struct{ err error }

func (e *tlsHandshakeError) Error() string { return "tls handshake: " + e.err.Error() }
func (e *tlsHandshakeError) Unwrap() error { return e.err }

// readStartupPacket reads one length-prefixed startup-phase packet (no type
// byte) from r: the int32 code and the rest. Packets longer than max bytes
// are refused before they are read.
func readStartupPacket(r io.Reader, max int) (code uint32, rest []byte, err error) {
	var hdr [8]byte
	if _, err := io.ReadFull(r, hdr[:4]); err != nil {
		if err == io.EOF {
			return 0, nil, errClientGone
		}
		return 0, nil, err
	}
	if hdr == [8]byte{'X', 0, 0, 0} {
		// A Terminate ('X', length 4) before any startup packet: a client
		// that connected and left at once (node-postgres's connect() then
		// end()). PostgreSQL closes without a word; an error here would
		// reach a client that no longer expects one.
		return 0, nil, errClientGone
	}
	n := int(binary.BigEndian.Uint32(hdr[:4]))
	if n < 8 {
		return 0, nil, &pgError{Severity: severityFatal, Code: pgerrcode.ProtocolViolation, Message: "invalid length of startup packet"}
	}
	if n > max {
		// Refused from its header: nothing of it is read or buffered.
		return 0, nil, &pgError{Severity: severityFatal, Code: pgerrcode.ProtocolViolation,
			Message: fmt.Sprintf("invalid length of startup packet: %d bytes exceeds the limit of %d bytes", n, max)}
	}
	if _, err := io.ReadFull(r, hdr[4:8]); err != nil {
		return 0, nil, fmt.Errorf("read startup packet: %w", err)
	}
	rest, err = readGrowing(r, nil, n-8)
	if err != nil {
		return 0, nil, fmt.Errorf("read startup packet: %w", err)
	}
	return binary.BigEndian.Uint32(hdr[4:8]), rest, nil
}

// maxStartupParameters is how many name/value pairs a StartupMessage may
// hold (user, database and _pq_ options included). Real clients send a
// handful; the cap keeps what an unauthenticated client makes the gateway
// allocate to a small constant, however short its parameters.
const maxStartupParameters = 64

// parseStartupMessage decodes a StartupMessage body after the protocol
// version: pairs of NUL-terminated name and value, ended by a NUL.
func parseStartupMessage(version uint32, b []byte) (*startupInfo, error) {
	bad := func(msg string) error {
		return &pgError{Severity: severityFatal, Code: pgerrcode.ProtocolViolation, Message: msg}
	}
	if version>>16 != 3 {
		return nil, &pgError{Severity: severityFatal, Code: pgerrcode.FeatureNotSupported,
			Message: fmt.Sprintf("unsupported frontend protocol %d.%d: server supports 3.0 to 3.2", version>>16, version&0xffff)}
	}
	info := &startupInfo{params: map[string]string{}, minor: version & 0xffff}
	for n := 0; ; n++ {
		if len(b) == 0 {
			return nil, bad("invalid startup packet layout: expected terminator as last byte")
		}
		if b[0] == 0 {
			if len(b) != 1 {
				return nil, bad("invalid startup packet layout: expected terminator as last byte")
			}
			break
		}
		if n == maxStartupParameters {
			return nil, bad(fmt.Sprintf("invalid startup packet: more than %d parameters", maxStartupParameters))
		}
		name, rest, ok := readCString(b)
		if !ok {
			return nil, bad("invalid startup packet layout: unterminated parameter name")
		}
		value, rest, ok := readCString(rest)
		if !ok {
			return nil, bad(fmt.Sprintf("invalid startup packet layout: missing value for parameter %q", name))
		}
		b = rest
		switch {
		case name == "user":
			info.user = value
		case name == "database":
			info.database = value
		case strings.HasPrefix(name, "_pq_."):
			info.unknownProtocolOptions = append(info.unknownProtocolOptions, name)
		default:
			info.params[name] = value
		}
	}
	if info.user == "" {
		return nil, &pgError{Severity: severityFatal, Code: pgerrcode.InvalidAuthorizationSpecification,
			Message: "no PostgreSQL user name specified in startup packet"}
	}
	if info.database == "" {
		info.database = info.user
	}
	if v, ok := info.params["replication"]; ok && v != "false" && v != "0" && v != "off" && v != "no" {
		return nil, &pgError{Severity: severityFatal, Code: pgerrcode.FeatureNotSupported,
			Message: "replication connections are not supported by the gateway"}
	}
	return info, nil
}

// handshake runs the first part of the startup phase of a new client
// connection: TLS negotiation and the StartupMessage. It returns the
// client's connection (possibly now TLS; never nil), its buffered reader
// and what the client asked for. A CancelRequest is served here and yields
// no startupInfo and no error. A *pgError is for the client to see.
func (s *Server) handshake(conn net.Conn, log *zap.Logger) (net.Conn, *bufio.Reader, *startupInfo, error) {
	maxStartup := s.currentConfig().Limits.MaxStartupPacket.Int()
	tlsDone := false
	t := s.tlsState()

	// A TLS ClientHello as the very first byte is direct TLS (PostgreSQL
	// 17's sslnegotiation=direct).
	br := bufio.NewReaderSize(conn, clientReadBufferSize)
	first, err := br.Peek(1)
	if err != nil {
		return conn, nil, nil, errClientGone
	}
	if first[0] == tlsRecordHandshake {
		if t.config == nil {
			return conn, nil, nil, errors.New("direct TLS attempted but no certificate is configured")
		}
		tc := tls.Server(&prefixConn{Conn: conn, r: br}, t.direct)
		if err := tc.Handshake(); err != nil {
			return conn, nil, nil, fmt.Errorf("direct %w", &tlsHandshakeError{err})
		}
		if tc.ConnectionState().NegotiatedProtocol != "postgresql" {
			return conn, nil, nil, errors.New("direct TLS without ALPN \"postgresql\"")
		}
		conn, tlsDone = tc, true
		br = bufio.NewReaderSize(conn, clientReadBufferSize)
	}

	sslDone, gssDone := tlsDone, false
	for {
		code, rest, err := readStartupPacket(br, maxStartup)
		if err != nil {
			return conn, br, nil, err
		}
		// A second SSLRequest or GSSENCRequest is not a request any more:
		// like PostgreSQL, treat its code as a protocol version (refused).
		if (code == codeSSLRequest && sslDone) || (code == codeGSSENCRequest && gssDone) {
			info, err := parseStartupMessage(code, rest)
			return conn, br, info, err
		}
		switch code {
		case codeSSLRequest:
			sslDone = true
			if tlsDone {
				return conn, br, nil, &pgError{Severity: severityFatal, Code: pgerrcode.ProtocolViolation, Message: "SSLRequest received on an encrypted connection"}
			}
			if br.Buffered() > 0 {
				// Bytes after SSLRequest before our answer would be read
				// outside TLS: a man in the middle could inject them.
				return conn, br, nil, &pgError{Severity: severityFatal, Code: pgerrcode.ProtocolViolation, Message: "received unencrypted data after SSL request"}
			}
			if t.config == nil {
				if _, err := conn.Write([]byte{'N'}); err != nil {
					return conn, br, nil, err
				}
				continue
			}
			if _, err := conn.Write([]byte{'S'}); err != nil {
				return conn, br, nil, err
			}
			tc := tls.Server(conn, t.config)
			if err := tc.Handshake(); err != nil {
				return conn, br, nil, &tlsHandshakeError{err}
			}
			conn, tlsDone = tc, true
			br = bufio.NewReaderSize(conn, clientReadBufferSize)
		case codeGSSENCRequest:
			gssDone = true
			if tlsDone {
				return conn, br, nil, &pgError{Severity: severityFatal, Code: pgerrcode.ProtocolViolation, Message: "GSSENCRequest received on an encrypted connection"}
			}
			if _, err := conn.Write([]byte{'N'}); err != nil {
				return conn, br, nil, err
			}
		case codeCancelRequest:
			s.handleCancel(rest, log)
			return conn, br, nil, nil
		default:
			info, err := parseStartupMessage(code, rest)
			if err != nil {
				return conn, br, nil, err
			}
			if t.require && !tlsDone {
				return conn, br, nil, &pgError{Severity: severityFatal, Code: pgerrcode.InvalidAuthorizationSpecification,
					Message: "the gateway requires TLS", Hint: "Connect with sslmode=require (or stronger)."}
			}
			return conn, br, info, nil
		}
	}
}

// prefixConn is a net.Conn whose first bytes come from r (which peeked
// them from Conn): the TLS server must see the ClientHello byte we peeked.
type prefixConn struct {
	net.Conn
	r *bufio.Reader
}

func (c *prefixConn) Read(p []byte) (int, error) {
	if c.r != nil {
		if c.r.Buffered() > 0 {
			return c.r.Read(p)
		}
		c.r = nil
	}
	return c.Conn.Read(p)
}

// authenticate checks the client's password with the method its user is
// configured for: SCRAM-SHA-256 (with -PLUS channel binding over TLS),
// md5, or a cleartext password (over TLS only). An unknown user is
// answered as a configured user would be (userTable.mock): the method, the
// iteration count and a salt that are always the same for its name, the
// same work, and the same failure as a wrong password. It returns the
// user's entry on success.
func (s *Server) authenticate(conn net.Conn, br *bufio.Reader, user string, log *zap.Logger) (*userEntry, error) {
	tbl := s.users.Load()
	u := tbl.byName[user]
	failed := func() error {
		return &pgError{Severity: severityFatal, Code: pgerrcode.InvalidPassword,
			Message: fmt.Sprintf("password authentication failed for user %q", user)}
	}
	fr := frameReader{r: br, maxSize: s.currentConfig().Limits.MaxStartupPacket.Int()}
	var method string
	var verifier scram.Verifier // a doomed mock unless u has a real one
	switch {
	case u == nil:
		method, verifier = tbl.mock(user)
	case u.hasSCRAM:
		method, verifier = u.auth, u.verifier
	default:
		method, verifier = u.auth, scram.MockVerifier(user, tbl.mockSecret)
	}
	known := u != nil && u.hasSCRAM
	var err error
	switch method {
	case config.AuthMD5:
		err = s.authMD5(conn, &fr, u, failed)
	case config.AuthPassword:
		err = s.authCleartext(conn, &fr, verifier, known, failed)
	default:
		err = s.authSCRAM(conn, &fr, verifier, known, failed)
	}
	if err != nil {
		return nil, err
	}
	if _, err := conn.Write(authOK); err != nil {
		return nil, err
	}
	return u, nil
}

// authOK is AuthenticationOk, the same for every client.
var authOK = encode(&pgproto3.AuthenticationOk{})

// encode returns the bytes of a message the gateway sends on a cold path
// (authentication, the greeting after it, the admin console). pgproto3
// refuses only a body over 1 GiB, which none of them can reach: their
// parts come from the gateway, a startup packet (bounded by
// limits.max_startup_packet) or an upstream's ParameterStatus (bounded by
// maxServerMessage). An error is therefore a bug, and panics (a session's
// panic closes only its connection).
func encode(msg pgproto3.BackendMessage) []byte {
	b, err := msg.Encode(nil)
	if err != nil {
		panic(fmt.Sprintf("pgwire: encode %T: %v", msg, err))
	}
	return b
}

// readPasswordMessage reads the client's next authentication message,
// which must be a PasswordMessage ('p'; the type byte a SASLInitialResponse
// and a SASLResponse share), and returns its body.
func readPasswordMessage(fr *frameReader, what string) ([]byte, error) {
	msg, err := fr.next()
	if err != nil {
		return nil, startupReadError(err)
	}
	if msg[0] != 'p' {
		return nil, &pgError{Severity: severityFatal, Code: pgerrcode.ProtocolViolation,
			Message: fmt.Sprintf("expected %s, got message type %q", what, msg[0])}
	}
	return body(msg), nil
}

// authMD5 runs md5 authentication (opt-in, for old clients).
func (s *Server) authMD5(conn net.Conn, fr *frameReader, u *userEntry, failed func() error) error {
	var salt [4]byte
	if _, err := rand.Read(salt[:]); err != nil {
		return err
	}
	got, err := askPassword(conn, fr, &pgproto3.AuthenticationMD5Password{Salt: salt})
	if err != nil {
		return err
	}
	stored := mockMD5 // the same work for an unknown user
	if u != nil && u.md5 != "" {
		stored = u.md5
	}
	if !constantTimeEqual([]byte(got), []byte(md5Response(stored, salt[:]))) || u == nil || u.md5 == "" {
		return failed()
	}
	return nil
}

// mockMD5 is the stored md5 hash an unknown user's answer is checked
// against (and then refused whatever it is).
var mockMD5 = "md5" + strings.Repeat("0", 32)

// askPassword sends the authentication request and returns the client's
// answer: a PasswordMessage holding one string (an md5 hash or the
// password).
func askPassword(conn net.Conn, fr *frameReader, request pgproto3.BackendMessage) (string, error) {
	if _, err := conn.Write(encode(request)); err != nil {
		return "", err
	}
	b, err := readPasswordMessage(fr, "password response")
	if err != nil {
		return "", err
	}
	// pgproto3 ignores what follows the string's NUL; PostgreSQL refuses it.
	var answer pgproto3.PasswordMessage
	if err := answer.Decode(b); err != nil || len(answer.Password)+1 != len(b) {
		return "", &pgError{Severity: severityFatal, Code: pgerrcode.ProtocolViolation, Message: "invalid password packet size"}
	}
	return answer.Password, nil
}

// authCleartext asks for the password itself: allowed only over TLS, and
// checked against the SCRAM verifier (the password is never stored). known
// is false when verifier is a mock (an unknown user, or one without a
// verifier): the check then costs the same and fails.
func (s *Server) authCleartext(conn net.Conn, fr *frameReader, verifier scram.Verifier, known bool, failed func() error) error {
	if _, isTLS := conn.(*tls.Conn); !isTLS {
		return &pgError{Severity: severityFatal, Code: pgerrcode.InvalidAuthorizationSpecification,
			Message: "password authentication in clear text is only allowed over TLS",
			Hint:    "Connect with sslmode=require (or stronger)."}
	}
	password, err := askPassword(conn, fr, &pgproto3.AuthenticationCleartextPassword{})
	if err != nil {
		return err
	}
	if !verifier.VerifyPassword(password) || !known {
		return failed()
	}
	return nil
}

// authSCRAM runs SCRAM-SHA-256(-PLUS). known is false for an unknown user
// (verifier is then a mock that cannot succeed).
func (s *Server) authSCRAM(conn net.Conn, fr *frameReader, verifier scram.Verifier, known bool, failed func() error) error {
	var cb []byte
	isTLS := false
	if tc, ok := conn.(*tls.Conn); ok {
		isTLS = true
		cb = s.channelBindingFor(tc)
	}
	mechs := scram.Mechanisms(isTLS && cb != nil)

	if _, err := conn.Write(encode(&pgproto3.AuthenticationSASL{AuthMechanisms: mechs})); err != nil {
		return err
	}

	b, err := readPasswordMessage(fr, "SASL response")
	if err != nil {
		return err
	}
	var first pgproto3.SASLInitialResponse
	if first.Decode(b) != nil {
		return &pgError{Severity: severityFatal, Code: pgerrcode.ProtocolViolation, Message: "malformed SASLInitialResponse message"}
	}
	// pgproto3 skips the length before the data, which says more than the
	// data does: -1 is no initial response (unlike an empty one), and any
	// other length must be the data's.
	n := int32(binary.BigEndian.Uint32(b[len(first.AuthMechanism)+1:]))
	data := first.Data
	if (n == -1 && len(data) != 0) || (n != -1 && (n < 0 || int(n) != len(data))) {
		return &pgError{Severity: severityFatal, Code: pgerrcode.ProtocolViolation, Message: "malformed SASLInitialResponse message"}
	}
	mech := first.AuthMechanism
	if !slices.Contains(mechs, mech) {
		return &pgError{Severity: severityFatal, Code: pgerrcode.ProtocolViolation,
			Message: "client selected an invalid SASL authentication mechanism"}
	}
	ex, err := scram.NewServerExchange(verifier, mech, scram.ServerOptions{ChannelBinding: cb})
	if err != nil {
		return &pgError{Severity: severityFatal, Code: pgerrcode.ProtocolViolation, Message: "invalid SASL authentication", Err: err}
	}
	if n == -1 {
		// The client sends its first message after an empty challenge
		// (RFC 4422), as PostgreSQL allows.
		if _, err := conn.Write(encode(&pgproto3.AuthenticationSASLContinue{})); err != nil {
			return err
		}
		if data, err = readSASLResponse(fr); err != nil {
			return err
		}
	}
	serverFirst, err := ex.ClientFirst(data)
	if err != nil {
		return scramError(err, failed)
	}
	if _, err := conn.Write(encode(&pgproto3.AuthenticationSASLContinue{Data: serverFirst})); err != nil {
		return err
	}

	clientFinal, err := readSASLResponse(fr)
	if err != nil {
		return err
	}
	serverFinal, err := ex.ClientFinal(clientFinal)
	if err != nil || !known {
		if err == nil {
			err = scram.ErrAuthFailed // a mock verifier cannot succeed; be sure
		}
		return scramError(err, failed)
	}
	_, err = conn.Write(encode(&pgproto3.AuthenticationSASLFinal{Data: serverFinal}))
	return err
}

// readSASLResponse reads a SASLResponse and returns its data.
func readSASLResponse(fr *frameReader) ([]byte, error) {
	b, err := readPasswordMessage(fr, "SASL response")
	if err != nil {
		return nil, err
	}
	var resp pgproto3.SASLResponse
	_ = resp.Decode(b) // takes the body whole: it cannot fail
	return resp.Data, nil
}

// scramError maps a SCRAM failure to what PostgreSQL reports for it. The
// scram package's reasons never hold secrets or client input.
func scramError(err error, failed func() error) error {
	switch {
	case errors.Is(err, scram.ErrAuthFailed):
		return failed()
	case errors.Is(err, scram.ErrChannelBinding):
		return &pgError{Severity: severityFatal, Code: pgerrcode.InvalidAuthorizationSpecification, Message: "SCRAM channel binding check failed", Detail: err.Error(), Err: err}
	case errors.Is(err, scram.ErrFeatureNotSupported):
		return &pgError{Severity: severityFatal, Code: pgerrcode.FeatureNotSupported, Message: "unsupported SCRAM feature", Detail: err.Error(), Err: err}
	}
	return &pgError{Severity: severityFatal, Code: pgerrcode.ProtocolViolation, Message: "malformed SCRAM message", Detail: err.Error(), Err: err}
}

func startupReadError(err error) error {
	var tooLarge *MessageTooLargeError
	if errors.As(err, &tooLarge) {
		return &pgError{Severity: severityFatal, Code: pgerrcode.ProtocolViolation,
			Message: fmt.Sprintf("authentication message of %d bytes exceeds the limit of %d bytes", tooLarge.Size, tooLarge.Limit)}
	}
	if errors.Is(err, errBadLength) {
		return &pgError{Severity: severityFatal, Code: pgerrcode.ProtocolViolation, Message: "invalid message length"}
	}
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return errClientGone
	}
	return err
}

// deadlineExceeded reports whether err is a read or write past the startup
// deadline.
func deadlineExceeded(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// constantTimeEqual compares two secrets without leaking where they differ.
func constantTimeEqual(a, b []byte) bool { return subtle.ConstantTimeCompare(a, b) == 1 }
