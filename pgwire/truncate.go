package pgwire

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgerrcode"
	"go.uber.org/zap"

	"github.com/dsqlgate/dsqlgate/internal/compat"
)

// This file runs a TRUNCATE outside a transaction block in batches
// (compat.TruncatePlan): on an upstream of the session's own user,
// brought to the session's settings (search_path resolves the names as
// the client's would), it finds each table's primary key, then deletes
// compat.TruncateBatch rows per autocommit DELETE until none is left,
// retrying a batch after a write conflict and halving it after a size
// limit. It is chosen only for a simple Query of the TRUNCATE alone when
// the session is idle (compatRewrite); anywhere else the guarded DELETE
// compat gives runs in the statement's place.
//
// The upstream is the one a statement of the session would get
// (session.acquireCtx): in session mode the one reserved for the session,
// which stays reserved for it afterwards, so the session never needs a
// second connection; otherwise one from the pool, waited for no longer
// than query_wait_timeout. The run ends early at statement_timeout, a
// CancelRequest, the client leaving or the gateway closing: the client
// goroutine watches for the last two while another goroutine runs the
// statements.

// Bounds of a batched TRUNCATE's statements.
const (
	truncateConflictRetries = 5
	truncateConflictPause   = 10 * time.Millisecond
	truncateStatementLimit  = 5 * time.Minute // each statement, when no statement_timeout is set
)

// truncateCall is a TRUNCATE the gateway runs itself.
type truncateCall struct{ plan *compat.TruncatePlan }

func (c *truncateCall) appendParameterDescription(dst []byte) []byte {
	return append(dst, 't', 0, 0, 0, 6, 0, 0)
}

// appendRowDescription: a TRUNCATE returns no rows (it is answered only
// for a simple Query, where nothing is sent in its place).
func (c *truncateCall) appendRowDescription(dst []byte, _ int16) []byte { return dst }

func (c *truncateCall) execute(s *session, _ [][]byte, _ []int16, _ int16, inTx bool) ([]byte, *pgError) {
	if inTx {
		// The session entered a transaction between the decision and now
		// (a BEGIN pipelined ahead of it): the batches cannot run in it.
		return nil, &pgError{Severity: severityError, Code: pgerrcode.ActiveSQLTransaction,
			Message: "TRUNCATE was planned outside a transaction block but reached one",
			Hint:    "Send the TRUNCATE again; inside a transaction block it runs as a single DELETE."}
	}
	ctx, cancel := s.lockContext() // statement_timeout, CancelRequest
	defer cancel()
	ctx, stop := context.WithCancelCause(ctx)
	defer stop(nil)
	type result struct {
		out  []byte
		perr *pgError
	}
	done := make(chan result, 1)
	go func() {
		defer func() {
			if r := recover(); r != nil {
				s.log.Error("truncate panicked", zap.String("panic_type", fmt.Sprintf("%T", r)), zap.Stack("stack"))
				done <- result{perr: &pgError{Severity: severityError, Code: pgerrcode.InternalError,
					Message: "the gateway failed running TRUNCATE"}}
			}
		}()
		out, perr := c.run(s, ctx)
		done <- result{out, perr}
	}()
	// The client goroutine, whose reads nothing else does now, looks now
	// and then whether the client is still there; the run stops when it
	// is not, or when the gateway closes.
	tick := time.NewTicker(clientCheckInterval)
	defer tick.Stop()
	closing := s.srv.stop
	for {
		select {
		case r := <-done:
			return r.out, r.perr
		case <-closing:
			closing = nil
			stop(errGatewayClosing)
		case <-tick.C:
			if ctx.Err() == nil && s.clientGone() {
				stop(errClientLeft)
			}
		}
	}
}

// Why a batched TRUNCATE stopped early, besides statement_timeout and a
// CancelRequest.
var (
	errGatewayClosing = errors.New("the gateway is shutting down")
	errClientLeft     = errors.New("the client left")
)

// run runs the batches: on the goroutine execute starts, until ctx ends.
func (c *truncateCall) run(s *session, ctx context.Context) ([]byte, *pgError) {
	sc, err := s.acquireCtx(ctx)
	if err != nil {
		if cause := context.Cause(ctx); cause != nil {
			return nil, c.stopped(s, cause, 0)
		}
		return nil, errorForClient(err)
	}
	healthy := false
	defer func() { s.truncateDone(sc, healthy) }()
	if err := s.syncUpstream(sc); err != nil {
		return nil, errorForClient(err)
	}
	us, _ := sc.State().(*upstreamState)
	if us == nil {
		return nil, errorForClient(errors.New("upstream state missing"))
	}
	stopDeadline := context.AfterFunc(ctx, func() { sc.Conn().SetReadDeadline(time.Now()) })
	defer stopDeadline()
	run := func(sql string) (tag string, rows []string, perr *pgError, err error) {
		return runTruncateStatement(ctx, sc, us, sql)
	}
	// The keys of every table first: nothing is deleted unless all are
	// known.
	keys := make([][]string, len(c.plan.Tables))
	for i, tbl := range c.plan.Tables {
		_, cols, perr, err := run(compat.TruncateKeysQuery(tbl))
		if err != nil {
			return nil, c.ioError(s, ctx, err, 0)
		}
		if perr != nil {
			healthy = true
			switch perr.Code {
			case pgerrcode.UndefinedTable, pgerrcode.InvalidSchemaName, pgerrcode.InsufficientPrivilege, pgerrcode.SyntaxError,
				pgerrcode.InvalidName, pgerrcode.WrongObjectType:
				return nil, perr // as TRUNCATE of that name would fail
			}
			// The catalog query itself failed: no batches, one guarded
			// DELETE (enough under the limit).
			s.log.Warn("truncate: primary key lookup failed; deleting in one statement", zap.String("table", tbl.Name),
				zap.String("sqlstate", perr.Code), zap.String("error", perr.Message))
			cols = nil
		}
		keys[i] = cols
	}
	var deleted int64
	for i, tbl := range c.plan.Tables {
		if len(keys[i]) == 0 {
			// No primary key (DSQL tables always have one): one guarded
			// DELETE, which fails over the limit.
			_, _, perr, err := c.retrying(s, ctx, run, compat.GuardedDelete(tbl))
			if err != nil {
				return nil, c.ioError(s, ctx, err, deleted)
			}
			if perr != nil {
				healthy = true
				if compat.IsTruncateGuard(perr.Code) {
					e := errorOf(compat.TruncateOverLimit(tbl.Name))
					e.Detail = "It has no primary key to delete in batches by."
					return nil, e
				}
				return nil, perr
			}
			continue
		}
		batch := c.plan.Batch
		for {
			tag, _, perr, err := c.retrying(s, ctx, run, compat.TruncateBatchDelete(tbl, keys[i], batch))
			if err != nil {
				return nil, c.ioError(s, ctx, err, deleted)
			}
			if perr != nil && perr.Code == pgerrcode.ProgramLimitExceeded && batch > 1 {
				batch /= 2 // DSQL's 10 MiB per transaction: smaller batches
				continue
			}
			if perr != nil {
				healthy = true
				return nil, withDeleted(perr, deleted)
			}
			n := rowsOfTag(tag)
			deleted += n
			s.log.Debug("truncate batch", zap.String("table", tbl.Name), zap.Int64("rows", n), zap.Int("batch", batch))
			if n < int64(batch) {
				break
			}
		}
	}
	healthy = true
	return commandComplete("TRUNCATE TABLE"), nil
}

// retrying runs sql, again after a write conflict (bounded, jittered
// doubling pauses): each is an autocommit statement whose failure
// changed nothing.
func (c *truncateCall) retrying(s *session, ctx context.Context, run func(string) (string, []string, *pgError, error), sql string) (string, []string, *pgError, error) {
	pause := truncateConflictPause
	for attempt := 0; ; attempt++ {
		tag, rows, perr, err := run(sql)
		if err != nil || perr == nil || !compat.IsConflictCode(perr.Code) || attempt == truncateConflictRetries {
			return tag, rows, perr, err
		}
		s.log.Debug("truncate batch met a write conflict; retrying", zap.Int("attempt", attempt+1))
		t := time.NewTimer(pause/2 + rand.N(pause/2+1))
		select {
		case <-ctx.Done():
			t.Stop()
			return tag, rows, perr, nil
		case <-t.C:
		}
		pause *= 2
	}
}

// ioError reports a lost upstream, or why the context ended.
func (c *truncateCall) ioError(s *session, ctx context.Context, err error, deleted int64) *pgError {
	if cause := context.Cause(ctx); cause != nil {
		return c.stopped(s, cause, deleted)
	}
	return withDeleted(errorForClient(err), deleted)
}

// stopped reports a run that ended early for cause, after deleting
// deleted rows.
func (c *truncateCall) stopped(s *session, cause error, deleted int64) *pgError {
	var e *pgError
	switch {
	case errors.Is(cause, errGatewayClosing):
		e = &pgError{Severity: severityError, Code: pgerrcode.AdminShutdown, Message: "TRUNCATE stopped: the gateway is shutting down"}
	case errors.Is(cause, errClientLeft):
		// Nobody reads it; it ends the statement.
		e = &pgError{Severity: severityError, Code: pgerrcode.QueryCanceled, Message: "TRUNCATE stopped: the client left"}
	default:
		e = s.lockServiceError(cause) // statement timeout, CancelRequest
	}
	return withDeleted(e, deleted)
}

// withDeleted tells, in e's detail, how many rows the batches deleted
// before e.
func withDeleted(e *pgError, deleted int64) *pgError {
	if deleted > 0 {
		e.Detail = strings.TrimSpace(e.Detail + fmt.Sprintf(
			" TRUNCATE ran as batched DELETEs outside a transaction; %d rows were deleted before this failure.", deleted))
	}
	return e
}

// truncateDone gives back the upstream a batched TRUNCATE ran on: a
// session-mode session keeps it reserved (as after any statement), a
// transaction-mode one returns it to the pool; one in an unknown state
// (healthy false) is closed.
func (s *session) truncateDone(sc Upstream, healthy bool) {
	if !healthy {
		s.pool.Discard(sc)
		return
	}
	s.mu.Lock()
	if !s.session {
		s.prev = sc
		s.mu.Unlock()
		s.pool.Release(sc)
		return
	}
	if !s.closing && s.sc == nil && s.reserved == nil {
		s.reserved, s.reservedCancel = sc, cancelState{}
		s.noteServerLocked()
		if s.listening {
			s.startWatchLocked(sc, sc.State().(*upstreamState))
		}
		s.mu.Unlock()
		return
	}
	s.mu.Unlock()
	s.releaseReset(sc)
}

// rowsOfTag is the row count at the end of a command tag ("DELETE 12").
func rowsOfTag(tag string) int64 {
	i := strings.LastIndexByte(tag, ' ')
	n, _ := strconv.ParseInt(tag[i+1:], 10, 64)
	return n
}

// runTruncateStatement sends one simple query on sc and reads its replies
// up to ReadyForQuery: the command tag, the first column of each row, and
// the first ErrorResponse.
func runTruncateStatement(ctx context.Context, sc Upstream, us *upstreamState, sql string) (tag string, rows []string, failed *pgError, err error) {
	// A simple Query destroys the upstream's unnamed statement: whoever
	// owned it (this session, or another that had the upstream before)
	// must parse it again.
	us.unnamedOwner = nil
	q, start := beginMessage(nil, 'Q')
	q = appendCString(q, sql)
	q = finishMessage(q, start)
	if _, err := sc.Writer().Write(q); err != nil {
		return "", nil, nil, err
	}
	if err := sc.Writer().Flush(); err != nil {
		return "", nil, nil, err
	}
	deadline := time.Now().Add(truncateStatementLimit)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	if ctx.Err() != nil {
		deadline = time.Now()
	}
	sc.Conn().SetReadDeadline(deadline)
	defer sc.Conn().SetReadDeadline(time.Time{})
	for {
		msg, err := us.fr.next()
		if err != nil {
			return "", nil, nil, err
		}
		switch msg[0] {
		case 'C':
			tag, _, _ = readCString(body(msg))
		case 'D':
			b := body(msg)
			if len(b) >= 6 {
				n := int(int32(uint32(b[2])<<24 | uint32(b[3])<<16 | uint32(b[4])<<8 | uint32(b[5])))
				if n >= 0 && 6+n <= len(b) {
					rows = append(rows, string(b[6:6+n]))
				}
			}
		case 'E':
			if failed == nil {
				er, err := decodeError(msg)
				if err != nil {
					return "", nil, nil, err
				}
				if er.Severity == severityFatal || er.Severity == "PANIC" {
					return "", nil, nil, fmt.Errorf("upstream %s: %s", er.Severity, er.Message)
				}
				failed = &pgError{Severity: severityError, Code: er.Code, Message: er.Message, Detail: er.Detail, Hint: er.Hint}
			}
		case 'S':
			name, rest, ok := readCString(body(msg))
			value, _, ok2 := readCString(rest)
			if ok && ok2 && us.params[name] != value {
				us.params[name] = value
				us.paramsVer++
			}
		case 'Z':
			return tag, rows, failed, nil
		}
	}
}
