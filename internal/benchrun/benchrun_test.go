//go:build linux

package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/dsqlgate/dsqlgate/internal/scram"
	"github.com/dsqlgate/dsqlgate/internal/scramclient"
)

func TestParsePgbenchOutput(t *testing.T) {
	tests := []struct {
		name    string
		out     string
		want    runResult
		wantErr bool
	}{
		{
			name: "plain run",
			out: `transaction type: <builtin: select only>
scaling factor: 10
query mode: simple
number of clients: 16
number of threads: 2
maximum number of tries: 1
duration: 3 s
number of transactions actually processed: 45678
number of failed transactions: 0 (0.000%)
latency average = 1.050 ms
initial connection time = 35.120 ms
tps = 15226.012345 (without initial connection time)
`,
			want: runResult{tps: 15226.012345, transactions: 45678, connectMs: 35.12},
		},
		{
			name: "connection per transaction",
			out: `number of transactions actually processed: 900
number of failed transactions: 2 (0.222%)
latency average = 17.767 ms
average connection time = 8.100 ms
tps = 300.5 (including reconnection times)
`,
			want: runResult{tps: 300.5, transactions: 900, failed: 2, connectMs: 8.1},
		},
		{
			name:    "no transactions",
			out:     "number of transactions actually processed: 0\nnumber of failed transactions: 0 (NaN%)\n",
			wantErr: true,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parsePgbenchOutput(tc.out)
			if tc.wantErr {
				if err == nil {
					t.Fatalf("got %+v, want an error", got)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want, *got, cmp.AllowUnexported(runResult{})); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
}

func TestReadLatencies(t *testing.T) {
	dir := t.TempDir()
	prefix := filepath.Join(dir, "run")
	// One file per pgbench thread; PostgreSQL 15 writes "failed" or
	// "skipped" in place of the time of transactions that did not end.
	files := map[string]string{
		"run.123":   "0 0 1200 0 1700000000 100\n1 0 800 0 1700000000 200\n",
		"run.123.1": "2 0 failed 0 1700000000 300\n3 0 1000 0 1700000000 400\n",
		"other.1":   "0 0 999999 0 1700000000 100\n",
	}
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	got, err := readLatencies(prefix)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]float64{1200, 800, 1000}, got); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
	if _, err := readLatencies(filepath.Join(dir, "missing")); err == nil {
		t.Error("no log files: want an error")
	}
}

func TestStatistics(t *testing.T) {
	xs := make([]float64, 100)
	for i := range xs {
		xs[len(xs)-1-i] = float64(i + 1) // 100 down to 1
	}
	tests := []struct {
		name string
		got  float64
		want float64
	}{
		{"p99 of 1..100", percentile(append([]float64(nil), xs...), 0.99), 99},
		{"p50 of 1..100", percentile(append([]float64(nil), xs...), 0.5), 50},
		{"p100 of 1..100", percentile(append([]float64(nil), xs...), 1), 100},
		{"p99 of one", percentile([]float64{7}, 0.99), 7},
		{"mean", mean([]float64{1, 2, 6}), 3},
		{"median odd", median([]float64{5, 1, 3}), 3},
		{"median even", median([]float64{4, 1, 3, 2}), 2.5},
		{"median none", median(nil), 0},
	}
	for _, tc := range tests {
		if tc.got != tc.want {
			t.Errorf("%s: got %v, want %v", tc.name, tc.got, tc.want)
		}
	}
}

func TestParseProc(t *testing.T) {
	// The command name may hold spaces and parentheses.
	stat := "4242 (dsqlgate (x) y) S 1 4242 4242 0 -1 4194560 1000 0 0 0 250 75 0 0 20 0 12 0 100 1000000 2000 18446744073709551615"
	got, err := parseCPUTime([]byte(stat))
	if err != nil {
		t.Fatal(err)
	}
	if want := 3250 * time.Millisecond; got != want {
		t.Errorf("cpu time: got %v, want %v", got, want)
	}
	if _, err := parseCPUTime([]byte("4242 (short) S 1 2")); err == nil {
		t.Error("short stat: want an error")
	}

	rss, err := parseVmRSS([]byte("Name:\tdsqlgate\nVmPeak:\t  9000 kB\nVmRSS:\t  2048 kB\nThreads:\t7\n"))
	if err != nil {
		t.Fatal(err)
	}
	if rss != 2048*1024 {
		t.Errorf("rss: got %d, want %d", rss, 2048*1024)
	}
	if _, err := parseVmRSS([]byte("Name:\tx\n")); err == nil {
		t.Error("no VmRSS: want an error")
	}
}

// TestSCRAMExchange runs the client side against the gateway's own SCRAM
// server, with a cached salted password the second time.
func TestSCRAMExchange(t *testing.T) {
	const password = "correct horse"
	verifier, err := scram.GenerateVerifier(password)
	if err != nil {
		t.Fatal(err)
	}
	keys := newSCRAMKeys(password)
	for attempt := range 2 {
		server, err := scram.NewServerExchange(verifier, "SCRAM-SHA-256", scram.ServerOptions{})
		if err != nil {
			t.Fatal(err)
		}
		client := &scramclient.Client{Password: password, SaltedPassword: keys.saltedPassword}
		serverFirst, err := server.ClientFirst(client.First())
		if err != nil {
			t.Fatalf("attempt %d: client-first: %v", attempt, err)
		}
		final, err := client.Final(serverFirst)
		if err != nil {
			t.Fatalf("attempt %d: server-first: %v", attempt, err)
		}
		serverFinal, err := server.ClientFinal(final)
		if err != nil {
			t.Fatalf("attempt %d: client-final: %v", attempt, err)
		}
		if err := client.Verify(serverFinal); err != nil {
			t.Fatalf("attempt %d: the server's signature does not verify", attempt)
		}
	}
	if len(keys.salted) != 1 {
		t.Errorf("salted passwords cached: got %d, want 1", len(keys.salted))
	}

	server, _ := scram.NewServerExchange(verifier, "SCRAM-SHA-256", scram.ServerOptions{})
	wrong := newSCRAMKeys("wrong")
	client := &scramclient.Client{Password: wrong.password, SaltedPassword: wrong.saltedPassword}
	serverFirst, _ := server.ClientFirst(client.First())
	final, _ := client.Final(serverFirst)
	if _, err := server.ClientFinal(final); !errors.Is(err, scram.ErrAuthFailed) {
		t.Errorf("wrong password: got %v, want ErrAuthFailed", err)
	}
}

func TestFormatting(t *testing.T) {
	tests := []struct{ got, want string }{
		{thousands(0), "0"},
		{thousands(999.4), "999"},
		{thousands(1234567.6), "1,234,568"},
		{millis(0.1234), "0.123"},
		{millis(1.234), "1.23"},
		{millis(12.34), "12.3"},
		{millis(123.4), "123"},
	}
	for _, tc := range tests {
		if tc.got != tc.want {
			t.Errorf("got %q, want %q", tc.got, tc.want)
		}
	}
}

func TestPlan(t *testing.T) {
	full := planFor(options{})
	if got, want := len(full.cells), 17; got != want {
		t.Errorf("full plan: %d cells, want %d (4 workloads × 4 client counts, and -C at 16)", got, want)
	}
	if full.maxClients() != 256 {
		t.Errorf("full plan: max clients %d, want 256", full.maxClients())
	}
	quick := planFor(options{quick: true})
	if got, want := len(quick.cells), len(workloads); got != want {
		t.Errorf("quick plan: %d cells, want %d", got, want)
	}
}

func TestKeptNotes(t *testing.T) {
	path := filepath.Join(t.TempDir(), "B.md")
	if got := keptNotes(path); got != "" {
		t.Fatalf("no file: %q", got)
	}
	os.WriteFile(path, []byte("# old tables\n\n"+notesMarker+"\n## Notes\nkept\n"), 0o644)
	if got := keptNotes(path); got != "\n"+notesMarker+"\n## Notes\nkept\n" {
		t.Fatalf("kept %q", got)
	}
	os.WriteFile(path, []byte("# only tables\n"), 0o644)
	if got := keptNotes(path); got != "" {
		t.Fatalf("no marker: %q", got)
	}
}

// TestBaselineSection: with a gw-pg-base target the report gets the
// section comparing the two builds, with the ratios of the medians;
// without one it has no such section.
func TestBaselineSection(t *testing.T) {
	c := cell{workload: workloads[0], clients: 16}
	run := func(tps float64, cpu time.Duration) *runResult {
		return &runResult{tps: tps, transactions: int64(tps * 3), avgMs: 1, p99Ms: 4, serverCPU: cpu}
	}
	r := report{
		plan: plan{cells: []cell{c}},
		env:  setup{targets: []*target{{key: "gw-pg", desc: "new"}, {key: baselineKey, desc: "old build"}}},
		results: []map[string][]*runResult{{
			"gw-pg":     {run(1200, 300*time.Millisecond)},
			baselineKey: {run(1000, 400*time.Millisecond)},
		}},
	}
	var b strings.Builder
	w := func(format string, args ...any) { fmt.Fprintf(&b, format, args...) }
	sums := []map[string]summary{{}}
	for key, runs := range r.results[0] {
		sums[0][key] = summarize(runs)
	}
	r.writeSetup(w)
	r.writeBaseline(w, sums)
	out := b.String()
	for _, want := range []string{"| `gw-pg-base` | old build |", "## This build against the baseline build", "| 1,000 ±0% | 1,200 ±0% | 1.20 |", "| 0.133 | 0.083 | 0.62 |"} {
		if !strings.Contains(out, want) {
			t.Errorf("report lacks %q:\n%s", want, out)
		}
	}
	r.env.targets = r.env.targets[:1]
	b.Reset()
	r.writeBaseline(w, sums)
	if b.Len() != 0 {
		t.Errorf("a run without a baseline has a baseline section:\n%s", b.String())
	}
}
