package pgwire

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgerrcode"
	"github.com/jackc/pgx/v5/pgconn"
)

// capWaitError is a WaitError of a user at its limit of connections.
type capWaitError struct{ last error }

func (e capWaitError) Error() string { return "waited" }
func (e capWaitError) Unwrap() error { return e.last }
func (e capWaitError) WaitedFor() (string, time.Duration) {
	return "db", 1500 * time.Millisecond
}
func (e capWaitError) Busy() (bool, bool, string) { return false, true, "alice" }

// TestErrorForClientUpstream: the pool's errors, known only by the
// interfaces of upstream.go and found anywhere in the chain, get their
// SQLSTATE and words; anything else is an internal error.
func TestErrorForClientUpstream(t *testing.T) {
	refused := &memDialError{route: "db", err: &pgconn.PgError{Code: "53300", Message: "too many connections"}}
	unreachable := &memDialError{route: "db", err: errors.New("connection refused")}
	for _, c := range []struct {
		name     string
		err      error
		code     string
		severity string
		words    string
	}{
		{"user capped", fmt.Errorf("acquire: %w", capWaitError{}), pgerrcode.TooManyConnections, severityError, `user "alice" already holds its limit`},
		{"wait ended by a refusal", capWaitError{last: refused}, pgerrcode.TooManyConnections, severityError, "The upstream refused the connection"},
		{"wait ended by a network error", capWaitError{last: unreachable}, pgerrcode.ConnectionFailure, severityError, "could not be reached"},
		{"pool busy", &memWaitError{route: "db", waited: time.Second}, pgerrcode.TooManyConnections, severityError, "raise pool.size"},
		{"dial refused", refused, pgerrcode.TooManyConnections, severityError, `could not connect to the upstream of database "db"`},
		{"dial failed", unreachable, pgerrcode.ConnectionFailure, severityError, "could not be reached"},
		{"closed", fmt.Errorf("acquire: %w", ErrPoolClosed), pgerrcode.AdminShutdown, severityFatal, "shutting down"},
		{"other", errors.New("boom"), pgerrcode.InternalError, severityError, "internal gateway error"},
	} {
		e := errorForClient(c.err)
		all := e.Message + " " + e.Detail + " " + e.Hint
		if e.Code != c.code || e.Severity != c.severity || !strings.Contains(all, c.words) {
			t.Errorf("%s: %s %s %q; want %s %s with %q", c.name, e.Severity, e.Code, all, c.severity, c.code, c.words)
		}
	}
}
