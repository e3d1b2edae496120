package dsqlsim

import (
	"bytes"
	"sync"
	"sync/atomic"

	"github.com/jackc/pgx/v5/pgproto3"
)

// DSQL fails the COMMIT of a transaction that lost a conflict with 40001,
// where PostgreSQL answers the COMMIT of an aborted transaction with
// CommandComplete "ROLLBACK". To answer as DSQL does, the relay must know
// which "ROLLBACK" tag answers a client's COMMIT (a client's ROLLBACK gets
// the same tag, and keeps it). txnExits pairs the backend's COMMIT and
// ROLLBACK tags with the client's transaction exit statements, in order.
//
// Every exit statement the client sends (in a simple Query, or the Execute
// of a portal bound to a prepared COMMIT, END, ROLLBACK or ABORT) is queued
// with the number of its batch: how many Query, Sync and FunctionCall
// messages the client sent before it. Each batch is answered by exactly one
// ReadyForQuery, so the backend's batch number is the count of
// ReadyForQuery messages relayed. Within a batch, statements run in order
// and an error skips the rest of it; so a COMMIT or ROLLBACK tag answers
// the first queued exit of the current batch, and entries of earlier
// batches are ones the backend skipped.
type txnExits struct {
	mu    sync.Mutex // guards queue
	queue []txnExit

	// synced is the number of ReadyForQuery messages relayed (the backend's
	// current batch); written by serverToClient.
	synced atomic.Int64

	// Client side, used by clientToServer only.
	sent    int64           // Query, Sync and FunctionCall messages sent: the client's current batch
	stmts   map[string]bool // prepared statements that are exit statements: name -> is a COMMIT
	portals map[string]bool // portals bound to them: name -> is a COMMIT
}

type txnExit struct {
	batch  int64
	commit bool // COMMIT or END, not ROLLBACK or ABORT
	// fail, when set, is the error the client gets in place of the tag: a
	// COMMIT the relay sent as ROLLBACK.
	fail *pgproto3.ErrorResponse
}

// exitKind classifies one statement: exit reports whether it ends a
// transaction block with a COMMIT or ROLLBACK tag, commit whether it is a
// COMMIT (or END).
func exitKind(src string, st sqlStatement) (exit, commit bool) {
	w := statementWords{src: src, tokens: st.tokens}
	switch {
	case w.keyword(0, "commit") || w.keyword(0, "end"):
		return !w.keyword(1, "prepared"), true
	case w.keyword(0, "rollback") || w.keyword(0, "abort"):
		for i := 1; i < len(st.tokens); i++ {
			if w.keyword(i, "to") || w.keyword(i, "prepared") {
				return false, false
			}
		}
		return true, false
	}
	return false, false
}

// mayHoldExit is a cheap filter, without allocating: whether query could
// hold an exit statement at all.
func mayHoldExit(query []byte) bool {
	return bytesContainFold(query, "commit") || bytesContainFold(query, "end") ||
		bytesContainFold(query, "rollback") || bytesContainFold(query, "abort")
}

// push queues an exit of the client's current batch and forgets entries of
// batches the backend has finished.
func (x *txnExits) push(commit bool) { x.pushExit(txnExit{commit: commit}) }

// pushExit queues exit (of the client's current batch, which it sets).
func (x *txnExits) pushExit(exit txnExit) {
	done := x.synced.Load()
	x.mu.Lock()
	i := 0
	for i < len(x.queue) && x.queue[i].batch < done {
		i++
	}
	exit.batch = x.sent
	x.queue = append(x.queue[i:], exit)
	x.mu.Unlock()
}

// query notes a simple Query message's text (as sent to the backend).
func (x *txnExits) query(text []byte) {
	delete(x.stmts, "") // a simple Query drops the unnamed statement and portal
	delete(x.portals, "")
	if mayHoldExit(text) {
		query := string(text)
		for _, st := range splitStatements(query) {
			if exit, commit := exitKind(query, st); exit {
				x.push(commit)
			}
		}
	}
	x.sent++
}

// failingCommit notes a simple Query holding a lone COMMIT that the relay
// sends as ROLLBACK: the client gets fail in place of its tag.
func (x *txnExits) failingCommit(fail *pgproto3.ErrorResponse) {
	delete(x.stmts, "")
	delete(x.portals, "")
	x.pushExit(txnExit{commit: true, fail: fail})
	x.sent++
}

// rollbackStatement reports whether the start of a Bind message binds a
// prepared ROLLBACK (or ABORT).
func (x *txnExits) rollbackStatement(bindStart []byte) bool {
	_, rest, ok := bytes.Cut(bindStart, []byte{0})
	if !ok {
		return false
	}
	stmt, _, ok := bytes.Cut(rest, []byte{0})
	if !ok {
		return false
	}
	commit, exit := x.stmts[string(stmt)]
	return exit && !commit
}

// sync notes a Sync or FunctionCall message: the end of a batch.
func (x *txnExits) sync() { x.sent++ }

// parse notes a Parse of statement name with text query.
func (x *txnExits) parse(name, query []byte) {
	if mayHoldExit(query) {
		text := string(query)
		stmts := splitStatements(text)
		if exit, commit := exitKind(text, stmts[0]); exit && len(stmts) == 1 {
			if x.stmts == nil {
				x.stmts = make(map[string]bool)
			}
			x.stmts[string(name)] = commit
			return
		}
	}
	if len(x.stmts) > 0 {
		delete(x.stmts, string(name))
	}
}

// watchesExtended reports whether Bind, Execute and Close messages matter:
// only once an exit statement was prepared.
func (x *txnExits) watchesExtended() bool { return len(x.stmts) > 0 || len(x.portals) > 0 }

// bind notes a Bind message's start (portal name, statement name, ...).
func (x *txnExits) bind(body []byte) {
	portal, rest, ok := bytes.Cut(body, []byte{0})
	if !ok {
		return
	}
	stmt, _, ok := bytes.Cut(rest, []byte{0})
	if !ok {
		return
	}
	if commit, exit := x.stmts[string(stmt)]; exit {
		if x.portals == nil {
			x.portals = make(map[string]bool)
		}
		x.portals[string(portal)] = commit
		return
	}
	delete(x.portals, string(portal))
}

// execute notes an Execute message's start (portal name, ...).
func (x *txnExits) execute(body []byte) {
	portal, _, ok := bytes.Cut(body, []byte{0})
	if !ok {
		return
	}
	if commit, exit := x.portals[string(portal)]; exit {
		x.push(commit)
	}
}

// close notes a Close message ('S' or 'P', then the name).
func (x *txnExits) close(body []byte) {
	if len(body) < 2 {
		return
	}
	name, _, ok := bytes.Cut(body[1:], []byte{0})
	if !ok {
		return
	}
	switch body[0] {
	case 'S':
		delete(x.stmts, string(name))
	case 'P':
		delete(x.portals, string(name))
	}
}

// readyForQuery notes a ReadyForQuery relayed to the client.
func (x *txnExits) readyForQuery() { x.synced.Add(1) }

// answered takes the exit statement that a COMMIT or ROLLBACK tag of the
// backend's current batch answers. ok is false when there is none (a tag of
// a statement the tracker did not see).
func (x *txnExits) answered() (exit txnExit, ok bool) {
	done := x.synced.Load()
	x.mu.Lock()
	defer x.mu.Unlock()
	for len(x.queue) > 0 && x.queue[0].batch < done {
		x.queue = x.queue[1:]
	}
	if len(x.queue) == 0 || x.queue[0].batch != done {
		return txnExit{}, false
	}
	exit = x.queue[0]
	x.queue = x.queue[1:]
	return exit, true
}

// Command tags of transaction exits, as CommandComplete bodies.
var (
	tagCommit   = []byte("COMMIT\x00")
	tagRollback = []byte("ROLLBACK\x00")
)
