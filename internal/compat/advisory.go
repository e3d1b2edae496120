package compat

import (
	"context"
	"encoding/binary"
	"fmt"
	"strconv"
	"strings"

	"github.com/jackc/pgerrcode"

	"github.com/dsqlgate/dsqlgate/pgwire/sqllex"
)

// PostgreSQL's advisory-lock functions for DSQL, which has none: a
// whole-statement call such as SELECT pg_advisory_lock($1) is answered by
// the gateway with PostgreSQL's result shape, and the lock itself is kept
// by a LockManager in a table on the cluster, so it holds across every
// gateway serving that cluster. PostgreSQL's semantics are kept per
// session (SessionLocks): locks are reentrant (counted), session locks last
// until unlocked or the client leaves, transaction locks until the
// transaction ends.

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
	OIDBool = 16
	OIDInt8 = 20
	OIDInt4 = 23
	OIDText = 25
	OIDVoid = 2278
)

// LockCall is a recognised whole-statement advisory-lock call. Immutable.
type LockCall struct {
	fn lockFunc
	// Column is the result column's name.
	Column string
	args   []lockArg // one (bigint key) or two (int4 pair); none for unlock_all
	// Params are the parameter type OIDs the statement reports.
	Params []uint32
}

// lockArg is a constant or a $n parameter.
type lockArg struct {
	param int // 1-based parameter number; 0 for a constant
	value int64
}

// ParseLockCall recognises SELECT pg_advisory_*(args) with constant
// integer or $n arguments (an optional ::int/::bigint cast allowed). oids
// are the parameter types the client declared in Parse, if any.
func ParseLockCall(call sqllex.Call, oids []uint32) (*LockCall, bool) {
	fn, ok := lockFunctions[call.Name]
	if !ok {
		return nil, false
	}
	nargs := len(call.Args)
	if fn.unlockAll && nargs != 0 || !fn.unlockAll && nargs != 1 && nargs != 2 {
		return nil, false
	}
	lc := &LockCall{fn: fn, Column: call.Name}
	if call.Alias != "" {
		lc.Column = call.Alias
	}
	if strings.IndexByte(lc.Column, 0) >= 0 {
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
	inferred := uint32(OIDInt8)
	if len(call.Args) == 2 {
		inferred = OIDInt4
	}
	lc.Params = make([]uint32, max(maxParam, len(oids)))
	for i := range lc.Params {
		lc.Params[i] = inferred
		if i < len(oids) && oids[i] != 0 {
			lc.Params[i] = oids[i]
		}
	}
	return lc, true
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
		if p == "" || strings.TrimLeft(p, "0123456789") != "" {
			return lockArg{}, false
		}
		p = strings.TrimLeft(p, "0") // $01 is $1, as PostgreSQL reads it
		if len(p) > 5 {
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

// ReturnsBool reports whether the function returns a boolean (else void).
func (lc *LockCall) ReturnsBool() bool { return lc.fn.returnsBool }

// Xact reports whether the lock is transaction-scoped.
func (lc *LockCall) Xact() bool { return lc.fn.xact }

// ResultType is the result column's type OID and length.
func (lc *LockCall) ResultType() (oid uint32, size int16) {
	if lc.fn.returnsBool {
		return OIDBool, 1
	}
	return OIDVoid, 4
}

// Values resolves the call's arguments against Bind parameters (nil for a
// simple query) in their formats (Bind's format codes).
func (lc *LockCall) Values(params [][]byte, formats []int16) ([]int64, *Error) {
	out := make([]int64, len(lc.args))
	for i, a := range lc.args {
		if a.param == 0 {
			out[i] = a.value
			continue
		}
		if a.param > len(params) {
			return nil, &Error{Code: pgerrcode.ProtocolViolation,
				Message: fmt.Sprintf("bind message supplies %d parameters, but the statement needs %d", len(params), a.param)}
		}
		raw := params[a.param-1]
		if raw == nil {
			return nil, &Error{Code: pgerrcode.NullValueNotAllowedDataException, Message: "advisory lock key must not be null"}
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
				return nil, &Error{Code: pgerrcode.InvalidBinaryRepresentation, Message: "incorrect binary data format in bind parameter " + strconv.Itoa(a.param)}
			}
			continue
		}
		v, err := strconv.ParseInt(strings.TrimSpace(string(raw)), 10, 64)
		if err != nil {
			return nil, &Error{Code: pgerrcode.InvalidTextRepresentation, Message: fmt.Sprintf("invalid input syntax for type bigint: %q", string(raw))}
		}
		out[i] = v
	}
	if len(out) == 2 {
		for _, v := range out {
			if v < -1<<31 || v > 1<<31-1 {
				return nil, &Error{Code: pgerrcode.NumericValueOutOfRange, Message: "integer out of range"}
			}
		}
	}
	return out, nil
}

// keyOf turns argument values into a lock table key.
func keyOf(vals []int64) LockKey {
	if len(vals) == 2 {
		return PairKey(int32(vals[0]), int32(vals[1]))
	}
	return BigintKey(vals[0])
}

// LockTable is what SessionLocks needs of the lock table (a LockManager).
type LockTable interface {
	TryLock(ctx context.Context, owner string, k LockKey) (bool, error)
	Lock(ctx context.Context, owner string, k LockKey) error
	Unlock(ctx context.Context, owner string, k LockKey) (bool, error)
	UnlockAll(ctx context.Context, owner string) error
}

// lockHold counts a session's holds on one key, as PostgreSQL does.
type lockHold struct {
	session int
	xact    int
}

// SessionLocks is one client session's advisory locks: PostgreSQL's
// per-session semantics over a LockTable, which holds a key's row once
// however often the session takes it. The zero value holds nothing. Not
// safe for concurrent use: the session serialises its calls, so they
// reach the lock table in order.
type SessionLocks struct {
	owner string
	holds map[LockKey]*lockHold
}

// ownerName names the session in the lock table, made on first use.
func (s *SessionLocks) ownerName() string {
	if s.owner == "" {
		s.owner = NewLockOwner()
		s.holds = map[LockKey]*lockHold{}
	}
	return s.owner
}

// Run performs an advisory-lock call with its argument values (see
// Values), inside a transaction block or not (inTx). It returns the
// function's bool result, a warning to send before it (unlocking a lock
// not held), or the lock table's error.
func (s *SessionLocks) Run(ctx context.Context, t LockTable, lc *LockCall, vals []int64, inTx bool) (ok bool, warning *Error, err error) {
	owner := s.ownerName()
	if lc.fn.unlockAll {
		for k, h := range s.holds {
			h.session = 0
			if h.xact == 0 {
				delete(s.holds, k)
				if _, err := t.Unlock(ctx, owner, k); err != nil {
					return false, nil, err
				}
			}
		}
		return true, nil, nil
	}
	k := keyOf(vals)
	h := s.holds[k]
	if lc.fn.unlock {
		if h == nil || h.session == 0 {
			return false, &Error{Code: pgerrcode.Warning, Message: "you don't own a lock of type ExclusiveLock"}, nil
		}
		h.session--
		if h.session+h.xact == 0 {
			delete(s.holds, k)
			if _, err := t.Unlock(ctx, owner, k); err != nil {
				return false, nil, err
			}
		}
		return true, nil, nil
	}

	// Lock. A transaction lock outside a transaction block lasts for the
	// statement's own implicit transaction: taken and let go at once.
	if h == nil {
		var got bool
		if lc.fn.try {
			got, err = t.TryLock(ctx, owner, k)
		} else {
			err = t.Lock(ctx, owner, k)
			got = err == nil
		}
		if err != nil {
			return false, nil, err
		}
		if !got {
			return false, nil, nil
		}
		h = &lockHold{}
		s.holds[k] = h
	}
	switch {
	case !lc.fn.xact:
		h.session++
	case inTx:
		h.xact++
	case h.session == 0:
		delete(s.holds, k)
		if _, err := t.Unlock(ctx, owner, k); err != nil {
			return false, nil, err
		}
	}
	return true, nil, nil
}

// ReleaseXact lets go of the transaction-scoped locks when the session's
// transaction ends, calling failed for each that the table could not
// release (it expires by its lease).
func (s *SessionLocks) ReleaseXact(ctx context.Context, t LockTable, failed func(error)) {
	for k, h := range s.holds {
		if h.xact == 0 {
			continue
		}
		h.xact = 0
		if h.session == 0 {
			delete(s.holds, k)
			if _, err := t.Unlock(ctx, s.owner, k); err != nil {
				failed(err)
			}
		}
	}
}

// ReleaseAll lets go of every lock when the session ends. The session
// holds nothing afterwards, even when the table fails (its rows expire by
// their lease).
func (s *SessionLocks) ReleaseAll(ctx context.Context, t LockTable) error {
	if s.owner == "" || len(s.holds) == 0 {
		return nil
	}
	defer clear(s.holds)
	return t.UnlockAll(ctx, s.owner)
}
