package dsqlsim

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgerrcode"
	"github.com/jackc/pgx/v5/pgproto3"
	"go.uber.org/zap"
	"golang.org/x/time/rate"
)

// reapInterval is how often the reaper looks for connections past
// MaxConnDuration; it bounds how late past the limit a connection closes.
const reapInterval = 100 * time.Millisecond

// Server is a running emulator. Its methods are safe for concurrent use.
type Server struct {
	cfg       Config // defaults applied; read-only after Start
	log       *zap.Logger
	listener  net.Listener
	caPEM     []byte
	tlsConfig *tls.Config
	nonce     string // random per server; part of every refusal marker
	// backendParams are the settings every backend session starts with,
	// whatever the client asked for.
	backendParams map[string]string
	// connRate is the new-connection rate limit, on the configured clock:
	// each connection takes a token at its arrival (AllowN) or is refused.
	connRate *rate.Limiter

	maxConnDuration atomic.Int64 // a time.Duration; SetMaxConnDuration changes it
	nextID          atomic.Int64
	stats           counters

	mu       sync.Mutex // guards sessions, admitted and closed
	sessions map[int64]*session
	admitted int // open connections that count toward MaxConns
	closed   bool

	wg           sync.WaitGroup // the accept loop, the reaper and one per connection
	reaperDone   chan struct{}  // closed by Close to stop the reaper
	stopCtxWatch func() bool    // stops the context.AfterFunc that closes the server
}

// SessionInfo describes one authenticated session.
type SessionInfo struct {
	ID         int64     `json:"id"`
	Role       string    `json:"role"`
	Started    time.Time `json:"started"` // arrival of the connection, on the server's clock
	BackendPID uint32    `json:"backend_pid"`
}

// Stats are counters since Start, except Open.
type Stats struct {
	Accepted       int64 `json:"accepted"`        // TCP connections accepted
	Authenticated  int64 `json:"authenticated"`   // sessions that passed IAM authentication and reached the backend
	AuthFailures   int64 `json:"auth_failures"`   // IAM tokens refused
	RateLimited    int64 `json:"rate_limited"`    // connections refused with 53400 (counted at arrival)
	ConnLimited    int64 `json:"conn_limited"`    // connections refused with 53300 (counted at arrival)
	StartupRefused int64 `json:"startup_refused"` // connections refused for no TLS, SNI, database or startup parameters
	Refused        int64 `json:"refused"`         // statements refused with 0A000 (in Query or Parse)
	Killed         int64 `json:"killed"`          // sessions closed by Kill, KillAll or KillOlderThan
	Expired        int64 `json:"expired"`         // connections closed at MaxConnDuration
	Cancels        int64 `json:"cancels"`         // CancelRequests forwarded to the backend
	Conflicts      int64 `json:"conflicts"`       // statements failed with 40001 for a concurrency conflict (OC000, OC001)
	Limited        int64 `json:"limited"`         // statements failed by a transaction limit (54000: rows, size, age) or a DDL rule (0A000)
	Open           int64 `json:"open"`            // connections open now
}

type counters struct {
	accepted, authenticated, authFailures, rateLimited, connLimited, startupRefused,
	refused, killed, expired, cancels atomic.Int64
	conflicts, limited atomic.Int64
}

// Start generates the certificates, writes the CA file, listens on
// cfg.ListenAddr and serves until Close. Cancelling ctx closes the server as
// Close does.
func Start(ctx context.Context, cfg Config) (*Server, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	certs, err := generateCertificates(cfg.Hostnames, cfg.Now())
	if err != nil {
		return nil, err
	}
	if cfg.CAFile != "" {
		if err := os.WriteFile(cfg.CAFile, certs.caPEM, 0o644); err != nil {
			return nil, fmt.Errorf("write ca file: %w", err)
		}
	}
	if err := installBackend(ctx, cfg); err != nil {
		return nil, err
	}
	cfg.Logger.Info("emulator schema installed in the backend", zap.String("database", cfg.BackendDatabase),
		zap.String("superuser", cfg.BackendSuperuser), zap.Int("max_txn_rows", cfg.MaxTxnRows), zap.Int64("max_txn_bytes", cfg.MaxTxnBytes))
	backendParams := limitParams(cfg)
	for name, value := range backendSessionParams {
		backendParams[name] = value
	}
	nonce := make([]byte, 8)
	if _, err := rand.Read(nonce); err != nil {
		return nil, fmt.Errorf("random nonce: %w", err)
	}
	var lc net.ListenConfig
	listener, err := lc.Listen(ctx, "tcp", cfg.ListenAddr)
	if err != nil {
		return nil, fmt.Errorf("listen on %s: %w", cfg.ListenAddr, err)
	}

	s := &Server{
		cfg:      cfg,
		log:      cfg.Logger,
		listener: listener,
		caPEM:    certs.caPEM,
		tlsConfig: &tls.Config{
			MinVersion:   tls.VersionTLS12,
			Certificates: []tls.Certificate{certs.leaf},
			// PostgreSQL 17 requires this ALPN for direct TLS; classic
			// clients that offer ALPN must offer it too.
			NextProtos: []string{"postgresql"},
		},
		nonce:         hex.EncodeToString(nonce),
		backendParams: backendParams,
		connRate:      rate.NewLimiter(rate.Limit(cfg.ConnRate), cfg.ConnBurst),
		sessions:      make(map[int64]*session),
		reaperDone:    make(chan struct{}),
	}
	s.maxConnDuration.Store(int64(cfg.MaxConnDuration))
	s.wg.Add(2)
	go s.acceptLoop()
	go s.reap()
	s.stopCtxWatch = context.AfterFunc(ctx, func() { s.Close() })
	s.log.Info("emulator listening", zap.String("addr", s.Addr()), zap.String("region", cfg.Region),
		zap.Strings("hostnames", cfg.Hostnames), zap.String("backend_socket", s.backendSocket()))
	return s, nil
}

// Addr is the host:port the server listens on.
func (s *Server) Addr() string { return s.listener.Addr().String() }

// CACertPEM is the generated CA certificate that clients must trust.
func (s *Server) CACertPEM() []byte { return append([]byte(nil), s.caPEM...) }

// Close stops listening, closes every connection abruptly and waits for all
// of the server's goroutines. It is idempotent and always returns nil.
func (s *Server) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		s.wg.Wait()
		return nil
	}
	s.closed = true
	open := make([]*session, 0, len(s.sessions))
	for _, sess := range s.sessions {
		open = append(open, sess)
	}
	s.mu.Unlock()

	s.stopCtxWatch()
	s.listener.Close()
	close(s.reaperDone)
	for _, sess := range open {
		sess.closeAbrupt()
	}
	s.wg.Wait()
	s.log.Info("emulator closed")
	return nil
}

// SetMaxConnDuration changes the connection duration cap; it applies to
// connections already open too. d <= 0 is ignored.
func (s *Server) SetMaxConnDuration(d time.Duration) {
	if d > 0 {
		s.maxConnDuration.Store(int64(d))
	}
}

// Sessions lists the authenticated sessions, oldest first.
func (s *Server) Sessions() []SessionInfo {
	var infos []SessionInfo
	for _, sess := range s.authenticatedSessions() {
		infos = append(infos, sess.info())
	}
	return infos
}

// Kill closes connection id abruptly, as DSQL's duration cap does. It
// reports whether the connection was open.
func (s *Server) Kill(id int64) bool {
	s.mu.Lock()
	sess := s.sessions[id]
	s.mu.Unlock()
	return sess != nil && s.kill(sess)
}

// KillAll closes every authenticated session abruptly and returns how many.
func (s *Server) KillAll() int {
	n := 0
	for _, sess := range s.authenticatedSessions() {
		if s.kill(sess) {
			n++
		}
	}
	return n
}

// KillOlderThan closes every authenticated session at least d old abruptly
// and returns how many.
func (s *Server) KillOlderThan(d time.Duration) int {
	now := s.cfg.Now()
	n := 0
	for _, sess := range s.authenticatedSessions() {
		if now.Sub(sess.started) >= d && s.kill(sess) {
			n++
		}
	}
	return n
}

func (s *Server) kill(sess *session) bool {
	if !sess.closeAbrupt() {
		return false
	}
	s.stats.killed.Add(1)
	s.log.Info("session killed", zap.Int64("conn_id", sess.id))
	return true
}

// Stats returns the server's counters.
func (s *Server) Stats() Stats {
	s.mu.Lock()
	open := int64(len(s.sessions))
	s.mu.Unlock()
	c := &s.stats
	return Stats{
		Accepted:       c.accepted.Load(),
		Authenticated:  c.authenticated.Load(),
		AuthFailures:   c.authFailures.Load(),
		RateLimited:    c.rateLimited.Load(),
		ConnLimited:    c.connLimited.Load(),
		StartupRefused: c.startupRefused.Load(),
		Refused:        c.refused.Load(),
		Killed:         c.killed.Load(),
		Expired:        c.expired.Load(),
		Cancels:        c.cancels.Load(),
		Conflicts:      c.conflicts.Load(),
		Limited:        c.limited.Load(),
		Open:           open,
	}
}

func (s *Server) authenticatedSessions() []*session {
	s.mu.Lock()
	var list []*session
	for _, sess := range s.sessions {
		if sess.authenticated() {
			list = append(list, sess)
		}
	}
	s.mu.Unlock()
	sort.Slice(list, func(i, j int) bool { return list[i].id < list[j].id })
	return list
}

func (s *Server) backendSocket() string {
	return filepath.Join(s.cfg.BackendSocketDir, ".s.PGSQL."+strconv.Itoa(s.cfg.BackendPort))
}

func (s *Server) acceptLoop() {
	defer s.wg.Done()
	for {
		conn, err := s.listener.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			s.log.Warn("accept failed", zap.Error(err))
			time.Sleep(10 * time.Millisecond) // e.g. out of file descriptors: do not spin
			continue
		}
		s.stats.accepted.Add(1)
		sess := &session{id: s.nextID.Add(1), started: s.cfg.Now(), rawConn: conn}
		refusal, ok := s.admit(sess)
		if !ok {
			conn.Close()
			continue
		}
		go s.serveConn(sess, refusal)
	}
}

// admit registers a new connection and applies the rate and connection
// limits at its arrival. The refusal, if any, is sent once the client is
// ready to read an ErrorResponse (after TLS and its StartupMessage). It
// returns false when the server is closing; otherwise the caller must run
// serveConn, which the WaitGroup now counts.
func (s *Server) admit(sess *session) (refusal *pgproto3.ErrorResponse, ok bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, false
	}
	switch {
	case !s.connRate.AllowN(sess.started, 1):
		s.stats.rateLimited.Add(1)
		refusal = fatal(pgerrcode.ConfigurationLimitExceeded, msgRateExceeded, "")
	case s.admitted >= s.cfg.MaxConns:
		s.stats.connLimited.Add(1)
		refusal = fatal(pgerrcode.TooManyConnections, msgTooManyConns, "")
	default:
		s.admitted++
		sess.admitted = true
	}
	sess.unadmit = func() { s.unadmit(sess) }
	s.sessions[sess.id] = sess
	s.wg.Add(1)
	return refusal, true
}

// forget removes a connection that serveConn is done with.
func (s *Server) forget(sess *session) {
	s.unadmit(sess)
	s.mu.Lock()
	delete(s.sessions, sess.id)
	s.mu.Unlock()
}

// unadmit gives a closing connection's place under MaxConns back. The
// session calls it before it closes its sockets, so a client that sees the
// close and connects again is never counted twice. Idempotent.
func (s *Server) unadmit(sess *session) {
	s.mu.Lock()
	if sess.admitted {
		sess.admitted = false
		s.admitted--
	}
	s.mu.Unlock()
}

// reap closes connections past the duration cap until Close: an idle one at
// once, one inside a transaction that began before the cap when it reaches
// MaxTxnDuration. (serverToClient closes one whose transaction ends.)
func (s *Server) reap() {
	defer s.wg.Done()
	ticker := time.NewTicker(reapInterval)
	defer ticker.Stop()
	for {
		select {
		case <-s.reaperDone:
			return
		case <-ticker.C:
		}
		limit := time.Duration(s.maxConnDuration.Load())
		now := s.cfg.Now()
		s.mu.Lock()
		var expired []*session
		for _, sess := range s.sessions {
			capAt := sess.started.Add(limit)
			if !now.Before(capAt) && !sess.finishingTransaction(capAt, now, s.cfg.MaxTxnDuration) {
				expired = append(expired, sess)
			}
		}
		s.mu.Unlock()
		for _, sess := range expired {
			s.expire(sess, limit)
		}
	}
}

// pastCap reports whether sess has reached the duration cap.
func (s *Server) pastCap(sess *session) bool {
	return !s.cfg.Now().Before(sess.started.Add(time.Duration(s.maxConnDuration.Load())))
}

// expire closes sess abruptly at the duration cap limit.
func (s *Server) expire(sess *session, limit time.Duration) {
	if sess.closeAbrupt() {
		s.stats.expired.Add(1)
		s.log.Info("session expired", zap.Int64("conn_id", sess.id), zap.Duration("max_conn_duration", limit))
	}
}

// sessionByBackendKey finds the authenticated session whose backend has
// this cancel key, or nil.
func (s *Server) sessionByBackendKey(pid uint32, key []byte) *session {
	for _, sess := range s.authenticatedSessions() {
		if sess.hasBackendKey(pid, key) {
			return sess
		}
	}
	return nil
}

// knownHost reports whether name (an SNI) is one of the cluster's names.
func (s *Server) knownHost(name string) bool {
	for _, h := range s.cfg.Hostnames {
		if strings.EqualFold(h, name) {
			return true
		}
	}
	return false
}
