package pgwire

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"runtime/debug"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgerrcode"
	"github.com/jackc/pgx/v5/pgproto3"
	"go.uber.org/zap"

	"github.com/dsqlgate/dsqlgate/config"
	"github.com/dsqlgate/dsqlgate/internal/compat"
	"github.com/dsqlgate/dsqlgate/internal/metrics"
	"github.com/dsqlgate/dsqlgate/internal/netio"
	"github.com/dsqlgate/dsqlgate/internal/users"
)

// Options are the parts of a Server that do not come from the config.
type Options struct {
	// Logger receives the server's logs; nil means none.
	Logger *zap.Logger
	// Metrics is the registry the server counts in (shared with the
	// upstream side, which counts its pools there); nil means a new one.
	Metrics *metrics.Metrics
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// Version is shown by the admin console's SHOW VERSION.
	Version string
	// Reload, when set, is what the admin console's RELOAD runs (the same
	// as SIGHUP).
	Reload func() error
	// Shutdown, when set, is what the admin console's SHUTDOWN runs: it
	// starts the same drain as SIGTERM and returns without waiting for it
	// (the console that asked is one of the connections drained).
	Shutdown func()
	// Certificates, when set, supplies the client certificate when
	// client_tls.acme is on (internal/acme's Manager), instead of
	// client_tls.cert_file and key_file.
	Certificates CertificateSource
	// Peers, when set, are the other replicas behind the same load
	// balancer (peers.*): cancel keys carry this replica's identifier, and
	// a CancelRequest for another replica's session is forwarded to it.
	// Nil: a random identifier, and other replicas' keys are ignored.
	Peers Peers
}

// Server accepts client connections and runs their sessions against the
// routes of its Upstreams.
type Server struct {
	conf      atomic.Pointer[config.Config] // replaced whole by ServerUpdate.Commit
	upstreams Upstreams
	log       *zap.Logger
	now       func() time.Time

	tls        atomic.Pointer[serverTLS] // replaced whole by ServerUpdate.Commit
	certSource CertificateSource         // Options.Certificates; nil without ACME

	// usersMu orders the writers of users and usersStamp (the users-file
	// watcher and a reload's commit), so that the watcher never puts back
	// users read under the configuration a reload has just replaced.
	usersMu    sync.Mutex
	users      atomic.Pointer[userTable]   // replaced whole by ReloadUsers and ServerUpdate.Commit
	usersStamp atomic.Pointer[users.Stamp] // version of the users file in force
	backoff    atomic.Pointer[authBackoff]
	stop       chan struct{} // closed by Close: stops the users-file watcher

	metrics  *metrics.Metrics
	version  string
	reload   func() error
	shutdown func()   // Options.Shutdown
	stats    sync.Map // route name → *routeCounters, for SHOW STATS
	series   sync.Map // route name → *sessionMetrics, shared by the route's sessions
	keys     keyRegistry
	peers    Peers         // Options.Peers; nil without replicas
	forwards chan struct{} // a slot per cancel being forwarded (maxForwardsInFlight)
	// silentPeers maps a peer address whose last dial timed out to the
	// time until which forwards to it fail at once (peerSilentFor); its
	// keys are peer addresses, so it is bounded by the peer set.
	silentPeers sync.Map
	// dialPeer dials a peer to forward a cancel; nil: net.DialTimeout
	// (tests set it).
	dialPeer func(network, addr string, timeout time.Duration) (net.Conn, error)
	nextConn atomic.Uint64
	active   atomic.Int64

	mu        sync.Mutex
	listeners map[net.Listener]struct{}
	conns     map[net.Conn]struct{}
	sessions  map[*session]struct{} // authenticated client sessions
	consoles  map[*console]struct{} // admin console connections (drainConsoles)
	draining  bool                  // Shutdown has begun
	closed    bool
	watching  bool // the users-file watcher runs
	wg        sync.WaitGroup
}

// NewServer builds a server from a validated configuration.
func NewServer(cfg *config.Config, upstreams Upstreams, opts Options) (*Server, error) {
	if opts.Logger == nil {
		opts.Logger = zap.NewNop()
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Metrics == nil {
		opts.Metrics = metrics.New()
	}
	s := &Server{
		upstreams: upstreams, log: opts.Logger, now: opts.Now, metrics: opts.Metrics,
		listeners: map[net.Listener]struct{}{},
		conns:     map[net.Conn]struct{}{},
		sessions:  map[*session]struct{}{},
		stop:      make(chan struct{}),
		version:   opts.Version,
		reload:    opts.Reload,
		shutdown:  opts.Shutdown,
		keys:      keyRegistry{peer: newPeerID(opts.Peers)},
		peers:     opts.Peers,
		forwards:  make(chan struct{}, maxForwardsInFlight),
	}
	s.conf.Store(cfg)
	s.addRouteSeries(cfg)
	if err := s.ReloadUsers(); err != nil {
		return nil, err
	}
	if err := checkRoleNames(cfg, s.users.Load()); err != nil {
		return nil, err
	}
	l := cfg.Limits
	s.backoff.Store(newAuthBackoff(l.AuthFailureLimit, l.AuthFailureWindow.D(), l.AuthFailureMaxDelay.D(), s.now))
	s.certSource = opts.Certificates
	t, err := newServerTLS(cfg, s.certSource, s.now, s.log)
	if err != nil {
		return nil, err
	}
	s.tls.Store(t)
	return s, nil
}

// CertificateExpiry is when the certificate the next client handshake
// gets stops being valid; the zero time without client TLS, or before an
// ACME source has one. It asks the source as a handshake without a server
// name would (the configured default name: a certificate in memory, no
// I/O).
func (s *Server) CertificateExpiry() time.Time {
	t := s.tlsState()
	if t == nil || t.certs == nil {
		return time.Time{}
	}
	c := t.certs
	if c.source == nil {
		if st := c.current(); st != nil {
			return st.leaf.NotAfter
		}
		return time.Time{}
	}
	cert, err := c.source.GetCertificate(&tls.ClientHelloInfo{})
	if err != nil || cert == nil || len(cert.Certificate) == 0 {
		return time.Time{}
	}
	leaf := cert.Leaf
	if leaf == nil {
		if leaf, err = x509.ParseCertificate(cert.Certificate[0]); err != nil {
			return time.Time{}
		}
	}
	return leaf.NotAfter
}

// Serve accepts connections on l until l is closed or Close is called.
func (s *Server) Serve(l net.Listener) error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return net.ErrClosed
	}
	if len(s.listeners) == 0 && !s.watching {
		s.watching = true
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			s.watchUsersFile(s.stop)
		}()
	}
	s.listeners[l] = struct{}{}
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.listeners, l)
		s.mu.Unlock()
	}()
	var backoff time.Duration
	for {
		conn, err := l.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return nil
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
				s.log.Warn("accept failed; retrying", zap.Error(err), zap.Duration("backoff", backoff))
				time.Sleep(backoff)
				continue
			}
			// EMFILE and friends are temporary too; keep serving.
			backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
			s.log.Warn("accept failed; retrying", zap.Error(err), zap.Duration("backoff", backoff))
			time.Sleep(backoff)
			continue
		}
		backoff = 0
		conn = netio.Wrap(conn)
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			conn.Close()
			return nil
		}
		s.conns[conn] = struct{}{}
		s.wg.Add(1)
		s.mu.Unlock()
		go s.serveConn(conn)
	}
}

// Close stops accepting, closes every client connection and waits for
// their sessions to end.
func (s *Server) Close() error {
	s.mu.Lock()
	if !s.closed {
		close(s.stop)
	}
	s.closed = true
	for l := range s.listeners {
		l.Close()
	}
	for c := range s.conns {
		c.Close()
	}
	s.mu.Unlock()
	s.wg.Wait()
	return nil
}

// ActiveClients is the number of authenticated client sessions.
func (s *Server) ActiveClients() int { return int(s.active.Load()) }

func (s *Server) serveConn(raw net.Conn) {
	defer s.wg.Done()
	defer func() {
		s.mu.Lock()
		delete(s.conns, raw)
		s.mu.Unlock()
		raw.Close()
	}()
	id := s.nextConn.Add(1)
	l := &login{s: s, raw: raw, outcome: "refused",
		log: s.log.With(zap.Uint64("conn_id", id), zap.String("client", raw.RemoteAddr().String()))}
	defer recoverSession(l.log)
	if certs := s.tlsState().certs; certs != nil {
		defer certs.forget(raw)
	}
	raw.SetDeadline(s.now().Add(s.currentConfig().Limits.StartupTimeout.D()))
	s.metrics.ClientConnections.WithLabelValues("authenticating").Inc()
	l.authenticating = true
	defer l.close()
	// The whole startup phase runs on one fresh stack (one goroutine
	// hand-off per connection).
	onFreshStack(l.run)
	log := l.log
	switch {
	case l.admin:
		l.logConnected("admin console session started")
		started := s.now()
		err := s.serveAdmin(l.conn, l.br, l.info.user, log)
		if err != nil || s.currentConfig().Log.Disconnections {
			log.Info("admin console session ended", zap.Duration("duration", s.now().Sub(started)), errField(err))
		}
		return
	case l.sess == nil:
		return
	}
	l.logConnected("client connected")
	sess := l.sess
	sess.setState(stateIdle)
	s.mu.Lock()
	s.sessions[sess] = struct{}{}
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.sessions, sess)
		s.mu.Unlock()
	}()
	defer s.keys.unregister(sess.key)
	err := sess.run()
	sess.setState("")
	in, out := sess.flushByteCounts()
	// The configuration in force now, not at login: a reload that turns
	// the line off silences the sessions open already. A session that
	// ended on an error is logged whatever it says.
	if err == nil && !s.currentConfig().Log.Disconnections {
		return
	}
	log.Info("client session ended",
		zap.Duration("duration", s.now().Sub(sess.started)),
		zap.Uint64("transactions", sess.transactions),
		zap.Uint64("bytes_from_client", in),
		zap.Uint64("bytes_to_client", out),
		zap.Uint64("upstream_replacements", sess.replaced),
		zap.Uint64("occ_retries", sess.retry.retries),
		errField(err))
}

// logConnected logs msg for a client that logged in, at info, when
// log.connections is on: its address (the logger's client field), user
// and database, whether it uses TLS and its application_name. Never a
// password: the startup packet carries none.
func (l *login) logConnected(msg string) {
	if !l.s.currentConfig().Log.Connections {
		return
	}
	_, isTLS := l.conn.(*tls.Conn)
	l.log.Info(msg, zap.Bool("tls", isTLS), zap.String("application_name", l.info.params["application_name"]))
}

// login is one client connection's startup phase: the handshake (TLS,
// the startup packet), the limits, authentication, the route and the
// greeting. It ends with a session to serve, an admin console to serve, or
// the client refused (told why, when there is something to tell).
type login struct {
	s       *Server
	raw     net.Conn
	log     *zap.Logger // with the user and database once known
	outcome string      // how the startup phase ended, for the metric: refused, cancel, auth_failed
	// authenticating: the connection counts in the "authenticating"
	// state still (end has not run).
	authenticating bool
	conn           net.Conn // the client connection (TLS or raw) once the handshake ran
	counted        bool     // counted in s.active: uncounted by close
	br             *bufio.Reader
	info           *startupInfo
	sess           *session // the session to serve
	admin          bool     // serve the admin console instead
}

// end counts how the startup phase ended, once. A refused client is
// counted before it is told, so a client that has read its error also
// finds it in the metrics.
func (l *login) end(outcome string) {
	if l.authenticating {
		l.authenticating = false
		m := l.s.metrics
		m.ClientConnections.WithLabelValues("authenticating").Dec()
		m.ClientConnectionsOpenedTotal.WithLabelValues(outcome).Inc()
	}
}

// refuse ends the startup phase with err.
func (l *login) refuse(err error) {
	l.end(l.outcome)
	l.s.startupFailed(l.conn, err, l.log)
}

// accepted ends the startup phase of a client that logged in: no more
// startup deadline, and it counts as accepted.
func (l *login) accepted() {
	l.raw.SetDeadline(time.Time{})
	if tc, ok := l.conn.(*tls.Conn); ok {
		tc.SetDeadline(time.Time{})
	}
	l.end("accepted")
}

// close runs when the connection ends, a panic included.
func (l *login) close() {
	l.end(l.outcome)
	if l.counted {
		l.s.active.Add(-1)
	}
	if l.conn != nil && l.conn != l.raw {
		l.conn.Close() // TLS: sends close_notify
	}
}

func (l *login) run() {
	s := l.s
	conn, br, info, err := s.handshake(l.raw, l.log)
	l.conn, l.br, l.info = conn, br, info
	if info == nil && err == nil {
		l.outcome = "cancel"
		return
	}
	if info == nil || err != nil {
		l.refuse(err)
		return
	}
	if s.Draining() {
		// Only when the listener stays open in a drain, for cancels
		// (Shutdown): new clients go elsewhere.
		l.refuse(&pgError{Severity: severityFatal, Code: pgerrcode.CannotConnectNow,
			Message: "the gateway is shutting down",
			Hint:    "Connect again: the load balancer sends new connections to another replica."})
		return
	}
	if n := s.active.Add(1); n > int64(s.currentConfig().Limits.MaxClientConn) {
		s.active.Add(-1)
		l.refuse(&pgError{Severity: severityFatal, Code: pgerrcode.TooManyConnections,
			Message: "sorry, too many clients already",
			Detail:  fmt.Sprintf("The gateway serves at most %d clients (limits.max_client_conn).", s.currentConfig().Limits.MaxClientConn)})
		return
	}
	l.counted = true
	l.log = l.log.With(zap.String("user", info.user), zap.String("database", info.database))
	log := l.log

	if (info.minor != 0 && info.minor != 2) || len(info.unknownProtocolOptions) > 0 {
		if _, err := conn.Write(negotiateProtocolVersion(info.minor, info.unknownProtocolOptions)); err != nil {
			return
		}
	}
	host := hostOf(l.raw.RemoteAddr())
	backoff := s.backoff.Load()
	u, err := s.authenticate(conn, br, info.user, log)
	if isCode(err, pgerrcode.InvalidPassword) {
		l.outcome = "auth_failed"
	}
	if delay := backoff.end(host, err == nil); err != nil {
		if delay > 0 && !errors.Is(err, errClientGone) {
			log.Info("delaying a failed authentication", zap.Duration("delay", delay))
			time.Sleep(delay)
		}
		l.refuse(err)
		return
	}
	if info.database == s.currentConfig().Admin.Database {
		if !s.isAdmin(info.user) {
			l.refuse(&pgError{Severity: severityFatal, Code: pgerrcode.InvalidAuthorizationSpecification,
				Message: fmt.Sprintf("user %q may not use the admin console", info.user),
				Hint:    "Admin users are listed in admin.users."})
			return
		}
		l.accepted()
		l.admin = true
		return
	}
	if u.databases != nil && !u.databases[info.database] {
		l.refuse(&pgError{Severity: severityFatal, Code: pgerrcode.InvalidAuthorizationSpecification,
			Message: fmt.Sprintf("user %q may not connect to database %q", info.user, info.database)})
		return
	}
	route := s.upstreams.Route(info.database)
	if route == nil {
		l.refuse(&pgError{Severity: severityFatal, Code: pgerrcode.InvalidCatalogName,
			Message: fmt.Sprintf("database %q does not exist", info.database),
			Hint:    "The gateway has no route for this database name; see routes in its configuration."})
		return
	}
	sess, err := s.newSession(conn, br, info, route, log)
	if err != nil {
		l.refuse(err)
		return
	}
	// serveConn frees the cancel slot of a session it serves; until the
	// session is handed to it, a failure here, or a panic, frees it.
	defer func() {
		if l.sess == nil {
			s.keys.unregister(sess.key)
		}
	}()
	if err := sess.greet(); err != nil {
		l.refuse(err)
		sess.end()
		return
	}
	l.accepted()
	l.sess = sess
}

// onFreshStack runs fn on a goroutine of its own and waits for it, a panic
// included. The startup phase (TLS handshake, SCRAM, the greeting) needs a
// deep stack once; run there, its stack is freed when it ends, and the
// goroutine that then serves the session keeps only the small stack an
// idle client needs (about 6 KiB less per idle client).
func onFreshStack(fn func()) {
	var p *freshStackPanic
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer func() {
			if r := recover(); r != nil {
				p = &freshStackPanic{value: r, stack: debug.Stack()}
			}
		}()
		fn()
	}()
	<-done
	if p != nil {
		panic(p)
	}
}

// freshStackPanic carries a panic out of onFreshStack with the stack where
// it happened, for recoverSession's log.
type freshStackPanic struct {
	value any
	stack []byte
}

func errField(err error) zap.Field {
	if err == nil {
		return zap.Skip()
	}
	return zap.Error(err)
}

// startupFailed tells the client why the startup phase failed, when there
// is something to tell, and logs it.
func (s *Server) startupFailed(conn net.Conn, err error, log *zap.Logger) {
	if err == nil || errors.Is(err, errClientGone) {
		return
	}
	var pe *pgError
	var he *tlsHandshakeError
	switch {
	case errors.As(err, &he):
	case errors.As(err, &pe):
	case deadlineExceeded(err):
		pe = &pgError{Severity: severityFatal, Code: pgerrcode.ProtocolViolation,
			Message: "startup and authentication did not finish within limits.startup_timeout"}
	}
	if pe != nil && conn != nil {
		pe.Severity = severityFatal
		conn.SetDeadline(s.now().Add(time.Second))
		if _, werr := conn.Write(appendErrorResponse(nil, pe)); werr == nil {
			lingerClose(conn)
		}
	}
	log.Info("client connection refused", zap.Error(err))
}

// lingerClose half-closes conn and drains what the client is still sending
// for a moment, so that the error just written is not destroyed by a TCP
// reset when the connection closes with unread data (an oversized packet,
// say). The drain is bounded in bytes and time.
func lingerClose(conn net.Conn) {
	if c, ok := conn.(*tls.Conn); ok {
		c.CloseWrite()
		conn = c.NetConn()
	}
	tcp := netio.TCP(conn)
	if tcp == nil {
		return
	}
	tcp.CloseWrite()
	tcp.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
	io.CopyN(io.Discard, tcp, 4<<20)
}

// newSession builds the session state of an authenticated client. An
// error is for the client (an invalid startup setting).
func (s *Server) newSession(conn net.Conn, br *bufio.Reader, info *startupInfo, route Route, log *zap.Logger) (*session, error) {
	pool := route.Pool()
	sess := &session{
		srv:      s,
		log:      log,
		conn:     conn,
		fr:       frameReader{r: br, maxSize: s.currentConfig().Limits.MaxMessageSize.Int()},
		user:     info.user,
		database: info.database,
		route:    route,
		pool:     pool,
		session:  pool.Settings().Mode == config.PoolSession,
		dsql:     route.Kind() == config.KindDSQL,
		started:  s.now(),
		mx:       s.sessionMetricsFor(route.Name()),
	}
	sess.engine = newEngine(sess, log, nil)
	sess.engine.txPooling, sess.engine.plainRoute = !sess.session, !sess.dsql
	sess.flushed.L = &sess.mu
	sess.written.L = &sess.mu
	sess.progress.L = &sess.mu
	params := map[string]string{}
	for name, value := range info.params {
		if name == "options" {
			for n, v := range parseOptions(value) {
				params[n] = v
			}
			continue
		}
		params[strings.ToLower(name)] = value
	}
	c := route.Compat()
	sess.engine.compat = compatFlags{
		enabled:       sess.dsql,
		settings:      sess.dsql && c.Settings,
		advisoryLocks: sess.dsql && c.AdvisoryLocks,
		truncate:      sess.dsql && c.Truncate,
	}
	if e := compat.StartupClientEncoding(params); e != nil {
		// On every route: the gateway reads statements as UTF-8.
		pe := errorOf(e)
		pe.Severity = severityFatal
		return nil, pe
	}
	var emu map[string]string
	if sess.compat.settings {
		var perr *pgError
		if emu, perr = startupEmulated(params); perr != nil {
			perr.Severity = severityFatal
			return nil, perr
		}
	}
	startup := map[string]string{}
	view := map[string]string{}
	for _, name := range slices.Sorted(maps.Keys(params)) { // the same error first, always
		value := params[name]
		switch {
		case name == "replication":
			continue // false (anything else was refused at startup): nothing to set
		case !validGUCName(name) || name == "all":
			return nil, &pgError{Severity: severityFatal, Code: pgerrcode.UndefinedObject,
				Message: fmt.Sprintf("unrecognized configuration parameter %q", name)}
		case name == "role" || name == "session_authorization":
			// The upstream's login is the gateway's: a client cannot become
			// another role through it.
			return nil, &pgError{Severity: severityFatal, Code: pgerrcode.FeatureNotSupported,
				Message: fmt.Sprintf("startup parameter %q cannot be set through the gateway", name),
				Hint:    "The gateway user's route decides the database role."}
		}
		if report, ok := reportedParams[name]; ok {
			view[report] = value
		}
		if _, emulated := emu[name]; emulated {
			continue // kept by the gateway, never sent upstream
		}
		if sess.dsql {
			if e := compat.RefuseStartupParameter(name); e != nil {
				pe := errorOf(e)
				pe.Severity = severityFatal
				return nil, pe
			}
		}
		if sqlValue, ok := startupValueSQL(name, value); ok {
			startup[name] = sqlValue
		}
	}
	sess.gucs = newGUCState(startup, emu)
	sess.clientParams = view
	secretLen := secretLen30
	if info.minor >= 2 {
		secretLen = secretLen32 // protocol 3.2: PostgreSQL 18's long key
	}
	if err := s.keys.register(sess, secretLen); err != nil {
		return nil, err
	}
	return sess, nil
}

// greet sends the client its ParameterStatus values, BackendKeyData and
// the first ReadyForQuery. The values are the route's (from an upstream
// handshake; a route never dialled dials now) adjusted by the client's own
// startup settings.
func (sess *session) greet() error {
	params := sess.route.Params(sess.user)
	if params == nil {
		ctx, cancel := context.WithTimeout(context.Background(), sess.pool.Settings().QueryWaitTimeout.D())
		sc, err := sess.pool.Acquire(ctx, sess.user, nil)
		cancel()
		if err != nil {
			e := errorForClient(err)
			e.Severity = severityFatal
			return e
		}
		params = sc.Params()
		if sess.session {
			sess.reserved = sc
			sess.noteServerLocked() // no other goroutine knows the session yet
		} else {
			sess.prev = sc
			sess.pool.Release(sc)
		}
	}
	view := sess.clientParams
	sess.clientParams = map[string]string{}
	var out []byte
	for name, value := range params {
		if v, ok := view[name]; ok {
			value = v
		}
		sess.setClientParamLocked(name, value)
		out = append(out, parameterStatus(name, value)...)
	}
	for name, value := range view {
		if _, ok := params[name]; !ok {
			sess.setClientParamLocked(name, value)
			out = append(out, parameterStatus(name, value)...)
		}
	}
	out = append(out, sess.key.backendKeyData()...)
	out = append(out, readyForQuery('I')...)
	sess.mu.Lock()
	defer sess.mu.Unlock()
	sess.writeClientLocked(out)
	sess.flushClientLocked()
	if sess.writeFailed {
		return errors.New("write the greeting: client connection failed")
	}
	return nil
}

// negotiateProtocolVersion tells a client asking for 3.minor, other than
// 3.0 or 3.2 (3.1 was never used; 3.3 and later do not exist yet), or for
// protocol options, the version the gateway speaks with it (3.2 for a
// client asking more, else 3.0), without the options.
func negotiateProtocolVersion(minor uint32, unknown []string) []byte {
	// The version field carries the whole version (3.0 or 3.2), as
	// PostgreSQL's own server sends it and libpq reads it.
	version := uint32(protocolVersion30)
	if minor >= 2 {
		version = protocolVersion32
	}
	return encode(&pgproto3.NegotiateProtocolVersion{NewestMinorProtocol: version, UnrecognizedOptions: unknown})
}

// channelBindingFor is the tls-server-end-point binding of the
// certificate tc's handshake presented (nil when channel binding cannot be
// offered).
func (s *Server) channelBindingFor(tc *tls.Conn) []byte {
	certs := s.tlsState().certs
	if certs == nil {
		return nil
	}
	return certs.bindingFor(tc)
}

// ReloadCertificate re-reads the client TLS certificate and key now (the
// files are also checked for changes at most once a second on new
// handshakes). On error the certificate in use stays.
func (s *Server) ReloadCertificate() error {
	certs := s.tlsState().certs
	if certs == nil {
		return nil
	}
	return certs.Reload()
}

// Reload re-reads what can change under a running server without a
// restart: the users file and the client TLS certificate.
func (s *Server) Reload() error {
	return errors.Join(s.ReloadUsers(), s.ReloadCertificate())
}

// recoverSession keeps a bug in one session from taking the gateway down:
// the panic is logged (its value's type and the stack, not the value, which
// could hold a secret) and only that session's connection closes.
func recoverSession(log *zap.Logger) {
	r := recover()
	if r == nil {
		return
	}
	// The panic's value is not logged: it may hold client input or a secret.
	if fp, ok := r.(*freshStackPanic); ok {
		log.Error("session panicked; closing its connection", zap.String("panic_type", fmt.Sprintf("%T", fp.value)), zap.ByteString("stack", fp.stack))
		return
	}
	log.Error("session panicked; closing its connection", zap.String("panic_type", fmt.Sprintf("%T", r)), zap.Stack("stack"))
}

// serverTLS is the client-facing TLS in force. Immutable; replaced whole.
type serverTLS struct {
	certs   *certStore  // nil: no TLS towards clients
	config  *tls.Config // SSLRequest; nil without certs
	direct  *tls.Config // direct TLS, ALPN "postgresql" required
	require bool        // refuse clients without TLS
}

func newServerTLS(cfg *config.Config, source CertificateSource, now func() time.Time, log *zap.Logger) (*serverTLS, error) {
	mode := cfg.ClientTLSMode()
	t := &serverTLS{require: mode == config.TLSRequire}
	if cfg.ClientTLS.ACME.Enabled() && mode != config.TLSDisable {
		if source == nil {
			return nil, errors.New("client_tls.acme: the server was started without an ACME certificate source")
		}
		certs := newSourceCertStore(source, now, log)
		t.certs, t.config, t.direct = certs, certs.tlsConfig(false), certs.tlsConfig(true)
		return t, nil
	}
	if cfg.ClientTLS.CertFile != "" && mode != config.TLSDisable {
		certs, err := newCertStore(cfg.ClientTLS.CertFile, cfg.ClientTLS.KeyFile, now, log)
		if err != nil {
			return nil, fmt.Errorf("client_tls: %w", err)
		}
		t.certs, t.config, t.direct = certs, certs.tlsConfig(false), certs.tlsConfig(true)
	}
	return t, nil
}

// tlsState is the client TLS in force.
func (s *Server) tlsState() *serverTLS { return s.tls.Load() }

// addRouteSeries creates the per-route series that exist from the start.
func (s *Server) addRouteSeries(cfg *config.Config) {
	for i := range cfg.Routes {
		s.metrics.AddRoute(cfg.Routes[i].Database)
	}
}

// currentConfig is the configuration in force.
func (s *Server) currentConfig() *config.Config { return s.conf.Load() }
