//go:build clients

package clients

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
)

// What the in-process scenarios share with the programs' (doc.go).
const (
	stepTimeout = 30 * time.Second
	reuseCount  = 50   // executions of one prepared statement
	bulkRows    = 1000 // rows of bulk_insert; under DSQL's 3,000 per transaction
	// cancelAfter is how long the cancel step lets pg_sleep(30) run before
	// cancelling it; cancelWithin bounds the whole step.
	cancelAfter  = 500 * time.Millisecond
	cancelWithin = 10 * time.Second
	// timestampQuery and its text under TimeZone America/New_York.
	timestampQuery = "select '2024-01-15 12:00:00+00'::timestamptz::text"
	timestampNY    = "2024-01-15 07:00:00-05"
	scenarioTZ     = "America/New_York"
)

// goClients are the in-process clients, in the matrix's order.
func goClients() []client {
	var out []client
	for _, m := range pgxModes {
		out = append(out, client{name: "pgx-" + m.name, run: func(ctx context.Context, tg target) report {
			return runPgxPool(ctx, tg, m.mode)
		}})
	}
	return append(out,
		client{name: "pgx-stdlib", run: runPgxStdlib},
		client{name: "libpq", run: runLibPQ},
		client{name: "gorm", run: runGORM},
	)
}

// recorder collects the steps of one in-process run.
type recorder struct {
	steps []stepResult
}

// skipError marks a step the client cannot do; the string is the reason.
type skipError string

func (e skipError) Error() string { return string(e) }

// step runs fn as the named step with its own deadline. fn returns a short
// detail for the matrix log, an error, or skipError.
func (r *recorder) step(ctx context.Context, name string, fn func(ctx context.Context) (string, error)) {
	ctx, cancel := context.WithTimeout(ctx, stepTimeout)
	defer cancel()
	var (
		detail string
		err    error
	)
	func() {
		defer func() {
			if p := recover(); p != nil {
				err = fmt.Errorf("panic: %v", p)
			}
		}()
		detail, err = fn(ctx)
	}()
	var skip skipError
	switch {
	case errors.As(err, &skip):
		r.steps = append(r.steps, stepResult{Step: name, OK: true, Detail: skippedPrefix + string(skip)})
	case err != nil:
		r.steps = append(r.steps, stepResult{Step: name, Detail: err.Error()})
	default:
		r.steps = append(r.steps, stepResult{Step: name, OK: true, Detail: detail})
	}
}

// fail marks every standard step not yet recorded as failed with why (a
// run that could not go on, e.g. no connection).
func (r *recorder) fail(why string) {
	for _, s := range standardSteps {
		done := false
		for _, got := range r.steps {
			done = done || got.Step == s
		}
		if !done {
			r.steps = append(r.steps, stepResult{Step: s, Detail: why})
		}
	}
}

// killAll asks the emulator to cut every upstream, as the programs do, and
// fails unless at least one was cut.
func killAll(ctx context.Context, tg target) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, tg.ControlURL+"/kill?all=1", nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("kill upstreams: %w", err)
	}
	defer resp.Body.Close()
	var body struct {
		Killed int `json:"killed"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil || resp.StatusCode != http.StatusOK {
		return fmt.Errorf("kill upstreams: status %d, %v", resp.StatusCode, err)
	}
	if body.Killed < 1 {
		return errors.New("kill upstreams: the emulator had no upstream to cut")
	}
	// The emulator answers once it has closed the upstreams; the gateway
	// sees an idle upstream's close a moment later (its idle watcher), and
	// replaces it before the session's next statement. A statement sent in
	// that moment goes to an upstream already closed, which the gateway
	// cannot tell from one lost while the statement ran (08007): wait for
	// the close to arrive, as it does for any upstream lost while idle.
	time.Sleep(200 * time.Millisecond)
	return nil
}

// sqlState is the SQLSTATE of a PostgreSQL error from pgx (and so from
// pgx's stdlib and GORM), or "".
func sqlState(err error) string {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		return pgErr.Code
	}
	return ""
}

// wantState fails unless err carries SQLSTATE code (code "" means no error).
func wantState(what string, err error, code string, state func(error) string) error {
	got := state(err)
	switch {
	case code == "" && err != nil:
		return fmt.Errorf("%s: %w", what, err)
	case code != "" && err == nil:
		return fmt.Errorf("%s: succeeded, want SQLSTATE %s", what, code)
	case got != code:
		return fmt.Errorf("%s: %v (SQLSTATE %q), want SQLSTATE %s", what, err, got, code)
	}
	return nil
}

// want fails unless got == want.
func want[T comparable](what string, got, want T) error {
	if got != want {
		return fmt.Errorf("%s: got %v, want %v", what, got, want)
	}
	return nil
}

// firstErr returns the first non-nil error.
func firstErr(errs ...error) error {
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

// tlsVersion names a TLS version as the matrix detail shows it.
func tlsVersion(v uint16) string {
	return tls.VersionName(v)
}

// moduleVersion is the version of a module the test is built with, as
// go.mod requires it (test binaries carry no module list).
func moduleVersion(path string) string {
	versionsOnce.Do(func() {
		b, err := os.ReadFile(filepath.Join("..", "..", "go.mod"))
		if err != nil {
			return
		}
		for _, line := range strings.Split(string(b), "\n") {
			f := strings.Fields(strings.TrimPrefix(strings.TrimSpace(line), "require "))
			if len(f) >= 2 && strings.HasPrefix(f[1], "v") {
				versions[f[0]] = f[1]
			}
		}
	})
	if v := versions[path]; v != "" {
		return v
	}
	return "unknown"
}

var (
	versionsOnce sync.Once
	versions     = map[string]string{}
)
