package pgwire

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgerrcode"
	"github.com/jackc/pgx/v5/pgproto3"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/dsqlgate/dsqlgate/config"
	"github.com/dsqlgate/dsqlgate/internal/metrics"
	"github.com/dsqlgate/dsqlgate/pgwire/sqllex"
)

// session is one authenticated client: the relay around its engine (the
// protocol state and rules, engine.go), which it calls with mu held. The
// goroutines that work on it (ARCHITECTURE.md lists them all, with the
// lock order):
//
//   - the client goroutine (run) reads client messages, hands each to the
//     engine, writes what the engine built to the upstream, and does what
//     the engine asks for: attach an upstream, run a call the gateway
//     answers itself, wait for owed answers. When the units it sent are
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
	route    Route
	pool     Pool
	session  bool // pool mode session: keep one upstream while connected
	dsql     bool // route kind dsql: only DSQL-settable parameters go upstream
	key      cancelKey
	started  time.Time

	// clientLeft: the client closed its connection while the client
	// goroutine waited for replies (relay's clientGone); client goroutine
	// only.
	clientLeft bool

	// cmu guards what a cancel needs, so that a CancelRequest never waits
	// for mu (which a relay blocked writing to a client that stopped
	// reading may hold). Lock order: mu, then cmu; cmu is a leaf.
	cmu sync.Mutex
	// cancelTarget is the attached upstream (nil when none), and cancelGen
	// its attachment (attachGen); they change with s.sc, under both locks.
	cancelTarget Upstream
	cancelGen    uint64
	// cancelBusy is closed when the cancel in flight to cancelTarget has
	// been delivered (nil: none in flight); at most one is in flight per
	// attachment.
	cancelBusy chan struct{}
	// cancelSent: a cancel went to cancelTarget during this attachment.
	// Before the upstream goes to other work, the holder waits for it to
	// be delivered and runs a statement that absorbs it, so a late cancel
	// never lands on what runs there next (settleCancel).
	cancelSent bool
	// occArmed is the OCC retry's armed unit (occRetrier.seq; 0: none
	// armed yet), and occCancelledUnit the armed unit a client's cancel
	// arrived for: a cancel between two attempts finds the upstream idle,
	// so the retrier must stop by itself (occCancelled).
	occArmed, occCancelledUnit uint64
	// working: a unit of the client's is in flight (from its start to the
	// end of the reply queue), and unitsEnded counts the ReadyForQuery
	// messages read: a client's cancel records both, and goes upstream
	// only if the same unit still runs when it is sent (cancel), so a
	// cancel that arrives after its statement ended cancels nothing else.
	// Mirrors of the engine's state (guarded by mu) that a cancel can read
	// without mu.
	working    bool
	unitsEnded uint64
	// seen is what the admin console shows of the session, kept apart from
	// mu so that SHOW CLIENTS never waits for a busy (or stuck) session;
	// guarded by cmu.
	seen sessionSeen

	mu sync.Mutex
	// cw holds what is buffered for the client (nil when nothing is);
	// writing: a goroutine is writing to the client, with mu released
	// (flushClientLocked); writeFailed: a write failed, nothing more is
	// written.
	cw          *[]byte
	writing     bool
	writeFailed bool
	// writeDeadline is the client connection's write deadline; only the
	// writing goroutine touches it.
	writeDeadline time.Time
	written       sync.Cond // on mu: a write to the client finished
	// closeWhenWritten: the client connection is to be closed once the
	// writing goroutine has written what is buffered (closeClientLocked).
	closeWhenWritten bool
	// engine is the session's protocol state and rules (engine.go); its
	// us is sc's state while sc is attached.
	engine
	sc   Upstream
	done chan struct{} // the attachment's server goroutine, closed when it exits; nil while none runs
	// reserved is, in session mode, the client's upstream while detached;
	// prev is, in transaction mode, the last upstream (a preference only).
	reserved Upstream
	prev     Upstream
	// reservedCancel is what was cancelled on reserved's last attachment:
	// settled before the session runs anything there again.
	reservedCancel cancelState
	// spare is, in session mode, the replacement dialled for reserved
	// before reserved retires (make before break); spareDialing is set
	// while that dial runs.
	spare        Upstream
	spareDialing bool
	// watch reads reserved while the client is idle, when the session
	// listens (idle.go); nil otherwise.
	watch *idleWatch
	// unflushed: the client goroutine has written to the upstream and not
	// flushed yet; the upstream must stay attached until it has (flushed
	// is signalled when it has).
	unflushed bool
	flushed   sync.Cond // on mu
	// awaiting: the client goroutine waits for the server goroutine to
	// settle the engine (awaitSettled); progress is signalled after each
	// upstream message then.
	awaiting bool
	progress sync.Cond // on mu
	closing  bool      // the client is gone; nothing more is written to it
	// abandoning: the ending session closes its upstream (abandon); no
	// flush of it is coming.
	abandoning bool
	// attachGen counts attachments (and detachments); unitSeq counts the
	// session's clocks (statement_timeout, idle in transaction). A timer acts only if the one it captured
	// is still current, so a stale timer does nothing.
	attachGen uint64
	unitSeq   uint64
	// broken: the session's bookkeeping cannot be trusted (a panic, a
	// limit that ended it with replies owed): its upstream is closed, never
	// reused.
	broken   bool
	draining bool // the server is shutting down: end at the next safe point

	// reportedFor/reportedVer: the upstream (and its params version) whose
	// values were last compared with clientParams.
	reportedFor *upstreamState
	reportedVer uint64

	// The compatibility layer's advisory locks (advisory.go).
	advisory     advisoryState
	hasXactLocks bool // transaction advisory locks to release at transaction end
	// statement_timeout and idle_in_transaction_session_timeout, enforced
	// by the gateway: stmtTimer runs while a unit is in flight (the
	// engine's timedOut says it fired); idleTimer runs while the client
	// idles in a transaction.
	stmtTimer *time.Timer
	idleTimer *time.Timer
	idleArmed atomic.Bool // idleTimer is set: read without mu by the client goroutine

	// retry is the retry of units that failed an optimistic-concurrency
	// check (occretry.go); client goroutine only.
	retry occRetrier

	// counters for the session-end log line and the metrics
	replaced       uint64
	state          string    // the client_connections state this session counts in; guarded by mu
	bytesIn        uint64    // from the client; client goroutine only
	bytesInPending uint64    // not yet added to the metric; client goroutine only
	bytesOut       uint64    // to the client, not yet added to the metric; guarded by mu
	bytesOutAll    uint64    // to the client in all; guarded by mu
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
	s.cmu.Lock()
	s.seen.state = state
	s.seen.lastRequest = s.unitBegan
	s.seen.waitSince = s.waitSince
	s.cmu.Unlock()
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

// recoverTimer keeps a panic in a session's timer callback from ending
// the process; the callback's session goes on (its next statement or its
// end cleans up).
func recoverTimer(log *zap.Logger) {
	if r := recover(); r != nil {
		log.Error("session timer panicked", zap.String("panic_type", fmt.Sprintf("%T", r)), zap.Stack("stack"))
	}
}

// errSessionPanicked ends a session whose client goroutine panicked.
var errSessionPanicked = errors.New("session panicked")

// errTerminate ends the client loop without an error.
var errTerminate = errors.New("client sent Terminate")

// run is the client goroutine. It returns when the client leaves or
// misbehaves; the caller closes the connection.
func (s *session) run() (err error) {
	defer s.end()
	sinceCheck := 0
	// A bug must cost this session only. Every critical section unlocks
	// mu in a defer, so by the time this runs nothing is locked; the
	// upstream's bookkeeping cannot be trusted, so end closes it.
	defer func() {
		if r := recover(); r != nil {
			s.log.Error("session panicked handling a client message; closing it",
				zap.String("panic_type", fmt.Sprintf("%T", r)), zap.Stack("stack"))
			s.mu.Lock()
			s.broken = true
			s.mu.Unlock()
			s.conn.Close()
			err = errSessionPanicked
		}
	}()
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
		sinceCheck++
		if s.fr.buffered() == 0 {
			s.flushUpstream()
			s.relayInline()
			s.mu.Lock()
			// A message that needed no reply from upstream (a Close, a
			// Flush) stopped the idle-in-transaction clock: start it
			// again when the client is still idle in its transaction.
			s.startIdleTimerLocked()
			s.flushClientLocked()
			s.mu.Unlock()
		}
		// Replies wait in the queue behind one the upstream still owes (a
		// Parse without Sync, then millions of Close): the client, not the
		// gateway, pays for that. Checked every pendingCheckEvery messages,
		// so the queue exceeds the limit by that many entries at most.
		if sinceCheck >= pendingCheckEvery {
			sinceCheck = 0
			if err := s.checkPending(); err != nil {
				return err
			}
		}
	}
}

// pendingCheckEvery is how many client messages may go by between two
// checks of the reply queue against limits.max_pending_replies.
const pendingCheckEvery = 256

// checkPending ends the session with FATAL 54000 when more replies are
// pending than limits.max_pending_replies allows.
func (s *session) checkPending() error {
	s.mu.Lock()
	pending := s.q.len()
	s.mu.Unlock()
	limit := s.limits().MaxPendingReplies
	if limit <= 0 || pending <= limit {
		return nil
	}
	e := &pgError{Severity: severityFatal, Code: pgerrcode.ProgramLimitExceeded,
		Message: fmt.Sprintf("more than %d replies pending for this connection", limit),
		Hint:    "Read the server's replies while sending, or send Sync more often; limits.max_pending_replies sets the limit."}
	s.fatal(e)
	s.mu.Lock()
	s.broken = true
	s.mu.Unlock()
	return e
}

// limits are the gateway's limits in force.
func (s *session) limits() *config.Limits { return &s.srv.currentConfig().Limits }

func (s *session) clientReadError(err error) error {
	var tooLarge *MessageTooLargeError
	switch {
	case errors.As(err, &tooLarge):
		s.fatal(&pgError{Severity: severityFatal, Code: pgerrcode.ProgramLimitExceeded,
			Message: fmt.Sprintf("message of %d bytes exceeds the gateway's limit of %d bytes", tooLarge.Size, tooLarge.Limit),
			Hint:    "Raise limits.max_message_size if such messages are expected."})
		return err
	case errors.Is(err, errBadLength):
		s.fatal(&pgError{Severity: severityFatal, Code: pgerrcode.ProtocolViolation, Message: "invalid message length"})
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
	s.closing = true // nothing more after the FATAL
	s.flushClientLocked()
}

// flushClient sends what is buffered for the client (see
// flushClientLocked).
func (s *session) flushClient() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.flushClientLocked()
}

// onClientMessage handles one client message. The engine decides under mu
// (handleLocked); what it needs done with I/O, attaching an upstream or
// running a call the gateway answers itself, is done here without mu, and
// the message is then handed in again or its result reported. This is the
// client goroutine's one retry loop: a message also comes back here when
// the upstream just attached was lost before the engine could use it (the
// engine then sees a lost transaction, or no upstream).
func (s *session) onClientMessage(msg []byte) error {
	for {
		step, sc, err := s.handleLocked(msg)
		if sc != nil {
			s.sendUpstream(sc)
		}
		if err != nil {
			var pe *pgError
			if errors.As(err, &pe) && pe.Severity == severityFatal {
				s.fatal(pe)
			}
			return err
		}
		if s.retry.end.set {
			s.occUnitEnded()
		}
		switch step.need {
		case needUpstream:
			if step.redo != nil {
				msg = step.redo
			}
			if _, err := s.attached(); err != nil {
				return s.startFailed(err, step.simple)
			}
		case needLocal:
			s.runLocal(step.local)
			return nil
		case needReplies:
			// Waiting may look at the client reader (clientGone), which
			// may move what msg points into.
			msg = slices.Clone(msg)
			if !s.awaitSettled() {
				return nil // the client left: run reads its end
			}
		default:
			return nil
		}
	}
}

// handleLocked hands msg to the engine under mu and returns the upstream
// to write what it built to (nil: nothing goes upstream).
func (s *session) handleLocked(msg []byte) (step clientStep, sc Upstream, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if testHookLocked != nil {
		testHookLocked(s)
	}
	step, err = s.clientLocked(msg)
	if err == nil && (step.need == 0 || step.need == needLocal) && (msg[0] == 'Q' || msg[0] == 'S' || msg[0] == 'F') {
		s.occEndLocked()
	}
	return step, s.upstreamOutLocked(), err
}

// upstreamOutLocked returns the attached upstream when the engine built
// messages for it, marking them unflushed so the upstream stays attached
// until they are flushed.
func (s *session) upstreamOutLocked() Upstream {
	if len(s.out) == 0 {
		return nil
	}
	if s.sc == nil {
		s.out = s.out[:0] // the engine builds only with an upstream attached
		return nil
	}
	s.unflushed = true
	return s.sc
}

// awaitSettled waits until the answers owed for units already sent no
// longer leave the engine unsettled (or the upstream is gone, or the
// client): their Sync or Query is sent, so the upstream answers without
// the client's help. The client goroutine reads those answers itself when
// nothing else reads the upstream (relayInline reads on while the engine
// is unsettled); otherwise it waits for the server goroutine, looking now
// and then whether its client has left (false: it has).
func (s *session) awaitSettled() bool {
	s.flushUpstream()
	for {
		s.mu.Lock()
		sc, wait := s.sc, s.mustWait()
		if sc == nil && wait {
			// Answers are owed and no upstream will give them: the relay
			// gave it up after a panic (it closed the client too). Handing
			// the message in again would only ask to wait again.
			s.broken = true
			s.mu.Unlock()
			return false
		}
		if sc == nil || !wait || s.closing {
			s.mu.Unlock()
			return true
		}
		if s.done == nil {
			s.mu.Unlock()
			s.relayInline()
			if s.clientLeft {
				return false
			}
			continue
		}
		s.awaiting = true
		wake := time.AfterFunc(clientCheckInterval, func() {
			s.mu.Lock()
			s.progress.Broadcast()
			s.mu.Unlock()
		})
		s.progress.Wait()
		s.awaiting = false
		s.mu.Unlock()
		wake.Stop()
		if s.clientGone() {
			s.clientLeft = true
			return false
		}
	}
}

// testHookLocked, when set by a test, runs under mu before every client
// message is handled (to inject a panic there).
var testHookLocked func(*session)

// runLocal runs a statement the gateway answers itself (an advisory-lock
// call may wait for the lock) and reports the result to the engine.
func (s *session) runLocal(lc *localCall) {
	s.flushUpstream() // a lock wait must not hold back work already sent
	out, perr := lc.answer.execute(s, lc.params, lc.paramFormats, lc.resultFormat, lc.inTx)
	sc := func() Upstream {
		s.mu.Lock()
		defer s.mu.Unlock()
		s.localDoneLocked(lc, out, perr)
		return s.upstreamOutLocked()
	}()
	if sc != nil {
		s.sendUpstream(sc)
		if lc.simple {
			// The Query's unit ended before this (occEndLocked): what its
			// answer sent upstream is no part of the next unit's record.
			s.retry.resetRecord()
		}
	}
}

// startFailed reports a failure to get an upstream for a unit of work: the
// client gets the error; in an extended-protocol batch the rest of the batch
// is dropped until Sync, as after any error.
func (s *session) startFailed(err error, simple bool) error {
	e := errorForClient(err)
	if e.Severity == severityFatal {
		s.fatal(e)
		return e
	}
	s.log.Warn("no upstream for client work", errField(err))
	s.mu.Lock()
	defer s.mu.Unlock()
	s.held = heldAnalysis{} // the message is answered: not handed in again
	s.answerErrorLocked(e, simple)
	s.flushClientLocked()
	return nil
}

// Host methods of the engine (engineHost) not defined elsewhere.

func (s *session) now() time.Time { return s.srv.now() }

func (s *session) maxPrepared() int { return s.pool.Settings().MaxPreparedStatements }

func (s *session) upstreamErrorLocked(sqlstate string) {
	s.srv.metrics.UpstreamErrorsTotal.WithLabelValues(s.route.Name(), metrics.SQLStateLabel(sqlstate)).Inc()
}

func (s *session) appNameLocked(name string) {
	s.cmu.Lock()
	s.seen.appName = name
	s.cmu.Unlock()
}

// ---- writing ----

// writeClientLocked buffers msg for the client (in order with everything
// else buffered); a full buffer is flushed.
func (s *session) writeClientLocked(msg []byte) {
	if s.closing || s.writeFailed {
		return
	}
	if s.cw == nil {
		s.cw = clientBuffers.Get().(*[]byte)
	}
	*s.cw = append(*s.cw, msg...)
}

// clientBufferFull reports that enough is buffered for the client to send
// it now (the end of a critical section flushes then).
func (s *session) clientBufferFull() bool {
	return s.cw != nil && len(*s.cw) >= clientWriteBufferSize
}

// maxClientBacklog bounds what may wait for the client while another
// goroutine is blocked writing to it: past it, flushClientLocked waits for
// that write (backpressure) instead of letting the buffer grow.
const maxClientBacklog = 1 << 20

// clientWriteTimeout bounds one write to the client (at least half of it
// is left when a write starts): a client that accepts nothing for that
// long while the gateway has replies for it is disconnected, so it cannot
// hold its upstream (and the session's goroutines) for ever.
const clientWriteTimeout = time.Minute

// flushClientLocked sends what is buffered for the client, without holding
// mu across the write: a client that stops reading blocks only the
// goroutine writing to it, never a canceller, a timer, the console or the
// other goroutine of its session. One goroutine writes at a time (writing);
// another that flushes meanwhile leaves its bytes to that one, which writes
// until nothing is buffered, so the client receives everything in order;
// past maxClientBacklog it waits for that writer. Called with mu held, as
// the LAST step of a critical section: mu is released during the write (or
// the wait) and held again on return, so the caller must have left the
// session consistent and must not rely on state it read before the call.
// writeClientLocked never flushes, so nothing else releases mu midway.
//
// After the last write the buffer goes back to a pool shared by every
// session, so an idle client holds none. A failed write closes the client
// connection (the client goroutine's read then fails) and drops whatever
// is written after it; the server goroutine keeps going so the upstream
// still reaches a safe point.
func (s *session) flushClientLocked() {
	if s.writing {
		for s.writing && s.cw != nil && len(*s.cw) > maxClientBacklog && !s.writeFailed {
			s.written.Wait()
		}
		return
	}
	s.writing = true
	for s.cw != nil && len(*s.cw) > 0 && !s.writeFailed {
		buf := s.cw
		s.cw = nil
		s.mu.Unlock()
		// The deadline is renewed once less than half of it is left: a
		// write gets between half and the whole of clientWriteTimeout,
		// without a timer update per flush.
		if now := time.Now(); s.writeDeadline.Sub(now) < clientWriteTimeout/2 {
			s.writeDeadline = now.Add(clientWriteTimeout)
			s.conn.SetWriteDeadline(s.writeDeadline)
		}
		_, err := s.conn.Write(*buf)
		*buf = (*buf)[:0]
		s.mu.Lock()
		s.written.Broadcast()
		if s.cw == nil {
			s.cw = buf
		} else {
			putClientBuffer(buf)
		}
		if err != nil {
			s.log.Debug("client write failed", zap.Error(err))
			s.writeFailed = true
			s.conn.Close()
		}
	}
	s.writing = false
	s.written.Broadcast()
	if s.cw != nil && (len(*s.cw) == 0 || s.writeFailed) {
		putClientBuffer(s.cw)
		s.cw = nil
	}
	if s.closeWhenWritten {
		s.conn.Close()
	}
}

// closeClientLocked ends the client connection after what is buffered for
// it (a FATAL error) has been written: now, or when the goroutine writing
// to the client is done. Nothing written after it reaches the client; the
// client goroutine's read fails and it ends the session.
func (s *session) closeClientLocked() {
	if s.closing {
		return
	}
	s.closing = true // nothing is buffered after what is there now
	s.flushClientLocked()
	if s.writing {
		s.closeWhenWritten = true
		return
	}
	s.conn.Close()
}

// clientBuffers holds the client write buffers of sessions that are not
// writing.
var clientBuffers = sync.Pool{New: func() any {
	b := make([]byte, 0, clientWriteBufferSize+clientWriteBufferSize/2)
	return &b
}}

// putClientBuffer gives a buffer back to the pool, unless one large message
// made it too big to keep.
func putClientBuffer(b *[]byte) {
	if cap(*b) > 4*clientWriteBufferSize {
		return
	}
	*b = (*b)[:0]
	clientBuffers.Put(b)
}

var (
	msgParseComplete = []byte{'1', 0, 0, 0, 4}
	msgBindComplete  = []byte{'2', 0, 0, 0, 4}
	msgCloseComplete = []byte{'3', 0, 0, 0, 4}
	msgNoData        = []byte{'n', 0, 0, 0, 4}
	msgSync          = []byte{'S', 0, 0, 0, 4}
	msgFlush         = []byte{'H', 0, 0, 0, 4}
)

func readyForQuery(status byte) []byte { return []byte{'Z', 0, 0, 0, 5, status} }

// sendUpstream writes the messages built in s.out to the attached upstream
// (the caller queued their replies and set unflushed under mu).
func (s *session) sendUpstream(sc Upstream) {
	if len(s.out) == 0 {
		return
	}
	if sc.Writer().Available() < len(s.out) {
		// This write reaches the socket now. An upstream whose replies
		// nobody reads stops reading too (its own writes block), and this
		// write would then block for ever: a client that pipelines
		// without pause never lets relayInline run, so have the replies
		// read now.
		s.ensureReader(sc)
	}
	if s.occRecording() {
		s.retry.record(sc, s.out)
	} else {
		// Not recorded: a reload that turns the retry on before this
		// unit's end must not arm it with only its tail.
		s.retry.recOver = true
	}
	if _, err := sc.Writer().Write(s.out); err != nil {
		s.upstreamWriteFailed(sc, err)
	}
	s.out = s.out[:0]
}

// ensureReader starts the server goroutine for sc if replies are owed and
// nothing reads them.
func (s *session) ensureReader(sc Upstream) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.sc == sc && s.done == nil && s.q.len() > 0 {
		s.startReaderLocked()
	}
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
		if err := sc.Writer().Flush(); err != nil {
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
func (s *session) upstreamWriteFailed(sc Upstream, err error) {
	s.log.Debug("upstream write failed", zap.Uint64("server_id", sc.ID()), zap.Error(err))
	sc.Conn().Close()
}

// startStatementTimerLocked starts the statement_timeout clock unless it
// runs already.
func (s *session) startStatementTimerLocked() {
	s.cmu.Lock()
	s.working = true
	s.cmu.Unlock()
	if s.stmtTimer == nil {
		s.startStatementTimerForLocked(s.statementTimeoutLocked())
	}
}

func (s *session) startStatementTimerForLocked(d time.Duration) {
	if d > 0 {
		s.unitSeq++
		seq := s.unitSeq
		s.stmtTimer = time.AfterFunc(d, func() { s.statementTimedOut(seq) })
	}
}

// restartStatementTimerLocked restarts the statement_timeout clock of the
// unit being sent with d (0: none): see engine.timeoutChangeLocked.
func (s *session) restartStatementTimerLocked(d time.Duration) {
	s.dropStatementTimerLocked()
	s.startStatementTimerForLocked(d)
}

// stopStatementTimerLocked stops the statement_timeout clock when nothing
// is in flight any more: a client's cancel has nothing to stop now.
func (s *session) stopStatementTimerLocked() {
	s.dropStatementTimerLocked()
	s.cmu.Lock()
	s.working = false
	s.cmu.Unlock()
}

// dropStatementTimerLocked stops the statement_timeout clock.
func (s *session) dropStatementTimerLocked() {
	if s.stmtTimer != nil {
		s.stmtTimer.Stop()
		s.stmtTimer = nil
	}
	s.timedOut = false
}

// unitEndedLocked notes a ReadyForQuery from the upstream (see
// unitsEnded).
func (s *session) unitEndedLocked() {
	s.cmu.Lock()
	s.unitsEnded++
	s.cmu.Unlock()
}

// cancelGrace is how long an upstream may ignore a cancel sent for
// statement_timeout before the gateway closes it (DSQL may not support
// CancelRequest).
const cancelGrace = 5 * time.Second

// statementTimedOut runs on the timer's goroutine: the client's work has
// run longer than its statement_timeout, so it is cancelled upstream, and
// the client gets 57014 as PostgreSQL reports it. seq is the clock that
// fired: a clock stopped (or replaced) in the meantime does nothing.
func (s *session) statementTimedOut(seq uint64) {
	defer recoverTimer(s.log)
	s.mu.Lock()
	sc, gen := s.sc, s.attachGen
	if sc == nil || s.q.len() == 0 || s.stmtTimer == nil || s.unitSeq != seq {
		s.mu.Unlock()
		return
	}
	s.timedOut = true
	unit := s.unitsDone // the unit that timed out is the next to be answered
	s.mu.Unlock()
	s.log.Debug("statement timeout: cancelling upstream work")
	s.cancelUpstream(sc, gen, "statement_timeout", cancelGrace)
	s.recancel(sc, gen, seq, unit, time.Now().Add(cancelGrace), recancelInterval)
}

// recancelInterval is how long the gateway first waits for a cancelled
// statement to end before it cancels it again (a cancel that reaches the
// server before the statement does, still on its way, is ignored there);
// each later wait is twice as long, so an upstream that ignores cancels
// costs a handful of dials before cancelGrace, not one per interval.
const recancelInterval = 100 * time.Millisecond

// recancel checks, wait after a cancel for statement_timeout was
// delivered, whether the same attachment still runs the same clock's
// work and the unit that timed out (unit, counted by unitsDone) is still
// unanswered: then it cancels again, and once past deadline it closes the
// upstream (the relay sees the loss and answers 57014). Units the client
// pipelined behind it are never cancelled for it. The check and the close
// are one step under mu, so a later holder's upstream is never touched.
func (s *session) recancel(sc Upstream, gen, seq, unit uint64, deadline time.Time, wait time.Duration) {
	time.AfterFunc(min(wait, max(time.Until(deadline), 0)), func() {
		defer recoverTimer(s.log)
		s.mu.Lock()
		if s.sc != sc || s.attachGen != gen || s.unitSeq != seq || !s.timedOut || s.q.len() == 0 || s.unitsDone != unit {
			s.mu.Unlock()
			return
		}
		if !time.Now().Before(deadline) {
			defer s.mu.Unlock()
			s.log.Info("upstream ignored the cancel for statement_timeout; closing it")
			sc.Conn().Close()
			return
		}
		s.mu.Unlock()
		s.cancelUpstream(sc, gen, "statement_timeout", cancelGrace)
		s.recancel(sc, gen, seq, unit, deadline, 2*wait)
	})
}

// cancelUpstream sends a CancelRequest to sc if it is still the attached
// upstream and no cancel is in flight to it already, and returns once the
// upstream has taken it (or the attempt failed). The upstream cannot go to
// other work meanwhile: its release waits for the cancel (settleCancel).
func (s *session) cancelUpstream(sc Upstream, gen uint64, why string, timeout time.Duration) {
	s.cmu.Lock()
	if s.cancelTarget != sc || s.cancelGen != gen || sc == nil || s.cancelBusy != nil {
		s.cmu.Unlock()
		return
	}
	done := make(chan struct{})
	s.cancelBusy, s.cancelSent = done, true
	s.cmu.Unlock()
	defer s.cancelDone(done)
	s.sendUpstreamCancel(sc, why, timeout)
}

// cancelDone ends the cancel in flight that done stands for.
func (s *session) cancelDone(done chan struct{}) {
	s.cmu.Lock()
	if s.cancelBusy == done {
		s.cancelBusy = nil
	}
	s.cmu.Unlock()
	close(done)
}

// sendUpstreamCancel sends a CancelRequest to sc and returns once the
// upstream has taken it (or the attempt failed).
func (s *session) sendUpstreamCancel(sc Upstream, why string, timeout time.Duration) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	if err := sc.Cancel(ctx); err != nil {
		s.log.Info("cancel request to upstream failed", zap.String("reason", why), zap.Error(err))
	}
}

// settleCancel runs before sc, just detached, goes to other work (or back
// to its session's next statement): it waits for a cancel still in flight
// to it, and when one was sent during the attachment, runs a statement
// that absorbs a cancel arriving late, so it cannot hit what runs next.
// The caller holds sc (it is detached, not yet released).
func (s *session) settleCancel(sc Upstream, us *upstreamState, cs cancelState) error {
	if cs.busy != nil {
		<-cs.busy
	}
	if !cs.sent {
		return nil
	}
	_, err := s.runSync(sc, us, "SELECT 1")
	return err
}

// startIdleTimerLocked starts the idle-in-transaction clock when the client
// is left idle inside a transaction: the shorter of the client's own
// idle_in_transaction_session_timeout (where the gateway emulates it) and
// the gateway's limits.idle_in_transaction_timeout, which keeps one client
// from holding an upstream with an open transaction it does not use.
func (s *session) startIdleTimerLocked() {
	if s.idleTimer != nil || s.q.len() > 0 || (s.txStatus != 'T' && s.txStatus != 'E') {
		return
	}
	d := s.emulatedMillisLocked("idle_in_transaction_session_timeout")
	if g := s.limits().IdleInTransactionTimeout.D(); g > 0 && (d <= 0 || g < d) {
		d = g
	}
	if d > 0 {
		s.unitSeq++
		seq := s.unitSeq
		s.idleTimer = time.AfterFunc(d, func() { s.idleInTransactionTimedOut(seq) })
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
func (s *session) idleInTransactionTimedOut(seq uint64) {
	defer recoverTimer(s.log)
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.idleTimer == nil || s.unitSeq != seq || s.closing || s.q.len() > 0 || (s.txStatus != 'T' && s.txStatus != 'E') {
		return
	}
	s.idleTimer = nil
	s.log.Info("closing a client idle in a transaction past its idle-in-transaction timeout")
	s.writeClientLocked(appendErrorResponse(nil, &pgError{Severity: severityFatal, Code: pgerrcode.IdleInTransactionSessionTimeout,
		Message: "terminating connection due to idle-in-transaction timeout"}))
	s.closeClientLocked()
}

func unitFlagsFor(k sqllex.Kind) uint8 {
	switch k {
	case sqllex.Begin:
		return unitBegin
	case sqllex.Commit, sqllex.TwoPhase:
		return unitCommit
	case sqllex.Rollback:
		return unitRollback
	case sqllex.Deallocate, sqllex.Discard:
		return unitStatements
	}
	return 0
}

// ---- attaching an upstream ----

// errClientClosed: the session is ending after a FATAL error to its client.
var errClientClosed = errors.New("the client connection is closing")

// attached returns the attached upstream, attaching one first if there is
// none: from the pool (or the session's reserved one), brought to the
// client's settings.
func (s *session) attached() (Upstream, error) {
	s.mu.Lock()
	sc := s.sc
	s.mu.Unlock()
	if sc != nil {
		return sc, nil
	}
	s.mu.Lock()
	closing := s.closing
	s.mu.Unlock()
	if closing {
		// The client was sent a FATAL error: what it sent after that
		// (still in the client reader) must not run.
		return nil, errClientClosed
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
			s.setAttachedLocked(sc, sc.State().(*upstreamState))
			s.done = nil // read inline or by a server goroutine (relayInline)
			s.mu.Unlock()
			s.setState(stateActive)
			return sc, nil
		}
		// The upstream died between the pool's check and our first
		// write: it was idle, so the client loses nothing. Try another.
		s.log.Debug("upstream failed during state sync", zap.Uint64("server_id", sc.ID()), zap.Error(err))
		s.pool.Discard(sc)
		lastErr = err
	}
	return nil, fmt.Errorf("state sync failed on three upstream connections: %w", lastErr)
}

// setAttachedLocked makes sc (with its state us) the attached upstream, or
// detaches (nil). Every change of s.sc goes through it. It returns what
// the previous attachment's holder must settle before that upstream goes
// to other work (see settleCancel).
func (s *session) setAttachedLocked(sc Upstream, us *upstreamState) cancelState {
	s.sc, s.us = sc, us
	s.attachGen++
	s.cmu.Lock()
	prev := cancelState{busy: s.cancelBusy, sent: s.cancelSent}
	// A cancel still in flight belongs to the previous attachment, whose
	// releaser waits for it; the new one starts with none.
	s.cancelTarget, s.cancelSent, s.cancelBusy = sc, false, nil
	s.cancelGen = s.attachGen
	s.seen.serverID = s.heldServerIDLocked()
	s.cmu.Unlock()
	return prev
}

// noteServerLocked records for the console the upstream the session holds:
// the attached one, or in session mode the one reserved for it between
// transactions.
func (s *session) noteServerLocked() {
	s.cmu.Lock()
	s.seen.serverID = s.heldServerIDLocked()
	s.cmu.Unlock()
}

// heldServerIDLocked is the ID of the upstream the session holds: the
// attached one, or the reserved one (0: none).
func (s *session) heldServerIDLocked() uint64 {
	switch {
	case s.sc != nil:
		return s.sc.ID()
	case s.reserved != nil:
		return s.reserved.ID()
	}
	return 0
}

// cancelState is what was cancelled on one attachment: a cancel still in
// flight (busy, closed when delivered) and whether any was sent.
type cancelState struct {
	busy chan struct{}
	sent bool
}

// acquire gets an upstream for the client: in session mode its reserved
// one while that is alive and not retiring, else one from the pool. A
// client that waits longer than a second is told so with a NOTICE.
func (s *session) acquire() (Upstream, error) { return s.acquireCtx(context.Background()) }

// acquireCtx is acquire whose wait for the pool also ends with parent
// (it is bounded by query_wait_timeout either way).
func (s *session) acquireCtx(parent context.Context) (Upstream, error) {
	s.mu.Lock()
	sc, prev, cs := s.reserved, s.prev, s.reservedCancel
	s.reserved, s.reservedCancel = nil, cancelState{}
	s.noteServerLocked()
	s.mu.Unlock()
	if sc != nil {
		us, _ := sc.State().(*upstreamState) // nil until first attached; then nothing was cancelled
		if s.stopWatch(sc) {
			s.pool.Discard(sc) // the client has been told; the session ends
			return nil, listenLost()
		}
		alive := s.drainReserved(sc, us)
		s.mu.Lock()
		listening := s.listening
		s.mu.Unlock()
		if listening && !alive {
			// Its LISTEN registrations went with it: the client must know.
			s.pool.Discard(sc)
			return nil, listenLost()
		}
		if alive && (listening || !sc.Retiring(s.srv.now())) {
			if err := s.settleCancel(sc, us, cs); err == nil {
				return sc, nil
			}
			if listening {
				s.pool.Discard(sc)
				return nil, listenLost()
			}
			alive = false
		}
		s.replaced++
		if alive {
			s.pool.Retire(sc) // counted as a lifetime replacement
		} else {
			s.srv.metrics.UpstreamReplacementsTotal.WithLabelValues(s.route.Name(), "lost_idle").Inc()
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
	if sc := s.pool.TakeIdle(s.user, prev); sc != nil {
		if sc != prev && prev != nil {
			s.replaced++
		}
		s.mx.poolWait.Observe(0)
		return sc, nil
	}
	wait := s.pool.Settings().QueryWaitTimeout.D()
	ctx, cancel := context.WithTimeout(parent, wait)
	defer cancel()
	notice := time.AfterFunc(time.Second, func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		s.writeClientLocked(appendErrorResponse(nil, &pgError{Severity: "NOTICE", Code: pgerrcode.SuccessfulCompletion,
			Message: fmt.Sprintf("waiting for an upstream connection to database %q", s.database)}))
		s.flushClientLocked()
	})
	defer notice.Stop()
	waitStart := s.srv.now()
	s.mu.Lock()
	s.waitSince = waitStart
	s.setStateLocked(stateWaiting)
	s.mu.Unlock()
	sc, err := s.pool.Acquire(ctx, s.user, prev)
	s.setState(stateIdle)
	s.srv.countersFor(s.route.Name()).waitUs.Add(uint64(s.srv.now().Sub(waitStart) / time.Microsecond))
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
func (s *session) syncUpstream(sc Upstream) error {
	us, _ := sc.State().(*upstreamState)
	if us == nil {
		us = newUpstreamState(frameReader{r: sc.Reader(), maxSize: maxServerMessage}, sc.Params())
		sc.SetState(us)
	}
	s.mu.Lock()
	resetAll := us.lastUser != "" && us.lastUser != s.user
	var sql string
	if resetAll || us.owner != &s.engine || us.ownerVer != s.gucs.ver {
		sql = syncSQL(us.gucs, s.gucs.desired, resetAll)
	}
	desired := s.gucs.desired
	ver := s.gucs.ver
	s.mu.Unlock()

	if sql != "" {
		s.srv.metrics.StateSyncsTotal.WithLabelValues(s.route.Name()).Inc()
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
		us.owner, us.ownerVer = &s.engine, ver
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
func (s *session) runSync(sc Upstream, us *upstreamState, sql string) (*pgError, error) {
	q, start := beginMessage(nil, 'Q')
	q = appendCString(q, sql)
	q = finishMessage(q, start)
	if _, err := sc.Writer().Write(q); err != nil {
		return nil, err
	}
	if err := sc.Writer().Flush(); err != nil {
		return nil, err
	}
	sc.Conn().SetReadDeadline(time.Now().Add(syncTimeout))
	defer sc.Conn().SetReadDeadline(time.Time{})
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
		case 'A':
			// A notification for a listening client (its reserved upstream
			// being settled or synced before its next statement).
			s.mu.Lock()
			if s.listening && !s.closing {
				s.writeClientLocked(msg)
			}
			s.mu.Unlock()
		case 'Z':
			return failed, nil
		}
	}
}

// syncOneByOne applies the client's settings one statement at a time after
// the combined sync failed, dropping each setting the upstream refuses and
// warning the client about it.
func (s *session) syncOneByOne(sc Upstream, us *upstreamState, desired map[string]string, resetAll bool) error {
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
			s.writeClientLocked(appendErrorResponse(nil, &pgError{Severity: "WARNING", Code: pgerrcode.Warning,
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
		s.setClientParamLocked(name, v)
		s.writeClientLocked(parameterStatus(name, v))
	}
}

// parameterStatus is the ParameterStatus message reporting name's value.
func parameterStatus(name, value string) []byte {
	return encode(&pgproto3.ParameterStatus{Name: name, Value: value})
}

// Limits of the upstream side.
const (
	maxServerMessage = 1 << 30 // PostgreSQL's own limit on a message
	syncTimeout      = 30 * time.Second
)

// ---- ending the session ----

// end runs when the client goroutine returns. An upstream still attached
// and idle in a transaction is rolled back and returned. One with work in
// flight (the client left in the middle of a statement, a pipeline, a
// COPY, a lock wait) is cancelled and closed at once, so the work stops
// now rather than when it next writes; it is never reused.
func (s *session) end() {
	defer func() {
		if r := recover(); r != nil {
			s.log.Error("session panicked while ending; its upstream is closed", zap.String("panic_type", fmt.Sprintf("%T", r)), zap.Stack("stack"))
		}
	}()
	s.mu.Lock()
	// The client is gone (or is being sent away): nothing more is written
	// to it, and a write blocked on it ends now rather than at its
	// deadline, so nothing here waits for a client that does not read.
	s.closing = true
	s.conn.Close()
	sc, gen := s.sc, s.attachGen
	busy := sc != nil && (s.q.len() > 0 || s.inBatch || s.copyIn || s.unitOpen || s.serverSkipping || s.broken)
	// One complete unit in flight (a statement, one batch up to its Sync):
	// a cancel ends it at once, sleeping or waiting for a lock, and the
	// upstream comes back reusable. Anything more (a pipeline of units, a
	// batch without its Sync, a COPY) cannot be brought to an end that
	// way: the upstream is cancelled and closed.
	oneUnit := busy && !s.inBatch && !s.copyIn && !s.unitOpen && !s.serverSkipping && !s.broken && s.unitsOwedLocked() == 1
	idleInTx := sc != nil && !busy && s.txStatus != 'I'
	if idleInTx {
		s.q.push(reply{kind: iQuery, unitStart: s.txStatus})
		s.unflushed = true
	}
	if sc != nil && s.done == nil && (!busy || oneUnit) {
		s.startReaderLocked()
	}
	done := s.done
	s.mu.Unlock()
	switch {
	case oneUnit:
		s.cancelUpstream(sc, gen, "client gone", time.Second)
	case busy:
		s.abandon(sc, gen, done)
		sc = nil
	}
	if sc != nil {
		if idleInTx {
			q, start := beginMessage(nil, 'Q')
			q = appendCString(q, "ROLLBACK")
			q = finishMessage(q, start)
			sc.Writer().Write(q)
		}
		s.flushUpstream()
		t := time.NewTimer(abandonTimeout)
		select {
		case <-done:
		case <-t.C:
			// Still busy (a long query, a COPY, a half-sent batch):
			// closing is the only safe way to hand nothing half-done to
			// another client.
			sc.Conn().Close()
			<-done
		}
		t.Stop()
	}
	s.mu.Lock()
	reserved, spare, cs := s.reserved, s.spare, s.reservedCancel
	s.reserved, s.spare, s.reservedCancel = nil, nil, cancelState{}
	s.stopStatementTimerLocked()
	if s.idleTimer != nil {
		s.idleTimer.Stop()
		s.idleTimer = nil
	}
	s.mu.Unlock()
	s.releaseAllLocks()
	if reserved != nil && s.stopWatch(reserved) {
		s.pool.Discard(reserved)
		reserved = nil
	}
	if reserved != nil {
		us, _ := reserved.State().(*upstreamState)
		if err := s.settleCancel(reserved, us, cs); err != nil {
			s.pool.Discard(reserved)
			reserved = nil
		}
	}
	if reserved != nil {
		s.releaseReset(reserved)
	}
	if spare != nil {
		s.pool.Release(spare) // dialled for this session, never used
	}
}

// releaseReset gives a session-mode upstream back to the pool when its
// client leaves, reset first, as PgBouncer's server_reset_query does: on a
// PostgreSQL route DISCARD ALL drops what the client left there (temporary
// tables, SQL prepared statements, LISTEN, session advisory locks,
// settings), so the next client starts clean. Aurora DSQL refuses DISCARD
// and has none of these objects (it refuses them all; advisory locks are
// the gateway's, released with the session), and the settings are brought
// to the next client's by the state sync, so a DSQL upstream goes back as
// it is. An upstream that fails the reset is closed.
func (s *session) releaseReset(sc Upstream) {
	us, _ := sc.State().(*upstreamState)
	if s.dsql || us == nil {
		s.pool.Release(sc)
		return
	}
	failed, err := s.runSync(sc, us, "DISCARD ALL")
	if err != nil || failed != nil {
		s.log.Debug("session-mode reset failed; closing the upstream", zap.Uint64("server_id", sc.ID()), zap.Error(err), zap.Any("error", failed))
		s.pool.Discard(sc)
		return
	}
	us.dropAllStmts()
	clear(us.gucs) // every setting is at the server's default
	us.owner = nil
	s.pool.Release(sc)
}

// unitsOwedLocked counts the units whose ReadyForQuery the upstream owes.
func (s *session) unitsOwedLocked() int {
	n := 0
	for i := range s.q.len() {
		if s.q.at(i).kind.endsUnit() {
			n++
		}
	}
	return n
}

// abandon stops the work a departed client left running on sc, which the
// ending client goroutine holds: a cancel (a statement asleep or waiting
// for a lock would not notice a closed connection), then the close. A
// server goroutine still reading sc (done) sees the loss and discards it;
// otherwise the client goroutine does.
func (s *session) abandon(sc Upstream, gen uint64, done chan struct{}) {
	s.log.Debug("client left with work in flight: cancelling and closing its upstream", zap.Uint64("server_id", sc.ID()))
	s.conn.Close() // nothing more goes to the client; a blocked write to it ends
	s.mu.Lock()
	// A relay waiting for this goroutine to flush before it detaches
	// (onReadyForQueryLocked) must not wait for a flush that never comes.
	s.abandoning = true
	s.flushed.Broadcast()
	s.mu.Unlock()
	s.cancelUpstream(sc, gen, "client gone", time.Second)
	sc.Conn().Close()
	if done != nil {
		<-done
		return
	}
	s.mu.Lock()
	if s.sc == sc {
		s.setAttachedLocked(nil, nil)
		s.q.reset()
	}
	s.mu.Unlock()
	s.pool.Discard(sc)
}

// dialSpare gets the replacement of the session's upstream ahead of its
// retirement, without waiting for other clients' connections.
func (s *session) dialSpare() {
	ctx, cancel := context.WithTimeout(context.Background(), s.pool.Settings().DialTimeout.D())
	defer cancel()
	sc, err := s.pool.TryAcquire(ctx, s.user)
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

// cancel serves the client's CancelRequest: it stops a lock wait the
// gateway runs itself, and records the unit running on the attached
// upstream, if any, for a cancel sent there in the background; it returns
// at once, so a key that matches costs the requester what one that does
// not costs. It never takes mu, so a session whose relay is blocked
// writing to its client cannot hold the canceller up; and with one cancel
// in flight per attachment, repeated CancelRequests pin nothing.
func (s *session) cancel() {
	s.cmu.Lock()
	defer s.cmu.Unlock()
	if stop := s.advisory.waiting; stop != nil {
		stop()
	}
	// Recorded for the OCC retry's armed unit whatever the retry is doing:
	// forwarded, the cancel stops an attempt that runs; the record stops
	// the next one (one arriving while the upstream is idle, in the
	// backoff or the rollback, would otherwise be lost).
	s.occCancelledUnit = s.occArmed
	sc := s.cancelTarget
	if sc == nil || !s.working || s.cancelBusy != nil {
		// Idle: nothing to cancel, and nothing is kept for later, so the
		// next statement runs untouched (PostgreSQL ignores a cancel that
		// reaches an idle backend too).
		return
	}
	done := make(chan struct{})
	s.cancelBusy = done
	go s.cancelUnit(sc, s.cancelGen, s.unitsEnded, done)
}

// cancelUnit sends the client's cancel to sc if the attachment gen still
// runs the unit that was running when the cancel arrived (no ReadyForQuery
// since: ended is unitsEnded then); a unit that ended meanwhile is not
// replaced by the next one as the cancel's target. The check and the
// record that a cancel went (cancelSent, which settleCancel absorbs) are
// one step under cmu.
func (s *session) cancelUnit(sc Upstream, gen, ended uint64, done chan struct{}) {
	defer s.cancelDone(done)
	s.cmu.Lock()
	still := s.cancelTarget == sc && s.cancelGen == gen && s.working && s.unitsEnded == ended
	if still {
		s.cancelSent = true
	}
	s.cmu.Unlock()
	if still {
		s.sendUpstreamCancel(sc, "client", cancelGrace)
	}
}
