package pgwire

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/dsqlgate/dsqlgate/pgwire/sqllex"
)

// This file answers PostgreSQL's advisory-lock functions for DSQL, which
// has none: a whole-statement call such as SELECT pg_advisory_lock($1) is
// answered by the gateway with PostgreSQL's result shape, and the lock
// itself is kept by authbridge's LockManager in a table on the cluster, so
// it holds across every gateway serving that cluster. PostgreSQL's
// semantics are kept per session: locks are reentrant (counted), session
// locks last until unlocked or the client leaves, transaction locks until
// the transaction ends.

// lockFunc describes one advisory-lock function.
type lockFunc struct {
	returnsBool bool
	xact        bool // transaction-scoped
	try         bool // does not wait
	unlock      bool
	unlockAll   bool
}

var lockFunctions = map[string]lockFunc{
	"pg_advisory_lock":          {},
	"pg_try_advisory_lock":      {try: true, returnsBool: true},
	"pg_advisory_xact_lock":     {xact: true},
	"pg_try_advisory_xact_lock": {xact: true, try: true, returnsBool: true},
	"pg_advisory_unlock":        {unlock: true, returnsBool: true},
	"pg_advisory_unlock_all":    {unlockAll: true},
}

func isLockFunction(name string) bool {
	return strings.HasPrefix(name, "pg_advisory_") || strings.HasPrefix(name, "pg_try_advisory_")
}

// Type OIDs of the results and parameters.
const (
	oidBool = 16
	oidInt8 = 20
	oidInt4 = 23
	oidVoid = 2278
)

// lockCall is a recognised whole-statement call. Immutable.
type lockCall struct {
	fn     lockFunc
	column string    // the result column's name
	args   []lockArg // one (bigint key) or two (int4 pair); none for unlock_all
	params []uint32  // parameter type OIDs the statement reports
}

// lockArg is a constant or a $n parameter.
type lockArg struct {
	param int // 1-based parameter number; 0 for a constant
	value int64
}

// parseLockCall recognises SELECT pg_advisory_*(args) with constant
// integer or $n arguments (an optional ::int/::bigint cast allowed). oids
// are the parameter types the client declared in Parse, if any.
func parseLockCall(call sqllex.Call, oids []uint32) (*lockCall, bool) {
	fn, ok := lockFunctions[call.Name]
	if !ok {
		return nil, false
	}
	want := []int{1, 2}
	if fn.unlockAll {
		want = []int{0}
	}
	if !containsInt(want, len(call.Args)) {
		return nil, false
	}
	lc := &lockCall{fn: fn, column: call.Name}
	if call.Alias != "" {
		lc.column = call.Alias
	}
	if strings.IndexByte(lc.column, 0) >= 0 {
		// A column name is a C string in RowDescription. No statement
		// off the wire holds a NUL; refuse rather than describe a
		// column the client would misread.
		return nil, false
	}
	maxParam := 0
	for _, a := range call.Args {
		arg, ok := parseLockArg(a)
		if !ok {
			return nil, false
		}
		maxParam = max(maxParam, arg.param)
		lc.args = append(lc.args, arg)
	}
	// Parameter types: what the client declared, else what PostgreSQL
	// infers from the function's signature.
	inferred := uint32(oidInt8)
	if len(call.Args) == 2 {
		inferred = oidInt4
	}
	lc.params = make([]uint32, max(maxParam, len(oids)))
	for i := range lc.params {
		lc.params[i] = inferred
		if i < len(oids) && oids[i] != 0 {
			lc.params[i] = oids[i]
		}
	}
	return lc, true
}

func containsInt(xs []int, x int) bool {
	for _, v := range xs {
		if v == x {
			return true
		}
	}
	return false
}

// parseLockArg reads "123", "-5", "'123'", "123::bigint", "$1",
// "$1::int8" (pgx's simple protocol sends parameters as quoted strings).
// A parameter reference is recognised only unquoted and with ASCII
// digits: '$1' is a string, $+1 a syntax error.
func parseLockArg(text string) (lockArg, bool) {
	text, cast, _ := strings.Cut(text, "::")
	text = strings.TrimSpace(text)
	switch strings.ToLower(strings.TrimSpace(cast)) {
	case "", "bigint", "int8", "int", "integer", "int4", "pg_catalog.int8", "pg_catalog.int4":
	default:
		return lockArg{}, false
	}
	if str, ok := stringConstant(text); ok {
		text = strings.TrimSpace(str)
		if strings.HasPrefix(text, "$") {
			return lockArg{}, false // a string that looks like a parameter is text
		}
	} else if p, ok := strings.CutPrefix(text, "$"); ok {
		if p == "" || len(p) > 5 || strings.TrimLeft(p, "0123456789") != "" {
			return lockArg{}, false
		}
		n, _ := strconv.Atoi(p)
		if n < 1 || n > 65535 {
			return lockArg{}, false
		}
		return lockArg{param: n}, true
	}
	v, err := strconv.ParseInt(text, 10, 64)
	if err != nil {
		return lockArg{}, false
	}
	return lockArg{value: v}, true
}

// resultType is the result column's type OID and length.
func (lc *lockCall) resultType() (oid uint32, size int16) {
	if lc.fn.returnsBool {
		return oidBool, 1
	}
	return oidVoid, 4
}

// appendRowDescription describes the one result column in format.
func (lc *lockCall) appendRowDescription(dst []byte, format int16) []byte {
	oid, size := lc.resultType()
	dst, start := beginMessage(dst, 'T')
	dst = appendInt16(dst, 1)
	dst = appendCString(dst, lc.column)
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
	dst = appendInt16(dst, int16(len(lc.params)))
	for _, o := range lc.params {
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
	case !lc.fn.returnsBool:
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

// values resolves the call's arguments against Bind parameters (nil for a
// simple query).
func (lc *lockCall) values(params [][]byte, formats []int16) ([]int64, *pgError) {
	out := make([]int64, len(lc.args))
	for i, a := range lc.args {
		if a.param == 0 {
			out[i] = a.value
			continue
		}
		if a.param > len(params) {
			return nil, &pgError{Severity: severityError, Code: codeProtocolViolation,
				Message: fmt.Sprintf("bind message supplies %d parameters, but the statement needs %d", len(params), a.param)}
		}
		raw := params[a.param-1]
		if raw == nil {
			return nil, &pgError{Severity: severityError, Code: "22004", Message: "advisory lock key must not be null"}
		}
		format := int16(0)
		switch {
		case len(formats) == 1:
			format = formats[0]
		case a.param-1 < len(formats):
			format = formats[a.param-1]
		}
		if format == 1 {
			switch len(raw) {
			case 8:
				out[i] = int64(binary.BigEndian.Uint64(raw))
			case 4:
				out[i] = int64(int32(binary.BigEndian.Uint32(raw)))
			case 2:
				out[i] = int64(int16(binary.BigEndian.Uint16(raw)))
			default:
				return nil, &pgError{Severity: severityError, Code: "22P03", Message: "incorrect binary data format in bind parameter " + strconv.Itoa(a.param)}
			}
			continue
		}
		v, err := strconv.ParseInt(strings.TrimSpace(string(raw)), 10, 64)
		if err != nil {
			return nil, &pgError{Severity: severityError, Code: "22P02", Message: fmt.Sprintf("invalid input syntax for type bigint: %q", string(raw))}
		}
		out[i] = v
	}
	if len(out) == 2 {
		for _, v := range out {
			if v < -1<<31 || v > 1<<31-1 {
				return nil, &pgError{Severity: severityError, Code: "22003", Message: "integer out of range"}
			}
		}
	}
	return out, nil
}

// lockKey turns argument values into a lock table key.
func lockKey(vals []int64) LockKey {
	if len(vals) == 2 {
		return LockKey{Pair: true, Key: int64(int32(vals[0]))<<32 | int64(uint32(vals[1]))}
	}
	return LockKey{Key: vals[0]}
}

// advisoryHold counts a session's holds on one key, as PostgreSQL does.
type advisoryHold struct {
	session int
	xact    int
}

// advisoryState is a session's advisory locks. Its own mutex serialises
// every lock operation of the session (the client goroutine's, and the
// release of transaction locks at transaction end), so they reach the lock
// service in order. Lock order: advisoryState.mu, then session.cmu (a lock
// wait registers its cancel there); it is never held together with
// session.mu.
type advisoryState struct {
	mu      sync.Mutex
	owner   string
	holds   map[LockKey]*advisoryHold
	waiting context.CancelFunc // cancels the current lock wait; guarded by session.cmu
}

// execute runs the call for the client goroutine and returns its reply
// (a WARNING first when unlocking a lock not held, then the DataRow and
// CommandComplete).
func (lc *lockCall) execute(s *session, params [][]byte, paramFormats []int16, resultFormat int16, inTx bool) ([]byte, *pgError) {
	vals, perr := lc.values(params, paramFormats)
	if perr != nil {
		return nil, perr
	}
	ok, warning, perr := s.runLockCall(lc, vals, inTx)
	if perr != nil {
		return nil, perr
	}
	var out []byte
	if warning != nil {
		out = appendErrorResponse(out, warning)
	}
	if ok && lc.fn.xact && inTx {
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
	mgr := s.route.Locks()
	a := &s.advisory
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.owner == "" {
		a.owner = mgr.NewOwner()
		a.holds = map[LockKey]*advisoryHold{}
	}
	ctx, cancel := s.lockContext()
	defer cancel()
	fail := func(err error) *pgError {
		if cause := context.Cause(ctx); cause != nil {
			err = cause // why the wait ended: statement timeout or cancel
		}
		return s.lockServiceError(err)
	}

	if lc.fn.unlockAll {
		for k, h := range a.holds {
			h.session = 0
			if h.xact == 0 {
				delete(a.holds, k)
				if _, err := mgr.Unlock(ctx, a.owner, k); err != nil {
					return false, nil, fail(err)
				}
			}
		}
		return true, nil, nil
	}
	k := lockKey(vals)
	h := a.holds[k]
	if lc.fn.unlock {
		if h == nil || h.session == 0 {
			return false, &pgError{Severity: "WARNING", Code: "01000", Message: "you don't own a lock of type ExclusiveLock"}, nil
		}
		h.session--
		if h.session+h.xact == 0 {
			delete(a.holds, k)
			if _, err := mgr.Unlock(ctx, a.owner, k); err != nil {
				return false, nil, fail(err)
			}
		}
		return true, nil, nil
	}

	// Lock. A transaction lock outside a transaction block lasts for the
	// statement's own implicit transaction: taken and let go at once.
	if h == nil {
		var got bool
		var err error
		if lc.fn.try {
			got, err = mgr.TryLock(ctx, a.owner, k)
		} else {
			err = mgr.Lock(ctx, a.owner, k)
			got = err == nil
		}
		if err != nil {
			return false, nil, fail(err)
		}
		if !got {
			return false, nil, nil
		}
		h = &advisoryHold{}
		a.holds[k] = h
	}
	switch {
	case !lc.fn.xact:
		h.session++
	case inTx:
		h.xact++
	case h.session == 0:
		delete(a.holds, k)
		if _, err := mgr.Unlock(ctx, a.owner, k); err != nil {
			return false, nil, fail(err)
		}
	}
	return true, nil, nil
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
		return &pgError{Severity: severityError, Code: "57014", Message: "canceling statement due to statement timeout"}
	case errors.Is(err, errUserCancel), errors.Is(err, context.Canceled):
		return &pgError{Severity: severityError, Code: "57014", Message: "canceling statement due to user request"}
	}
	s.log.Warn("advisory lock service failed", zap.Error(err))
	return &pgError{Severity: severityError, Code: codeConnectionFailure, Err: err,
		Message: "the gateway could not reach its advisory lock table on the cluster",
		Hint:    "The gateway's log has the cause; the lock was not taken."}
}

// releaseXactLocks lets go of the session's transaction-scoped advisory
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
		for k, h := range a.holds {
			if h.xact == 0 {
				continue
			}
			h.xact = 0
			if h.session == 0 {
				delete(a.holds, k)
				if _, err := s.route.Locks().Unlock(ctx, a.owner, k); err != nil {
					s.log.Warn("releasing a transaction advisory lock failed", zap.Error(err))
				}
			}
		}
	}()
}

// releaseAllLocks lets go of every advisory lock when the session ends.
func (s *session) releaseAllLocks() {
	a := &s.advisory
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.owner == "" || len(a.holds) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := s.route.Locks().UnlockAll(ctx, a.owner); err != nil {
		s.log.Warn("releasing advisory locks at session end failed; they expire with their lease", zap.Error(err))
	}
	clear(a.holds)
}
