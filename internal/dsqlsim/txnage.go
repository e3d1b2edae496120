package dsqlsim

import (
	"strconv"
	"strings"

	"github.com/jackc/pgerrcode"
	"github.com/jackc/pgx/v5/pgproto3"
)

// DSQL's transaction age limit: a statement sent in a transaction older
// than Config.MaxTxnDuration fails with 54000 "transaction age limit of
// 300s exceeded" and the transaction is aborted. The relay decides it when
// a statement arrives, from the session's last ReadyForQuery (in a
// transaction block, 'T') and the time the session left idle (when the
// transaction's first message came):
//
//   - a simple Query is replaced by a marker statement (see
//     statementRefuser) that carries 54000, so the backend fails it and
//     aborts the transaction; a Query that only rolls back goes through,
//     and a lone COMMIT (or END) is sent as ROLLBACK, whose tag the client
//     gets as the 54000 error: the transaction is over, as after DSQL's
//     failed COMMIT;
//   - in the extended protocol, a Parse of a marker under a name of the
//     emulator's own is put before the client's Bind (unless the bound
//     statement is a ROLLBACK), so the backend fails there and skips to
//     Sync.
//
// Where it differs from DSQL: a statement already running when the limit
// passes is not interrupted; the age counts from the first message after
// the session was last idle (a pipelined batch that opens the transaction
// counts from its first message).

// ageLimitMessage is DSQL's message for a transaction age limit of max.
func (s *Server) ageLimitMessage() string {
	return "transaction age limit of " + strconv.FormatFloat(s.cfg.MaxTxnDuration.Seconds(), 'f', -1, 64) + "s exceeded"
}

// ageLimitError is the error a client's COMMIT gets in a transaction past
// the age limit.
func (s *Server) ageLimitError() *pgproto3.ErrorResponse {
	return clientError("ERROR", pgerrcode.ProgramLimitExceeded, s.ageLimitMessage(), "")
}

// agedTransaction reports whether sess is in a transaction block older than
// MaxTxnDuration, and when that transaction began (unix nanoseconds on the
// server's clock).
func (s *Server) agedTransaction(sess *session) (began int64, aged bool) {
	if sess.txStatus.Load() != 'T' {
		return 0, false
	}
	began = sess.busySince.Load()
	if began == 0 {
		return 0, false
	}
	return began, s.cfg.Now().UnixNano()-began >= int64(s.cfg.MaxTxnDuration)
}

// agedQuery returns the text the backend runs in place of a simple Query
// sent in a transaction past the age limit, and whether it is a COMMIT sent
// as ROLLBACK (whose tag becomes the limit's error). A query that only rolls
// back is returned as it is.
func agedQuery(query string, refuser *statementRefuser, message string) (replaced string, commit bool) {
	stmts := splitStatements(query)
	rollbackOnly, statements := true, 0
	for _, st := range stmts {
		if len(st.tokens) == 0 {
			continue
		}
		statements++
		exit, isCommit := exitKind(query, st)
		if !exit || isCommit {
			rollbackOnly = false
		}
		if exit && isCommit && statements == 1 {
			commit = true
		}
	}
	switch {
	case statements == 0 || rollbackOnly:
		return query, false
	case commit && statements == 1:
		return "ROLLBACK", true
	}
	return refuser.failingStatementCode(pgerrcode.ProgramLimitExceeded, message), false
}

// agedParse is the body of the Parse message put before a Bind in a
// transaction past the age limit: a statement of the emulator's own name
// (so the client's unnamed statement is untouched) that fails.
func (s *Server) agedParse(refuser *statementRefuser) []byte {
	var b strings.Builder
	b.WriteString("dsqlsim_age_" + s.nonce)
	b.WriteByte(0)
	b.WriteString(refuser.failingStatementCode(pgerrcode.ProgramLimitExceeded, s.ageLimitMessage()))
	b.WriteByte(0)
	b.Write([]byte{0, 0}) // no parameter types
	return []byte(b.String())
}
