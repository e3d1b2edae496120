package pgwire

import (
	"errors"
	"fmt"

	"github.com/jackc/pgerrcode"
	"github.com/jackc/pgx/v5/pgproto3"
)

// Severities.
const (
	severityError = "ERROR"
	severityFatal = "FATAL"
)

// pgError is an error the gateway reports to a client. Message, Detail and
// Hint are shown to the client: they must never hold a secret or AWS
// internals. Err, if set, is the underlying cause for the log only.
type pgError struct {
	Severity string
	Code     string
	Message  string
	Detail   string
	Hint     string
	Err      error
}

func (e *pgError) Error() string {
	if e.Err != nil {
		return fmt.Sprintf("%s %s: %s: %v", e.Severity, e.Code, e.Message, e.Err)
	}
	return fmt.Sprintf("%s %s: %s", e.Severity, e.Code, e.Message)
}

func (e *pgError) Unwrap() error { return e.Err }

// appendErrorResponse appends the ErrorResponse (or, with a NOTICE or
// WARNING severity, NoticeResponse) for e to dst.
func appendErrorResponse(dst []byte, e *pgError) []byte {
	typ := byte('E')
	if e.Severity != severityError && e.Severity != severityFatal && e.Severity != "PANIC" {
		typ = 'N'
	}
	dst, start := beginMessage(dst, typ)
	dst = append(dst, 'S')
	dst = appendCString(dst, e.Severity)
	dst = append(dst, 'V')
	dst = appendCString(dst, e.Severity)
	dst = append(dst, 'C')
	dst = appendCString(dst, e.Code)
	dst = append(dst, 'M')
	dst = appendCString(dst, e.Message)
	if e.Detail != "" {
		dst = append(dst, 'D')
		dst = appendCString(dst, e.Detail)
	}
	if e.Hint != "" {
		dst = append(dst, 'H')
		dst = appendCString(dst, e.Hint)
	}
	dst = append(dst, 0)
	return finishMessage(dst, start)
}

// errorForClient is the one place that decides what a client is told about
// an internal failure: it picks the SQLSTATE and a message safe to show.
// The full error belongs in the log, not here.
func errorForClient(err error) *pgError {
	var pe *pgError
	if errors.As(err, &pe) {
		return pe
	}
	var we WaitError
	if errors.As(err, &we) {
		route, waited := we.WaitedFor()
		e := &pgError{Severity: severityError, Code: pgerrcode.TooManyConnections, Err: err,
			Message: fmt.Sprintf("no upstream connection available for database %q within query_wait_timeout (%s)", route, waited.Round(1e6))}
		exhausted, userCapped, user := we.Busy()
		var de DialError
		if errors.As(err, &de) {
			_, sqlstate, _ := de.DialFailed()
			e.Detail = dialDetail(de)
			if sqlstate != pgerrcode.TooManyConnections && sqlstate != pgerrcode.ConfigurationLimitExceeded {
				e.Code = pgerrcode.ConnectionFailure
			}
		} else if userCapped {
			e.Message = fmt.Sprintf("user %q already holds its limit of upstream connections for database %q; waited %s", user, route, waited.Round(1e6))
			e.Hint = "Finish open transactions sooner, or raise pool.max_user_connections."
		} else if exhausted {
			e.Hint = "Every upstream connection of the pool is busy; raise pool.size or shorten transactions."
		}
		return e
	}
	var de DialError
	if errors.As(err, &de) {
		route, sqlstate, _ := de.DialFailed()
		code := pgerrcode.ConnectionFailure
		if sqlstate == pgerrcode.TooManyConnections || sqlstate == pgerrcode.ConfigurationLimitExceeded {
			code = pgerrcode.TooManyConnections
		}
		return &pgError{Severity: severityError, Code: code, Err: err,
			Message: fmt.Sprintf("could not connect to the upstream of database %q", route),
			Detail:  dialDetail(de),
			Hint:    "The gateway's log has the full error; `dsqlgate check` tests every route."}
	}
	if errors.Is(err, ErrPoolClosed) {
		return &pgError{Severity: severityFatal, Code: pgerrcode.AdminShutdown, Err: err,
			Message: "terminating connection because the gateway is shutting down"}
	}
	return &pgError{Severity: severityError, Code: pgerrcode.InternalError, Err: err,
		Message: "internal gateway error", Hint: "The gateway's log has the details."}
}

// dialDetail says what went wrong upstream in words safe for a client: the
// upstream's own SQLSTATE and message when it refused, else a generic kind.
func dialDetail(de DialError) string {
	var pgErr interface{ SQLState() string }
	if errors.As(de.Unwrap(), &pgErr) {
		return fmt.Sprintf("The upstream refused the connection: %v", de.Unwrap())
	}
	if _, _, retryable := de.DialFailed(); retryable {
		return "The upstream could not be reached (network or timeout)."
	}
	return "The upstream connection failed (TLS, credentials or configuration)."
}

// decodeError decodes an ErrorResponse or NoticeResponse body.
func decodeError(msg []byte) (*pgproto3.ErrorResponse, error) {
	var er pgproto3.ErrorResponse
	if err := er.Decode(body(msg)); err != nil {
		return nil, err
	}
	return &er, nil
}

// isCode reports whether err is a pgError with SQLSTATE code.
func isCode(err error, code string) bool {
	var pe *pgError
	return errors.As(err, &pe) && pe.Code == code
}

// sqlstateOf returns the SQLSTATE of an ErrorResponse without decoding
// the rest.
func sqlstateOf(msg []byte) string {
	b := body(msg)
	for len(b) > 0 && b[0] != 0 {
		code := b[0]
		v, rest, ok := cstringBytes(b[1:])
		if !ok {
			break
		}
		if code == 'C' {
			return string(v)
		}
		b = rest
	}
	return ""
}
