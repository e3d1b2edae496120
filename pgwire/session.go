package pgwire

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/dsqlgate/dsqlgate/authbridge"
	"github.com/dsqlgate/dsqlgate/internal/metrics"
	"github.com/dsqlgate/dsqlgate/pgwire/sqllex"
)

// session is one authenticated client. One or two goroutines work on it:
//
//   - the client goroutine (run) reads client messages, decides what to
//     send upstream, writes to the upstream, and acquires an upstream when
//     the client starts work without one. When the units it sent are
//     complete (the client owes nothing more before their replies), it
//     reads the replies itself (relayInline), forwards or swallows them in
//     the order the reply queue dictates, and detaches the upstream at a
//     safe point: an autocommit statement or a one-unit transaction runs on
//     this goroutine alone.
//   - the server goroutine (serverToClient) takes over the upstream's
//     replies when the client must be heard while they come (a COPY FROM
//     STDIN, a Flush without a Sync, an open transaction) and keeps reading
//     until the upstream is detached or lost.
//
// Locking: mu guards every field below it and every write to the client
// (cw). Writes to the upstream happen outside mu, by the client goroutine
// only; a reply entry is queued under mu before its message is written, so
// the upstream can never be detached while it owes the client a reply.
type session struct {
	srv      *Server
	mx       *sessionMetrics
	log      *zap.Logger
	conn     net.Conn // client connection, TLS or plain
	fr       frameReader
	user     string
	database string
	route    *authbridge.Route
	pool     *authbridge.Pool
	session  bool // pool mode session: keep one upstream while connected
	dsql     bool // route kind dsql: only DSQL-settable parameters go upstream
	key      cancelKey
	started  time.Time

	out []byte // scratch for messages to the upstream; client goroutine only

	mu   sync.Mutex
	cw   *bufio.Writer // client writer while writing; nil when flushed (flushClientLocked)
	sc   *authbridge.ServerConn
	us   *upstreamState // sc.State while attached
	done chan struct{}  // the attachment's server goroutine, closed when it exits; nil while none runs
	// reserved is, in session mode, the client's upstream while detached;
	// prev is, in transaction mode, the last upstream (a preference only).
	reserved *authbridge.ServerConn
	prev     *authbridge.ServerConn
	// spare is, in session mode, the replacement dialled for reserved
	// before reserved retires (make before break); spareDialing is set
	// while that dial runs.
	spare        *authbridge.ServerConn
	spareDialing bool
	q            replyQueue
	inBatch      bool // extended-protocol messages sent upstream since the last Sync
	// The unit of work being sent: the client-visible status when it began
	// and what it contains (unitFlags). unitOpen: messages of the unit were
	// sent and its Sync has not come yet.
	unitOpen  bool
	unitStart byte
	unitFlags uint8
	unitText  string // the unit's last statement text, for the slow-query log
	txStatus  byte   // as the client last saw it: 'I', 'T' or 'E'
	copyIn    bool   // the upstream is in COPY FROM STDIN
	// unflushed: the client goroutine has written to the upstream and not
	// flushed yet; the upstream must stay attached until it has (flushed
	// is signalled when it has).
	unflushed bool
	flushed   sync.Cond // on mu
	// skipUntilSync: the gateway reported an error in the middle of an
	// extended-protocol batch; client messages are dropped until Sync,
	// which is answered with ReadyForQuery(skipStatus).
	skipUntilSync bool
	skipStatus    byte
	// lostTx: the upstream was lost inside a transaction; the client is in
	// a failed transaction the gateway plays out until ROLLBACK.
	// lostReported: the client has been told (40001), later statements
	// get 25P02.
	lostTx       bool
	lostReported bool
	closing      bool // the client is gone; nothing more is written to it
	draining     bool // the server is shutting down: end at the next safe point

	gucs         *gucState
	stmts        map[string]*preparedStmt // by client name
	unnamed      *preparedStmt
	unnamedGen   uint64
	portals      map[string]*preparedStmt // portal → statement, within a transaction
	clientParams map[string]string        // ParameterStatus values the client has seen
	// reportedFor/reportedVer: the upstream (and its params version) whose
	// values were last compared with clientParams.
	reportedFor *upstreamState
	reportedVer uint64

	// The compatibility layer (compat.go, advisory.go).
	compat       compatFlags
	advisory     advisoryState
	hasXactLocks bool                    // transaction advisory locks to release at transaction end
	localPortals map[string]*localPortal // portals of statements the gateway answers
	// statement_timeout and idle_in_transaction_session_timeout, enforced
	// by the gateway: stmtTimer runs while a unit is in flight, timedOut
	// says it fired; idleTimer runs while the client idles in a
	// transaction.
	stmtTimer *time.Timer
	timedOut  bool
	idleTimer *time.Timer
	idleArmed atomic.Bool // idleTimer is set: read without mu by the client goroutine

	// counters for the session-end log line and the metrics
	transactions   uint64
	replaced       uint64
	state          string    // the client_connections state this session counts in; guarded by mu
	bytesIn        uint64    // from the client; client goroutine only
	bytesInPending uint64    // not yet added to the metric; client goroutine only
	bytesOut       uint64    // to the client, not yet added to the metric; guarded by mu
	bytesOutAll    uint64    // to the client in all; guarded by mu
	unitBegan      time.Time // start of the unit being sent; guarded by mu
	waitSince      time.Time // when the client started waiting for an upstream; guarded by mu
	txBegan        time.Time // start of the open transaction (zero: none); guarded by mu
}

// Session states, as the client_connections metric counts them.
const (
	stateIdle    = "idle"
	stateActive  = "active"
	stateWaiting = "waiting"
)

// setState moves the session between the client_connections states ("":
// gone).
func (s *session) setState(state string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.setStateLocked(state)
}

func (s *session) setStateLocked(state string) {
	if s.state == state {
		return
	}
	if s.state != "" {
		s.mx.state(s.state).Dec()
	}
	if state != "" {
		s.mx.state(state).Inc()
	}
	s.state = state
}

// sessionMetrics are a route's series for its sessions, looked up once per
// route: the route and the states are fixed, and a label lookup per
// transaction (or per connection) is not free.
type sessionMetrics struct {
	m                     *metrics.Metrics
	idle, active, waiting prometheus.Gauge
	poolWait, query, xact prometheus.Observer
	bytesIn, bytesOut     prometheus.Counter
	counters              *routeCounters
}

// sessionMetricsFor returns the route's series, looking them up on first
// use.
func (s *Server) sessionMetricsFor(route string) *sessionMetrics {
	if x, ok := s.series.Load(route); ok {
		return x.(*sessionMetrics)
	}
	m := s.metrics
	x, _ := s.series.LoadOrStore(route, &sessionMetrics{
		m:        m,
		idle:     m.ClientConnections.WithLabelValues(stateIdle),
		active:   m.ClientConnections.WithLabelValues(stateActive),
		waiting:  m.ClientConnections.WithLabelValues(stateWaiting),
		poolWait: m.PoolWaitSeconds.WithLabelValues(route),
		query:    m.QuerySeconds.WithLabelValues(route),
		xact:     m.TransactionSeconds.WithLabelValues(route),
		bytesIn:  m.BytesTotal.WithLabelValues("client_to_server"),
		bytesOut: m.BytesTotal.WithLabelValues("server_to_client"),
		counters: s.countersFor(route),
	})
	return x.(*sessionMetrics)
}

func (x *sessionMetrics) state(state string) prometheus.Gauge {
	switch state {
	case stateIdle:
		return x.idle
	case stateActive:
		return x.active
	case stateWaiting:
		return x.waiting
	}
	return x.m.ClientConnections.WithLabelValues(state)
}

// flushByteCounts adds the bytes relayed since the last call to the
// metric and returns the session's totals.
func (s *session) flushByteCounts() (in, out uint64) {
	s.flushBytesIn()
	s.mu.Lock()
	defer s.mu.Unlock()
	s.flushBytesOutLocked()
	return s.bytesIn, s.bytesOutAll
}

func (s *session) flushBytesOutLocked() {
	if s.bytesOut > 0 {
		s.mx.bytesOut.Add(float64(s.bytesOut))
		s.mx.counters.sent.Add(s.bytesOut)
		s.bytesOutAll += s.bytesOut
		s.bytesOut = 0
	}
}

// flushBytesIn adds the bytes read from the client since the last call to
// the metric. Client goroutine only.
func (s *session) flushBytesIn() {
	if s.bytesInPending > 0 {
		s.mx.bytesIn.Add(float64(s.bytesInPending))
		s.mx.counters.received.Add(s.bytesInPending)
		s.bytesInPending = 0
	}
}

// compatFlags say which parts of the compatibility layer a session uses
// (all off for kind postgres routes).
type compatFlags struct {
	enabled, settings, advisoryLocks, truncate bool
}

// errTerminate ends the client loop without an error.
var errTerminate = errors.New("client sent Terminate")

// run is the client goroutine. It returns when the client leaves or
// misbehaves; the caller closes the connection.
func (s *session) run() error {
	defer s.end()
	for {
		msg, err := s.fr.next()
		if err != nil {
			return s.clientReadError(err)
		}
		if s.idleArmed.Load() {
			s.stopIdleTimer()
		}
		s.bytesIn += uint64(len(msg))
		s.bytesInPending += uint64(len(msg))
		if s.bytesInPending >= 1<<16 {
			s.flushBytesIn()
		}
		if err := s.onClientMessage(msg); err != nil {
			if errors.Is(err, errTerminate) {
				return nil
			}
			return err
		}
		if s.fr.buffered() == 0 {
			s.flushUpstream()
			s.relayInline()
			s.mu.Lock()
			s.flushClientLocked()
			s.mu.Unlock()
		}
	}
}

func (s *session) clientReadError(err error) error {
	var tooLarge *MessageTooLargeError
	switch {
	case errors.As(err, &tooLarge):
		s.fatal(&pgError{Severity: severityFatal, Code: codeProgramLimitExceeded,
			Message: fmt.Sprintf("message of %d bytes exceeds the gateway's limit of %d bytes", tooLarge.Size, tooLarge.Limit),
			Hint:    "Raise limits.max_message_size if such messages are expected."})
		return err
	case errors.Is(err, errBadLength):
		s.fatal(&pgError{Severity: severityFatal, Code: codeProtocolViolation, Message: "invalid message length"})
		return err
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, net.ErrClosed):
		return nil
	}
	return err
}

// fatal sends a FATAL error to the client; the caller then closes.
func (s *session) fatal(e *pgError) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.writeClientLocked(appendErrorResponse(nil, e))
	s.flushClientLocked()
}

func (s *session) onClientMessage(msg []byte) error {
	switch msg[0] {
	case 'Q':
		return s.onQuery(msg)
	case 'P':
		return s.onParse(msg)
	case 'B':
		return s.onBind(msg)
	case 'D':
		return s.onDescribe(msg)
	case 'E':
		return s.onExecute(msg)
	case 'C':
		return s.onClose(msg)
	case 'S':
		return s.onSync()
	case 'H':
		return s.onFlush(msg)
	case 'F':
		return s.onFunctionCall(msg)
	case 'd', 'c', 'f':
		return s.onCopyFromClient(msg)
	case 'X':
		return errTerminate
	default:
		e := &pgError{Severity: severityFatal, Code: codeProtocolViolation,
			Message: fmt.Sprintf("invalid frontend message type %d", msg[0])}
		s.fatal(e)
		return e
	}
}

// malformed reports a message the gateway cannot decode and ends the
// session, as PostgreSQL does.
func (s *session) malformed(what string) error {
	e := &pgError{Severity: severityFatal, Code: codeProtocolViolation, Message: "invalid " + what + " message format"}
	s.fatal(e)
	return e
}

// ---- writing ----

// writeClientLocked buffers msg for the client. Write errors are sticky in
// cw and surface as the client goroutine's next read error; the server
// goroutine keeps going so the upstream still reaches a safe point.
func (s *session) writeClientLocked(msg []byte) {
	if s.closing {
		return
	}
	if s.cw == nil {
		s.cw = clientWriters.Get().(*bufio.Writer)
		s.cw.Reset(s.conn)
	}
	s.cw.Write(msg)
}

// flushClientLocked sends what is buffered for the client. After a
// successful flush the buffer goes back to a pool shared by every session,
// so an idle client holds no write buffer; after a failed one it stays,
// with its sticky error.
func (s *session) flushClientLocked() {
	if s.closing || s.cw == nil {
		return
	}
	if err := s.cw.Flush(); err != nil {
		s.log.Debug("client write failed", zap.Error(err))
		return
	}
	s.cw.Reset(nil)
	clientWriters.Put(s.cw)
	s.cw = nil
}

// clientWriters holds the client write buffers of sessions that are not
// writing.
var clientWriters = sync.Pool{New: func() any { return bufio.NewWriterSize(nil, clientWriteBufferSize) }}

// queueLocked appends a reply entry; a synthetic one at the front is
// answered at once.
func (s *session) queueLocked(r reply) {
	s.q.push(r)
	if r.kind.synthetic() && s.q.len() == 1 {
		s.emitSyntheticLocked()
	}
}

// emitSyntheticLocked answers the synthetic entries at the front.
func (s *session) emitSyntheticLocked() {
	for s.q.len() > 0 && s.q.front().kind.synthetic() {
		r := s.q.pop()
		switch r.kind {
		case sParseComplete:
			s.writeClientLocked(msgParseComplete)
		case sCloseComplete:
			s.writeClientLocked(msgCloseComplete)
		case sBytes:
			s.writeClientLocked(r.data)
		}
	}
}

var (
	msgParseComplete = []byte{'1', 0, 0, 0, 4}
	msgBindComplete  = []byte{'2', 0, 0, 0, 4}
	msgCloseComplete = []byte{'3', 0, 0, 0, 4}
	msgNoData        = []byte{'n', 0, 0, 0, 4}
	msgSync          = []byte{'S', 0, 0, 0, 4}
)

func readyForQuery(status byte) []byte { return []byte{'Z', 0, 0, 0, 5, status} }

// sendUpstream writes the messages built in s.out to the attached upstream
// (the caller queued their replies and set unflushed under mu).
func (s *session) sendUpstream(sc *authbridge.ServerConn) {
	if len(s.out) == 0 {
		return
	}
	if _, err := sc.Writer.Write(s.out); err != nil {
		s.upstreamWriteFailed(sc, err)
	}
	s.out = s.out[:0]
}

// flushUpstream flushes what the client goroutine wrote upstream, and lets
// a server goroutine waiting to detach at a safe point go on.
func (s *session) flushUpstream() {
	s.mu.Lock()
	sc, pending := s.sc, s.unflushed
	s.mu.Unlock()
	if !pending {
		return
	}
	if sc != nil {
		if err := sc.Writer.Flush(); err != nil {
			s.upstreamWriteFailed(sc, err)
		}
	}
	s.mu.Lock()
	s.unflushed = false
	s.flushed.Broadcast()
	s.mu.Unlock()
}

// upstreamWriteFailed closes the upstream so the server goroutine sees the
// loss and reports it; the client goroutine goes on.
func (s *session) upstreamWriteFailed(sc *authbridge.ServerConn, err error) {
	s.log.Debug("upstream write failed", zap.Uint64("server_id", sc.ID), zap.Error(err))
	sc.Conn.Close()
}

// safeLocked reports a safe point: nothing owed by the upstream, no batch
// open, no transaction, no COPY.
func (s *session) safeLocked() bool {
	return s.q.len() == 0 && !s.inBatch && s.txStatus == 'I' && !s.copyIn && !s.unitOpen
}

// beginUnitLocked notes the start of a unit of work going upstream, and
// starts the statement_timeout clock.
func (s *session) beginUnitLocked() {
	if !s.unitOpen {
		s.unitOpen = true
		s.unitStart = s.txStatus
		s.unitFlags = 0
		s.unitBegan = s.srv.now()
	}
	if s.stmtTimer == nil {
		if d := s.statementTimeoutLocked(); d > 0 {
			s.stmtTimer = time.AfterFunc(d, s.statementTimedOut)
		}
	}
}

// stopStatementTimerLocked stops the statement_timeout clock when nothing
// is in flight any more.
func (s *session) stopStatementTimerLocked() {
	if s.stmtTimer != nil {
		s.stmtTimer.Stop()
		s.stmtTimer = nil
	}
	s.timedOut = false
}

// cancelGrace is how long an upstream may ignore a cancel sent for
// statement_timeout before the gateway closes it (DSQL may not support
// CancelRequest).
const cancelGrace = 5 * time.Second

// statementTimedOut runs on the timer's goroutine: the client's work has
// run longer than its statement_timeout, so it is cancelled upstream, and
// the client gets 57014 as PostgreSQL reports it.
func (s *session) statementTimedOut() {
	s.mu.Lock()
	sc := s.sc
	if sc == nil || s.q.len() == 0 || s.stmtTimer == nil {
		s.mu.Unlock()
		return
	}
	s.timedOut = true
	s.mu.Unlock()
	s.log.Debug("statement timeout: cancelling upstream work")
	ctx, cancel := context.WithTimeout(context.Background(), cancelGrace)
	defer cancel()
	if err := sc.Route().Cancel(ctx, sc); err != nil {
		s.log.Info("cancel for statement_timeout failed", zap.Error(err))
	}
	time.AfterFunc(cancelGrace, func() {
		s.mu.Lock()
		ignored := s.sc == sc && s.timedOut && s.q.len() > 0
		s.mu.Unlock()
		if ignored {
			s.log.Info("upstream ignored the cancel for statement_timeout; closing it")
			sc.Conn.Close()
		}
	})
}

// startIdleTimerLocked starts idle_in_transaction_session_timeout's clock
// when the client is left idle inside a transaction.
func (s *session) startIdleTimerLocked() {
	if s.idleTimer != nil || s.q.len() > 0 || (s.txStatus != 'T' && s.txStatus != 'E') {
		return
	}
	if d := s.emulatedMillisLocked("idle_in_transaction_session_timeout"); d > 0 {
		s.idleTimer = time.AfterFunc(d, s.idleInTransactionTimedOut)
		s.idleArmed.Store(true)
	}
}

func (s *session) stopIdleTimer() {
	s.mu.Lock()
	if s.idleTimer != nil {
		s.idleTimer.Stop()
		s.idleTimer = nil
	}
	s.idleArmed.Store(false)
	s.mu.Unlock()
}

// idleInTransactionTimedOut ends a session left idle in a transaction for
// longer than idle_in_transaction_session_timeout, as PostgreSQL does:
// FATAL 25P03, then the connection closes (and the gateway rolls the
// transaction back upstream).
func (s *session) idleInTransactionTimedOut() {
	s.mu.Lock()
	if s.idleTimer == nil || s.closing || s.q.len() > 0 || (s.txStatus != 'T' && s.txStatus != 'E') {
		s.mu.Unlock()
		return
	}
	s.idleTimer = nil
	s.writeClientLocked(appendErrorResponse(nil, &pgError{Severity: severityFatal, Code: "25P03",
		Message: "terminating connection due to idle-in-transaction timeout"}))
	s.flushClientLocked()
	s.mu.Unlock()
	s.log.Info("closing a client idle in a transaction past idle_in_transaction_session_timeout")
	s.conn.Close()
}

func unitFlagsFor(k sqllex.Kind) uint8 {
	switch k {
	case sqllex.Begin:
		return unitBegin
	case sqllex.Commit, sqllex.TwoPhase:
		return unitCommit
	case sqllex.Rollback:
		return unitRollback
	}
	return 0
}

// ---- attaching an upstream ----

// attached returns the attached upstream, attaching one first if there is
// none: from the pool (or the session's reserved one), brought to the
// client's settings.
func (s *session) attached() (*authbridge.ServerConn, error) {
	s.mu.Lock()
	sc := s.sc
	s.mu.Unlock()
	if sc != nil {
		return sc, nil
	}
	var lastErr error
	for attempt := 0; attempt < 3; attempt++ {
		sc, err := s.acquire()
		if err != nil {
			return nil, err
		}
		err = s.syncUpstream(sc)
		if err == nil {
			s.mu.Lock()
			s.sc = sc
			s.us = sc.State.(*upstreamState)
			s.done = nil // read inline or by a server goroutine (relayInline)
			s.mu.Unlock()
			s.setState(stateActive)
			return sc, nil
		}
		// The upstream died between the pool's check and our first
		// write: it was idle, so the client loses nothing. Try another.
		s.log.Debug("upstream failed during state sync", zap.Uint64("server_id", sc.ID), zap.Error(err))
		s.pool.Discard(sc)
		lastErr = err
	}
	return nil, fmt.Errorf("state sync failed on three upstream connections: %w", lastErr)
}

// lockAttached locks mu and reports whether sc, which attached returned,
// is still the attached upstream. When it is not (its server goroutine
// found it lost in between), mu is released and the caller handles its
// message over again, on the session's new state (a lost transaction, or
// another upstream).
func (s *session) lockAttached(sc *authbridge.ServerConn) bool {
	s.mu.Lock()
	if s.sc == sc {
		return true
	}
	s.mu.Unlock()
	return false
}

// acquire gets an upstream for the client: in session mode its reserved
// one while that is alive and not retiring, else one from the pool. A
// client that waits longer than a second is told so with a NOTICE.
func (s *session) acquire() (*authbridge.ServerConn, error) {
	s.mu.Lock()
	sc, prev := s.reserved, s.prev
	s.reserved = nil
	s.mu.Unlock()
	if sc != nil {
		alive := sc.Alive()
		if alive && !sc.Retiring(s.srv.now()) {
			return sc, nil
		}
		s.replaced++
		if alive {
			s.pool.Retire(sc)
		} else {
			s.pool.Discard(sc)
		}
		s.mu.Lock()
		spare := s.spare
		s.spare = nil
		s.mu.Unlock()
		if spare != nil {
			if spare.Alive() {
				return spare, nil
			}
			s.pool.Discard(spare)
		}
	}
	// The common case: an idle upstream is there. No timer, no context.
	if sc := s.pool.TakeIdle(prev); sc != nil {
		if sc != prev && prev != nil {
			s.replaced++
		}
		s.mx.poolWait.Observe(0)
		return sc, nil
	}
	wait := s.pool.Settings().QueryWaitTimeout.D()
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	notice := time.AfterFunc(time.Second, func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		s.writeClientLocked(appendErrorResponse(nil, &pgError{Severity: "NOTICE", Code: "00000",
			Message: fmt.Sprintf("waiting for an upstream connection to database %q", s.database)}))
		s.flushClientLocked()
	})
	defer notice.Stop()
	waitStart := s.srv.now()
	s.mu.Lock()
	s.waitSince = waitStart
	s.setStateLocked(stateWaiting)
	s.mu.Unlock()
	sc, err := s.pool.Acquire(ctx, prev)
	s.setState(stateIdle)
	s.srv.countersFor(s.route.Name).waitUs.Add(uint64(s.srv.now().Sub(waitStart) / time.Microsecond))
	if err != nil {
		return nil, err
	}
	if sc != prev && prev != nil {
		s.replaced++
	}
	return sc, nil
}

// syncUpstream brings a just-acquired upstream to the client's settings
// with statements whose replies the client never sees, and tells the
// client about any ParameterStatus value that differs from what it saw.
func (s *session) syncUpstream(sc *authbridge.ServerConn) error {
	us, _ := sc.State.(*upstreamState)
	if us == nil {
		us = newUpstreamState(frameReader{r: sc.Reader, maxSize: maxServerMessage}, sc.Params)
		sc.State = us
	}
	s.mu.Lock()
	resetAll := us.lastUser != "" && us.lastUser != s.user
	var sql string
	if resetAll || us.owner != s || us.ownerVer != s.gucs.ver {
		sql = syncSQL(us.gucs, s.gucs.desired, resetAll)
	}
	desired := s.gucs.desired
	ver := s.gucs.ver
	s.mu.Unlock()

	if sql != "" {
		s.srv.metrics.StateSyncsTotal.WithLabelValues(s.route.Name).Inc()
		failed, err := s.runSync(sc, us, sql)
		if err != nil {
			return err
		}
		if failed != nil {
			// Apply one at a time and drop what the upstream refuses.
			if err := s.syncOneByOne(sc, us, desired, resetAll); err != nil {
				return err
			}
		}
		us.unnamedOwner = nil // a simple Query destroys the unnamed statement
		if resetAll {
			us.gucs = map[string]string{}
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if sql != "" {
		us.gucs = maps.Clone(s.gucs.desired)
		if us.gucs == nil {
			us.gucs = map[string]string{}
		}
	}
	if s.gucs.ver == ver {
		us.owner, us.ownerVer = s, ver
	} else {
		us.owner = nil
	}
	us.lastUser = s.user
	if s.reportedFor != us || s.reportedVer != us.paramsVer {
		s.reportParamsLocked(us)
		s.reportedFor, s.reportedVer = us, us.paramsVer
	}
	return nil
}

// runSync sends one simple query upstream and reads its replies up to
// ReadyForQuery, recording ParameterStatus values. It returns the first
// ErrorResponse the upstream sent, or an I/O error.
func (s *session) runSync(sc *authbridge.ServerConn, us *upstreamState, sql string) (*pgError, error) {
	q, start := beginMessage(nil, 'Q')
	q = appendCString(q, sql)
	q = finishMessage(q, start)
	if _, err := sc.Writer.Write(q); err != nil {
		return nil, err
	}
	if err := sc.Writer.Flush(); err != nil {
		return nil, err
	}
	sc.Conn.SetReadDeadline(time.Now().Add(syncTimeout))
	defer sc.Conn.SetReadDeadline(time.Time{})
	var failed *pgError
	for {
		msg, err := us.fr.next()
		if err != nil {
			return nil, err
		}
		switch msg[0] {
		case 'S':
			name, rest, ok := readCString(body(msg))
			value, _, ok2 := readCString(rest)
			if ok && ok2 {
				if us.params[name] != value {
					us.params[name] = value
					us.paramsVer++
				}
			}
		case 'E':
			if failed == nil {
				er, err := decodeError(msg)
				if err != nil {
					return nil, err
				}
				if er.Severity == severityFatal || er.Severity == "PANIC" {
					return nil, fmt.Errorf("upstream FATAL during sync: %s", er.Message)
				}
				failed = &pgError{Severity: er.Severity, Code: er.Code, Message: er.Message}
			}
		case 'Z':
			return failed, nil
		}
	}
}

// syncOneByOne applies the client's settings one statement at a time after
// the combined sync failed, dropping each setting the upstream refuses and
// warning the client about it.
func (s *session) syncOneByOne(sc *authbridge.ServerConn, us *upstreamState, desired map[string]string, resetAll bool) error {
	have := us.gucs
	if resetAll {
		if _, err := s.runSync(sc, us, "RESET ALL"); err != nil {
			return err
		}
		have = map[string]string{}
	}
	for name := range desired {
		sql := syncSQL(map[string]string{name: have[name]}, map[string]string{name: desired[name]}, false)
		if sql == "" {
			continue
		}
		failed, err := s.runSync(sc, us, sql)
		if err != nil {
			return err
		}
		if failed != nil {
			s.mu.Lock()
			delete(s.gucs.desired, name)
			delete(s.gucs.startup, name)
			s.gucs.ver++
			s.writeClientLocked(appendErrorResponse(nil, &pgError{Severity: "WARNING", Code: "01000",
				Message: fmt.Sprintf("setting %q could not be restored on a new upstream connection and was reset: %s", name, failed.Message)}))
			s.mu.Unlock()
			s.runSync(sc, us, "RESET "+gucNameSQL(name))
		}
	}
	return nil
}

// reportParamsLocked sends the client each reported parameter whose value
// on the upstream differs from what the client last saw.
func (s *session) reportParamsLocked(us *upstreamState) {
	for name, v := range us.params {
		if name == "server_version" || name == "session_authorization" || name == "is_superuser" {
			continue // fixed for a route, not the session's business
		}
		if old, ok := s.clientParams[name]; ok && old == v {
			continue
		}
		s.clientParams[name] = v
		s.writeClientLocked(parameterStatus(name, v))
	}
}

func parameterStatus(name, value string) []byte {
	msg, start := beginMessage(nil, 'S')
	msg = appendCString(msg, name)
	msg = appendCString(msg, value)
	return finishMessage(msg, start)
}

// Limits of the upstream side.
const (
	maxServerMessage = 1 << 30 // PostgreSQL's own limit on a message
	syncTimeout      = 30 * time.Second
)

// ---- ending the session ----

// end runs when the client goroutine returns: an upstream still attached
// is brought to a safe point (an open transaction is rolled back) and
// returned, or closed when that cannot be done quickly.
func (s *session) end() {
	s.mu.Lock()
	s.closing = true
	sc := s.sc
	idleInTx := sc != nil && s.q.len() == 0 && !s.inBatch && !s.copyIn && !s.unitOpen && s.txStatus != 'I'
	if idleInTx {
		s.q.push(reply{kind: iQuery, unitStart: s.txStatus})
		s.unflushed = true
	}
	if sc != nil && s.done == nil {
		s.startReaderLocked()
	}
	done := s.done
	s.mu.Unlock()
	if sc != nil {
		if idleInTx {
			q, start := beginMessage(nil, 'Q')
			q = appendCString(q, "ROLLBACK")
			q = finishMessage(q, start)
			sc.Writer.Write(q)
		}
		s.flushUpstream()
		t := time.NewTimer(abandonTimeout)
		select {
		case <-done:
		case <-t.C:
			// Still busy (a long query, a COPY, a half-sent batch):
			// closing is the only safe way to hand nothing half-done to
			// another client.
			sc.Conn.Close()
			<-done
		}
		t.Stop()
	}
	s.mu.Lock()
	reserved, spare := s.reserved, s.spare
	s.reserved, s.spare = nil, nil
	s.stopStatementTimerLocked()
	if s.idleTimer != nil {
		s.idleTimer.Stop()
		s.idleTimer = nil
	}
	s.mu.Unlock()
	s.releaseAllLocks()
	for _, sc := range []*authbridge.ServerConn{reserved, spare} {
		if sc != nil {
			s.pool.Release(sc)
		}
	}
}

// dialSpare gets the replacement of the session's upstream ahead of its
// retirement, without waiting for other clients' connections.
func (s *session) dialSpare() {
	ctx, cancel := context.WithTimeout(context.Background(), s.pool.Settings().DialTimeout.D())
	defer cancel()
	sc, err := s.pool.TryAcquire(ctx)
	s.mu.Lock()
	s.spareDialing = false
	keep := err == nil && sc != nil && !s.closing && s.spare == nil
	if keep {
		s.spare = sc
	}
	s.mu.Unlock()
	if sc != nil && !keep {
		s.pool.Release(sc)
	}
	if err != nil {
		s.log.Debug("no spare upstream", zap.Error(err))
	}
}

// abandonTimeout bounds how long a disconnected client's unfinished work
// may run before its upstream is closed instead of reused.
const abandonTimeout = 5 * time.Second

// cancel forwards a CancelRequest to the upstream running the client's
// work, if any.
func (s *session) cancel() {
	s.mu.Lock()
	sc := s.sc
	busy := sc != nil && s.q.len() > 0
	if stop := s.advisory.waiting; stop != nil {
		stop() // a lock wait the gateway runs itself
	}
	s.mu.Unlock()
	if !busy {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := sc.Route().Cancel(ctx, sc); err != nil {
		s.log.Info("forwarding cancel failed", zap.Error(err))
	}
}

var _ = os.ErrDeadlineExceeded
var _ = binary.BigEndian
