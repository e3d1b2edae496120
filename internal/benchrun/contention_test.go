//go:build linux

package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"
)

func TestClassifyError(t *testing.T) {
	tests := []struct {
		name     string
		err      error
		wantKind string
		wantOCC  bool
	}{
		{"data conflict", &pgconn.PgError{Code: "40001", Message: "change conflicts with another transaction, please retry: (OC000)"}, occData, true},
		{"schema conflict", &pgconn.PgError{Code: "40001", Message: "schema has been updated by another transaction, please retry: (OC001)"}, occSchema, true},
		{"serialization failure without a DSQL code", &pgconn.PgError{Code: "40001", Message: "could not serialize access due to concurrent update"}, occOther, true},
		{"wrapped", fmt.Errorf("op: %w", &pgconn.PgError{Code: "40001", Message: "x (OC000)"}), occData, true},
		{"another SQLSTATE", &pgconn.PgError{Code: "55P03", Message: "lock timeout (OC000)"}, "55P03", false},
		{"not a server error", errors.New("connection reset"), "client", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			kind, occ := classifyError(tc.err)
			if kind != tc.wantKind || occ != tc.wantOCC {
				t.Errorf("got %q, %v; want %q, %v", kind, occ, tc.wantKind, tc.wantOCC)
			}
		})
	}
}

func TestTallyAndMerge(t *testing.T) {
	a, b := newTally(), newTally()
	a.record(nil, 2*time.Millisecond)
	a.record(&pgconn.PgError{Code: "40001", Message: "(OC000)"}, time.Millisecond)
	a.record(errors.New("broken pipe"), 0)
	b.record(nil, 4*time.Millisecond)
	b.record(nil, 6*time.Millisecond)
	b.record(&pgconn.PgError{Code: "40001", Message: "(OC001)"}, time.Millisecond)
	b.record(errors.New("EOF"), 0)

	r := contentionResult{occ: map[string]int64{}, other: map[string]int64{}, sample: map[string]string{}, elapsed: 2 * time.Second}
	r.merge(a)
	r.merge(b)
	if r.ok != 3 || r.occTotal() != 2 || r.otherTotal() != 2 {
		t.Fatalf("ok %d, occ %d, other %d; want 3, 2, 2", r.ok, r.occTotal(), r.otherTotal())
	}
	if diff := cmp.Diff([]float64{2000, 4000, 6000}, r.latUs); diff != "" {
		t.Errorf("latencies (-want +got):\n%s", diff)
	}
	if r.sample["client"] != "broken pipe" {
		t.Errorf("sample %q, want the first client's", r.sample["client"])
	}
	if got := r.throughput(); got != 1.5 {
		t.Errorf("throughput %v, want 1.5", got)
	}
	if got := kindCounts(r.occ); got != "2 (OC000 1, OC001 1)" {
		t.Errorf("kindCounts %q", got)
	}
	if got := kindCounts(map[string]int64{}); got != "0" {
		t.Errorf("kindCounts of none %q", got)
	}
}

func TestParseRetryCounters(t *testing.T) {
	tests := []struct {
		name string
		page string
		want retryCounters
	}{
		{
			name: "a build without the counters",
			page: "# HELP go_goroutines Number of goroutines.\n# TYPE go_goroutines gauge\ngo_goroutines 12\n",
			want: retryCounters{},
		},
		{
			name: "declared, no series yet",
			page: "# HELP dsqlgate_occ_retries_total OCC retries.\n# TYPE dsqlgate_occ_retries_total counter\n",
			want: retryCounters{present: true},
		},
		{
			name: "series by route",
			page: `# TYPE dsqlgate_occ_retries_total counter
dsqlgate_occ_retries_total{route="bench"} 120
dsqlgate_occ_retries_total{route="bench_session"} 7
dsqlgate_occ_retries_total{kind="autocommit",route="bench"} 5 1700000000000
# TYPE dsqlgate_occ_retries_exhausted_total counter
dsqlgate_occ_retries_exhausted_total{route="bench"} 3
dsqlgate_occ_retries_exhausted_total{route="other"} 9
`,
			want: retryCounters{retries: 125, exhausted: 3, present: true},
		},
		{
			name: "no route label",
			page: "dsqlgate_occ_retries_total 4\ndsqlgate_occ_retries_exhausted_total 1\n",
			want: retryCounters{retries: 4, exhausted: 1, present: true},
		},
		{
			name: "a comma and a brace inside a label value",
			page: `dsqlgate_occ_retries_total{reason="a,b}",route="bench"} 2` + "\n",
			want: retryCounters{retries: 2, present: true},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseRetryCounters(strings.NewReader(tc.page), "bench")
			if err != nil {
				t.Fatal(err)
			}
			if got != tc.want {
				t.Errorf("got %+v, want %+v", got, tc.want)
			}
		})
	}
}

func TestRetryCountersSince(t *testing.T) {
	// Absent before (no series until the first retry), present after.
	if r, e, ok := (retryCounters{retries: 10, exhausted: 1, present: true}).since(retryCounters{}); !ok || r != 10 || e != 1 {
		t.Errorf("got %v, %v, %v; want 10, 1, true", r, e, ok)
	}
	if r, _, ok := (retryCounters{retries: 30, present: true}).since(retryCounters{retries: 10, present: true}); !ok || r != 20 {
		t.Errorf("got %v, %v; want 20, true", r, ok)
	}
	if _, _, ok := (retryCounters{}).since(retryCounters{}); ok {
		t.Error("an absent counter is known")
	}
}

func TestWriteContention(t *testing.T) {
	newResult := func(c contentionCell) contentionResult {
		return contentionResult{cell: c, occ: map[string]int64{}, other: map[string]int64{}, sample: map[string]string{}}
	}
	gw := newResult(contentionCell{workloadAutocommit, contentionGateway, 16})
	gw.elapsed, gw.ok, gw.sum = 2*time.Second, 1000, 1000
	gw.latUs = []float64{1000, 2000, 3000, 50000}
	gw.occ[occData] = 40
	gw.retriesKnown, gw.retries, gw.exhausted = true, 1234, 2

	emu := newResult(contentionCell{workloadTxOneUnit, contentionEmulator, 64})
	emu.elapsed, emu.ok, emu.sum = time.Second, 10, 11
	emu.latUs = []float64{500}
	emu.other["client"], emu.sample["client"] = 1, "unexpected EOF"

	unknown := newResult(contentionCell{workloadTxOneUnit, contentionGateway, 64})
	unknown.elapsed, unknown.ok, unknown.sum = time.Second, 5, 5
	unknown.latUs = []float64{700}

	failed := newResult(contentionCell{workloadAutocommit, contentionEmulator, 16})
	failed.err = errors.New("connect 16 clients to emulator: refused")

	var b strings.Builder
	writeContention(func(format string, args ...any) { fmt.Fprintf(&b, format, args...) },
		[]contentionResult{gw, emu, unknown, failed}, 2*time.Second, 20)
	out := b.String()
	for _, want := range []string{
		"## Contention: hot rows under optimistic concurrency",
		"`pool.size: 20`",
		"| autocommit | `gw-dsql-tx` | 16 | 1,000 | 500 | 2.00 | 50.0 | 40 (OC000 40) | 0 | 1,234 | 2 | yes |",
		"| tx-one-unit | `emulator` | 64 | 10 | 10 | 0.500 | 0.500 | 0 | 1 (client 1) | — | — | **no**: sum 11 |",
		"| tx-one-unit | `gw-dsql-tx` | 64 | 5 | 5 | 0.700 | 0.700 | 0 | 0 | n/a | n/a | yes |",
		"| autocommit | `emulator` | 16 | failed |",
		"- tx-one-unit, emulator, 64 clients: 1 × client, e.g. unexpected EOF",
		"- autocommit, emulator, 16 clients: connect 16 clients to emulator: refused",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("report lacks %q:\n%s", want, out)
		}
	}
	// Every table row has as many cells as the head.
	var cols int
	for _, line := range strings.Split(out, "\n") {
		if !strings.HasPrefix(line, "| ") {
			continue
		}
		n := strings.Count(line, "|")
		if cols == 0 {
			cols = n
		} else if n != cols {
			t.Errorf("row has %d bars, head %d: %s", n, cols, line)
		}
	}
}

func TestParseParts(t *testing.T) {
	all, err := parseParts("")
	if err != nil || len(all) != len(allParts) {
		t.Fatalf("empty: %v, %v", all, err)
	}
	got, err := parseParts("contention, memory")
	if err != nil || !reflect.DeepEqual(got, map[string]bool{partContention: true, partMemory: true}) {
		t.Fatalf("got %v, %v", got, err)
	}
	if _, err := parseParts("contention,bogus"); err == nil {
		t.Fatal("an unknown part was accepted")
	}

	o := options{quick: true, only: map[string]bool{partContention: true}}
	p := planFor(o)
	if len(p.cells) != 0 || len(p.idleClients) != 0 || p.replacements != 0 {
		t.Errorf("-only contention plan runs other parts: %+v", p)
	}
	if got, want := len(p.contention), len(contentionWorkloads)*len(contentionTargets)*2; got != want {
		t.Errorf("%d contention cells, want %d", got, want)
	}
	for _, n := range []int{16, 64} {
		if !containsClients(p.contention, n) {
			t.Errorf("quick plan has no contention cell at %d clients", n)
		}
	}
	if full := planFor(options{}); len(full.contention) != len(p.contention) || len(full.cells) == 0 {
		t.Errorf("full plan: %d contention cells, %d pgbench cells", len(full.contention), len(full.cells))
	}
}

func containsClients(cells []contentionCell, n int) bool {
	for _, c := range cells {
		if c.clients == n {
			return true
		}
	}
	return false
}

// TestContentionOpMessages runs each workload's operation against a fake
// server and checks the messages it gets: the one-unit transaction is one
// Query message holding BEGIN, the UPDATE and COMMIT; the autocommit UPDATE
// one Parse/Bind/Describe/Execute/Sync round trip.
func TestContentionOpMessages(t *testing.T) {
	tests := []struct {
		workload string
		want     []string
	}{
		{workloadTxOneUnit, []string{"Query BEGIN; UPDATE counters SET n = n + 1 WHERE id = 3; COMMIT"}},
		{workloadAutocommit, []string{"Parse UPDATE counters SET n = n + 1 WHERE id = $1", "Bind", "Describe", "Execute", "Sync"}},
	}
	for _, tc := range tests {
		t.Run(tc.workload, func(t *testing.T) {
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			defer ln.Close()
			got := make(chan []string, 1)
			go fakeServer(t, ln, got)

			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			host, port, _ := net.SplitHostPort(ln.Addr().String())
			cfg, err := pgx.ParseConfig(fmt.Sprintf("host=%s port=%s user=u dbname=d sslmode=disable", host, port))
			if err != nil {
				t.Fatal(err)
			}
			cfg.DefaultQueryExecMode = pgx.QueryExecModeExec
			conn, err := pgx.ConnectConfig(ctx, cfg)
			if err != nil {
				t.Fatal(err)
			}
			if err := contentionOp(ctx, conn, tc.workload, 3); err != nil {
				t.Fatal(err)
			}
			conn.Close(ctx)
			select {
			case msgs := <-got:
				if diff := cmp.Diff(tc.want, msgs); diff != "" {
					t.Errorf("messages (-want +got):\n%s", diff)
				}
			case <-ctx.Done():
				t.Fatal("the fake server did not finish")
			}
		})
	}
}

// fakeServer accepts one connection, logs it in without a password,
// answers each Query or Sync as an UPDATE of one row would, and sends the
// frontend messages it got (Terminate left out) to got.
func fakeServer(t *testing.T, ln net.Listener, got chan<- []string) {
	conn, err := ln.Accept()
	if err != nil {
		t.Error(err)
		got <- nil
		return
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	be := pgproto3.NewBackend(conn, conn)
	if _, err := be.ReceiveStartupMessage(); err != nil {
		t.Error(err)
		got <- nil
		return
	}
	be.Send(&pgproto3.AuthenticationOk{})
	be.Send(&pgproto3.ParameterStatus{Name: "standard_conforming_strings", Value: "on"})
	be.Send(&pgproto3.ReadyForQuery{TxStatus: 'I'})
	be.Flush()
	var msgs []string
	for {
		msg, err := be.Receive()
		if err != nil {
			t.Error(err)
			got <- msgs
			return
		}
		switch m := msg.(type) {
		case *pgproto3.Terminate:
			got <- msgs
			return
		case *pgproto3.Query:
			msgs = append(msgs, "Query "+m.String)
			for _, tag := range []string{"BEGIN", "UPDATE 1", "COMMIT"} {
				be.Send(&pgproto3.CommandComplete{CommandTag: []byte(tag)})
			}
			be.Send(&pgproto3.ReadyForQuery{TxStatus: 'I'})
		case *pgproto3.Parse:
			msgs = append(msgs, "Parse "+m.Query)
			be.Send(&pgproto3.ParseComplete{})
		case *pgproto3.Bind:
			msgs = append(msgs, "Bind")
			be.Send(&pgproto3.BindComplete{})
		case *pgproto3.Describe:
			msgs = append(msgs, "Describe")
			be.Send(&pgproto3.NoData{})
		case *pgproto3.Execute:
			msgs = append(msgs, "Execute")
			be.Send(&pgproto3.CommandComplete{CommandTag: []byte("UPDATE 1")})
		case *pgproto3.Sync:
			msgs = append(msgs, "Sync")
			be.Send(&pgproto3.ReadyForQuery{TxStatus: 'I'})
		default:
			msgs = append(msgs, fmt.Sprintf("%T", msg))
		}
		if err := be.Flush(); err != nil {
			t.Error(err)
			got <- msgs
			return
		}
	}
}
