package authbridge

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"time"

	"github.com/jackc/pgerrcode"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/dsqlgate/dsqlgate/internal/netio"
)

// DialError is a failed upstream dial. Retryable reports whether waiting and
// trying again may help (DSQL's connection-rate and connection-count limits,
// network trouble) as opposed to a configuration or credentials problem.
// The message never contains a token or password.
type DialError struct {
	Route     string
	SQLState  string // the upstream's SQLSTATE when it refused with an ErrorResponse
	Retryable bool
	Err       error
}

func (e *DialError) Error() string {
	return fmt.Sprintf("dial upstream for route %q: %v", e.Route, e.Err)
}

func (e *DialError) Unwrap() error { return e.Err }

// DialFailed lets a caller that does not know this type (pgwire, through
// the interface it declares) tell its client what happened.
func (e *DialError) DialFailed() (route, sqlstate string, retryable bool) {
	return e.Route, e.SQLState, e.Retryable
}

// dial opens, authenticates and hijacks one upstream connection. The caller
// has already taken a dial slot from the pool and a token from the rate
// limiter.
func (r *Route) dial(ctx context.Context, role string) (*ServerConn, error) {
	pgConn, err := r.connect(ctx, role, nil)
	if err != nil {
		return nil, err
	}
	// pgconn reads in a goroutine of its own while one of its writes is
	// slow (over 15 ms: a loaded machine during the handshake). Such a
	// read still in flight at Hijack would take the first reply meant for
	// us; SyncConn stops it and drains pgconn's buffers first.
	syncCtx, cancel := context.WithTimeout(ctx, r.dialTimeout)
	err = pgConn.SyncConn(syncCtx)
	cancel()
	if err != nil {
		pgConn.Close(context.Background())
		return nil, &DialError{Route: r.Name, Retryable: true, Err: fmt.Errorf("settle the new connection: %w", err)}
	}
	hj, err := pgConn.Hijack()
	if err != nil {
		pgConn.Close(context.Background())
		return nil, &DialError{Route: r.Name, Err: err}
	}
	params := make(map[string]string, len(hj.ParameterStatuses))
	for k, v := range hj.ParameterStatuses {
		params[k] = v
	}
	return &ServerConn{
		Conn:   hj.Conn,
		Reader: bufio.NewReaderSize(hj.Conn, serverReadBufferSize),
		Writer: bufio.NewWriterSize(hj.Conn, serverWriteBufferSize),
		Params: params,
		PID:    hj.PID,
		Secret: hj.SecretKey,
		role:   role,
	}, nil
}

// connect opens and authenticates one upstream connection within the
// route's dial timeout, with the startup parameters params (nil for none;
// only ones DSQL accepts). The caller has already taken a token from the
// rate limiter. Errors are *DialError and never carry the token or password.
func (r *Route) connect(ctx context.Context, role string, params map[string]string) (*pgconn.PgConn, error) {
	ctx, cancel := context.WithTimeout(ctx, r.dialTimeout)
	defer cancel()
	cfg, err := r.connectConfig(ctx, role)
	if err != nil {
		return nil, &DialError{Route: r.Name, Err: err}
	}
	for k, v := range params {
		cfg.RuntimeParams[k] = v
	}
	pgConn, err := pgconn.ConnectConfig(ctx, cfg)
	if err != nil {
		return nil, classifyDialError(r.Name, err)
	}
	return pgConn, nil
}

// connectConfig builds the pgconn configuration of one upstream
// connection: the endpoint (dialling DialAddress when set), TLS with SNI and
// verify-full, the route's user and database, and the password: a token
// minted for this dial (kind dsql) or the static password (kind postgres).
// The result holds a secret; it must not be logged or kept. ctx bounds the
// minting and should carry the dial timeout.
func (r *Route) connectConfig(ctx context.Context, role string) (*pgconn.Config, error) {
	cfg, err := pgconn.ParseConfig("sslmode=disable")
	if err != nil {
		return nil, err
	}
	// Set every field that matters explicitly: ParseConfig also reads the
	// PG* environment variables, and none of them may steer an upstream.
	cfg.Host = r.host
	cfg.Port = uint16(r.port)
	cfg.Database = r.upstreamDatabase
	cfg.User = role
	cfg.TLSConfig = r.tlsConfig
	cfg.SSLNegotiation = r.negotiation
	cfg.Fallbacks = nil
	cfg.RuntimeParams = map[string]string{}
	cfg.ConnectTimeout = 0 // ctx carries the dial timeout
	cfg.ValidateConnect = nil
	cfg.AfterConnect = nil
	cfg.OnNotice = nil
	cfg.OnNotification = nil
	cfg.KerberosSrvName, cfg.KerberosSpn = "", ""
	cfg.MinProtocolVersion, cfg.MaxProtocolVersion = "3.0", "3.0"
	cfg.ChannelBinding = "prefer"
	cfg.LookupFunc = func(ctx context.Context, host string) ([]string, error) { return []string{host}, nil }
	address := r.address
	cfg.DialFunc = func(ctx context.Context, network, _ string) (net.Conn, error) {
		var d net.Dialer
		conn, err := d.DialContext(ctx, "tcp", address)
		if err != nil {
			return nil, err
		}
		return netio.Wrap(conn), nil
	}
	if r.kind == kindDSQL {
		// DSQL asks for a cleartext password and takes the token; refuse
		// to send it any other way.
		cfg.RequireAuth = "password"
		started := time.Now()
		minter := r.minters[role]
		if minter == nil {
			return nil, fmt.Errorf("no token minter for role %q", role) // a bug: minters holds every role RoleFor returns
		}
		token, err := minter.Mint(ctx)
		r.metrics.TokenMintSeconds.WithLabelValues(r.Name).Observe(time.Since(started).Seconds())
		if err != nil {
			r.metrics.TokenMintsTotal.WithLabelValues(r.Name, "error").Inc()
			return nil, err
		}
		r.metrics.TokenMintsTotal.WithLabelValues(r.Name, "ok").Inc()
		cfg.Password = token
	} else {
		cfg.Password = r.password
	}
	return cfg, nil
}

// classifyDialError turns pgconn's connect error into a DialError, deciding
// whether trying again may help.
func classifyDialError(route string, err error) *DialError {
	de := &DialError{Route: route, Err: err}
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		de.SQLState = pgErr.Code
		switch pgErr.Code {
		case pgerrcode.ConfigurationLimitExceeded, pgerrcode.TooManyConnections, pgerrcode.CannotConnectNow, pgerrcode.ConnectionFailure, pgerrcode.SQLClientUnableToEstablishSQLConnection, pgerrcode.SQLServerRejectedEstablishmentOfSQLConnection:
			// rate exceeded, too many connections, cannot connect now,
			// connection failures the server reports itself
			de.Retryable = true
		}
		return de
	}
	var certErr *tls.CertificateVerificationError
	var unknownAuth x509.UnknownAuthorityError
	var hostErr x509.HostnameError
	if errors.As(err, &certErr) || errors.As(err, &unknownAuth) || errors.As(err, &hostErr) {
		return de // a wrong CA or endpoint does not fix itself
	}
	var netErr net.Error
	if errors.As(err, &netErr) || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, context.DeadlineExceeded) || errors.Is(err, os.ErrDeadlineExceeded) {
		de.Retryable = true
	}
	return de
}

// buildTLSConfig makes the upstream TLS configuration: verify-full against
// the system roots or caFile, SNI = host, TLS 1.2 or later, and ALPN
// "postgresql" for direct TLS.
func buildTLSConfig(host, caFile string, direct, verify bool) (*tls.Config, error) {
	cfg := &tls.Config{ServerName: host, MinVersion: tls.VersionTLS12}
	if direct {
		cfg.NextProtos = []string{"postgresql"}
	}
	if !verify {
		cfg.InsecureSkipVerify = true
		return cfg, nil
	}
	if caFile != "" {
		pem, err := os.ReadFile(caFile)
		if err != nil {
			return nil, fmt.Errorf("read ca_file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("ca_file %s holds no PEM certificate", caFile)
		}
		cfg.RootCAs = pool
	}
	return cfg, nil
}

// sendCancel opens a new connection to the upstream of sc (same address,
// TLS and SNI) and sends a CancelRequest with the upstream's own key. Like
// PostgreSQL, the upstream answers nothing; the connection is closed.
func (r *Route) sendCancel(ctx context.Context, pid uint32, secret []byte) error {
	ctx, cancel := context.WithTimeout(ctx, r.dialTimeout)
	defer cancel()
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", r.address)
	if err != nil {
		return fmt.Errorf("dial for cancel: %w", err)
	}
	defer conn.Close()
	if dl, ok := ctx.Deadline(); ok {
		conn.SetDeadline(dl)
	}
	var c net.Conn = conn
	if r.tlsConfig != nil {
		if r.negotiation != "direct" {
			// SSLRequest: length 8, code 80877103.
			if _, err := conn.Write([]byte{0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f}); err != nil {
				return fmt.Errorf("send SSLRequest for cancel: %w", err)
			}
			var b [1]byte
			if _, err := io.ReadFull(conn, b[:]); err != nil {
				return fmt.Errorf("read SSLRequest answer for cancel: %w", err)
			}
			if b[0] != 'S' {
				return errors.New("upstream refused TLS for cancel")
			}
		}
		tc := tls.Client(conn, r.tlsConfig)
		if err := tc.HandshakeContext(ctx); err != nil {
			return fmt.Errorf("tls handshake for cancel: %w", err)
		}
		c = tc
	}
	msg := make([]byte, 0, 12+len(secret))
	msg = append(msg, 0, 0, 0, 0, 0x04, 0xd2, 0x16, 0x2e) // length patched below, code 80877102
	msg = append(msg, byte(pid>>24), byte(pid>>16), byte(pid>>8), byte(pid))
	msg = append(msg, secret...)
	n := len(msg)
	msg[0], msg[1], msg[2], msg[3] = byte(n>>24), byte(n>>16), byte(n>>8), byte(n)
	if _, err := c.Write(msg); err != nil {
		return fmt.Errorf("send CancelRequest: %w", err)
	}
	// Wait briefly for the server to close, so the cancel is processed
	// before we report success; its absence is not an error.
	c.SetReadDeadline(time.Now().Add(time.Second))
	io.Copy(io.Discard, c)
	return nil
}
