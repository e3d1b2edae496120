package pgwire

import (
	"context"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/dsqlgate/dsqlgate/config"
)

// The OCC retry (occretry.go) against model backends whose "update occ"
// loses optimistic-concurrency conflicts as a script says (modelOCC):
// what is retried succeeds without the client seeing a failure, what is
// not gets the backend's 40001 unchanged.

// occGateway starts a gateway whose route retries OCC failures as cfg
// says (a kind postgres route, where it is off unless turned on), its
// backends failing "update occ" fails times (at the COMMIT of a block when
// atCommit).
func occGateway(t *testing.T, cfg config.OCCRetry, fails int, atCommit bool) (*memGateway, *modelOCC) {
	t.Helper()
	return occGatewayMode(t, cfg, fails, atCommit, config.PoolTransaction)
}

// occGatewayMode is occGateway in pool mode mode.
func occGatewayMode(t *testing.T, cfg config.OCCRetry, fails int, atCommit bool, mode string) (*memGateway, *modelOCC) {
	t.Helper()
	r := config.DefaultRoute(config.KindPostgres, "db")
	r.Endpoint, r.TLS, r.User, r.Password = "model.invalid:5432", config.TLSDisable, "gw", "gw-pw"
	r.Pool.Mode = mode
	r.OCCRetry = cfg
	g := startMemGatewayRoute(t, r)
	script := &modelOCC{failsLeft: fails, atCommit: atCommit}
	g.mu.Lock()
	g.occ = script
	g.mu.Unlock()
	return g, script
}

// occOn is a retry of 5 attempts with short waits.
func occOn() config.OCCRetry {
	return config.OCCRetry{Enabled: true, MaxAttempts: 5, Backoff: config.Duration(time.Millisecond),
		MaxBackoff: config.Duration(5 * time.Millisecond), Budget: config.Duration(5 * time.Second)}
}

func (g *memGateway) occRetries() float64 {
	return counterValue(g.srv.metrics.OCCRetriesTotal.WithLabelValues("db"))
}

func (g *memGateway) occExhausted() float64 {
	return counterValue(g.srv.metrics.OCCRetriesExhaustedTotal.WithLabelValues("db"))
}

func counterValue(c prometheus.Counter) float64 {
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		panic(err)
	}
	return m.GetCounter().GetValue()
}

// wantOCC checks the runs of "update occ" the backends saw and the
// retries counted.
func wantOCC(t *testing.T, g *memGateway, script *modelOCC, runs int, retries, exhausted float64) {
	t.Helper()
	if got := script.count(); got != runs {
		t.Errorf("the backends ran update occ %d times, want %d", got, runs)
	}
	if got := g.occRetries(); got != retries {
		t.Errorf("dsqlgate_occ_retries_total = %v, want %v", got, retries)
	}
	if got := g.occExhausted(); got != exhausted {
		t.Errorf("dsqlgate_occ_retries_exhausted_total = %v, want %v", got, exhausted)
	}
}

func ctx10(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// TestOCCRetrySimpleQuery: an autocommit simple Query (one statement, and
// several, which run as one implicit transaction) that fails twice is sent
// again; the client sees one success.
func TestOCCRetrySimpleQuery(t *testing.T) {
	g, script := occGateway(t, occOn(), 2, false)
	c := g.connect(t)
	mustQuery(t, c, "update occ", "")
	wantOCC(t, g, script, 3, 2, 0)
	script.mu.Lock()
	script.failsLeft = 1
	script.mu.Unlock()
	mustQuery(t, c, "SELECT 5; update occ", "5")
	wantOCC(t, g, script, 5, 3, 0)
	mustQuery(t, c, "SELECT 6", "6") // the session goes on
}

// TestOCCRetryExtended: an extended-protocol batch up to Sync (unnamed
// statement; then a named one parsed in the same batch, which the replay
// closes first) is sent again.
func TestOCCRetryExtended(t *testing.T) {
	g, script := occGateway(t, occOn(), 2, false)
	c := g.connect(t)
	res := c.ExecParams(ctx10(t), "update occ", nil, nil, nil, nil).Read()
	if res.Err != nil || string(res.CommandTag.String()) != "UPDATE 1" {
		t.Fatalf("ExecParams: %v, tag %q", res.Err, res.CommandTag)
	}
	wantOCC(t, g, script, 3, 2, 0)

	script.mu.Lock()
	script.failsLeft = 2
	script.mu.Unlock()
	p := c.StartPipeline(ctx10(t))
	p.SendPrepare("named", "update occ", nil)
	p.SendQueryPrepared("named", nil, nil, nil)
	if err := p.Sync(); err != nil {
		t.Fatal(err)
	}
	pipelineOK(t, p)
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	wantOCC(t, g, script, 6, 4, 0)
	// The statement is there, parsed once for the client: it runs again.
	res = c.ExecPrepared(ctx10(t), "named", nil, nil, nil).Read()
	if res.Err != nil {
		t.Fatalf("ExecPrepared after the retried batch: %v", res.Err)
	}
	wantOCC(t, g, script, 7, 4, 0)
}

// pipelineOK reads a pipeline's results up to its Sync, failing on any
// error.
func pipelineOK(t *testing.T, p *pgconn.Pipeline) {
	t.Helper()
	for {
		r, err := p.GetResults()
		if err != nil {
			t.Fatalf("pipeline: %v", err)
		}
		switch r := r.(type) {
		case *pgconn.PipelineSync:
			return
		case *pgconn.ResultReader:
			if res := r.Read(); res.Err != nil {
				t.Fatalf("pipeline result: %v", res.Err)
			}
		}
	}
}

// pipelineCode reads a pipeline's results up to its first Sync and
// returns the first error's SQLSTATE ("" when none).
func pipelineCode(t *testing.T, p *pgconn.Pipeline) string {
	t.Helper()
	code := ""
	for {
		r, err := p.GetResults()
		if err != nil {
			if code == "" {
				code = sqlstateOfErr(t, err)
			}
			continue
		}
		switch r := r.(type) {
		case *pgconn.PipelineSync:
			return code
		case *pgconn.ResultReader:
			if res := r.Read(); res.Err != nil && code == "" {
				code = sqlstateOfErr(t, res.Err)
			}
		}
	}
}

// TestOCCRetryTransactionBlock: a whole BEGIN ... COMMIT sent as one
// simple Query is sent again: failing at COMMIT (the block is over:
// ReadyForQuery idle), and failing at the statement (the block is failed:
// the gateway rolls it back first).
func TestOCCRetryTransactionBlock(t *testing.T) {
	t.Run("at commit", func(t *testing.T) {
		g, script := occGateway(t, occOn(), 2, true)
		c := g.connect(t)
		mustQuery(t, c, "BEGIN; update occ; COMMIT", "")
		wantOCC(t, g, script, 3, 2, 0)
		mustQuery(t, c, "SELECT 1", "1")
	})
	t.Run("at the statement", func(t *testing.T) {
		g, script := occGateway(t, occOn(), 2, false)
		c := g.connect(t)
		mustQuery(t, c, "BEGIN; update occ; SELECT 9; COMMIT", "9")
		wantOCC(t, g, script, 3, 2, 0)
		if c.TxStatus() != 'I' {
			t.Fatalf("transaction status %c after the retried block, want I", c.TxStatus())
		}
		mustQuery(t, c, "SELECT 1", "1")
	})
	t.Run("extended batch", func(t *testing.T) {
		for _, atCommit := range []bool{true, false} {
			g, script := occGateway(t, occOn(), 2, atCommit)
			c := g.connect(t)
			p := c.StartPipeline(ctx10(t))
			p.SendQueryParams("BEGIN", nil, nil, nil, nil)
			p.SendQueryParams("update occ", nil, nil, nil, nil)
			p.SendQueryParams("COMMIT", nil, nil, nil, nil)
			if err := p.Sync(); err != nil {
				t.Fatal(err)
			}
			pipelineOK(t, p)
			if err := p.Close(); err != nil {
				t.Fatal(err)
			}
			wantOCC(t, g, script, 3, 2, 0)
			if c.TxStatus() != 'I' {
				t.Fatalf("atCommit %v: transaction status %c after the retried batch, want I", atCommit, c.TxStatus())
			}
			mustQuery(t, c, "SELECT 1", "1")
		}
	})
}

// TestOCCNotRetried: what a client could tell apart is never retried: it
// gets the backend's 40001 from the one attempt made.
func TestOCCNotRetried(t *testing.T) {
	t.Run("interactive transaction", func(t *testing.T) {
		g, script := occGateway(t, occOn(), 1, false)
		c := g.connect(t)
		mustQuery(t, c, "BEGIN", "")
		if _, code := query(t, c, "update occ"); code != "40001" {
			t.Fatalf("update occ in an open transaction: SQLSTATE %q, want 40001", code)
		}
		mustQuery(t, c, "ROLLBACK", "")
		wantOCC(t, g, script, 1, 0, 0)
	})
	t.Run("interactive commit", func(t *testing.T) {
		g, script := occGateway(t, occOn(), 1, true)
		c := g.connect(t)
		mustQuery(t, c, "BEGIN", "")
		mustQuery(t, c, "update occ", "")
		if _, code := query(t, c, "COMMIT"); code != "40001" {
			t.Fatalf("COMMIT of an interactive transaction: SQLSTATE %q, want 40001", code)
		}
		wantOCC(t, g, script, 1, 0, 0)
	})
	t.Run("statement after commit", func(t *testing.T) {
		g, script := occGateway(t, occOn(), 1, true)
		c := g.connect(t)
		if _, code := query(t, c, "BEGIN; update occ; COMMIT; SELECT 1"); code != "40001" {
			t.Fatalf("SQLSTATE %q, want 40001", code)
		}
		wantOCC(t, g, script, 1, 0, 0)
	})
	t.Run("rollback in the unit", func(t *testing.T) {
		g, script := occGateway(t, occOn(), 1, false)
		c := g.connect(t)
		if _, code := query(t, c, "update occ; ROLLBACK"); code != "40001" {
			t.Fatalf("SQLSTATE %q, want 40001", code)
		}
		wantOCC(t, g, script, 1, 0, 0)
	})
	// Two units in one write, of statements prepared before (a unit with
	// a Parse would make the next wait for its answer, and run alone).
	pipelined := func(t *testing.T, first, second string) (string, string, *memGateway, *modelOCC) {
		g, script := occGatewayMode(t, occOn(), 1, false, config.PoolSession)
		c := g.connect(t)
		for _, name := range []string{"one", "w"} {
			text := map[string]string{"one": "SELECT 1", "w": "update occ"}[name]
			if _, err := c.Prepare(ctx10(t), name, text, nil); err != nil {
				t.Fatal(err)
			}
		}
		p := c.StartPipeline(ctx10(t))
		p.SendQueryPrepared(first, nil, nil, nil)
		p.SendPipelineSync()
		p.SendQueryPrepared(second, nil, nil, nil)
		if err := p.Sync(); err != nil {
			t.Fatal(err)
		}
		code1, code2 := pipelineCode(t, p), pipelineCode(t, p)
		p.Close()
		return code1, code2, g, script
	}
	t.Run("pipelined behind another unit", func(t *testing.T) {
		code1, code2, g, script := pipelined(t, "one", "w")
		if code1 != "" || code2 != "40001" {
			t.Fatalf("SQLSTATEs %q, %q; want none, then 40001", code1, code2)
		}
		wantOCC(t, g, script, 1, 0, 0)
	})
	t.Run("another unit pipelined behind it", func(t *testing.T) {
		code1, code2, g, script := pipelined(t, "w", "one")
		if code1 != "40001" || code2 != "" {
			t.Fatalf("SQLSTATEs %q, %q; want 40001, then none", code1, code2)
		}
		wantOCC(t, g, script, 1, 0, 0)
	})
	t.Run("replies beyond the hold", func(t *testing.T) {
		old := maxOCCHold
		maxOCCHold = 64
		t.Cleanup(func() { maxOCCHold = old })
		g, script := occGateway(t, occOn(), 1, false)
		c := g.connect(t)
		if _, code := query(t, c, "SELECT 'a value longer than the hold of sixty-four bytes allows for'; update occ"); code != "40001" {
			t.Fatalf("SQLSTATE %q, want 40001", code)
		}
		wantOCC(t, g, script, 1, 0, 0)
		mustQuery(t, c, "update occ", "") // a short unit is retried again
	})
	t.Run("disabled", func(t *testing.T) {
		cfg := occOn()
		cfg.Enabled = false
		g, script := occGateway(t, cfg, 1, false)
		c := g.connect(t)
		if _, code := query(t, c, "update occ"); code != "40001" {
			t.Fatalf("SQLSTATE %q, want 40001", code)
		}
		wantOCC(t, g, script, 1, 0, 0)
	})
}

// TestOCCRetryExhausted: a unit that fails every attempt gets the last
// attempt's 40001, unchanged, after max_attempts attempts; the exhausted
// metric counts it.
func TestOCCRetryExhausted(t *testing.T) {
	cfg := occOn()
	cfg.MaxAttempts = 3
	g, script := occGateway(t, cfg, 100, false)
	c := g.connect(t)
	_, err := c.Exec(ctx10(t), "update occ").ReadAll()
	var pe *pgconn.PgError
	if !asPgError(err, &pe) || pe.Code != "40001" || pe.Message != modelOCCError().msg {
		t.Fatalf("got %v, want the backend's 40001", err)
	}
	wantOCC(t, g, script, 3, 2, 1)
	mustQuery(t, c, "SELECT 1", "1")
}

func asPgError(err error, pe **pgconn.PgError) bool {
	if err == nil {
		return false
	}
	p, ok := err.(*pgconn.PgError)
	*pe = p
	return ok
}

// TestOCCRetryBudget: the retries of one unit stop once the budget has
// passed, whatever attempts are left.
func TestOCCRetryBudget(t *testing.T) {
	cfg := occOn()
	cfg.MaxAttempts = 1000
	cfg.Backoff, cfg.MaxBackoff, cfg.Budget = config.Duration(20*time.Millisecond), config.Duration(20*time.Millisecond), config.Duration(100*time.Millisecond)
	g, script := occGateway(t, cfg, 100000, false)
	c := g.connect(t)
	start := time.Now()
	if _, code := query(t, c, "update occ"); code != "40001" {
		t.Fatalf("SQLSTATE %q, want 40001", code)
	}
	if took := time.Since(start); took > time.Second {
		t.Fatalf("the unit took %s with a 100ms budget", took)
	}
	if runs := script.count(); runs < 2 || runs > 200 {
		t.Fatalf("%d attempts in a 100ms budget of waits below 20ms", runs)
	}
	if got := g.occExhausted(); got != 1 {
		t.Fatalf("exhausted = %v, want 1", got)
	}
}

// TestOCCBackoff: each wait is drawn below its bound (backoff doubling per
// retry, capped by max_backoff) and never past what is left of the budget.
func TestOCCBackoff(t *testing.T) {
	cfg := config.OCCRetry{Backoff: config.Duration(5 * time.Millisecond), MaxBackoff: config.Duration(40 * time.Millisecond)}
	for attempt, bound := range map[int]time.Duration{1: 5 * time.Millisecond, 2: 10 * time.Millisecond, 3: 20 * time.Millisecond, 4: 40 * time.Millisecond, 9: 40 * time.Millisecond} {
		var most time.Duration
		for range 2000 {
			d := occBackoff(cfg, attempt, time.Hour)
			if d < 0 || d > bound {
				t.Fatalf("attempt %d: wait %s outside [0, %s]", attempt, d, bound)
			}
			most = max(most, d)
		}
		if most < bound/2 {
			t.Fatalf("attempt %d: longest of 2000 waits %s, bound %s: not jittered over the range", attempt, most, bound)
		}
	}
	for range 1000 {
		if d := occBackoff(cfg, 4, 3*time.Millisecond); d > 3*time.Millisecond {
			t.Fatalf("wait %s past the 3ms left of the budget", d)
		}
	}
	if d := occBackoff(cfg, 4, -time.Millisecond); d != 0 {
		t.Fatalf("wait %s with the budget spent", d)
	}
}

// TestOCCRetryDisabledByDefaultOnPostgres: a kind postgres route does not
// retry unless its configuration says so; a kind dsql one does.
func TestOCCRetryDefaults(t *testing.T) {
	if config.DefaultRoute(config.KindPostgres, "x").OCCRetry.Enabled {
		t.Fatal("retry on by default for kind postgres")
	}
	if !config.DefaultRoute(config.KindDSQL, "x").OCCRetry.Enabled {
		t.Fatal("retry off by default for kind dsql")
	}
}

// TestOCCRetryReload: a reload that turns the retry off (or changes its
// attempts) applies to the sessions already connected, from their next
// unit.
func TestOCCRetryReload(t *testing.T) {
	g, script := occGateway(t, occOn(), 1, false)
	c := g.connect(t)
	mustQuery(t, c, "update occ", "")
	wantOCC(t, g, script, 2, 1, 0)

	reload := func(f func(*config.OCCRetry)) {
		cfg := *g.srv.currentConfig()
		cfg.Routes = slices.Clone(cfg.Routes)
		f(&cfg.Routes[0].OCCRetry)
		g.srv.conf.Store(&cfg)
	}
	reload(func(o *config.OCCRetry) { o.Enabled = false })
	script.mu.Lock()
	script.failsLeft = 1
	script.mu.Unlock()
	if _, code := query(t, c, "update occ"); code != "40001" {
		t.Fatalf("after the reload turned it off: SQLSTATE %q, want 40001", code)
	}
	wantOCC(t, g, script, 3, 1, 0)

	reload(func(o *config.OCCRetry) { o.Enabled, o.MaxAttempts = true, 2 })
	script.mu.Lock()
	script.failsLeft = 5
	script.mu.Unlock()
	if _, code := query(t, c, "update occ"); code != "40001" {
		t.Fatalf("with 2 attempts against 5 conflicts: SQLSTATE %q, want 40001", code)
	}
	wantOCC(t, g, script, 5, 2, 1)
}

// TestOCCRetryStatementTimeout: on a DSQL route (retry on by default) the
// gateway's statement_timeout clock runs across attempts: a unit that
// keeps conflicting stops being retried when it fires, long before its
// attempts or budget are spent.
func TestOCCRetryStatementTimeout(t *testing.T) {
	r := config.DefaultRoute(config.KindDSQL, "db")
	r.Endpoint = "abcdefghijklmnopqrstuvwxyz.dsql.us-east-1.on.aws"
	r.OCCRetry.MaxAttempts = 1000
	r.OCCRetry.Backoff, r.OCCRetry.MaxBackoff = config.Duration(20*time.Millisecond), config.Duration(20*time.Millisecond)
	r.OCCRetry.Budget = config.Duration(30 * time.Second)
	g := startMemGatewayRoute(t, r)
	script := &modelOCC{failsLeft: 1 << 30}
	g.mu.Lock()
	g.occ = script
	g.mu.Unlock()
	c := g.connect(t)
	mustQuery(t, c, "SET statement_timeout = '200ms'", "")
	start := time.Now()
	_, code := query(t, c, "update occ")
	took := time.Since(start)
	if code != "40001" && code != "57014" {
		t.Fatalf("SQLSTATE %q, want 40001 or 57014", code)
	}
	if took > 2*time.Second {
		t.Fatalf("the unit was retried for %s past a 200ms statement_timeout", took)
	}
	if runs := script.count(); runs < 2 {
		t.Fatalf("%d attempts: not retried before the timeout", runs)
	}
	t.Logf("%s, %d attempts, SQLSTATE %s", took, script.count(), code)
	script.mu.Lock()
	script.failsLeft = 0
	script.mu.Unlock()
	mustQuery(t, c, "update occ", "") // the session goes on
}

// TestOCCRetryResultsIntact: the client gets exactly the last attempt's
// results, every statement's rows and tags in order, once: in a
// multi-statement Query and in a batch of several statements.
func TestOCCRetryResultsIntact(t *testing.T) {
	g, script := occGateway(t, occOn(), 2, false)
	c := g.connect(t)
	results, err := c.Exec(ctx10(t), "SELECT 7; update occ; SELECT 8").ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, r := range results {
		if r.Err != nil {
			t.Fatal(r.Err)
		}
		got = append(got, r.CommandTag.String())
		for _, row := range r.Rows {
			got = append(got, string(row[0]))
		}
	}
	if want := []string{"SELECT 1", "7", "UPDATE 1", "SELECT 1", "8"}; !slices.Equal(got, want) {
		t.Fatalf("Query results %q, want %q", got, want)
	}
	wantOCC(t, g, script, 3, 2, 0)

	script.mu.Lock()
	script.failsLeft = 2
	script.mu.Unlock()
	p := c.StartPipeline(ctx10(t))
	for _, sql := range []string{"SELECT 7", "update occ", "SELECT 8"} {
		p.SendQueryParams(sql, nil, nil, nil, nil)
	}
	if err := p.Sync(); err != nil {
		t.Fatal(err)
	}
	got = got[:0]
	for {
		r, err := p.GetResults()
		if err != nil {
			t.Fatal(err)
		}
		if _, ok := r.(*pgconn.PipelineSync); ok {
			break
		}
		res := r.(*pgconn.ResultReader).Read()
		if res.Err != nil {
			t.Fatal(res.Err)
		}
		got = append(got, res.CommandTag.String())
		for _, row := range res.Rows {
			got = append(got, string(row[0]))
		}
	}
	p.Close()
	if want := []string{"SELECT 1", "7", "UPDATE 1", "SELECT 1", "8"}; !slices.Equal(got, want) {
		t.Fatalf("batch results %q, want %q", got, want)
	}
	wantOCC(t, g, script, 6, 4, 0)
}

// TestOCCRetryUpstreamLost: an upstream lost during a retry goes through
// the loss path (an autocommit unit in flight: 08007, whether it
// committed is unknown), and the session goes on on another upstream.
func TestOCCRetryUpstreamLost(t *testing.T) {
	g, script := occGateway(t, occOn(), 1, false)
	script.mu.Lock()
	script.dieAt = 2 // the retry's attempt
	script.mu.Unlock()
	c := g.connect(t)
	if _, code := query(t, c, "update occ"); code != "08007" {
		t.Fatalf("upstream lost during the retry: SQLSTATE %q, want 08007", code)
	}
	wantOCC(t, g, script, 2, 1, 0)
	mustQuery(t, c, "SELECT 3", "3")
	mustQuery(t, c, "update occ", "")
}

// TestOCCError: what counts as an optimistic-concurrency failure: ERROR
// 40001 (DSQL's OC000/OC001 come with it), and a bare OC000 or OC001 as
// AWS's connectors also accept; nothing else, and no FATAL.
func TestOCCError(t *testing.T) {
	for _, tc := range []struct {
		severity, code string
		want           bool
	}{
		{"ERROR", "40001", true},
		{"ERROR", "OC000", true},
		{"ERROR", "OC001", true},
		{"ERROR", "40P01", false},
		{"ERROR", "57014", false},
		{"ERROR", "23505", false},
		{"FATAL", "40001", false},
	} {
		msg := appendErrorResponse(nil, &pgError{Severity: tc.severity, Code: tc.code, Message: "m"})
		if got := occError(msg); got != tc.want {
			t.Errorf("%s %s: occError %v, want %v", tc.severity, tc.code, got, tc.want)
		}
	}
}

// TestOCCRetryCancelled: a client's CancelRequest that arrives between two
// attempts (in the backoff, after the gateway rolled back a failed block)
// finds the upstream idle; the retry must stop there: the client gets the
// failed attempt's 40001 and nothing runs again. The block's case also
// shows the ReadyForQuery the client gets then says idle, as the upstream
// is after the gateway's ROLLBACK.
func TestOCCRetryCancelled(t *testing.T) {
	for _, tc := range []struct{ name, sql string }{
		{"autocommit", "update occ"},
		{"failed block rolled back", "BEGIN; update occ; COMMIT"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			inBackoff, proceed := make(chan struct{}), make(chan struct{})
			var once bool
			// Registered before the gateway starts, so it runs after the
			// gateway (and its sessions) stopped.
			t.Cleanup(func() { occBackoffHook = nil })
			occBackoffHook = func() {
				if once {
					return
				}
				once = true
				close(inBackoff)
				<-proceed
			}
			g, script := occGateway(t, occOn(), 1, false)
			c := g.connect(t)
			type res struct{ code string }
			done := make(chan res, 1)
			go func() {
				_, err := c.Exec(ctx10(t), tc.sql).ReadAll()
				code := ""
				var pe *pgconn.PgError
				if asPgError(err, &pe) {
					code = pe.Code
				}
				done <- res{code}
			}()
			select {
			case <-inBackoff:
			case <-time.After(10 * time.Second):
				t.Fatal("the retry never reached its backoff")
			}
			if err := c.CancelRequest(ctx10(t)); err != nil {
				t.Fatal(err)
			}
			close(proceed)
			r := <-done
			if r.code != "40001" {
				t.Fatalf("cancelled in the backoff: SQLSTATE %q, want the attempt's 40001", r.code)
			}
			wantOCC(t, g, script, 1, 0, 0)
			if c.TxStatus() != 'I' {
				t.Fatalf("transaction status %c, want I", c.TxStatus())
			}
			mustQuery(t, c, "SELECT 2", "2")  // the session goes on
			mustQuery(t, c, "update occ", "") // and a later unit is retried as before
		})
	}
}

// TestOCCNotRetriedMidwayCommit: a CALL or a DO block may COMMIT part of
// its work before it fails with 40001; running it again would run that
// part twice, so it is never retried, whatever the route's occ_retry.
func TestOCCNotRetriedMidwayCommit(t *testing.T) {
	for _, sql := range []string{"call occ()", "CALL occ()", "do $$occ$$", "DO $$occ$$", "SELECT 1; CALL occ()"} {
		t.Run(sql, func(t *testing.T) {
			g, script := occGateway(t, occOn(), 1, false)
			c := g.connect(t)
			if _, code := query(t, c, sql); code != "40001" {
				t.Fatalf("SQLSTATE %q, want 40001", code)
			}
			wantOCC(t, g, script, 1, 0, 0)
		})
	}
	t.Run("extended", func(t *testing.T) {
		g, script := occGateway(t, occOn(), 1, false)
		c := g.connect(t)
		res := c.ExecParams(ctx10(t), "CALL occ()", nil, nil, nil, nil).Read()
		var pe *pgconn.PgError
		if !asPgError(res.Err, &pe) || pe.Code != "40001" {
			t.Fatalf("ExecParams: %v, want 40001", res.Err)
		}
		wantOCC(t, g, script, 1, 0, 0)
	})
}

// TestOCCNotRetriedListening: a session that listens gets notifications
// at any time, which a held attempt could swallow or reorder: its units
// are not retried.
func TestOCCNotRetriedListening(t *testing.T) {
	g, script := occGatewayMode(t, occOn(), 1, false, config.PoolSession)
	c := g.connect(t)
	mustQuery(t, c, "LISTEN ch", "")
	if _, code := query(t, c, "update occ"); code != "40001" {
		t.Fatalf("SQLSTATE %q, want 40001", code)
	}
	wantOCC(t, g, script, 1, 0, 0)
}

// TestOCCReleaseKeepsAside: the asynchronous messages kept aside between
// attempts are handed out, before the held replies; and the held
// ReadyForQuery of a block the gateway rolled back says idle.
func TestOCCReleaseKeepsAside(t *testing.T) {
	var o occRetrier
	msg := func(typ byte, body string) []byte {
		m, st := beginMessage(nil, typ)
		m = append(m, body...)
		return finishMessage(m, st)
	}
	e, z, n := msg('E', "x\x00"), msg('Z', "E"), msg('N', "y\x00")
	for _, m := range [][]byte{e, z} {
		o.held = append(o.held, m...)
		o.ends = append(o.ends, len(o.held))
	}
	if !o.keepAside(n) {
		t.Fatal("keepAside refused one small message")
	}
	o.rolledBack, o.phase = true, occHolding
	if !o.midway() {
		t.Fatal("not midway with replies held")
	}
	o.release(nil)
	var got []string
	start := 0
	for _, end := range o.ends {
		got = append(got, string(o.held[start:end]))
		start = end
	}
	want := []string{string(n), string(e), string(msg('Z', "I"))}
	if !slices.Equal(got, want) {
		t.Fatalf("released %q, want %q", got, want)
	}
}

// TestOCCDisarmed: nothing the retrier kept of a unit outlives it: after
// a retried unit whose upstream was detached, and for a unit too large for
// the upstream's write buffer (a server goroutine reads its replies, so
// it can never be retried), the retrier is idle and holds nothing when
// the client's next message comes.
func TestOCCDisarmed(t *testing.T) {
	type seen struct {
		phase        occPhase
		held, replay int
	}
	var mu sync.Mutex
	var seenLast seen // set on the client goroutine, as a message comes
	t.Cleanup(func() { testHookLocked = nil })
	testHookLocked = func(s *session) {
		mu.Lock()
		seenLast = seen{s.retry.phase, len(s.retry.held) + len(s.retry.ends), len(s.retry.replay)}
		mu.Unlock()
	}
	lastSeen := func() seen {
		mu.Lock()
		defer mu.Unlock()
		return seenLast
	}
	g, script := occGateway(t, occOn(), 1, false)
	c := g.connect(t)
	mustQuery(t, c, "update occ", "")
	wantOCC(t, g, script, 2, 1, 0)
	mustQuery(t, c, "SELECT 1", "1")
	if last := lastSeen(); last != (seen{}) {
		t.Fatalf("after a retried unit: retrier %+v, want idle and empty", last)
	}

	script.mu.Lock()
	script.failsLeft = 1
	script.mu.Unlock()
	big := "SELECT '" + strings.Repeat("x", 8<<10) + "'; update occ"
	if _, code := query(t, c, big); code != "40001" {
		t.Fatalf("a unit over the write buffer: SQLSTATE %q, want 40001 (not retried)", code)
	}
	mustQuery(t, c, "SELECT 1", "1")
	if last := lastSeen(); last != (seen{}) {
		t.Fatalf("after a unit read by a server goroutine: retrier %+v, want idle and empty", last)
	}
}
