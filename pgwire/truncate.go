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
// (compat.TruncatePlan): on an upstream of the session's own user taken
// from the pool and brought to the session's settings (search_path
// resolves the names as the client's would), it finds each table's
// primary key, then deletes compat.TruncateBatch rows per autocommit
// DELETE until none is left, retrying a batch after a write conflict and
// halving it after a size limit. It is chosen only for a simple Query of
// the TRUNCATE alone when the session is idle (compatRewrite); anywhere
// else the guarded DELETE compat gives runs in the statement's place.

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
	sc, err := s.pool.Acquire(ctx, s.user, nil)
	if err != nil {
		if cause := context.Cause(ctx); cause != nil {
			return nil, s.lockServiceError(cause)
		}
		return nil, errorForClient(err)
	}
	healthy := false
	defer func() {
		if healthy {
			s.pool.Release(sc)
		} else {
			s.pool.Discard(sc)
		}
	}()
	if err := s.syncUpstream(sc); err != nil {
		return nil, errorForClient(err)
	}
	us, _ := sc.State().(*upstreamState)
	if us == nil {
		return nil, errorForClient(errors.New("upstream state missing"))
	}
	stop := context.AfterFunc(ctx, func() { sc.Conn().SetReadDeadline(time.Now()) })
	defer stop()
	run := func(sql string) (tag string, rows []string, perr *pgError, err error) {
		return runTruncateStatement(ctx, sc, us, sql)
	}
	// The keys of every table first: nothing is deleted unless all are
	// known.
	keys := make([][]string, len(c.plan.Tables))
	for i, tbl := range c.plan.Tables {
		_, cols, perr, err := run(compat.TruncateKeysQuery(tbl))
		if err != nil {
			return nil, c.ioError(s, ctx, err)
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
				return nil, c.ioError(s, ctx, err)
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
				return nil, c.ioError(s, ctx, err)
			}
			if perr != nil && perr.Code == pgerrcode.ProgramLimitExceeded && batch > 1 {
				batch /= 2 // DSQL's 10 MiB per transaction: smaller batches
				continue
			}
			if perr != nil {
				healthy = true
				if deleted > 0 {
					perr.Detail = strings.TrimSpace(perr.Detail + fmt.Sprintf(
						" TRUNCATE ran as batched DELETEs outside a transaction; %d rows were deleted before this failure.", deleted))
				}
				return nil, perr
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
		if err != nil || perr == nil || !isConflictCode(perr.Code) || attempt == truncateConflictRetries {
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
func (c *truncateCall) ioError(s *session, ctx context.Context, err error) *pgError {
	if cause := context.Cause(ctx); cause != nil {
		return s.lockServiceError(cause)
	}
	return errorForClient(err)
}

func isConflictCode(code string) bool {
	switch code {
	case pgerrcode.SerializationFailure, compat.DSQLOCC, compat.DSQLSchemaOCC, pgerrcode.DeadlockDetected:
		return true
	}
	return false
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
