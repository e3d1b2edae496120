package pgwire

import (
	"errors"
	"io"

	"go.uber.org/zap"

	"github.com/dsqlgate/dsqlgate/authbridge"
	"github.com/dsqlgate/dsqlgate/pgwire/sqllex"
)

// This file is the failure semantics of DESIGN.md's "When things fail":
// what a client is told when its upstream is lost, and the failed
// transaction the gateway plays out afterwards.

// Messages for a lost upstream. They say what happened and what to do.
const (
	lostInTxMessage   = "the transaction was rolled back because its upstream connection was lost"
	lostInTxHint      = "Retry the transaction."
	lostCommitMessage = "the upstream connection was lost while a commit was in progress; whether it committed is unknown"
	lostCommitHint    = "Check whether the transaction's effects are present before retrying it."
	inFailedTxMessage = "current transaction is aborted, commands ignored until end of transaction block"
	lostCommitTxMsg   = "COMMIT did not happen: " + lostInTxMessage
)

// upstreamLostLocked reacts to the attached upstream being lost (closed,
// reset, FATAL). Every unit the client has in flight gets its answer: an
// autocommit statement or a COMMIT gets 08007 (its outcome is unknown),
// work inside a transaction gets 40001 and the transaction is failed, as
// PostgreSQL does after an error. A client that was idle in a transaction
// learns of it at its next statement. The session goes on.
func (s *session) upstreamLostLocked(sc *authbridge.ServerConn, cause error) {
	inFlight := s.q.len() > 0 || s.unitOpen
	fields := []zap.Field{zap.Uint64("server_id", sc.ID), zap.Bool("in_flight", inFlight), zap.String("tx_status", string(s.txStatus))}
	if cause != nil && !errors.Is(cause, io.EOF) {
		fields = append(fields, zap.Error(cause))
	}
	s.log.Info("upstream connection lost", fields...)
	reason := "lost_idle"
	if inFlight || s.txStatus != 'I' {
		reason = "lost_in_transaction"
	}
	s.srv.metrics.UpstreamReplacementsTotal.WithLabelValues(s.route.Name, reason).Inc()
	s.setStateLocked(stateIdle)
	s.flushBytesOutLocked()
	timedOut := s.timedOut
	s.stopStatementTimerLocked()
	s.setAttachedLocked(nil, nil)
	s.replaced++
	s.copyIn = false
	s.inBatch = false
	s.serverSkipping = false

	status := s.txStatus
	for s.q.len() > 0 {
		r := s.q.pop()
		if !r.kind.endsUnit() || r.kind == iQuery {
			continue
		}
		if timedOut && r.unitFlags&unitCommit == 0 {
			// The gateway closed an upstream that ignored its cancel for
			// statement_timeout: the statement was cancelled.
			timedOut = false
			s.writeClientLocked(appendErrorResponse(nil, &pgError{Severity: severityError, Code: "57014", Message: "canceling statement due to statement timeout"}))
			if status == 'T' || status == 'E' {
				status = 'E'
				s.lostReported = true
			}
			s.writeClientLocked(readyForQuery(status))
			continue
		}
		status = s.writeLossLocked(status, r.unitFlags, true)
	}
	if s.unitOpen {
		// A batch without its Sync yet: answer now, drop the rest until
		// the Sync, which gets ReadyForQuery.
		s.skipStatus = s.writeLossLocked(status, s.unitFlags, false)
		s.skipUntilSync = true
		status = s.skipStatus
		s.unitOpen = false
	}
	switch status {
	case 'T':
		// Idle in a transaction: the next statement learns it is gone.
		s.lostTx, s.lostReported = true, false
	case 'E':
		s.lostTx = true
	}
	if status == 'I' || s.lostTx {
		s.gucs.rollback()
	}
	if status == 'I' {
		s.releaseXactLocksLocked()
	}
	s.txStatus = status
	clear(s.portals)
	clear(s.localPortals)
	s.flushClientLocked()
}

// writeLossLocked answers one unit of work lost with the upstream and
// returns the client-visible status after it. With rfq, the answer ends
// with ReadyForQuery.
func (s *session) writeLossLocked(status byte, flags uint8, rfq bool) byte {
	var e *pgError
	after := status
	switch {
	case status == 'E':
		if flags&(unitRollback|unitCommit) != 0 {
			e = &pgError{Severity: severityError, Code: codeSerializationFailure, Message: lostInTxMessage, Hint: lostInTxHint}
			after = 'I'
		} else {
			e = &pgError{Severity: severityError, Code: codeInFailedTransaction, Message: inFailedTxMessage}
		}
	case flags&unitCommit != 0 || (status == 'I' && flags&unitBegin == 0):
		e = &pgError{Severity: severityError, Code: codeTransactionResolutionUnknown, Message: lostCommitMessage, Hint: lostCommitHint}
		after = 'I'
	default:
		e = &pgError{Severity: severityError, Code: codeSerializationFailure, Message: lostInTxMessage, Hint: lostInTxHint}
		after = 'E'
		s.lostReported = true
	}
	s.writeClientLocked(appendErrorResponse(nil, e))
	if rfq {
		s.writeClientLocked(readyForQuery(after))
	}
	return after
}

// inLostTx reports whether the client is in a transaction whose upstream
// was lost: its statements are answered by the gateway until it ends it.
func (s *session) inLostTx() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.lostTx
}

// lostTxErrorLocked is the error for a statement in the lost transaction:
// 40001 the first time, then 25P02 as in any failed transaction.
func (s *session) lostTxErrorLocked() *pgError {
	if !s.lostReported {
		s.lostReported = true
		return &pgError{Severity: severityError, Code: codeSerializationFailure, Message: lostInTxMessage, Hint: lostInTxHint}
	}
	return &pgError{Severity: severityError, Code: codeInFailedTransaction, Message: inFailedTxMessage}
}

// endLostTxLocked ends the lost transaction.
func (s *session) endLostTxLocked() {
	s.lostTx, s.lostReported = false, false
	s.txStatus = 'I'
	s.gucs.rollback()
	s.releaseXactLocksLocked()
	clear(s.portals)
	clear(s.localPortals)
}

// lostTxQuery answers a simple Query in a lost transaction: ROLLBACK ends
// it (and the rest of the query then runs normally), COMMIT fails with
// 40001 (it must not look like success), anything else fails.
func (s *session) lostTxQuery(msg []byte, text string, qi *queryInfo) error {
	stmts := sqllex.SplitStatements(text)
	first := sqllex.Other
	if len(stmts) > 0 {
		first = sqllex.Classify(stmts[0].Text)
	}
	rest := ""
	s.sendLocked(func() *authbridge.ServerConn {
		switch first {
		case sqllex.Rollback:
			s.writeClientLocked(commandComplete("ROLLBACK"))
			s.endLostTxLocked()
			if len(stmts) > 1 {
				rest = text[stmts[1].Start:]
				return nil
			}
			s.writeClientLocked(readyForQuery('I'))
		case sqllex.Commit:
			s.writeClientLocked(appendErrorResponse(nil, &pgError{Severity: severityError, Code: codeSerializationFailure, Message: lostCommitTxMsg, Hint: lostInTxHint}))
			s.endLostTxLocked()
			s.writeClientLocked(readyForQuery('I'))
		default:
			s.writeClientLocked(appendErrorResponse(nil, s.lostTxErrorLocked()))
			s.txStatus = 'E'
			s.writeClientLocked(readyForQuery('E'))
		}
		return nil
	})
	if rest != "" {
		// The rest of the query runs normally once ROLLBACK ended the
		// lost transaction.
		q, start := beginMessage(nil, 'Q')
		q = appendCString(q, rest)
		return s.onQuery(finishMessage(q, start))
	}
	return nil
}

// lostTxFailLocked fails the rest of an extended batch in a lost
// transaction.
func (s *session) lostTxFailLocked() {
	s.writeClientLocked(appendErrorResponse(nil, s.lostTxErrorLocked()))
	s.skipUntilSync = true
	s.skipStatus = 'E'
	s.txStatus = 'E'
}

func endsTx(k sqllex.Kind) bool { return k == sqllex.Rollback || k == sqllex.Commit }

// lostTxParse: in a failed transaction only transaction-ending statements
// may be prepared.
func (s *session) lostTxParse(st *preparedStmt) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !endsTx(st.kind) {
		s.lostTxFailLocked()
		return nil
	}
	if st.name == "" {
		s.unnamedGen++
		st.gen = s.unnamedGen
		s.unnamed = st
	} else {
		st.upstream = s.upstreamNameLocked(st.query, st.paramOIDs)
		s.stmts.put(st)
	}
	s.writeClientLocked(msgParseComplete)
	return nil
}

func (s *session) lostTxBind(portal, stmtName string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.lookupStmtLocked(stmtName)
	if st == nil || !endsTx(st.kind) {
		s.lostTxFailLocked()
		return nil
	}
	if s.portals == nil {
		s.portals = map[string]*preparedStmt{}
	}
	s.portals[portal] = st
	s.writeClientLocked(msgBindComplete)
	return nil
}

func (s *session) lostTxDescribe(kind byte, name string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	var st *preparedStmt
	if kind == 'S' {
		st = s.lookupStmtLocked(name)
	} else {
		st = s.portals[name]
	}
	if st == nil || !endsTx(st.kind) {
		s.lostTxFailLocked()
		return nil
	}
	if kind == 'S' {
		s.writeClientLocked([]byte{'t', 0, 0, 0, 6, 0, 0}) // no parameters
	}
	s.writeClientLocked(msgNoData)
	return nil
}

func (s *session) lostTxExecute(portal string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.portals[portal]
	switch {
	case st != nil && st.kind == sqllex.Rollback:
		s.writeClientLocked(commandComplete("ROLLBACK"))
		s.endLostTxLocked()
		// Stay in "lost" mode for the rest of this batch's messages?
		// No: the transaction is over; the Sync reports 'I'.
		s.skipUntilSync = false
	case st != nil && st.kind == sqllex.Commit:
		s.writeClientLocked(appendErrorResponse(nil, &pgError{Severity: severityError, Code: codeSerializationFailure, Message: lostCommitTxMsg, Hint: lostInTxHint}))
		s.endLostTxLocked()
		s.skipUntilSync = true
		s.skipStatus = 'I'
	default:
		s.lostTxFailLocked()
	}
	return nil
}

func (s *session) lostTxSync() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.writeClientLocked(readyForQuery(s.txStatus))
	return nil
}

func commandComplete(tag string) []byte {
	msg, start := beginMessage(nil, 'C')
	msg = appendCString(msg, tag)
	return finishMessage(msg, start)
}
