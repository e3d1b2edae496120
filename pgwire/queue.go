package pgwire

import "time"

// replyKind says what the server will send for one message the gateway
// forwarded (or injected), or what the gateway answers itself in its place.
type replyKind uint8

const (
	rParse          replyKind = iota // client Parse: ParseComplete is forwarded
	rBind                            // BindComplete
	rDescribeStmt                    // ParameterDescription, then RowDescription or NoData
	rDescribePortal                  // RowDescription or NoData
	rExecute                         // DataRow..., then CommandComplete, EmptyQueryResponse or PortalSuspended
	rClosePortal                     // CloseComplete
	rSync                            // ReadyForQuery
	rQuery                           // simple Query or FunctionCall: everything up to ReadyForQuery
	iParse                           // injected Parse: ParseComplete is swallowed
	iClose                           // injected Close: CloseComplete is swallowed
	iQuery                           // injected simple Query: everything up to ReadyForQuery is swallowed
	iSync                            // injected Sync ending the client's batch: its ReadyForQuery is swallowed
	sParseComplete                   // answered by the gateway: ParseComplete
	sCloseComplete                   // answered by the gateway: CloseComplete
	sBytes                           // answered by the gateway: the messages in data
)

// synthetic reports whether the gateway answers k itself.
func (k replyKind) synthetic() bool { return k == sParseComplete || k == sCloseComplete || k == sBytes }

// endsUnit reports whether k's reply is a ReadyForQuery.
func (k replyKind) endsUnit() bool { return k == rSync || k == rQuery || k == iQuery || k == iSync }

// Unit flags: what a unit of work (the messages up to a Sync, or one simple
// Query) contains, for deciding what a client is told when its upstream is
// lost with the unit in flight.
const (
	unitBegin      uint8 = 1 << iota // BEGIN / START TRANSACTION
	unitCommit                       // COMMIT / END / PREPARE TRANSACTION
	unitRollback                     // ROLLBACK / ABORT
	unitStatements                   // DEALLOCATE / DISCARD: changes the client's prepared statements
)

// reply is one expected server reply (or synthetic answer), in order.
type reply struct {
	kind replyKind
	// stmt is the client statement concerned (Parse, Describe, Execute).
	stmt *preparedStmt
	// query describes the statements of a simple Query; next is the index
	// of the statement the next CommandComplete belongs to.
	query *queryInfo
	// renameFrom → renameTo is applied to the message of an ErrorResponse
	// answering this entry, so the client sees its own statement name.
	renameFrom, renameTo string
	// unitStart and unitFlags describe the unit a Sync or Query ends.
	unitStart byte
	unitFlags uint8
	// data is what an sBytes entry sends; err is the error an injected
	// failing statement stands for (shown instead of the server's).
	data []byte
	err  *pgError
	// standIn is the SQLSTATE of the error the stand-in an injected
	// failing statement sends raises ("": failingSQLCode); another error
	// is the server's to show (see rewriteError).
	standIn string
	// rfq: an sBytes entry ends with ReadyForQuery, its status the
	// client's when the entry is answered (not when it was queued: units
	// ahead of it may still change it).
	rfq bool
	// prev is the client's unnamed statement an unnamed Parse replaced
	// (rParse) or a simple Query dropped (rQuery), and closed marks an sCloseComplete whose stmt the Close
	// removed: both are put back if the server skips the message.
	prev   *preparedStmt
	closed bool
	// probe: an rParse of a named statement the upstream already has,
	// sent as an unnamed Parse of its text so that the upstream, in the
	// transaction state the client's Parse meets there, accepts or refuses
	// it (see parseLocked); refused or skipped, the upstream's statement
	// stays.
	probe bool
	// dropped (and droppedUpstream) are the client's statements (and the
	// upstream's) an rExecute of DEALLOCATE or DISCARD ALL removed when it
	// was sent: put back if the server skips or refuses it.
	dropped         []*preparedStmt
	droppedUpstream []string
	// began is when the unit a Sync or Query ends started being sent;
	// text is its (last) statement's text, for the slow-query log (for
	// iClose: the upstream statement closed).
	began time.Time
	text  string
}

// replyQueue is a FIFO of replies. The zero value is empty and usable.
type replyQueue struct {
	items []reply
	head  int
	// statements counts the entries of statements that run upstream (an
	// Execute, a simple Query or FunctionCall): engine.statementsOwed
	// reads it without a scan.
	statements int
}

func (q *replyQueue) len() int { return len(q.items) - q.head }

func (q *replyQueue) push(r reply) {
	if r.kind.runsStatement() {
		q.statements++
	}
	q.items = append(q.items, r)
}

// runsStatement reports whether k's entry stands for a statement running
// upstream.
func (k replyKind) runsStatement() bool { return k == rExecute || k == rQuery }

// front returns the oldest entry; the queue must not be empty.
func (q *replyQueue) front() *reply { return &q.items[q.head] }

func (q *replyQueue) pop() reply {
	r := q.items[q.head]
	q.items[q.head] = reply{}
	q.head++
	if r.kind.runsStatement() {
		q.statements--
	}
	switch {
	case q.head == len(q.items):
		// Empty: start over at the front, and let a backing array that a
		// long pipeline grew go.
		q.items, q.head = q.items[:0], 0
		if cap(q.items) > maxIdleQueue {
			q.items = nil
		}
	case q.head >= 64 && q.head > len(q.items)/2:
		// A client that always keeps a reply owed never empties the
		// queue: move the live entries to the front, or every push would
		// keep the dead prefix and the array would grow for ever.
		n := copy(q.items, q.items[q.head:])
		clear(q.items[n:])
		q.items, q.head = q.items[:n], 0
	}
	return r
}

// maxIdleQueue is the largest backing array an empty queue keeps.
const maxIdleQueue = 256

// last returns the newest entry; the queue must not be empty.
func (q *replyQueue) last() *reply { return &q.items[len(q.items)-1] }

// at returns the i-th entry from the front.
func (q *replyQueue) at(i int) *reply { return &q.items[q.head+i] }

func (q *replyQueue) reset() {
	clear(q.items)
	q.items = q.items[:0]
	q.head = 0
	q.statements = 0
}
