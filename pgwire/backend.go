package pgwire

import (
	"bufio"
	"errors"
	"fmt"
	"maps"
	"net"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgerrcode"
	"github.com/jackc/pgx/v5/pgproto3"
	"go.uber.org/zap"

	"github.com/dsqlgate/dsqlgate/pgwire/sqllex"
)

// serverToClient is the server goroutine of one attachment: it relays the
// upstream's replies to the client until a safe point, where it detaches
// the upstream, or until the upstream is lost. done is closed on return.
func (s *session) serverToClient(sc Upstream, us *upstreamState, done chan struct{}) {
	defer close(done)
	s.relay(sc, us, false)
}

// relayInline lets the client goroutine read the replies to the units it
// has just sent, instead of handing them to a server goroutine: a
// transaction of one unit (the common case) then costs no goroutine and no
// hand-off between two. It stops, and hands the upstream to a server
// goroutine, where the client must be heard while the upstream still owes
// replies or stays attached: a COPY FROM STDIN, replies asked for with a
// Flush and no Sync yet, a transaction left open. The client goroutine
// calls it after flushing the upstream.
func (s *session) relayInline() {
	s.mu.Lock()
	sc, us := s.sc, s.us
	if sc == nil || s.done != nil {
		s.mu.Unlock() // no upstream, or its server goroutine runs
		return
	}
	if !s.inlineLocked() {
		s.startReaderLocked()
		s.mu.Unlock()
		return
	}
	s.occArmCheckLocked()
	s.mu.Unlock()
	if s.relay(sc, us, true) || s.clientLeft {
		return
	}
	s.mu.Lock()
	if s.sc == sc && s.done == nil {
		s.startReaderLocked()
	}
	s.mu.Unlock()
}

// inlineLocked reports whether the client goroutine may go on reading the
// upstream: replies are owed and every unit they answer is complete, so
// the client has nothing to add before they arrive.
func (s *session) inlineLocked() bool {
	return s.q.len() > 0 && !s.copyIn && (s.q.last().kind.endsUnit() || s.mustWait())
}

// startReaderLocked starts the server goroutine for the attached upstream.
func (s *session) startReaderLocked() {
	// (Always the client goroutine: the retrier is its own.) Replies the
	// OCC retry holds back can no longer reach the engine in order: the
	// upstream is given up; an armed unit with nothing held is simply read
	// by the server goroutine, without a hold.
	if s.retry.midway() {
		s.log.Warn("OCC retry interrupted with replies held; closing the upstream")
		s.sc.Conn().Close()
	}
	s.retry.disarm()
	s.done = make(chan struct{})
	go s.serverToClient(s.sc, s.us, s.done)
}

// relay reads and handles the upstream's replies until the upstream is
// detached at a safe point or lost (it returns true), or, inline, until
// inlineLocked no longer holds (false).
func (s *session) relay(sc Upstream, us *upstreamState, inline bool) (ended bool) {
	defer func() {
		if r := recover(); r != nil {
			// A bug must cost this session only: log the stack (not the
			// value, which could hold a secret) and close both ends. The
			// lock was released by step's defer.
			s.log.Error("session panicked relaying upstream replies; closing it", zap.String("panic_type", fmt.Sprintf("%T", r)), zap.Stack("stack"))
			sc.Conn().Close()
			s.conn.Close()
			s.mu.Lock()
			if s.sc == sc {
				s.setAttachedLocked(nil, nil)
			}
			s.mu.Unlock()
			s.pool.Discard(sc)
			ended = true
		}
	}()
	if inline {
		// The client goroutine reads the upstream and not the client: a
		// read deadline brings it back now and then to see whether the
		// client is still there (clientGone), so a client that leaves in
		// the middle of long work is noticed within clientCheckInterval.
		// Every return below clears it before sc can change hands.
		sc.Conn().SetReadDeadline(time.Now().Add(clientCheckInterval))
	}
	for {
		var msg []byte
		var err error
		if inline && s.retry.phase != occIdle {
			msg, err = s.occNext(sc, us) // a unit that may be retried (occretry.go)
		} else {
			msg, err = us.fr.next()
		}
		if inline && err != nil && isTimeout(err) {
			if s.clientGone() {
				sc.Conn().SetReadDeadline(time.Time{})
				s.clientLeft = true
				if s.retry.midway() {
					// Replies held back from the engine are lost with the
					// client: nobody may take over this upstream's replies.
					sc.Conn().Close()
				}
				s.retry.disarm()
				return false // run reads the client's EOF and ends the session
			}
			sc.Conn().SetReadDeadline(time.Now().Add(clientCheckInterval))
			continue
		}
		// Held replies still to hand out are read as if buffered: the
		// client is written to once they are all handled.
		held := inline && s.retry.releasingMore()
		switch next, after := s.step(sc, us, msg, err, inline, held); next {
		case relayPaused:
			sc.Conn().SetReadDeadline(time.Time{})
			return false
		case relayDetached:
			if inline {
				sc.Conn().SetReadDeadline(time.Time{}) // before anyone else holds it
				// The unit is over (detached at a safe point, nothing is
				// held): what the retrier kept of it goes now, not at the
				// session's next unit.
				s.retry.disarm()
			}
			after()
			s.flushClient()
			return true
		case relayLost:
			if inline {
				s.retry.disarm()
			}
			s.pool.Discard(sc)
			return true
		}
	}
}

// clientCheckInterval is how often a client goroutine waiting for an
// upstream's replies looks whether its client is still connected.
const clientCheckInterval = 250 * time.Millisecond

// clientGone reports whether the client has closed its connection (or it
// broke), without waiting and without losing anything the client sent:
// whatever arrives stays in the client reader for the client goroutine.
// Client goroutine only.
func (s *session) clientGone() bool {
	// Look one byte past what the client reader holds already (the client
	// may have sent more before it left); a full reader cannot look
	// further, and its client is still sending.
	n := s.fr.buffered() + 1
	if n > s.fr.r.Size() {
		return false
	}
	// A deadline already past would fail the read before it is tried;
	// a millisecond lets a pending EOF (or data) through.
	s.conn.SetReadDeadline(time.Now().Add(time.Millisecond))
	_, err := s.fr.r.Peek(n)
	s.conn.SetReadDeadline(time.Time{})
	return err != nil && !isTimeout(err) && !errors.Is(err, bufio.ErrBufferFull)
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// relayStep says what relay does after one upstream message.
type relayStep uint8

const (
	relayContinue relayStep = iota
	relayPaused             // inline: the client must be heard before more is read
	relayDetached           // at a safe point: call the release, stop reading
	relayLost               // the upstream is gone: discard it, stop reading
)

// step handles one read from the upstream (a message, or the read's
// error) under mu; more: more messages are at hand (held back by the OCC
// retry), so the client is not written to yet. after is the release to call, outside mu, once detached.
func (s *session) step(sc Upstream, us *upstreamState, msg []byte, err error, inline, more bool) (next relayStep, after func()) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.bytesOut += uint64(len(msg))
	if err != nil {
		s.upstreamLostLocked(sc, err)
		return relayLost, nil
	}
	rfq, lost := s.serverLocked(msg)
	if s.awaiting {
		s.progress.Broadcast()
	}
	detach := rfq && lost == nil && s.safeToDetachLocked()
	switch {
	case lost != nil:
		s.upstreamLostLocked(sc, lost)
		return relayLost, nil
	case detach:
		// The upstream goes back before the client is written to: a
		// client that does not read must not hold it.
		release := s.detachLocked()
		if s.draining {
			s.terminateLocked()
		}
		return relayDetached, release
	}
	if inline && !s.inlineLocked() {
		s.flushClientLocked()
		return relayPaused, nil
	}
	if us.fr.buffered() == 0 && !more || s.clientBufferFull() {
		s.flushClientLocked() // the last step: it may release mu
	}
	return relayContinue, nil
}

// errUpstreamFatal is an upstream that sent a FATAL error: it is about to
// close, and is treated as lost.
type errUpstreamFatal struct{ code, message string }

func (e *errUpstreamFatal) Error() string { return "upstream FATAL " + e.code + ": " + e.message }

// serverLocked handles one upstream message: it forwards or swallows it as
// the front reply entry says and keeps the session state. It reports a
// ReadyForQuery (rfq: the end of a unit, where the upstream may have
// reached a safe point) or an upstream that is dying (lost).
func (e *engine) serverLocked(msg []byte) (rfq bool, lost error) {
	typ := msg[0]
	switch typ {
	case 'D', 'd': // DataRow, CopyData: the hot path
		e.forwardLocked(msg)
		return false, nil
	case 'S':
		e.onParameterStatusLocked(msg)
		return false, nil
	case 'N', 'A': // NoticeResponse, NotificationResponse
		if e.q.len() > 0 && e.q.front().kind == iQuery {
			return false, nil
		}
		if typ == 'A' && e.txPooling {
			// No client of a transaction-mode upstream listens (LISTEN is
			// refused); one registered some other way (a function) is
			// not this client's.
			return false, nil
		}
		if typ == 'N' && e.belowMinMessagesLocked(msg) {
			return false, nil
		}
		e.host.writeClientLocked(msg)
		return false, nil
	case 'E':
		return false, e.onErrorLocked(msg)
	}
	if e.q.len() == 0 {
		// Nothing expected: pass it on rather than lose it.
		e.log.Debug("unexpected upstream message", zap.String("type", string(typ)))
		e.host.writeClientLocked(msg)
		return false, nil
	}
	r := e.q.front()
	if r.kind == iQuery && typ != 'Z' {
		return false, nil // the gateway's own statement's output
	}
	switch typ {
	case '1': // ParseComplete
		k := e.q.pop().kind
		if k != iParse {
			e.host.writeClientLocked(msg)
		}
	case '2', 's', 'I': // BindComplete, PortalSuspended, EmptyQueryResponse
		if r.kind == rQuery {
			e.host.writeClientLocked(msg) // EmptyQueryResponse of an empty query
			break
		}
		e.q.pop()
		e.host.writeClientLocked(msg)
	case '3': // CloseComplete
		if e.q.pop().kind != iClose {
			e.host.writeClientLocked(msg)
		}
	case 't': // ParameterDescription
		e.host.writeClientLocked(msg)
	case 'T', 'n': // RowDescription, NoData
		switch r.kind {
		case rDescribeStmt, rDescribePortal:
			// A placeholder's columns are not the client's business: the
			// statement it stands for (a SET) has no result.
			hide := typ == 'T' && r.stmt != nil && r.stmt.rw != nil && r.stmt.rw.hideRows
			e.q.pop()
			if hide {
				e.host.writeClientLocked(msgNoData)
			} else {
				e.host.writeClientLocked(msg)
			}
		case rQuery:
			if cur := r.query.current(); cur == nil || cur.rw == nil || !cur.rw.hideRows {
				e.host.writeClientLocked(msg)
			}
		default:
			e.host.writeClientLocked(msg)
		}
	case 'C': // CommandComplete
		e.onCommandCompleteLocked(r, msg)
	case 'G': // CopyInResponse
		e.copyIn = true
		e.host.writeClientLocked(msg)
	case 'Z':
		e.onReadyForQueryLocked(msg)
		return true, nil
	case 'K', 'R', 'v':
		// BackendKeyData, Authentication*, NegotiateProtocolVersion:
		// startup-only messages; never for the client now.
		e.log.Debug("dropping startup message from upstream", zap.String("type", string(typ)))
	default: // CopyOutResponse, CopyDone, CopyBothResponse, FunctionCallResponse
		if r.kind != iQuery {
			e.host.writeClientLocked(msg)
		}
	}
	e.emitSyntheticLocked()
	return false, nil
}

// forwardLocked passes a message through unless it answers the gateway.
func (e *engine) forwardLocked(msg []byte) {
	if e.q.len() > 0 && e.q.front().kind == iQuery {
		return
	}
	e.host.writeClientLocked(msg)
}

// onParameterStatusLocked records a reported value and forwards it only if
// the client has not seen that value already.
func (e *engine) onParameterStatusLocked(msg []byte) {
	e.parameterStatusLocked(e.us, msg)
}

// parameterStatusLocked records a value that upstream us (nil: none)
// reported and forwards it if the client has not seen it.
func (e *engine) parameterStatusLocked(us *upstreamState, msg []byte) {
	name, rest, ok := readCString(body(msg))
	value, _, ok2 := readCString(rest)
	if !ok || !ok2 {
		return
	}
	if us != nil {
		if us.params[name] != value {
			us.params[name] = value
			us.paramsVer++
		}
	}
	if old, seen := e.clientParams[name]; seen && old == value {
		return
	}
	e.setClientParamLocked(name, value)
	e.host.writeClientLocked(msg)
}

// onErrorLocked handles an ErrorResponse: it belongs to the front entry;
// the upstream then skips everything up to the next Sync, and so do the
// replies the gateway expected or would have answered itself.
func (e *engine) onErrorLocked(msg []byte) error {
	var head *reply
	if e.q.len() > 0 {
		head = e.q.front()
	}
	e.host.upstreamErrorLocked(sqlstateOf(msg))
	if severityOf(msg) != severityError {
		er, _ := decodeError(msg)
		if er != nil && (er.Severity == severityFatal || er.Severity == "PANIC") {
			return &errUpstreamFatal{code: er.Code, message: er.Message}
		}
	}
	e.gucs.txFailed = true
	e.copyIn = false
	if e.timedOut {
		msg = statementTimeoutError(msg)
	}
	if head == nil {
		e.host.writeClientLocked(msg)
		return nil
	}
	switch head.kind {
	case iQuery:
		e.log.Warn("injected statement failed upstream", zap.String("error", errorMessage(msg)))
		return nil
	case rQuery, rSync, iSync:
		// Part of a simple query's output, or an error at Sync (a
		// deferred COMMIT of an implicit transaction): ReadyForQuery
		// follows.
		var rw *rewrite
		if head.kind == rQuery {
			if cur := head.query.current(); cur != nil {
				rw = cur.rw
			}
			head.query.next = len(head.query.stmts) // the rest did not run
		}
		e.host.writeClientLocked(rewriteError(msg, rw, nil, failingSQLCode))
		return nil
	}
	var rw *rewrite
	if head.stmt != nil {
		rw = head.stmt.rw
	}
	standIn := head.standIn
	if standIn == "" {
		standIn = failingSQLCode
	}
	e.host.writeClientLocked(rewriteError(renameInError(msg, head), rw, head.err, standIn))
	// An error in extended-protocol mode makes the server ignore every
	// message up to the next Sync, a simple Query or FunctionCall sent in
	// between included: drop the failed entry and every reply expected up
	// to (not including) the next Sync, undoing their bookkeeping, newest
	// first (each undo restores what was there before its message, which
	// is what the messages before it left). With no Sync sent yet, the
	// client's messages are dropped until it sends one (serverSkipping), as
	// the server will drop them.
	var dropped []reply
	for e.q.len() > 0 && e.q.front().kind != rSync && e.q.front().kind != iSync {
		dropped = append(dropped, e.q.pop())
	}
	for i, r := range slices.Backward(dropped) {
		e.undoLocked(r, i == 0)
	}
	if e.q.len() == 0 || e.q.front().kind == iSync {
		// The client's Sync has not been sent: its messages are dropped
		// until it comes, as the server would drop them. (A Sync of the
		// gateway's that ended the batch early, before a Query the gateway
		// answers, ends the server's skipping, not the client's batch.)
		e.serverSkipping = true
	}
	return nil
}

// undoLocked undoes the bookkeeping of a message the server did not carry
// out: it failed (failed), or the server skipped it after an error.
func (e *engine) undoLocked(r reply, failed bool) {
	restoreUnnamed := func(prev *preparedStmt) {
		if e.unnamed == nil && prev != nil {
			e.unnamed = prev // the server never replaced it
			if e.us != nil {
				e.us.unnamedOwner = nil // nor is it known to be there
			}
		}
	}
	switch r.kind {
	case rQuery:
		e.unitsDone++ // a Query the server ignores: no ReadyForQuery
		restoreUnnamed(r.prev)
	case rExecute:
		for _, st := range r.dropped { // a DEALLOCATE or DISCARD that did not run
			if e.stmts.get(st.name) == nil {
				e.stmts.put(st)
			}
		}
		if e.us != nil {
			for _, name := range slices.Backward(r.droppedUpstream) {
				e.us.keepStmt(name)
			}
		}
	case rParse:
		e.forgetFailedParseLocked(r.stmt, r.probe)
		// An unnamed Parse that failed leaves no unnamed statement (as in
		// PostgreSQL); one the server skipped leaves the one before.
		if !failed && r.stmt != nil && r.stmt.name == "" {
			restoreUnnamed(r.prev)
		}
	case sParseComplete:
		// A Parse the gateway answered (from the upstream's cache, or a
		// statement it answers itself) that the server would have
		// skipped: the statement never existed.
		switch {
		case r.stmt == nil:
		case r.stmt.name == "":
			if e.unnamed == r.stmt {
				e.unnamed = r.prev
			}
		case e.stmts.get(r.stmt.name) == r.stmt:
			e.stmts.del(r.stmt.name)
		}
	case sCloseComplete:
		// A Close the server would have skipped: the statement stays.
		if r.closed && r.stmt != nil {
			if r.stmt.name == "" {
				if e.unnamed == nil {
					e.unnamed = r.stmt
				}
			} else if e.stmts.get(r.stmt.name) == nil {
				e.stmts.put(r.stmt)
			}
		}
	case iParse:
		if r.stmt != nil && e.us != nil {
			if r.stmt.name == "" {
				e.us.unnamedOwner = nil
			} else {
				e.us.dropStmt(r.stmt.upstream)
			}
		}
	case iClose:
		// An eviction the server skipped: the upstream still has the
		// statement (a Parse of it would fail as a duplicate).
		if e.us != nil {
			e.us.keepStmt(r.text)
		}
		if e.ownNames() && e.stmts.get(r.text) == nil {
			e.closeLaterLocked(r.text) // a client's Close, still to do
		}
	}
}

// forgetFailedParseLocked undoes the bookkeeping of a client Parse the
// upstream did not carry out.
func (e *engine) forgetFailedParseLocked(st *preparedStmt, probe bool) {
	if st == nil {
		return
	}
	if st.name == "" {
		if e.unnamed == st {
			e.unnamed = nil
		}
		if e.us != nil {
			e.us.unnamedOwner = nil
		}
		return
	}
	if e.stmts.get(st.name) == st {
		e.stmts.del(st.name)
	}
	if probe {
		if e.us != nil {
			e.us.unnamedOwner = nil
		}
		return
	}
	if e.us != nil {
		e.us.dropStmt(st.upstream)
	}
}

// onCommandCompleteLocked forwards a CommandComplete and applies what the
// completed statement did to the session state.
func (e *engine) onCommandCompleteLocked(r *reply, msg []byte) {
	e.copyIn = false
	tag, _, _ := cstringBytes(body(msg))
	var info stmtInfo
	deallocated := false // a DEALLOCATE's effect was applied when it was sent
	switch r.kind {
	case rExecute:
		done := e.q.pop() // r points into the queue: use the popped copy
		deallocated = done.stmt.dropsStatements()
		if done.stmt != nil {
			info = stmtInfo{kind: done.stmt.kind, set: done.stmt.set, rw: done.stmt.rw}
		}
	case rQuery:
		if cur := r.query.current(); cur != nil {
			info = *cur
			r.query.next++
		}
	case iQuery:
		return
	default:
		e.host.writeClientLocked(msg)
		return
	}
	if info.rw != nil && info.rw.tag != "" {
		e.host.writeClientLocked(commandComplete(info.rw.tag))
		if info.rw.emu != nil {
			e.gucs.applyEmulated(info.rw.emu)
		}
		if info.rw.dealloc != nil && !deallocated {
			e.deallocateLocked(info.rw.dealloc)
		}
		return
	}
	e.host.writeClientLocked(msg)
	e.applyCompletedLocked(info, tag, deallocated)
}

// applyCompletedLocked updates settings, statements and the transaction
// bookkeeping for a statement that completed with tag.
// dropped: the statement's effect on prepared statements was applied when
// it was sent (an Execute: see onExecute).
func (e *engine) applyCompletedLocked(info stmtInfo, tag []byte, dropped bool) {
	t := string(tag)
	switch {
	case t == "SET" || t == "RESET":
		if info.set != nil {
			e.gucs.apply(info.set)
		}
	case t == "COMMIT":
		e.gucs.commit()
		e.host.releaseXactLocksLocked()
	case t == "ROLLBACK":
		e.gucs.rollback()
		e.host.releaseXactLocksLocked()
	case (t == "DEALLOCATE ALL" || t == "DISCARD ALL") && !dropped:
		e.dropAllStmtsLocked()
	}
	switch {
	case t == "PREPARE" && info.rw != nil && info.rw.sqlPrepare != "":
		e.notePreparedLocked(info.rw.sqlPrepare)
	case t == "DEALLOCATE" && info.rw != nil && info.rw.sqlDeallocate != "":
		delete(e.sqlPrepared, info.rw.sqlDeallocate)
	case t == "UNLISTEN" && info.rw != nil && info.rw.unlistenAll:
		e.listening = false
	}
	switch t {
	case "DISCARD ALL":
		e.gucs.apply(&sqllex.SetStmt{Kind: sqllex.ResetAll})
		e.listening = false
		clear(e.sqlPrepared)
		e.sqlPreparedAll = false
	case "LISTEN":
		// It may yet roll back; watching an upstream with no
		// registration costs only an idle goroutine.
		e.listening = true
	}
}

// dropAllStmtsLocked follows a DEALLOCATE ALL or DISCARD ALL that ran on
// the upstream: every prepared statement there is gone, the other clients'
// too; the client's named ones are gone as PostgreSQL says (the unnamed
// one is not among them). It returns what it dropped, to put back if the
// statement does not run after all.
func (e *engine) dropAllStmtsLocked() (client []*preparedStmt, upstream []string) {
	client = slices.Collect(maps.Values(e.stmts.byName))
	e.stmts.clear()
	if e.us != nil {
		upstream = e.us.stmtNames()
		e.us.dropAllStmts()
	}
	return client, upstream
}

// onReadyForQueryLocked ends a unit: the transaction status and the end of
// an implicit transaction.
func (e *engine) onReadyForQueryLocked(msg []byte) {
	status := byte('I')
	if len(msg) >= 6 {
		status = msg[5]
	}
	r := e.q.pop()
	for !r.kind.endsUnit() && e.q.len() > 0 {
		e.log.Warn("upstream ReadyForQuery out of step with the reply queue")
		r = e.q.pop()
	}
	if r.kind == iQuery || r.kind == iSync {
		// The gateway's own statement (a rollback of an abandoned
		// transaction) or Sync (ending a batch before a Query the gateway
		// answers): the client does not see its ReadyForQuery.
		e.txStatus = status
	} else {
		e.txStatus = status
		e.host.writeClientLocked(msg)
	}
	e.copyIn = false
	e.host.observeUnitLocked(r, status)
	if e.q.len() == 0 {
		e.host.stopStatementTimerLocked()
		e.host.startIdleTimerLocked()
	}
	if r.kind == rSync || r.kind == rQuery || r.kind == iSync {
		e.unitsDone++
	}
	if status == 'I' {
		e.gucs.endTransaction()
		e.endPortals(e.unitsDone)
		e.host.releaseXactLocksLocked()
		if r.kind != iQuery {
			e.transactions++
		}
	}
	e.emitSyntheticLocked()
}

// safeToDetachLocked reports, after a ReadyForQuery, whether the upstream
// can go now. At a safe point the client goroutine may still be finishing
// its last write to this upstream (the server answered before the flush
// call returned): wait for it, it is about to be done, then look again.
// Bytes still unflushed in the upstream's writer must never go to its next
// holder: not a safe point while there are (the session is abandoning the
// upstream: it closes it).
func (s *session) safeToDetachLocked() bool {
	for s.safeLocked() && s.unflushed && !s.abandoning {
		s.flushed.Wait()
	}
	return s.safeLocked() && !s.unflushed
}

// detachLocked lets the upstream go at a safe point: its state is recorded
// as the client's, and it returns to the pool (transaction mode) or stays
// reserved for the client (session mode). It returns the release to call
// after mu is unlocked (releasing may close the connection).
func (s *session) detachLocked() (release func()) {
	sc, us := s.sc, s.us
	cs := s.setAttachedLocked(nil, nil)
	// What the upstream has now is what the client wanted, except for
	// settings the client RESET there: those are at the server's default,
	// which is not necessarily the client's startup value.
	if us.owner != &s.engine || us.ownerVer != s.gucs.ver || len(s.gucs.touched) > 0 {
		us.gucs = cloneMap(s.gucs.desired)
		for name := range s.gucs.touched {
			if _, ok := us.gucs[name]; ok {
				us.gucs[name] = unknownValue
			}
		}
		clear(s.gucs.touched)
		us.owner, us.ownerVer = &s.engine, s.gucs.ver
	}
	us.lastUser = s.user
	s.setStateLocked(stateIdle)
	s.flushBytesOutLocked()
	// A listening session keeps its upstream past its lifetime: moving
	// would lose its LISTEN registrations (and DSQL, which cuts
	// connections at an hour, refuses LISTEN).
	retiring := sc.Retiring(s.srv.now()) && !s.listening
	keep := s.session && !s.closing && !retiring
	dealloc := ""
	if !s.session {
		dealloc = s.takePreparedLocked()
	}
	if (cs.busy != nil || cs.sent) && !keep {
		// A cancel was sent on this attachment: the holder settles it
		// before anyone else runs anything there. (An upstream kept for
		// its session is settled by acquire, before the session's next
		// statement.)
		s.prev = sc
		return func() {
			if err := s.settleCancel(sc, us, cs); err != nil {
				s.pool.Discard(sc)
				return
			}
			if s.session {
				s.releaseReset(sc)
				return
			}
			s.releaseTx(sc, us, dealloc)
		}
	}
	if s.session && !s.closing {
		now := s.srv.now()
		if retiring {
			s.replaced++
			if s.spare != nil {
				s.reserved, s.spare = s.spare, nil
				s.noteServerLocked()
			}
			return func() { s.pool.Retire(sc) }
		}
		s.reserved, s.reservedCancel = sc, cs
		s.noteServerLocked()
		if s.listening {
			s.startWatchLocked(sc, us)
		}
		if s.spare == nil && !s.spareDialing && !s.listening && !now.Before(sc.RetireAt().Add(-s.pool.ReplaceLead())) {
			s.spareDialing = true
			go s.dialSpare()
		}
		return func() {}
	}
	s.prev = sc
	if s.session {
		// A session-mode client that is leaving: its upstream is reset
		// before anyone else gets it.
		return func() { s.releaseReset(sc) }
	}
	if dealloc != "" {
		return func() { s.releaseTx(sc, us, dealloc) }
	}
	return func() { s.pool.Release(sc) }
}

// releaseTx gives a transaction-mode upstream back to the pool after
// running dealloc (what the client's SQL PREPAREs left there; see
// poolmode.go), or closes it if that fails.
func (s *session) releaseTx(sc Upstream, us *upstreamState, dealloc string) {
	if dealloc != "" {
		failed, err := s.runSync(sc, us, dealloc)
		if err != nil || failed != nil {
			s.log.Debug("deallocating SQL prepared statements failed; closing the upstream", zap.Uint64("server_id", sc.ID()), zap.Error(err), zap.Any("error", failed))
			s.pool.Discard(sc)
			return
		}
		if dealloc == deallocateAllSQL {
			us.dropAllStmts()
		}
	}
	s.pool.Release(sc)
}

func cloneMap(m map[string]string) map[string]string {
	out := make(map[string]string, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

// severityOf returns the non-localized severity of an ErrorResponse
// without decoding all of it.
func severityOf(msg []byte) string {
	b := body(msg)
	var sev string
	for len(b) > 0 && b[0] != 0 {
		code := b[0]
		v, rest, ok := cstringBytes(b[1:])
		if !ok {
			break
		}
		switch code {
		case 'V':
			return string(v)
		case 'S':
			sev = string(v)
		}
		b = rest
	}
	return sev
}

func errorMessage(msg []byte) string {
	er, err := decodeError(msg)
	if err != nil {
		return "undecodable error"
	}
	return er.Code + ": " + er.Message
}

// renameInError rewrites an upstream statement name in an ErrorResponse
// to the client's name, when the failed entry asks for it.
func renameInError(msg []byte, r *reply) []byte {
	if r == nil || r.renameFrom == "" {
		return msg
	}
	er, err := decodeError(msg)
	if err != nil {
		return msg
	}
	if r.renameTo == "" && r.renameFrom == missingStatementName {
		er.Message = "unnamed prepared statement does not exist"
	} else {
		er.Message = strings.ReplaceAll(er.Message, `"`+r.renameFrom+`"`, `"`+r.renameTo+`"`)
	}
	out, err := (*pgproto3.ErrorResponse)(er).Encode(nil)
	if err != nil {
		return msg
	}
	return out
}

// statementTimeoutError words the server's cancel error as PostgreSQL
// words a statement_timeout, when the gateway's timer sent the cancel.
func statementTimeoutError(msg []byte) []byte {
	er, err := decodeError(msg)
	if err != nil || er.Code != pgerrcode.QueryCanceled {
		return msg
	}
	er.Message = "canceling statement due to statement timeout"
	out, err := er.Encode(nil)
	if err != nil {
		return msg
	}
	return out
}

// observeUnitLocked measures a unit that ended with ReadyForQuery status:
// the query, and the transaction when it ended (or an autocommit unit).
func (s *session) observeUnitLocked(r reply, status byte) {
	s.unitEndedLocked()
	if r.began.IsZero() || r.kind == iQuery {
		return
	}
	now := s.srv.now()
	c := s.mx.counters
	took := now.Sub(r.began)
	s.mx.query.Observe(took.Seconds())
	c.queries.Add(1)
	c.queryUs.Add(uint64(took / time.Microsecond))
	s.logSlowQueryLocked(r, took)
	switch {
	case status != 'I' && s.txBegan.IsZero():
		s.txBegan = r.began
	case status == 'I':
		began := s.txBegan
		if began.IsZero() {
			began = r.began
		}
		s.mx.xact.Observe(now.Sub(began).Seconds())
		c.xacts.Add(1)
		c.xactUs.Add(uint64(now.Sub(began) / time.Microsecond))
		s.txBegan = time.Time{}
	}
}

// logSlowQueryLocked logs a unit that ran past log.slow_query_threshold:
// its statement text cut to log.slow_query_max_length characters. Bind
// parameters are never logged.
func (s *session) logSlowQueryLocked(r reply, took time.Duration) {
	threshold := s.srv.currentConfig().Log.SlowQueryThreshold.D()
	if threshold <= 0 || took < threshold {
		return
	}
	text := r.text
	if max := s.srv.currentConfig().Log.SlowQueryMaxLength; max > 0 {
		if runes := []rune(text); len(runes) > max {
			text = string(runes[:max]) + "…"
		}
	}
	s.log.Warn("slow query", zap.Duration("took", took), zap.String("query", text))
}
