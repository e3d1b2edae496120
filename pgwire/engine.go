package pgwire

import (
	"fmt"
	"slices"
	"time"

	"go.uber.org/zap"

	"github.com/dsqlgate/dsqlgate/config"
	"github.com/dsqlgate/dsqlgate/internal/compat"
	"github.com/dsqlgate/dsqlgate/pgwire/sqllex"
	"github.com/jackc/pgerrcode"
)

// engine is a session's protocol state and the rules that keep it, with no
// I/O: it takes client messages (clientLocked), upstream messages
// (serverLocked) and the loss of the upstream (lostLocked), and answers
// with what to send where. What goes upstream is appended to out; what goes
// to the client is handed to host.writeClientLocked, in order; what needs
// I/O (an upstream to attach, an advisory-lock call to make, answers owed
// to wait for) is returned as a clientStep for the session to do before it
// hands the message in again or reports the result. Everything that is
// not protocol (timers, metrics, the release of transaction advisory
// locks, limits) is behind engineHost.
//
// The rules themselves live with the messages they concern: frontend.go
// (client messages), backend.go (upstream replies), loss.go (a lost
// upstream), compat.go (the compatibility layer's rewrites), state.go
// (statements and settings). engine_test.go drives the engine alone against
// the model backend of modelserver_test.go.
//
// The engine is not safe for concurrent use: its session calls it with
// session.mu held (every method named *Locked, and the handlers below
// clientLocked and serverLocked).
type engine struct {
	host engineHost
	log  *zap.Logger
	// listening: a LISTEN completed on the session's upstream (session
	// mode; transaction mode refuses it). The upstream is then watched while
	// the client is idle, so notifications reach it at once, and it is
	// never swapped silently (its registrations would be lost).
	listening bool
	// txPooling: the route's pool mode is transaction (the upstream
	// changes between transactions); plainRoute: a PostgreSQL route.
	txPooling, plainRoute bool
	// sqlPrepared are the names SQL PREPAREs gave in the current
	// transaction, in transaction pool mode on a PostgreSQL route, to
	// deallocate when it ends (sqlPreparedAll: too many, deallocate all).
	sqlPrepared    map[string]bool
	sqlPreparedAll bool
	// pendingCloses are statements the client closed whose upstream copies
	// (under the client's names: ownNames) go before its next unit.
	pendingCloses map[string]bool
	compat        compatFlags
	// occ is what the OCC retry needs to know of the unit being sent
	// (occretry.go).
	occ occUnit

	// out holds the messages built for the upstream by the client message
	// being handled; the session writes them after releasing mu (client
	// goroutine only).
	out []byte
	// us is the attached upstream's state (nil: none attached).
	us *upstreamState

	q       replyQueue
	inBatch bool // extended-protocol messages sent upstream since the last Sync
	// The unit of work being sent: the client-visible status when it began
	// and what it contains (unitFlags). unitOpen: messages of the unit were
	// sent and its Sync has not come yet.
	unitOpen  bool
	unitStart byte
	unitFlags uint8
	// unitLastTx is the last of unitBegin, unitCommit and unitRollback
	// executed in the open unit (0: none), for statusAhead.
	unitLastTx uint8
	unitText   string    // the unit's last statement text, for the slow-query log
	unitBegan  time.Time // start of the unit being sent
	txStatus   byte      // as the client last saw it: 'I', 'T' or 'E'
	copyIn     bool      // the upstream is in COPY FROM STDIN
	// skipUntilSync: the gateway reported an error in the middle of an
	// extended-protocol batch; client messages are dropped until Sync,
	// which is answered with ReadyForQuery(skipStatus).
	skipUntilSync bool
	skipStatus    byte
	// serverSkipping: the upstream reported an error in an
	// extended-protocol batch whose Sync has not been sent: it ignores
	// everything up to that Sync, so the client's messages are dropped too
	// (no reply will come for them), and the Sync goes upstream.
	serverSkipping bool
	// lostTx: the upstream was lost inside a transaction; the client is in
	// a failed transaction the gateway plays out until ROLLBACK.
	// lostReported: the client has been told (40001), later statements
	// get 25P02.
	lostTx       bool
	lostReported bool
	// timedOut: the gateway cancelled the unit in flight for
	// statement_timeout; the upstream's error is reported as PostgreSQL
	// reports that timeout.
	timedOut bool

	gucs         *gucState
	stmts        clientStmts // named prepared statements
	unnamed      *preparedStmt
	unnamedGen   uint64
	portals      map[string]*preparedStmt // portal → statement, within a transaction
	localPortals map[string]*localPortal  // portals of statements the gateway answers
	// portalUnit is the unit each portal was bound in, counted by
	// unitsSent (the units handed upstream so far); unitsDone counts their
	// ReadyForQuery. A transaction that ends at a unit's ReadyForQuery
	// drops the portals bound up to that unit, not those of units the
	// client pipelined behind it.
	portalUnit           map[string]uint64
	unitsSent, unitsDone uint64
	// portalOrder lists the binds in the order they were sent (units only
	// grow), so that a transaction's end finds its portals without a scan
	// of the others: an entry whose name was bound again since is stale.
	portalOrder     []portalBind
	portalOrderHead int
	// portalRan holds the portals of placeholder stand-ins (hideRows) that
	// were executed: the utility statement a placeholder stands for runs
	// once, a second Execute of its portal fails as in PostgreSQL.
	portalRan map[string]bool
	// specLast is 1 + the unit of the last speculative reply entry queued
	// (0: none), specPrev the same for the last one queued in an earlier
	// unit. An entry is speculative when its answer may undo bookkeeping
	// done when it was built: a Parse (it may fail, or be skipped after an
	// error), an injected Parse or Close, a Close answered by the gateway
	// behind owed replies (see unsettled).
	specLast, specPrev uint64
	// waitAll: the message being handed in waits for every answer owed
	// (awaitStatus), not only for unsettled ones.
	waitAll bool
	// held is what the engine derived from the message it last answered
	// needUpstream (nothing else can change meanwhile: no upstream is
	// attached): handed in again after the attach, it is not analysed
	// twice. Any other message clears it.
	held heldAnalysis

	clientParams map[string]string // ParameterStatus values the client has seen
	transactions uint64            // client transactions completed
}

// engineHost is what the engine needs of its session beyond protocol
// state. Every method is called with session.mu held and must not block.
type engineHost interface {
	// writeClientLocked buffers a message for the client.
	writeClientLocked(msg []byte)
	now() time.Time
	limits() *config.Limits
	// maxPrepared bounds the statements one upstream keeps.
	maxPrepared() int
	// The statement_timeout clock: started when a unit begins (unless it
	// runs), set again by a statement that changes it midway
	// (timeoutChangeLocked), stopped when nothing is in flight; the
	// idle-in-transaction clock starts then.
	startStatementTimerLocked()
	restartStatementTimerLocked(d time.Duration)
	stopStatementTimerLocked()
	startIdleTimerLocked()
	// upstreamErrorLocked counts an ErrorResponse from the upstream.
	upstreamErrorLocked(sqlstate string)
	// observeUnitLocked measures a unit that ended with ReadyForQuery.
	observeUnitLocked(r reply, status byte)
	// releaseXactLocksLocked lets go of the transaction's advisory locks.
	releaseXactLocksLocked()
	// appNameLocked records the client's application_name for the console.
	appNameLocked(name string)
}

func newEngine(host engineHost, log *zap.Logger, gucs *gucState) engine {
	return engine{host: host, log: log, gucs: gucs, txStatus: 'I', clientParams: map[string]string{}}
}

// heldAnalysis is what onQuery (text, qi, flags, sent) or onParse (st)
// derived from a message.
type heldAnalysis struct {
	text  string
	qi    *queryInfo
	flags uint8
	sent  string
	st    *preparedStmt
}

// clientNeed says what the session does after the engine handled a client
// message.
type clientNeed uint8

const (
	// The zero value: the message was answered, queued or dropped; what
	// goes upstream for it is in out.
	_ clientNeed = iota
	// needUpstream: nothing changed; attach an upstream and hand the
	// message (or redo, when set) in again. An attach failure answers it as
	// a simple Query's error when simple is set.
	needUpstream
	// needLocal: run local (it may block), then hand its result to
	// localDoneLocked.
	needLocal
	// needReplies: nothing changed; the message depends on answers owed
	// for units already sent (unsettled): hand it in again once they have
	// come.
	needReplies
)

// clientStep is the engine's answer to one client message.
type clientStep struct {
	need   clientNeed
	simple bool
	redo   []byte
	local  *localCall
}

// localCall is a statement the gateway answers itself, to run outside mu.
type localCall struct {
	answer       localAnswer
	params       [][]byte
	paramFormats []int16
	resultFormat int16
	inTx         bool
	simple       bool // a simple Query: RowDescription first, ReadyForQuery last
}

// clientLocked handles one client message. A non-nil error ends the
// session: errTerminate, or a FATAL *pgError for the client.
func (e *engine) clientLocked(msg []byte) (clientStep, error) {
	e.waitAll = false
	if e.occ.ended {
		e.occ = occUnit{} // a new unit starts
	}
	if msg[0] != 'Q' && msg[0] != 'P' {
		e.held = heldAnalysis{}
	}
	switch msg[0] {
	case 'Q':
		return e.onQuery(msg)
	case 'P':
		return e.onParse(msg)
	case 'B':
		return e.onBind(msg)
	case 'D':
		return e.onDescribe(msg)
	case 'E':
		return e.onExecute(msg)
	case 'C':
		return e.onClose(msg)
	case 'S':
		e.onSync()
	case 'H':
		e.onFlush(msg)
	case 'F':
		return e.onFunctionCall(msg)
	case 'd', 'c', 'f':
		e.onCopyFromClient(msg)
	case 'X':
		return clientStep{}, errTerminate
	default:
		return clientStep{}, protocolViolation("invalid frontend message type %d", msg[0])
	}
	return clientStep{}, nil
}

// localDoneLocked answers a local call with what it returned: out, or the
// error it raised.
func (e *engine) localDoneLocked(lc *localCall, out []byte, perr *pgError) {
	if e.skipping() {
		return // an error reached the batch meanwhile: the server skips it too
	}
	if perr != nil {
		e.failStatementLocked(perr, lc.simple)
		return
	}
	if lc.simple {
		full := lc.answer.appendRowDescription(nil, 0)
		out = append(full, out...)
	}
	e.queueLocked(reply{kind: sBytes, data: out, rfq: lc.simple})
}

// answerErrorLocked answers a client message with an error the gateway
// raises without the upstream, in order behind the replies still owed: a
// simple Query's ends with ReadyForQuery; in an extended-protocol batch the
// rest of the batch is dropped until Sync.
func (e *engine) answerErrorLocked(pe *pgError, simple bool) {
	if !simple {
		e.skipUntilSync = true
		e.skipStatus = e.txStatus
	}
	e.queueLocked(reply{kind: sBytes, data: appendErrorResponse(nil, pe), rfq: simple})
}

// queueLocked appends a reply entry; a synthetic one at the front is
// answered at once.
func (e *engine) queueLocked(r reply) {
	if r.kind.synthetic() {
		e.occTaint() // the gateway answers part of the unit itself
	}
	e.q.push(r)
	if r.kind.synthetic() && e.q.len() == 1 {
		e.emitSyntheticLocked()
	}
}

// emitSyntheticLocked answers the synthetic entries at the front.
func (e *engine) emitSyntheticLocked() {
	for e.q.len() > 0 && e.q.front().kind.synthetic() {
		e.emitOneLocked(e.q.pop())
	}
}

// emitOneLocked answers one synthetic entry.
func (e *engine) emitOneLocked(r reply) {
	switch r.kind {
	case sParseComplete:
		e.host.writeClientLocked(msgParseComplete)
	case sCloseComplete:
		e.host.writeClientLocked(msgCloseComplete)
	case sBytes:
		e.host.writeClientLocked(r.data)
		if r.rfq {
			e.host.writeClientLocked(readyForQuery(e.txStatus))
		}
	}
}

// safeLocked reports a safe point: nothing owed by the upstream, no batch
// open, no transaction, no COPY.
func (e *engine) safeLocked() bool {
	return e.q.len() == 0 && !e.inBatch && e.txStatus == 'I' && !e.copyIn && !e.unitOpen
}

// beginUnitLocked notes the start of a unit of work going upstream, and
// starts the statement_timeout clock.
func (e *engine) beginUnitLocked() {
	if len(e.pendingCloses) > 0 && e.us != nil {
		e.flushClosesLocked(e.us)
	}
	if !e.unitOpen {
		e.unitOpen = true
		e.unitStart = e.txStatus
		e.unitFlags = 0
		e.unitLastTx = 0
		e.unitBegan = e.host.now()
	}
	e.host.startStatementTimerLocked()
}

// pushUnitEnd queues the reply entry that ends a unit upstream (its
// ReadyForQuery).
func (e *engine) pushUnitEnd(r reply) {
	e.q.push(r)
	e.unitsSent++
	e.occ.verdict = e.occVerdictLocked(r)
}

// pushSpeculative queues a speculative reply entry (see specLast).
func (e *engine) pushSpeculative(r reply) {
	e.q.push(r)
	e.markSpeculative()
}

func (e *engine) markSpeculative() {
	if u := e.unitsSent + 1; u != e.specLast {
		e.specPrev, e.specLast = e.specLast, u
	}
}

// unsettled reports whether a unit the client already ended (its Sync or
// Query was sent) still owes an answer that may undo statement bookkeeping.
// A message that reads that bookkeeping (a Parse, Bind or Describe of a
// statement) must then wait for it: PostgreSQL runs the message after
// that unit, and within a unit an error makes the server skip the rest
// anyway, so only earlier units matter.
func (e *engine) unsettled() bool {
	if e.copyIn {
		return false // the server waits for COPY data, not for us: nothing would come
	}
	last := e.specLast
	if last == e.unitsSent+1 {
		last = e.specPrev // the unit being sent
	}
	return last != 0 && last-1 >= e.unitsDone && last-1 < e.unitsSent
}

// mustWait reports whether the message that asked for needReplies must
// still wait.
func (e *engine) mustWait() bool {
	return e.unsettled() || e.waitAll && e.q.len() > 0
}

// awaitStatus reports (and asks the session) that a message the gateway
// answers itself must first wait for every answer owed: its answer
// depends on the transaction status it meets (an advisory-lock call is
// transaction-scoped or not), and on whether the server skips it (an
// error earlier in its batch), and a lock call cannot be taken back. A
// Flush goes upstream when the client's batch is open, so that the
// server sends what it owes without waiting for the batch's Sync.
func (e *engine) awaitStatus() bool {
	if e.q.len() == 0 || e.copyIn {
		return false
	}
	if e.unitOpen {
		e.out = append(e.out, msgFlush...)
		e.occTaint()
	}
	e.waitAll = true
	return true
}

// statusAhead is the transaction status a message handled with nothing
// owed meets: what the client last saw, changed by a BEGIN, COMMIT or
// ROLLBACK that ran in the client's open batch (its ReadyForQuery has not
// come yet).
func (e *engine) statusAhead() byte {
	if e.unitOpen {
		switch e.unitLastTx {
		case unitBegin:
			return 'T'
		case unitCommit, unitRollback:
			return 'I'
		}
	}
	return e.txStatus
}

// endBatchLocked ends the client's open batch upstream with a Sync of the
// gateway's (its ReadyForQuery not shown): a simple Query the gateway
// answers itself in the middle of a batch ends the batch's implicit
// transaction, as PostgreSQL's simple Query does.
func (e *engine) endBatchLocked() {
	e.occTaint()
	e.pushUnitEnd(reply{kind: iSync, unitStart: e.unitStart, unitFlags: e.unitFlags, began: e.unitBegan, text: e.unitText})
	e.unitOpen = false
	e.inBatch = false
	e.out = append(e.out, msgSync...)
}

// admitPortal returns the error for a Bind of a new portal beyond the
// client's bound on portals (limits.max_client_statements), or nil.
func (e *engine) admitPortal(name string) *pgError {
	if _, ok := e.portalUnit[name]; ok {
		return nil
	}
	if max := e.host.limits().MaxClientStatements; max > 0 && len(e.portalUnit) >= max {
		return &pgError{Severity: severityError, Code: pgerrcode.ProgramLimitExceeded,
			Message: fmt.Sprintf("more than %d portals open on this connection", max),
			Hint:    "Close portals or end the transaction; limits.max_client_statements sets the limit."}
	}
	return nil
}

// portalBind is one Bind of a portal, in the unit it was sent in.
type portalBind struct {
	name string
	unit uint64
}

// bindPortal records a portal bound in the unit being sent: of an upstream
// statement st, or one the gateway answers (lp).
func (e *engine) bindPortal(name string, st *preparedStmt, lp *localPortal) {
	if e.portalUnit == nil {
		e.portals = map[string]*preparedStmt{}
		e.localPortals = map[string]*localPortal{}
		e.portalUnit = map[string]uint64{}
	}
	delete(e.portals, name)
	delete(e.localPortals, name)
	delete(e.portalRan, name)
	if st != nil {
		e.portals[name] = st
	} else {
		e.localPortals[name] = lp
	}
	e.portalUnit[name] = e.unitsSent
	e.portalOrder = append(e.portalOrder, portalBind{name: name, unit: e.unitsSent})
	if live := len(e.portalOrder) - e.portalOrderHead; live > 2*len(e.portalUnit)+64 {
		// Mostly names bound again (one portal per statement of a long
		// transaction): keep only the current bind of each.
		seen := make(map[string]bool, len(e.portalUnit))
		var kept []portalBind
		for _, b := range slices.Backward(e.portalOrder[e.portalOrderHead:]) {
			if u, ok := e.portalUnit[b.name]; ok && u == b.unit && !seen[b.name] {
				seen[b.name] = true
				kept = append(kept, b)
			}
		}
		slices.Reverse(kept)
		e.portalOrder, e.portalOrderHead = kept, 0
	}
}

// endPortals drops the portals bound before unit upTo: their transaction
// ended.
func (e *engine) endPortals(upTo uint64) {
	for e.portalOrderHead < len(e.portalOrder) && e.portalOrder[e.portalOrderHead].unit < upTo {
		b := e.portalOrder[e.portalOrderHead]
		e.portalOrder[e.portalOrderHead] = portalBind{}
		e.portalOrderHead++
		if u, ok := e.portalUnit[b.name]; ok && u == b.unit {
			delete(e.portals, b.name)
			delete(e.localPortals, b.name)
			delete(e.portalUnit, b.name)
			delete(e.portalRan, b.name)
		}
	}
	switch {
	case e.portalOrderHead == len(e.portalOrder):
		e.portalOrder, e.portalOrderHead = e.portalOrder[:0], 0
	case e.portalOrderHead > len(e.portalOrder)/2:
		n := copy(e.portalOrder, e.portalOrder[e.portalOrderHead:])
		clear(e.portalOrder[n:])
		e.portalOrder, e.portalOrderHead = e.portalOrder[:n], 0
	}
}

// timeoutChangeLocked follows statements of the unit being sent (rws,
// their rewrites) that set statement_timeout (SET statement_timeout =
// '1s'; SELECT ... in one query, or in one pipeline): the statements after
// them run under the new value, so the unit's clock restarts with it. The
// server reports the SET's completion only with the rest of the unit's
// output, too late to start a clock then; the statements after the SET
// share this one clock.
func (e *engine) timeoutChangeLocked(rws ...*rewrite) {
	if e.timedOut || !e.compat.settings {
		return
	}
	d, found := time.Duration(0), false
	for _, rw := range rws {
		c := rw.emuChangeOf("statement_timeout")
		if c == nil || c.Scope == sqllex.ScopeLocal && e.txStatus == 'I' {
			continue
		}
		found = true
		if c.Kind == sqllex.SetValue {
			d = compat.Millis(c.Value)
		} else {
			d = compat.Millis(e.gucs.emuStartup["statement_timeout"])
		}
	}
	if found && !e.statementsOwed() {
		e.host.restartStatementTimerLocked(d)
	}
	// With earlier statements still running, the new value is not theirs:
	// the clock runs on, and the value applies from the next unit.
}

// statementsOwed reports whether a statement sent earlier (an Execute or a
// simple Query) has not completed.
func (e *engine) statementsOwed() bool { return e.q.statements > 0 }

// setClientParamLocked records a ParameterStatus value the client is sent.
func (e *engine) setClientParamLocked(name, value string) {
	e.clientParams[name] = value
	if name == "application_name" {
		e.host.appNameLocked(value)
	}
}
