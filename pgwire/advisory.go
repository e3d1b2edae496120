package pgwire

import (
	"context"
	"errors"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/dsqlgate/dsqlgate/internal/compat"
	"github.com/jackc/pgerrcode"
)

// This file runs the advisory-lock calls compat recognises
// (compat.LockCall) for a session: it describes and answers them in
// PostgreSQL's result shape, and keeps the session's locks
// (compat.SessionLocks) in the route's lock table (Route.Locks), bounded
// by statement_timeout and cancellable by the client.

// Type OIDs of the results.
const (
	oidBool = compat.OIDBool
	oidVoid = compat.OIDVoid
)

// lockCall is an advisory-lock call the gateway answers itself.
type lockCall struct{ *compat.LockCall }

// appendRowDescription describes the one result column in format.
func (lc *lockCall) appendRowDescription(dst []byte, format int16) []byte {
	oid, size := lc.ResultType()
	dst, start := beginMessage(dst, 'T')
	dst = appendInt16(dst, 1)
	dst = appendCString(dst, lc.Column)
	dst = appendInt32(dst, 0) // table OID
	dst = appendInt16(dst, 0) // column number
	dst = appendInt32(dst, int32(oid))
	dst = appendInt16(dst, size)
	dst = appendInt32(dst, -1) // type modifier
	dst = appendInt16(dst, format)
	return finishMessage(dst, start)
}

// appendParameterDescription lists the statement's parameter types.
func (lc *lockCall) appendParameterDescription(dst []byte) []byte {
	dst, start := beginMessage(dst, 't')
	dst = appendInt16(dst, int16(len(lc.Params)))
	for _, o := range lc.Params {
		dst = appendInt32(dst, int32(o))
	}
	return finishMessage(dst, start)
}

// appendResult appends the DataRow and CommandComplete of a call that
// returned ok (for bool functions) in format.
func (lc *lockCall) appendResult(dst []byte, ok bool, format int16) []byte {
	dst, start := beginMessage(dst, 'D')
	dst = appendInt16(dst, 1)
	switch {
	case !lc.ReturnsBool():
		dst = appendInt32(dst, 0) // void: an empty value, not NULL
	case format == 1:
		dst = appendInt32(dst, 1)
		if ok {
			dst = append(dst, 1)
		} else {
			dst = append(dst, 0)
		}
	default:
		dst = appendInt32(dst, 1)
		if ok {
			dst = append(dst, 't')
		} else {
			dst = append(dst, 'f')
		}
	}
	dst = finishMessage(dst, start)
	return append(dst, commandComplete("SELECT 1")...)
}

// advisoryState is a session's advisory locks. Its own mutex serialises
// every lock operation of the session (the client goroutine's, and the
// release of transaction locks at transaction end), so they reach the lock
// service in order. Lock order: advisoryState.mu, then session.cmu (a lock
// wait registers its cancel there); it is never held together with
// session.mu.
type advisoryState struct {
	mu      sync.Mutex
	locks   compat.SessionLocks // guarded by mu
	waiting context.CancelFunc  // cancels the current lock wait; guarded by session.cmu
}

// execute runs the call for the client goroutine and returns its reply
// (a WARNING first when unlocking a lock not held, then the DataRow and
// CommandComplete).
func (lc *lockCall) execute(s *session, params [][]byte, paramFormats []int16, resultFormat int16, inTx bool) ([]byte, *pgError) {
	vals, cerr := lc.Values(params, paramFormats)
	if cerr != nil {
		return nil, errorOf(cerr)
	}
	ok, warning, perr := s.runLockCall(lc, vals, inTx)
	if perr != nil {
		return nil, perr
	}
	var out []byte
	if warning != nil {
		out = appendErrorResponse(out, warning)
	}
	if ok && lc.Xact() && inTx {
		s.mu.Lock()
		s.hasXactLocks = true
		s.mu.Unlock()
	}
	return lc.appendResult(out, ok, resultFormat), nil
}

// runLockCall performs an advisory-lock call for the client goroutine. It
// returns the function's bool result, a WARNING to send first (unlocking a
// lock not held), or the error to report.
func (s *session) runLockCall(lc *lockCall, vals []int64, inTx bool) (bool, *pgError, *pgError) {
	a := &s.advisory
	a.mu.Lock()
	defer a.mu.Unlock()
	ctx, cancel := s.lockContext()
	defer cancel()
	ok, warning, err := a.locks.Run(ctx, s.route.Locks(), lc.LockCall, vals, inTx)
	if err != nil {
		if cause := context.Cause(ctx); cause != nil {
			err = cause // why the wait ended: statement timeout or cancel
		}
		return false, nil, s.lockServiceError(err)
	}
	if warning != nil {
		w := errorOf(warning)
		w.Severity = "WARNING"
		return ok, w, nil
	}
	return ok, nil, nil
}

// lockContext bounds a lock wait by statement_timeout and makes it
// cancellable by the client's CancelRequest.
func (s *session) lockContext() (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancelCause(context.Background())
	stop := func() {}
	if d := s.statementTimeout(); d > 0 {
		t := time.AfterFunc(d, func() { cancel(errStatementTimeout) })
		stop = func() { t.Stop() }
	}
	s.cmu.Lock()
	s.advisory.waiting = func() { cancel(errUserCancel) }
	s.cmu.Unlock()
	return ctx, func() {
		stop()
		s.cmu.Lock()
		s.advisory.waiting = nil
		s.cmu.Unlock()
		cancel(nil)
	}
}

var (
	errStatementTimeout = errors.New("statement timeout")
	errUserCancel       = errors.New("canceled by the client")
)

// lockServiceError reports a failed lock operation: a cancelled wait as
// PostgreSQL reports it, anything else as the lock service failing.
func (s *session) lockServiceError(err error) *pgError {
	switch {
	case errors.Is(err, errStatementTimeout):
		return &pgError{Severity: severityError, Code: pgerrcode.QueryCanceled, Message: "canceling statement due to statement timeout"}
	case errors.Is(err, errUserCancel), errors.Is(err, context.Canceled):
		return &pgError{Severity: severityError, Code: pgerrcode.QueryCanceled, Message: "canceling statement due to user request"}
	}
	s.log.Warn("advisory lock service failed", zap.Error(err))
	return &pgError{Severity: severityError, Code: pgerrcode.ConnectionFailure, Err: err,
		Message: "the gateway could not reach its advisory lock table on the cluster",
		Hint:    "The gateway's log has the cause; the lock was not taken."}
}

// releaseXactLocksLocked lets go of the session's transaction-scoped advisory
// locks when its transaction ends. It runs on its own goroutine (the
// caller holds session.mu); advisoryState.mu keeps it in order with the
// client's next lock call.
func (s *session) releaseXactLocksLocked() {
	if !s.hasXactLocks {
		return
	}
	s.hasXactLocks = false
	go func() {
		a := &s.advisory
		a.mu.Lock()
		defer a.mu.Unlock()
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		a.locks.ReleaseXact(ctx, s.route.Locks(), func(err error) {
			s.log.Warn("releasing a transaction advisory lock failed", zap.Error(err))
		})
	}()
}

// releaseAllLocks lets go of every advisory lock when the session ends.
func (s *session) releaseAllLocks() {
	a := &s.advisory
	a.mu.Lock()
	defer a.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := a.locks.ReleaseAll(ctx, s.route.Locks()); err != nil {
		s.log.Warn("releasing advisory locks at session end failed; they expire with their lease", zap.Error(err))
	}
}
