package dsqlsim

import (
	"bytes"
	"strconv"
	"strings"
	"sync"

	"github.com/jackc/pgerrcode"
)

// maxPendingRefusals bounds how many refusals a session remembers whose
// errors have not come back. A refusal that never errors (the backend skipped
// it after an earlier error) is forgotten after this many newer ones.
const maxPendingRefusals = 1024

// statementRefuser makes the real PostgreSQL fail a statement exactly where
// DSQL would refuse it. The statement's text is replaced by
//
//	SELECT * FROM "dsqlsim_refused_<nonce>_<n>"
//
// which PostgreSQL fails at parse analysis, per statement and in order, with
// 42P01; the ErrorResponse that names the marker is then rewritten to DSQL's
// 0A000 and message (or to the SQLSTATE the marker carries: see
// failingStatementCode). So the error has real PostgreSQL semantics: in a
// transaction block the transaction is aborted, in a multi-statement Query
// the statements after it are skipped, after a Parse the backend skips to
// Sync. No marker reaches the client.
//
// clientToServer calls the rewrite methods and serverToClient calls
// takeRefusal, concurrently.
type statementRefuser struct {
	markerPrefix string // "dsqlsim_refused_<nonce>_"; the nonce makes it unguessable

	mu      sync.Mutex // guards next and pending
	next    uint64
	pending map[uint64]markerError // marker number -> DSQL's error
}

// markerError is the error a marker stands for.
type markerError struct{ code, message string }

func newStatementRefuser(nonce string) *statementRefuser {
	return &statementRefuser{
		markerPrefix: "dsqlsim_refused_" + nonce + "_",
		pending:      make(map[uint64]markerError),
	}
}

// failingStatement remembers message and returns the statement that makes
// the backend fail with its marker, which becomes 0A000 and message.
func (r *statementRefuser) failingStatement(message string) string {
	return r.failingStatementCode(pgerrcode.FeatureNotSupported, message)
}

// failingStatementCode is failingStatement for an error with SQLSTATE code.
func (r *statementRefuser) failingStatementCode(code, message string) string {
	r.mu.Lock()
	r.next++
	n := r.next
	r.pending[n] = markerError{code: code, message: message}
	if n > maxPendingRefusals {
		delete(r.pending, n-maxPendingRefusals)
	}
	r.mu.Unlock()
	return `SELECT * FROM "` + r.markerPrefix + strconv.FormatUint(n, 10) + `"`
}

// rewriteQuery returns the text of a simple Query with every statement that
// DSQL refuses replaced, and the refusals' messages in order (nil when the
// text is unchanged).
func (r *statementRefuser) rewriteQuery(query string) (string, []string) {
	stmts := splitStatements(query)
	var (
		b        strings.Builder
		refused  []string
		copiedTo int // query[:copiedTo] is already in b
	)
	for _, st := range stmts {
		msg := refusalOf(query, st)
		if msg == "" {
			continue
		}
		if refused == nil {
			b.Grow(len(query) + 64)
		}
		refused = append(refused, msg)
		b.WriteString(query[copiedTo:st.start])
		b.WriteByte(' ')
		b.WriteString(r.failingStatement(msg))
		copiedTo = st.end
	}
	if refused == nil {
		return query, nil
	}
	b.WriteString(query[copiedTo:])
	return b.String(), refused
}

// rewriteParse returns the text of a Parse message, replaced as a whole when
// any statement in it is refused (a prepared statement holds one statement;
// PostgreSQL rejects more anyway), and the refusal's message or "".
func (r *statementRefuser) rewriteParse(query string) (string, string) {
	for _, st := range splitStatements(query) {
		if msg := refusalOf(query, st); msg != "" {
			return r.failingStatement(msg), msg
		}
	}
	return query, ""
}

// takeRefusal looks for a marker in the body of a backend ErrorResponse. When
// it finds one it forgets the refusal and returns its message.
func (r *statementRefuser) takeRefusal(errorBody []byte) (string, bool) {
	_, message, ok := r.takeMarker(errorBody)
	return message, ok
}

// takeMarker looks for a marker in the body of a backend ErrorResponse. When
// it finds one it forgets it and returns the SQLSTATE and message it stands
// for (0A000 "statement not supported" for a marker it no longer knows).
func (r *statementRefuser) takeMarker(errorBody []byte) (code, message string, ok bool) {
	i := bytes.Index(errorBody, []byte(r.markerPrefix))
	if i < 0 {
		return "", "", false
	}
	digits := errorBody[i+len(r.markerPrefix):]
	end := 0
	for end < len(digits) && isDigit(digits[end]) {
		end++
	}
	unknown := markerError{code: pgerrcode.FeatureNotSupported, message: "statement not supported"}
	n, err := strconv.ParseUint(string(digits[:end]), 10, 64)
	if err != nil {
		return unknown.code, unknown.message, true
	}
	r.mu.Lock()
	m, ok := r.pending[n]
	delete(r.pending, n)
	r.mu.Unlock()
	if !ok {
		m = unknown
	}
	return m.code, m.message, true
}
