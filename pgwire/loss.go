package pgwire

import (
	"errors"
	"io"
	"slices"

	"github.com/jackc/pgerrcode"
	"go.uber.org/zap"

	"github.com/dsqlgate/dsqlgate/pgwire/sqllex"
)

// This file is the failure semantics (the README's "When things fail"): what a
// client is told when its upstream is lost, and the failed transaction the
// gateway plays out afterwards.

// Messages for a lost upstream. They say what happened and what to do.
const (
	lostInTxMessage   = "the transaction was rolled back because its upstream connection was lost"
	lostInTxHint      = "Retry the transaction."
	lostCommitMessage = "the upstream connection was lost while a commit was in progress; whether it committed is unknown"
	lostAutoMessage   = "the upstream connection was lost while the statement was running; whether it committed is unknown"
	lostCommitHint    = "Check whether the transaction's effects are present before retrying it."
	inFailedTxMessage = "current transaction is aborted, commands ignored until end of transaction block"
	lostCommitTxMsg   = "COMMIT did not happen: " + lostInTxMessage
)

// upstreamLostLocked reacts to the attached upstream being lost (closed,
// reset, FATAL). Every unit the client has in flight gets its answer: an
// autocommit statement or a COMMIT gets 08007 (its outcome is unknown),
// work inside a transaction gets 40001 and the transaction is failed, as
// PostgreSQL does after an error. A client that was idle in a transaction
// learns of it at its next statement. The session goes on, except in
// session mode on a PostgreSQL route, where a FATAL error from the backend
// during the client's work reaches the client and ends its connection.
func (s *session) upstreamLostLocked(sc Upstream, cause error) {
	inFlight := s.q.len() > 0 || s.unitOpen
	fields := []zap.Field{zap.Uint64("server_id", sc.ID()), zap.Bool("in_flight", inFlight), zap.String("tx_status", string(s.txStatus))}
	if cause != nil && !errors.Is(cause, io.EOF) {
		fields = append(fields, zap.Error(cause))
	}
	s.log.Info("upstream connection lost", fields...)
	reason := "lost_idle"
	if inFlight || s.txStatus != 'I' {
		reason = "lost_in_transaction"
	}
	s.srv.metrics.UpstreamReplacementsTotal.WithLabelValues(s.route.Name(), reason).Inc()
	s.setStateLocked(stateIdle)
	s.flushBytesOutLocked()
	timedOut := s.timedOut
	s.stopStatementTimerLocked()
	s.setAttachedLocked(nil, nil)
	s.replaced++
	var fatal *errUpstreamFatal
	switch {
	case s.session && !s.dsql && inFlight && errors.As(cause, &fatal):
		// Session mode on PostgreSQL: the client has this backend to
		// itself, and the backend ended it with a FATAL error (a
		// terminated backend, a server shutting down). The client is told
		// as PostgreSQL's own client would be, and its connection ends:
		// nothing it sent after runs anywhere (attached refuses).
		s.writeClientLocked(appendErrorResponse(nil, &pgError{Severity: severityFatal, Code: fatal.code, Message: fatal.message}))
		s.closeClientLocked()
	case s.session && s.listening:
		// Its LISTEN registrations went with it.
		s.writeClientLocked(appendErrorResponse(nil, listenLost()))
		s.closeClientLocked()
	}
	s.lostLocked(timedOut)
	if s.awaiting {
		s.progress.Broadcast()
	}
	s.flushClientLocked()
}

// lostLocked is the engine's side of a lost upstream (see
// upstreamLostLocked): every unit in flight gets its answer, and the
// client's status is what PostgreSQL would leave after an error. timedOut:
// the gateway had cancelled the work in flight for statement_timeout.
func (e *engine) lostLocked(timedOut bool) {
	e.us = nil
	// The upstream's SQL PREPAREs went with it: nothing to deallocate.
	clear(e.sqlPrepared)
	e.sqlPreparedAll = false
	e.copyIn = false
	e.inBatch = false
	e.serverSkipping = false
	status := e.txStatus
	// Every entry is popped; the gateway's own answers queued after the
	// last unit (a Close, a Parse it answered, with no batch open) are
	// still given, the rest is undone: the client is told its units
	// failed.
	var popped []reply
	tail := 0 // popped[tail:] came after the last unit end
	for e.q.len() > 0 {
		r := e.q.pop()
		popped = append(popped, r)
		if !r.kind.endsUnit() {
			continue
		}
		tail = len(popped)
		switch {
		case r.kind == iQuery:
		case r.kind == iSync:
			// The client's batch, ended by the gateway's Sync: it is told
			// now, and its next messages are dropped until its own Sync,
			// as after any error in a batch.
			if timedOut && r.unitFlags&unitCommit == 0 {
				timedOut = false
				e.host.writeClientLocked(appendErrorResponse(nil, statementTimeoutCancel()))
				if status == 'T' || status == 'E' {
					status = 'E'
					e.lostReported = true
				}
			} else {
				status = e.writeLossLocked(status, r.unitFlags, false)
			}
			e.skipUntilSync, e.skipStatus = true, status
		case timedOut && r.unitFlags&unitCommit == 0:
			// The gateway closed an upstream that ignored its cancel for
			// statement_timeout: the statement was cancelled.
			timedOut = false
			e.host.writeClientLocked(appendErrorResponse(nil, statementTimeoutCancel()))
			if status == 'T' || status == 'E' {
				status = 'E'
				e.lostReported = true
			}
			e.host.writeClientLocked(readyForQuery(status))
		default:
			status = e.writeLossLocked(status, r.unitFlags, true)
		}
	}
	undo := popped
	if e.unitOpen {
		// A batch without its Sync yet: answer now, drop the rest until
		// the Sync, which gets ReadyForQuery.
		e.skipStatus = e.writeLossLocked(status, e.unitFlags, false)
		e.skipUntilSync = true
		status = e.skipStatus
		e.unitOpen = false
	} else {
		undo = popped[:tail]
		e.txStatus = status
		for _, r := range popped[tail:] {
			e.emitOneLocked(r)
		}
	}
	for _, r := range slices.Backward(undo) {
		e.undoLocked(r, false)
	}
	e.unitsDone = e.unitsSent // no ReadyForQuery is coming for them
	switch status {
	case 'T':
		// Idle in a transaction: the next statement learns it is gone.
		e.lostTx, e.lostReported = true, false
	case 'E':
		e.lostTx = true
	}
	if status == 'I' || e.lostTx {
		e.gucs.rollback()
	}
	if status == 'I' {
		e.host.releaseXactLocksLocked()
	}
	e.txStatus = status
	e.endPortals(e.unitsSent + 1)
}

// writeLossLocked answers one unit of work lost with the upstream and
// returns the client-visible status after it. With rfq, the answer ends
// with ReadyForQuery.
func (e *engine) writeLossLocked(status byte, flags uint8, rfq bool) byte {
	var pe *pgError
	after := status
	switch {
	case status == 'E':
		if flags&(unitRollback|unitCommit) != 0 {
			pe = &pgError{Severity: severityError, Code: pgerrcode.SerializationFailure, Message: lostInTxMessage, Hint: lostInTxHint}
			after = 'I'
		} else {
			pe = &pgError{Severity: severityError, Code: pgerrcode.InFailedSQLTransaction, Message: inFailedTxMessage}
		}
	case flags&unitCommit != 0:
		pe = &pgError{Severity: severityError, Code: pgerrcode.TransactionResolutionUnknown, Message: lostCommitMessage, Hint: lostCommitHint}
		after = 'I'
	case status == 'I' && flags&unitBegin == 0:
		// An autocommit statement: it commits on its own.
		pe = &pgError{Severity: severityError, Code: pgerrcode.TransactionResolutionUnknown, Message: lostAutoMessage, Hint: lostCommitHint}
		after = 'I'
	default:
		pe = &pgError{Severity: severityError, Code: pgerrcode.SerializationFailure, Message: lostInTxMessage, Hint: lostInTxHint}
		after = 'E'
		e.lostReported = true
	}
	e.host.writeClientLocked(appendErrorResponse(nil, pe))
	if rfq {
		e.host.writeClientLocked(readyForQuery(after))
	}
	return after
}

// lostTxErrorLocked is the error for a statement in the lost transaction:
// 40001 the first time, then 25P02 as in any failed transaction.
func (e *engine) lostTxErrorLocked() *pgError {
	if !e.lostReported {
		e.lostReported = true
		return &pgError{Severity: severityError, Code: pgerrcode.SerializationFailure, Message: lostInTxMessage, Hint: lostInTxHint}
	}
	return inFailedTransaction()
}

// endLostTxLocked ends the lost transaction.
func (e *engine) endLostTxLocked() {
	e.lostTx, e.lostReported = false, false
	e.txStatus = 'I'
	e.gucs.rollback()
	e.host.releaseXactLocksLocked()
	e.endPortals(e.unitsSent + 1)
}

// lostTxQuery answers a simple Query (or a FunctionCall: text "") in a lost
// transaction: ROLLBACK ends it (and the rest of the query then runs
// normally, on an upstream), COMMIT fails with 40001 (it must not look
// like success), anything else fails.
func (e *engine) lostTxQuery(text string) (clientStep, error) {
	lx := lexQuery(text)
	defer releaseLexed(lx)
	first := sqllex.Other
	if lx.Len() > 0 {
		first = lx.Stmt(0).Kind()
	}
	switch first {
	case sqllex.Rollback:
		e.host.writeClientLocked(commandComplete("ROLLBACK"))
		e.endLostTxLocked()
		if lx.Len() > 1 {
			// The rest of the query runs normally now that ROLLBACK ended
			// the lost transaction: it is handed in again as a query of
			// its own.
			q, start := beginMessage(nil, 'Q')
			q = appendCString(q, text[lx.Stmt(1).Start:])
			return clientStep{need: needUpstream, simple: true, redo: finishMessage(q, start)}, nil
		}
		e.host.writeClientLocked(readyForQuery('I'))
	case sqllex.Commit:
		e.host.writeClientLocked(appendErrorResponse(nil, &pgError{Severity: severityError, Code: pgerrcode.SerializationFailure, Message: lostCommitTxMsg, Hint: lostInTxHint}))
		e.endLostTxLocked()
		e.host.writeClientLocked(readyForQuery('I'))
	default:
		e.host.writeClientLocked(appendErrorResponse(nil, e.lostTxErrorLocked()))
		e.txStatus = 'E'
		e.host.writeClientLocked(readyForQuery('E'))
	}
	return clientStep{}, nil
}

// lostTxFailLocked fails the rest of an extended batch in a lost
// transaction.
func (e *engine) lostTxFailLocked() {
	e.host.writeClientLocked(appendErrorResponse(nil, e.lostTxErrorLocked()))
	e.skipUntilSync = true
	e.skipStatus = 'E'
	e.txStatus = 'E'
}

func endsTx(k sqllex.Kind) bool { return k == sqllex.Rollback || k == sqllex.Commit }

// lostTxParse: in a failed transaction only transaction-ending statements
// may be prepared.
func (e *engine) lostTxParse(st *preparedStmt) {
	if !endsTx(st.kind) {
		e.lostTxFailLocked()
		return
	}
	if st.name == "" {
		e.unnamedGen++
		st.gen = e.unnamedGen
		e.unnamed = st
	} else {
		st.upstream = e.stmtUpstreamNameLocked(st.name, st.query, st.paramOIDs)
		e.stmts.put(st)
	}
	e.host.writeClientLocked(msgParseComplete)
}

func (e *engine) lostTxBind(portal, stmtName string) {
	st := e.lookupStmtLocked(stmtName)
	if st == nil || !endsTx(st.kind) {
		e.lostTxFailLocked()
		return
	}
	e.bindPortal(portal, st, nil)
	e.host.writeClientLocked(msgBindComplete)
}

func (e *engine) lostTxDescribe(kind byte, name string) {
	var st *preparedStmt
	if kind == 'S' {
		st = e.lookupStmtLocked(name)
	} else {
		st = e.portals[name]
	}
	if st == nil || !endsTx(st.kind) {
		e.lostTxFailLocked()
		return
	}
	if kind == 'S' {
		e.host.writeClientLocked([]byte{'t', 0, 0, 0, 6, 0, 0}) // no parameters
	}
	e.host.writeClientLocked(msgNoData)
}

func (e *engine) lostTxExecute(portal string) {
	st := e.portals[portal]
	switch {
	case st != nil && st.kind == sqllex.Rollback:
		e.host.writeClientLocked(commandComplete("ROLLBACK"))
		e.endLostTxLocked()
		// The transaction is over: the rest of the batch runs, and the
		// Sync reports 'I'.
		e.skipUntilSync = false
	case st != nil && st.kind == sqllex.Commit:
		e.host.writeClientLocked(appendErrorResponse(nil, &pgError{Severity: severityError, Code: pgerrcode.SerializationFailure, Message: lostCommitTxMsg, Hint: lostInTxHint}))
		e.endLostTxLocked()
		e.skipUntilSync = true
		e.skipStatus = 'I'
	default:
		e.lostTxFailLocked()
	}
}

func commandComplete(tag string) []byte {
	msg, start := beginMessage(nil, 'C')
	msg = appendCString(msg, tag)
	return finishMessage(msg, start)
}

// statementTimeoutCancel is PostgreSQL's error for a statement cancelled by
// statement_timeout.
func statementTimeoutCancel() *pgError {
	return &pgError{Severity: severityError, Code: pgerrcode.QueryCanceled, Message: "canceling statement due to statement timeout"}
}
