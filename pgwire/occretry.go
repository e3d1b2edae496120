package pgwire

import (
	"errors"
	"math/rand/v2"
	"time"

	"go.uber.org/zap"

	"github.com/dsqlgate/dsqlgate/config"
	"github.com/dsqlgate/dsqlgate/internal/compat"
	"github.com/dsqlgate/dsqlgate/pgwire/sqllex"
	"github.com/jackc/pgerrcode"
)

// This file is the retry of units of work that lost an optimistic-
// concurrency conflict (SQLSTATE 40001 with OC000/OC001 on DSQL, or a bare
// OC000/OC001), where no client can tell that a first attempt failed:
//
//   - the engine decides, when a unit ends (its Sync or Query is queued),
//     whether the unit is one that can run again unseen (occVerdictLocked):
//     one implicit transaction (a simple Query, or a batch up to Sync, with
//     no transaction control) or one whole BEGIN ... COMMIT sent as one
//     Query or one batch; begun with the client idle, with no earlier unit
//     still owed, nothing the gateway answers itself, no Flush, no COPY, no
//     statement that changes what outlives a rollback (DEALLOCATE, DISCARD,
//     SQL PREPARE, cursors, LISTEN, savepoints, two-phase commit), none
//     that can commit part of its work before it fails (CALL, DO,
//     CONCURRENTLY: occCommitsMidway);
//   - the session records the bytes it writes upstream for the unit being
//     sent (sendUpstream; the state sync of an attach is not recorded) and,
//     for an eligible unit, arms its retrier with them, unless a server
//     goroutine reads the unit's replies (a unit larger than what is free
//     of the upstream writer's 16 KiB buffer starts one) or the session
//     listens (a notification may come at any time);
//   - the client goroutine, reading the unit's replies inline (no server
//     goroutine: nothing else writes or reads the upstream), holds them
//     back from the engine (occNext) until the unit's ReadyForQuery. If
//     they hold an OCC error and the route's attempts and budget allow, it
//     rolls back a failed transaction block, waits a jittered backoff and
//     writes the recorded bytes again (a Close of each named statement the
//     unit parses first), and holds the new attempt's replies; otherwise it
//     hands the held replies to the engine as if they had just arrived.
//     ParameterStatus and notifications (and notices, but for those of
//     its own ROLLBACK) arriving between attempts are kept aside and
//     handed out before the held replies;
//   - a client's CancelRequest is recorded for the armed unit
//     (session.cancel) as well as forwarded: between attempts the upstream
//     is idle and the cancel would do nothing there, so no further attempt
//     starts and the client gets the last attempt's failure.
//
// The engine never sees a failed attempt: its reply queue and state stay
// as built for the unit. Anything unexpected (a hold too large, COPY, a
// read error) releases what is held and the relay goes on as without the
// retry.

// maxOCCRecord is the most bytes of a unit that is retryable. It matches
// the upstream writer's buffer (16 KiB on a real upstream): a unit that
// does not fit in what is free of that buffer has its replies read by a
// server goroutine (sendUpstream), and such a unit is never armed.
const maxOCCRecord = 16 << 10

// maxOCCHold is the most bytes of replies held back (a variable for the
// tests).
var maxOCCHold = 1 << 20

// occBackoffHook, when set by a test, runs as a retry's backoff starts.
var occBackoffHook func()

// occUnit is what the engine tracks of the unit being sent for the retry:
// reset at the client's next message after a unit's end.
type occUnit struct {
	// tainted: something in the unit rules a retry out.
	tainted bool
	// The statements executed in an extended-protocol unit, as far as the
	// rule needs them: the first and last kinds and how many are
	// transaction control.
	execs       int
	first, last sqllex.Kind
	txControl   int
	// verdict is the unit's eligibility, decided when its end was queued.
	verdict bool
	// ended: the client's Query or Sync ending a unit was handled; the
	// next client message starts a new unit.
	ended bool
}

// occTaint rules the retry of the unit being sent out.
func (e *engine) occTaint() { e.occ.tainted = true }

// occNoteExecute records an Execute of statement st (nil: a portal the
// engine does not know).
func (e *engine) occNoteExecute(st *preparedStmt) {
	if st == nil || !occRetryableStmt(st.kind, st.rw) || occCommitsMidway(sqllex.OneStmt(st.query), st.kind) {
		e.occ.tainted = true
		return
	}
	if e.occ.execs == 0 {
		e.occ.first = st.kind
	}
	e.occ.last = st.kind
	e.occ.execs++
	if occTxControl(st.kind) {
		e.occ.txControl++
	}
}

// occRetryableStmt reports whether a statement of kind k (rewritten as rw)
// may run twice when its transaction's first attempt rolled back: nothing
// it does outlives the rollback, and the gateway answers none of it.
func occRetryableStmt(k sqllex.Kind, rw *rewrite) bool {
	if rw != nil && (rw.local != nil || rw.err != nil || rw.dealloc != nil || rw.sqlPrepare != "" || rw.sqlDeallocate != "" || rw.unlistenAll) {
		return false
	}
	switch k {
	case sqllex.Savepoint, sqllex.TwoPhase, sqllex.Discard, sqllex.Prepare, sqllex.Execute, sqllex.Deallocate,
		sqllex.Listen, sqllex.Notify, sqllex.Unlisten, sqllex.Copy, sqllex.Declare, sqllex.Fetch, sqllex.Move,
		sqllex.Close:
		return false
	}
	return true
}

// occCommitsMidway reports whether statement st, of kind k, can commit part
// of its work before it ends: a CALL of a procedure or a DO block (which
// may COMMIT inside), or a CONCURRENTLY index build or drop (which commits
// as it goes). A unit with one is never retried: an OCC failure after such
// a commit would run the committed part again.
func occCommitsMidway(st sqllex.Stmt, k sqllex.Kind) bool {
	if k != sqllex.Other {
		return false
	}
	return st.StartsWith("call") || st.StartsWith("do") || st.HasKeywords("concurrently")
}

func occTxControl(k sqllex.Kind) bool {
	return k == sqllex.Begin || k == sqllex.Commit || k == sqllex.Rollback
}

// occShape reports whether statements with these counts and ends are one
// unit the retry may run again: no transaction control (one implicit
// transaction), or BEGIN first, COMMIT last and no other transaction
// control (nothing after the COMMIT, which would run again a transaction
// that committed).
func occShape(n, txControl int, first, last sqllex.Kind) bool {
	switch {
	case n == 0:
		return true
	case txControl == 0:
		return true
	case txControl == 2 && n >= 2 && first == sqllex.Begin && last == sqllex.Commit:
		return true
	}
	return false
}

// occVerdictLocked decides, as the end r of the unit being sent is queued,
// whether that unit may be retried.
func (e *engine) occVerdictLocked(r reply) bool {
	if e.occ.tainted || r.unitStart != 'I' || r.unitFlags&unitStatements != 0 {
		return false
	}
	switch r.kind {
	case rQuery:
		if r.query == nil || len(r.query.stmts) == 0 {
			return false // a FunctionCall
		}
		txc := 0
		for i := range r.query.stmts {
			st := &r.query.stmts[i]
			if !occRetryableStmt(st.kind, st.rw) || st.commitsMidway {
				return false
			}
			if occTxControl(st.kind) {
				txc++
			}
		}
		stmts := r.query.stmts
		if !occShape(len(stmts), txc, stmts[0].kind, stmts[len(stmts)-1].kind) {
			return false
		}
	case rSync:
		if !occShape(e.occ.execs, e.occ.txControl, e.occ.first, e.occ.last) {
			return false
		}
	default:
		return false
	}
	// Alone in flight: no earlier unit's replies are still owed (the
	// entry just queued is the only end of a unit in the queue).
	for i := range e.q.len() - 1 {
		if e.q.at(i).kind.endsUnit() {
			return false
		}
	}
	return true
}

// occAloneLocked reports, when the armed unit's ReadyForQuery has been
// read (not yet handed to the engine), whether the unit is still the only
// one in flight: nothing was queued (so nothing written) behind it.
func (e *engine) occAloneLocked() bool {
	if e.q.len() == 0 || !e.q.last().kind.endsUnit() || e.unitOpen || e.inBatch || e.copyIn || e.timedOut {
		return false
	}
	for i := range e.q.len() - 1 {
		if e.q.at(i).kind.endsUnit() {
			return false
		}
	}
	return true
}

// occPhase is where the retrier is in a unit's replies.
type occPhase uint8

const (
	occIdle      occPhase = iota // nothing armed: replies go straight to the engine
	occHolding                   // holding the replies of an attempt
	occRollback                  // swallowing the replies of the ROLLBACK of a failed attempt (asynchronous messages kept)
	occCloses                    // swallowing the CloseCompletes sent before a replay (asynchronous messages kept)
	occReleasing                 // handing the held replies out, then the error in err
)

// occRetrier is a session's retry of OCC failures. Client goroutine only.
type occRetrier struct {
	// The record of the unit being sent: what sendUpstream wrote to recSC
	// since the last unit ended (recOver: more than maxOCCRecord, or to
	// another upstream).
	rec     []byte
	recSC   Upstream
	recOver bool

	phase  occPhase
	sc     Upstream // the upstream the armed unit runs on
	gen    uint64   // its attachment
	unit   uint64   // the armed unit, counted as engine.unitsSent counts
	replay []byte   // the armed unit's bytes
	closes []string // the named statements it parses
	// bindsUnnamed: the unit binds the unnamed statement without parsing
	// it, so no ROLLBACK (a simple Query, which destroys the unnamed
	// statement) may go before its replay.
	bindsUnnamed bool
	cfg          config.OCCRetry
	attempts     int       // attempts made
	firstFail    time.Time // the first attempt's failure
	swallow      int       // CloseCompletes still to swallow

	// The replies held: held[ends[i-1]:ends[i]] is message i; next is
	// the next one to hand out while releasing, then err.
	held []byte
	ends []int
	next int
	err  error
	// keep holds, as held does, the asynchronous messages (ParameterStatus,
	// NoticeResponse, NotificationResponse) that arrived between two
	// attempts: they belong to no attempt, so they are not dropped with a
	// failed one, and are handed out before the held replies.
	keep     []byte
	keepEnds []int
	// rolledBack: the gateway's ROLLBACK ended the failed block whose
	// replies (ReadyForQuery 'E') are held.
	rolledBack bool

	// seq counts the units armed in the session; the armed unit's number
	// is in session.occArmed, for a client's cancel to be recorded
	// against (session.cancel).
	seq uint64

	retries uint64 // attempts re-sent in the session, for its end log

	// end is the unit end occEndLocked saw, for occUnitEnded.
	end occEnd

	// route config lookup cache
	confFor *config.Config
	conf    config.OCCRetry
}

// record appends what sendUpstream writes to sc.
func (o *occRetrier) record(sc Upstream, out []byte) {
	if o.recOver {
		return
	}
	if o.recSC == nil {
		o.recSC = sc
	}
	if o.recSC != sc || len(o.rec)+len(out) > maxOCCRecord {
		o.recOver = true
		return
	}
	o.rec = append(o.rec, out...)
}

// resetRecord starts the record of the next unit.
func (o *occRetrier) resetRecord() {
	o.rec, o.recSC, o.recOver = o.rec[:0], nil, false
	if cap(o.rec) > 16<<10 {
		o.rec = nil
	}
}

// disarm drops the armed unit and anything held (which must have been
// handed out).
func (o *occRetrier) disarm() {
	o.phase = occIdle
	o.sc = nil
	o.replay = o.replay[:0]
	if cap(o.replay) > 16<<10 {
		o.replay = nil
	}
	o.closes = o.closes[:0]
	o.held, o.ends, o.next, o.err = o.held[:0], o.ends[:0], 0, nil
	if cap(o.held) > 16<<10 {
		o.held = nil
	}
	o.keep, o.keepEnds, o.rolledBack = nil, nil, false
}

// keepAside sets an asynchronous message that arrived between attempts
// aside, to be handed out with the replies (false: too much is held).
func (o *occRetrier) keepAside(msg []byte) bool {
	o.keep = append(o.keep, msg...)
	o.keepEnds = append(o.keepEnds, len(o.keep))
	return len(o.keep)+len(o.held) <= maxOCCHold
}

// midway reports that the upstream's replies and what the engine was
// handed are out of step: replies are held back, still to be handed out,
// or a retry is under way.
func (o *occRetrier) midway() bool {
	switch o.phase {
	case occHolding:
		return len(o.ends) > 0 || len(o.keepEnds) > 0
	case occReleasing:
		return o.next < len(o.ends)
	case occRollback, occCloses:
		return true
	}
	return false
}

// occConfig is the route's OCC retry configuration in force (reloads
// apply to the next unit).
func (s *session) occConfig() config.OCCRetry {
	cfg := s.srv.currentConfig()
	if cfg != s.retry.confFor {
		s.retry.confFor, s.retry.conf = cfg, config.OCCRetry{}
		name := s.route.Name()
		for i := range cfg.Routes {
			if cfg.Routes[i].Database == name {
				s.retry.conf = cfg.Routes[i].OCCRetry
				break
			}
		}
	}
	return s.retry.conf
}

// occRecording reports whether the session records its units for a retry.
func (s *session) occRecording() bool {
	c := s.occConfig()
	return c.Enabled && c.MaxAttempts > 1
}

// occUnitEnded runs on the client goroutine, without mu, after what a
// client Query or Sync (or FunctionCall) built was written upstream: it
// arms the retrier for the unit just sent if occEndLocked found it
// eligible, and starts the next record.
func (s *session) occUnitEnded() {
	o := &s.retry
	eligible, sc, unit, gen := o.end.eligible, o.end.sc, o.end.unit, o.end.gen
	o.end = occEnd{}
	// Whatever was armed before is over: its replies were handed out (the
	// relay reads a unit's replies to its end before the client goroutine
	// handles another message), a server goroutine read them, or a unit
	// pipelined behind it means it is not to be retried. Replies held
	// back mid-way (which should not happen) cannot reach the engine in
	// order any more: that upstream is given up.
	if o.midway() {
		s.log.Warn("OCC retry interrupted with replies held; closing the upstream")
		o.sc.Conn().Close()
	}
	o.disarm()
	defer o.resetRecord()
	if !eligible || o.phase != occIdle || sc == nil || o.recOver || o.recSC != sc || len(o.rec) == 0 {
		return
	}
	cfg := s.occConfig()
	if !cfg.Enabled || cfg.MaxAttempts < 2 {
		return
	}
	closes, bindsUnnamed, ok := scanOCCRecord(o.rec, o.closes[:0])
	if !ok {
		return
	}
	// A server goroutine started for this unit (sendUpstream's write did
	// not fit the upstream's buffer) reads its replies: nothing can be
	// held. A session that listens gets notifications at any time, which
	// no attempt may swallow or reorder.
	s.mu.Lock()
	readByOther := s.done != nil || s.sc != sc || s.listening
	s.mu.Unlock()
	if readByOther {
		return
	}
	o.seq++
	s.cmu.Lock()
	s.occArmed = o.seq
	s.cmu.Unlock()
	o.replay = append(o.replay[:0], o.rec...)
	o.closes, o.bindsUnnamed = closes, bindsUnnamed
	o.phase, o.sc, o.gen, o.unit, o.cfg = occHolding, sc, gen, unit, cfg
	o.attempts, o.firstFail, o.swallow = 1, time.Time{}, 0
}

// scanOCCRecord checks a unit's bytes for what a replay must not repeat
// and lists the named statements it parses (appended to closes).
func scanOCCRecord(rec []byte, closes []string) (_ []string, bindsUnnamed, ok bool) {
	parsedUnnamed := false
	for len(rec) >= 5 {
		n := int(uint32(rec[1])<<24|uint32(rec[2])<<16|uint32(rec[3])<<8|uint32(rec[4])) + 1
		if n < 5 || n > len(rec) {
			return nil, false, false
		}
		msg := rec[:n]
		rec = rec[n:]
		switch msg[0] {
		case 'P':
			name, _, ok := readCString(body(msg))
			if !ok {
				return nil, false, false
			}
			if name == "" {
				parsedUnnamed = true
			} else if !containsString(closes, name) {
				closes = append(closes, name)
			}
		case 'B':
			_, rest, ok := readCString(body(msg))
			if !ok {
				return nil, false, false
			}
			stmt, _, ok := readCString(rest)
			if !ok {
				return nil, false, false
			}
			if stmt == "" && !parsedUnnamed {
				bindsUnnamed = true
			}
		case 'Q':
			parsedUnnamed = false // a simple Query destroys the unnamed statement
		case 'D', 'E', 'C', 'S':
		default:
			return nil, false, false // Flush, COPY data, FunctionCall, ...
		}
	}
	return closes, bindsUnnamed, len(rec) == 0
}

// occArmCheckLocked runs when the client goroutine starts reading inline: an
// armed unit whose replies someone else read (a server goroutine took
// over), or on another attachment, is disarmed. Client goroutine, mu held.
func (s *session) occArmCheckLocked() {
	o := &s.retry
	if o.phase == occIdle {
		return
	}
	if o.phase == occHolding && len(o.ends) == 0 && (o.sc != s.sc || o.gen != s.attachGen || s.unitsDone >= o.unit) {
		o.disarm()
	}
}

// occNext reads the next upstream message for the relay while a unit is
// armed: it holds the replies of each attempt, retries, and hands out
// what the engine is to see. A read timeout is returned as it is (the
// relay looks at its client and calls again: the state is kept).
func (s *session) occNext(sc Upstream, us *upstreamState) ([]byte, error) {
	o := &s.retry
	for {
		if o.phase == occReleasing {
			if o.next < len(o.ends) {
				start := 0
				if o.next > 0 {
					start = o.ends[o.next-1]
				}
				msg := o.held[start:o.ends[o.next]]
				o.next++
				return msg, nil
			}
			err := o.err
			o.disarm()
			if err != nil {
				return nil, err
			}
			return us.fr.next()
		}
		msg, err := us.fr.next()
		if err != nil {
			if isTimeout(err) {
				return nil, err
			}
			if len(o.ends) > 0 {
				o.release(err)
				continue
			}
			o.disarm()
			return nil, err
		}
		switch o.phase {
		case occRollback:
			switch msg[0] {
			case 'S', 'A':
				if !o.keepAside(msg) {
					s.occGiveUp(sc, errors.New("OCC retry: too many asynchronous messages during the rollback"))
				}
			case 'Z':
				if len(msg) < 6 || msg[5] != 'I' {
					s.occGiveUp(sc, errors.New("OCC retry: the rollback left a transaction open"))
					continue
				}
				o.rolledBack = true
				s.occReplay(sc, us)
			case 'E':
				s.occGiveUp(sc, errors.New("OCC retry: the rollback failed: "+errorMessage(msg)))
			}
			continue // the rollback's own output (a NoticeResponse too) is the gateway's
		case occCloses:
			switch msg[0] {
			case '3':
				if o.swallow--; o.swallow == 0 {
					o.phase = occHolding
				}
			case 'S', 'N', 'A':
				if !o.keepAside(msg) {
					s.occGiveUp(sc, errors.New("OCC retry: too many asynchronous messages before the replay"))
				}
			default:
				// Not what a Close answers: the replies can no longer be
				// told apart from those the engine expects.
				s.occGiveUp(sc, errors.New("OCC retry: unexpected message "+string(msg[0])+" before the replay's CloseCompletes"))
			}
			continue
		}
		// occHolding
		o.held = append(o.held, msg...)
		o.ends = append(o.ends, len(o.held))
		switch msg[0] {
		case 'G', 'W', 'H': // COPY: the client must take part
			o.release(nil)
			continue
		case 'Z':
			s.occDecide(sc, us, msg)
			continue
		}
		if len(o.held)+len(o.keep) > maxOCCHold {
			o.release(nil)
		}
	}
}

// release hands the held replies to the relay (after what was kept
// aside between attempts), then err (nil: the upstream's next messages).
// When the gateway's ROLLBACK ended the held attempt's failed block, the
// upstream is idle: the held ReadyForQuery says so.
func (o *occRetrier) release(err error) {
	if n := len(o.ends); o.rolledBack && n > 0 {
		start := 0
		if n > 1 {
			start = o.ends[n-2]
		}
		if o.ends[n-1]-start == 6 && o.held[start] == 'Z' {
			o.held[start+5] = 'I'
		}
	}
	if len(o.keepEnds) > 0 {
		n := len(o.keep)
		held := append(o.keep, o.held...)
		ends := o.keepEnds
		for _, e := range o.ends {
			ends = append(ends, n+e)
		}
		o.held, o.ends = held, ends
		o.keep, o.keepEnds = nil, nil
	}
	o.rolledBack = false
	o.phase, o.next, o.err = occReleasing, 0, err
}

// occGiveUp ends a retry that cannot go on: the upstream's state is not
// known, so it is closed; the held replies of the failed attempt go to the
// engine, then the loss.
func (s *session) occGiveUp(sc Upstream, err error) {
	s.log.Warn("OCC retry abandoned; closing the upstream", zap.Error(err))
	sc.Conn().Close()
	s.retry.release(err)
}

// occError reports whether an ErrorResponse is an optimistic-concurrency
// failure: SQLSTATE 40001 (DSQL's OC000 and OC001 come with it), or a bare
// OC000/OC001.
func occError(msg []byte) bool {
	if severityOf(msg) != severityError {
		return false
	}
	switch sqlstateOf(msg) {
	case pgerrcode.SerializationFailure, compat.DSQLOCC, compat.DSQLSchemaOCC:
		return true
	}
	return false
}

// occDecide runs at the ReadyForQuery z of a held attempt: it retries the
// unit, or releases what is held.
func (s *session) occDecide(sc Upstream, us *upstreamState, z []byte) {
	o := &s.retry
	failed, notified := false, false
	start := 0
	for _, end := range o.ends {
		switch m := o.held[start:end]; m[0] {
		case 'E':
			failed = failed || occError(m)
		case 'A':
			notified = true // a notification must not be dropped with a failed attempt
		}
		start = end
	}
	if !failed || notified {
		o.release(nil)
		return
	}
	status := byte('I')
	if len(z) >= 6 {
		status = z[5]
	}
	now := time.Now()
	if o.firstFail.IsZero() {
		o.firstFail = now
	}
	s.mu.Lock()
	alone := s.sc == sc && s.attachGen == o.gen && !s.closing && s.occAloneLocked()
	s.mu.Unlock()
	if !alone || status == 'T' || status == 'E' && o.bindsUnnamed || s.occCancelled() {
		o.release(nil)
		return
	}
	left := o.cfg.Budget.D() - now.Sub(o.firstFail)
	if o.attempts >= o.cfg.MaxAttempts || left <= 0 {
		s.srv.metrics.OCCRetriesExhaustedTotal.WithLabelValues(s.route.Name()).Inc()
		o.release(nil)
		return
	}
	if status == 'E' {
		// A transaction block failed before its COMMIT: end it first.
		q, st := beginMessage(nil, 'Q')
		q = appendCString(q, "ROLLBACK")
		q = finishMessage(q, st)
		if !s.occWrite(sc, q) {
			return
		}
		if !containsParseUnnamed(o.replay) {
			// The ROLLBACK (a simple Query) destroyed the upstream's
			// unnamed statement, which the engine may think is there.
			s.mu.Lock()
			if s.us == us {
				us.unnamedOwner = nil
			}
			s.mu.Unlock()
		}
		o.phase = occRollback
		return
	}
	s.occReplay(sc, us)
}

// occCancelled reports whether the client sent a CancelRequest for the
// armed unit (session.cancel). Between attempts nothing runs upstream for
// the cancel to stop, so the gateway stops instead: no new attempt; the
// client gets the last attempt's failure, which is what happened (the
// 40001 is real, nothing of the unit committed, and no statement was
// running for the cancel to interrupt, as PostgreSQL ignores a cancel
// that finds its backend idle).
func (s *session) occCancelled() bool {
	s.cmu.Lock()
	defer s.cmu.Unlock()
	return s.occCancelledUnit != 0 && s.occCancelledUnit == s.retry.seq
}

// containsParseUnnamed reports whether rec parses the unnamed statement.
func containsParseUnnamed(rec []byte) bool {
	for len(rec) >= 5 {
		n := int(uint32(rec[1])<<24|uint32(rec[2])<<16|uint32(rec[3])<<8|uint32(rec[4])) + 1
		if n < 5 || n > len(rec) {
			return false
		}
		if rec[0] == 'P' && n > 5 && rec[5] == 0 {
			return true
		}
		rec = rec[n:]
	}
	return false
}

// occReplay waits the backoff, then sends the armed unit again, each
// named statement it parses closed first (a Parse that succeeded in the
// failed attempt left it there).
func (s *session) occReplay(sc Upstream, us *upstreamState) {
	o := &s.retry
	if occBackoffHook != nil {
		occBackoffHook()
	}
	time.Sleep(occBackoff(o.cfg, o.attempts, o.cfg.Budget.D()-time.Since(o.firstFail)))
	s.mu.Lock()
	ok := s.sc == sc && s.attachGen == o.gen && !s.closing && !s.timedOut
	s.mu.Unlock()
	if !ok || s.occCancelled() {
		// The statement timer fired meanwhile, the client cancelled, or
		// the client is being sent away: no new attempt; the failure goes
		// to the client.
		o.release(nil)
		return
	}
	// The failed attempt is dropped: the engine never sees it.
	o.held, o.ends, o.rolledBack = o.held[:0], o.ends[:0], false
	out := make([]byte, 0, len(o.closes)*32+len(o.replay))
	for _, name := range o.closes {
		out = appendClose(out, 'S', name)
	}
	out = append(out, o.replay...)
	o.attempts++
	o.retries++
	s.srv.metrics.OCCRetriesTotal.WithLabelValues(s.route.Name()).Inc()
	if !s.occWrite(sc, out) {
		return
	}
	if o.swallow = len(o.closes); o.swallow > 0 {
		o.phase = occCloses
	} else {
		o.phase = occHolding
	}
}

// occWrite writes and flushes b upstream; a failure closes the upstream,
// whose next read reports the loss.
func (s *session) occWrite(sc Upstream, b []byte) bool {
	if _, err := sc.Writer().Write(b); err != nil {
		s.upstreamWriteFailed(sc, err)
		s.retry.phase = occHolding
		return false
	}
	if err := sc.Writer().Flush(); err != nil {
		s.upstreamWriteFailed(sc, err)
		s.retry.phase = occHolding
		return false
	}
	return true
}

// occBackoff is the wait before retry number attempt (1: the first), with
// full jitter: drawn below backoff·2^(attempt-1), capped by max_backoff
// and by what is left of the budget.
func occBackoff(cfg config.OCCRetry, attempt int, left time.Duration) time.Duration {
	d := cfg.Backoff.D()
	for i := 1; i < attempt && d < cfg.MaxBackoff.D(); i++ {
		d *= 2
	}
	d = min(d, cfg.MaxBackoff.D(), left)
	if d <= 0 {
		return 0
	}
	return rand.N(d + 1)
}

// occEndLocked runs once a client Query, Sync or FunctionCall has been
// handled (client goroutine, mu held): the engine's verdict on the unit it
// ended is taken for occUnitEnded, and the engine starts tracking the next
// unit.
func (s *session) occEndLocked() {
	s.retry.end = occEnd{set: true, eligible: s.engine.occ.verdict && s.done == nil, sc: s.sc, unit: s.unitsSent, gen: s.attachGen}
	s.engine.occ.ended = true
	s.engine.occ.verdict = false
}

// occEnd is the end of a unit as occEndLocked saw it: eligible (and no
// server goroutine reads its replies), on upstream sc of attachment gen,
// the unit counted as engine.unitsSent counts.
type occEnd struct {
	set, eligible bool
	sc            Upstream
	unit, gen     uint64
}

// releasingMore reports held replies still to hand out.
func (o *occRetrier) releasingMore() bool { return o.phase == occReleasing && o.next < len(o.ends) }
