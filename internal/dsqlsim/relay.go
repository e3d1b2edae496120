package dsqlsim

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/jackc/pgerrcode"
	"github.com/jackc/pgx/v5/pgproto3"
	"go.uber.org/zap"
)

// maxMessageBody bounds a relayed message's body, as PostgreSQL's 1 GB
// limit does.
const maxMessageBody = 1 << 30 // bytes

// errExpired ends a relay that the duration cap closed.
var errExpired = errors.New("connection reached its maximum duration")

// keepBufferCap is the largest inspection buffer kept between messages;
// a larger one (a huge Query) is dropped after use.
const keepBufferCap = 1 << 20 // bytes

// maxPeekNames is how much of a Bind, Execute or Close message is looked at
// for its portal and statement names; longer names are not tracked.
const maxPeekNames = 1024 // bytes

// relay forwards messages both ways until either side ends, then closes
// the session and waits for both directions. It returns the first error.
func (s *Server) relay(sess *session, client *clientSide, server *serverSide, log *zap.Logger) error {
	refuser := newStatementRefuser(s.nonce)
	exits := new(txnExits)
	errc := make(chan error, 2)
	go func() { errc <- s.clientToServer(sess, client.r, server.w, refuser, exits, log) }()
	go func() { errc <- s.serverToClient(sess, server.r, client.w, refuser, exits) }()
	first := <-errc
	sess.closeGraceful(client.conn)
	<-errc
	return first
}

// clientToServer forwards the client's messages to the backend. Query and
// Parse are decoded so that statements DSQL refuses can be replaced (see
// statementRefuser), and so that a statement in a transaction past the age
// limit fails (see txnage.go); every other message is copied as raw bytes.
// The transaction exit statements it sees are noted in exits (see
// txnexit.go), which looks into Bind, Execute and Close only once a COMMIT
// or ROLLBACK was prepared.
func (s *Server) clientToServer(sess *session, clientReader *bufio.Reader, serverWriter *bufio.Writer, refuser *statementRefuser, exits *txnExits, log *zap.Logger) error {
	var buf []byte // the body of the message being inspected; reused
	now := func() int64 { return s.cfg.Now().UnixNano() }
	var agedFailed int64 // the start of the last transaction failed for its age
	for {
		if clientReader.Buffered() == 0 {
			if err := serverWriter.Flush(); err != nil {
				return fmt.Errorf("write to server: %w", err)
			}
		}
		typ, n, err := readMessageHeader(clientReader)
		if err != nil {
			return fmt.Errorf("read from client: %w", err)
		}
		if sess.idle() && s.pastCap(sess) {
			// Between the cap and the reaper's next look: DSQL would have
			// closed the idle connection already, so nothing new may start.
			s.expire(sess, time.Duration(s.maxConnDuration.Load()))
			return errExpired
		}
		sess.clientSent(typ, now)
		var aged bool // a statement in a transaction past the age limit
		if typ == 'Q' || typ == 'B' {
			var began int64
			if began, aged = s.agedTransaction(sess); aged {
				aged = began != agedFailed // fail a transaction once
				agedFailed = began
			}
		}
		switch typ {
		case 'S', 'F':
			exits.sync()
		case 'B', 'E', 'C':
			if aged || exits.watchesExtended() {
				start, err := clientReader.Peek(min(n, maxPeekNames))
				if err != nil {
					return fmt.Errorf("read from client: %w", err)
				}
				switch typ {
				case 'B':
					if aged && !exits.rollbackStatement(start) {
						if err := writeMessage(serverWriter, 'P', s.agedParse(refuser)); err != nil {
							return fmt.Errorf("write to server: %w", err)
						}
					}
					exits.bind(start)
				case 'E':
					exits.execute(start)
				case 'C':
					exits.close(start)
				}
			}
		}
		if typ != 'Q' && typ != 'P' {
			if err := writeMessageHeader(serverWriter, typ, n); err != nil {
				return fmt.Errorf("write to server: %w", err)
			}
			if err := copyBody(serverWriter, clientReader, n); err != nil {
				return err
			}
			continue
		}

		buf = growTo(buf, n)
		if _, err := io.ReadFull(clientReader, buf); err != nil {
			return fmt.Errorf("read from client: %w", err)
		}
		body := buf
		sess.lastKind.Store(uint32(kindOf(buf)))
		var refused []string
		if typ == 'Q' {
			body, refused = rewriteQueryMessage(buf, refuser)
		} else {
			body, refused = rewriteParseMessage(buf, refuser)
		}
		if typ == 'Q' && aged && len(body) > 0 && body[len(body)-1] == 0 {
			query, commit := agedQuery(string(body[:len(body)-1]), refuser, s.ageLimitMessage())
			body = append([]byte(query), 0)
			if commit {
				exits.failingCommit(s.ageLimitError())
			} else {
				exits.query(body[:len(body)-1])
			}
		} else if typ == 'Q' {
			if len(body) > 0 {
				exits.query(body[:len(body)-1])
			}
		} else if name, rest, ok := bytes.Cut(body, []byte{0}); ok {
			if query, _, ok := bytes.Cut(rest, []byte{0}); ok {
				exits.parse(name, query)
			}
		}
		for _, msg := range refused {
			s.stats.refused.Add(1)
			log.Debug("statement refused", zap.String("message", msg))
		}
		if err := writeMessage(serverWriter, typ, body); err != nil {
			return fmt.Errorf("write to server: %w", err)
		}
		if cap(buf) > keepBufferCap {
			buf = nil
		}
	}
}

// rewriteQueryMessage returns the body of a Query message with refused
// statements replaced, or body itself when none is.
func rewriteQueryMessage(body []byte, refuser *statementRefuser) ([]byte, []string) {
	if len(body) == 0 || body[len(body)-1] != 0 {
		return body, nil // malformed: the backend reports it
	}
	query, refused := refuser.rewriteQuery(string(body[:len(body)-1]))
	if refused == nil {
		return body, nil
	}
	return append([]byte(query), 0), refused
}

// rewriteParseMessage returns the body of a Parse message (name, query,
// parameter types) with a refused query replaced, or body itself.
func rewriteParseMessage(body []byte, refuser *statementRefuser) ([]byte, []string) {
	name, rest, ok := bytes.Cut(body, []byte{0})
	if !ok {
		return body, nil
	}
	query, paramTypes, ok := bytes.Cut(rest, []byte{0})
	if !ok {
		return body, nil
	}
	replaced, msg := refuser.rewriteParse(string(query))
	if msg == "" {
		return body, nil
	}
	out := make([]byte, 0, len(name)+len(replaced)+len(paramTypes)+2)
	out = append(append(out, name...), 0)
	out = append(append(out, replaced...), 0)
	return append(out, paramTypes...), []string{msg}
}

// serverToClient forwards the backend's messages to the client as raw
// bytes, except: an ErrorResponse that carries a refusal marker, which
// becomes DSQL's error (0A000, or the marker's own SQLSTATE); one that
// stands for a concurrency conflict, which becomes DSQL's 40001 (occ.go);
// one raised by the emulator's triggers, stripped of their context
// (limits.go); and the "ROLLBACK" tag that answers the COMMIT of a
// transaction that lost a conflict, or a COMMIT past the age limit, which
// becomes the error DSQL gives that COMMIT. It notes each ReadyForQuery's
// status for the duration cap.
func (s *Server) serverToClient(sess *session, serverReader *bufio.Reader, clientWriter *bufio.Writer, refuser *statementRefuser, exits *txnExits) error {
	var buf []byte
	// conflicted: the transaction under way lost a conflict (an error was
	// rewritten to 40001), so a COMMIT that PostgreSQL answers "ROLLBACK"
	// fails with 40001, as on DSQL.
	conflicted := false
	for {
		if serverReader.Buffered() == 0 {
			if err := clientWriter.Flush(); err != nil {
				return fmt.Errorf("write to client: %w", err)
			}
		}
		typ, n, err := readMessageHeader(serverReader)
		if err != nil {
			return fmt.Errorf("read from server: %w", err)
		}
		if typ == 'Z' && n == 1 {
			status, err := serverReader.Peek(1)
			if err != nil {
				return fmt.Errorf("read from server: %w", err)
			}
			sess.readyForQuery(status[0])
			exits.readyForQuery()
			if status[0] == 'I' {
				conflicted = false
			}
		}
		if typ == 'C' && (n == len(tagCommit) || n == len(tagRollback)) {
			tag, err := serverReader.Peek(n)
			if err != nil {
				return fmt.Errorf("read from server: %w", err)
			}
			isRollback := bytes.Equal(tag, tagRollback)
			if isRollback || bytes.Equal(tag, tagCommit) {
				exit, ok := exits.answered()
				fail := exit.fail
				if ok && exit.commit && isRollback && conflicted {
					fail = clientError("ERROR", pgerrcode.SerializationFailure, msgConflictData, "")
				}
				if ok && fail != nil {
					if exit.fail != nil {
						s.stats.limited.Add(1) // a COMMIT past the age limit
					}
					serverReader.Discard(n)
					if err := writeClientError(clientWriter, fail); err != nil {
						return err
					}
					continue
				}
			}
		}
		if typ != 'E' {
			if err := writeMessageHeader(clientWriter, typ, n); err != nil {
				return fmt.Errorf("write to client: %w", err)
			}
			if err := copyBody(clientWriter, serverReader, n); err != nil {
				return err
			}
			if typ == 'Z' && sess.idle() && s.pastCap(sess) {
				// A transaction ran past the duration cap and has ended:
				// the client gets its result, then the abrupt close.
				if err := clientWriter.Flush(); err != nil {
					return fmt.Errorf("write to client: %w", err)
				}
				s.expire(sess, time.Duration(s.maxConnDuration.Load()))
				return errExpired
			}
			continue
		}
		buf = growTo(buf, n)
		if _, err := io.ReadFull(serverReader, buf); err != nil {
			return fmt.Errorf("read from server: %w", err)
		}
		body := buf
		var backendErr pgproto3.ErrorResponse
		decoded := backendErr.Decode(buf) == nil
		var replacement *pgproto3.ErrorResponse
		if code, message, ok := refuser.takeMarker(buf); ok {
			if code != pgerrcode.FeatureNotSupported {
				s.stats.limited.Add(1) // the age limit
			}
			severity := "ERROR"
			if decoded && backendErr.Severity != "" {
				severity = backendErr.Severity
			}
			replacement = clientError(severity, code, message, "")
		} else if decoded {
			if replacement = conflictError(&backendErr, stmtKind(sess.lastKind.Load())); replacement != nil {
				s.stats.conflicts.Add(1)
				conflicted = true
			} else if replacement = ownError(&backendErr); replacement != nil {
				s.stats.limited.Add(1)
			}
		}
		if replacement != nil {
			if err := writeClientError(clientWriter, replacement); err != nil {
				return err
			}
			continue
		}
		if err := writeMessage(clientWriter, typ, body); err != nil {
			return fmt.Errorf("write to client: %w", err)
		}
	}
}

// writeClientError writes an ErrorResponse the emulator made.
func writeClientError(w *bufio.Writer, e *pgproto3.ErrorResponse) error {
	encoded, err := e.Encode(nil)
	if err != nil {
		return fmt.Errorf("encode error: %w", err)
	}
	if _, err := w.Write(encoded); err != nil {
		return fmt.Errorf("write to client: %w", err)
	}
	return nil
}

// readMessageHeader reads a regular message's type byte and length, and
// returns the body length.
func readMessageHeader(r *bufio.Reader) (typ byte, bodyLen int, err error) {
	header, err := r.Peek(5)
	if err != nil {
		return 0, 0, err
	}
	typ = header[0]
	n := int64(binary.BigEndian.Uint32(header[1:5])) - 4
	if _, err := r.Discard(5); err != nil {
		return 0, 0, err
	}
	if n < 0 || n > maxMessageBody {
		return 0, 0, fmt.Errorf("%w: message %q with body length %d", errBadProtocol, typ, n)
	}
	return typ, int(n), nil
}

// readMessage reads one whole regular message of at most max body bytes.
// The body is newly allocated.
func readMessage(r *bufio.Reader, max int) (typ byte, body []byte, err error) {
	typ, n, err := readMessageHeader(r)
	if err != nil {
		return 0, nil, err
	}
	if n > max {
		return 0, nil, fmt.Errorf("%w: message %q of %d bytes is over %d", errBadProtocol, typ, n, max)
	}
	body = make([]byte, n)
	if _, err := io.ReadFull(r, body); err != nil {
		return 0, nil, err
	}
	return typ, body, nil
}

// writeMessageHeader writes a message's type and length. It writes byte by
// byte: a header array passed to Write would escape to the heap, one
// allocation per relayed message.
func writeMessageHeader(w *bufio.Writer, typ byte, bodyLen int) error {
	n := uint32(bodyLen + 4)
	for _, b := range [5]byte{typ, byte(n >> 24), byte(n >> 16), byte(n >> 8), byte(n)} {
		if err := w.WriteByte(b); err != nil {
			return err
		}
	}
	return nil
}

func writeMessage(w *bufio.Writer, typ byte, body []byte) error {
	if err := writeMessageHeader(w, typ, len(body)); err != nil {
		return err
	}
	_, err := w.Write(body)
	return err
}

// copyBody copies n bytes from r to w through r's buffer, without
// allocating.
func copyBody(w *bufio.Writer, r *bufio.Reader, n int) error {
	for n > 0 {
		if r.Buffered() == 0 {
			if _, err := r.Peek(1); err != nil {
				return fmt.Errorf("read message body: %w", err)
			}
		}
		chunk, _ := r.Peek(min(n, r.Buffered()))
		if _, err := w.Write(chunk); err != nil {
			return fmt.Errorf("write message body: %w", err)
		}
		r.Discard(len(chunk))
		n -= len(chunk)
	}
	return nil
}

// growTo returns buf resized to n bytes, reallocating only when it is too
// small. The contents are not kept.
func growTo(buf []byte, n int) []byte {
	if cap(buf) < n {
		return make([]byte, n)
	}
	return buf[:n]
}
