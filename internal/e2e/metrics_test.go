package e2e

import (
	"context"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/dsqlgate/dsqlgate/config"
	"github.com/dsqlgate/dsqlgate/internal/harness"
)

// keys is every dsqlgate_ sample's key.
func keysOf(e harness.Exposition) map[string]bool {
	out := map[string]bool{}
	for _, s := range e.Samples {
		if strings.HasPrefix(s.Name, "dsqlgate_") {
			out[s.Key()] = true
		}
	}
	return out
}

// documentedMetric is one family of the README's metrics table, with its
// labels and the values listed for them (none: any value).
type documentedMetric struct {
	name   string
	labels map[string][]string
}

// readmeMetrics parses the README's metrics table: the rows under
// "**Metrics**" whose first cell names dsqlgate_ families; the second
// lists the labels as `label` (value, value, ...).
func readmeMetrics(t *testing.T) []documentedMetric {
	t.Helper()
	text, err := os.ReadFile(filepath.Join(harness.ModuleRootOf(t), "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	_, section, ok := strings.Cut(string(text), "**Metrics**")
	if !ok {
		t.Fatal("README.md has no **Metrics** paragraph")
	}
	section, _, _ = strings.Cut(section, "**Health**")
	nameRe := regexp.MustCompile("`(dsqlgate_[a-z0-9_]+)`")
	labelRe := regexp.MustCompile("`([a-z_]+)`(?:\\s*\\(([^)]*)\\))?")
	valueRe := regexp.MustCompile(`^[A-Za-z0-9_]+$`)
	var out []documentedMetric
	for _, line := range strings.Split(section, "\n") {
		cells := strings.Split(line, "|")
		if len(cells) < 4 || !strings.Contains(cells[1], "`dsqlgate_") {
			continue
		}
		labels := map[string][]string{}
		for _, m := range labelRe.FindAllStringSubmatch(cells[2], -1) {
			var values []string
			for _, v := range strings.Split(m[2], ",") {
				if v = strings.TrimSpace(v); valueRe.MatchString(v) { // not "..."
					values = append(values, v)
				}
			}
			labels[m[1]] = values
		}
		for _, m := range nameRe.FindAllStringSubmatch(cells[1], -1) {
			out = append(out, documentedMetric{name: m[1], labels: labels})
		}
	}
	if len(out) < 20 {
		t.Fatalf("read %d metrics from README.md's table; the parser no longer understands it", len(out))
	}
	return out
}

// TestMetricsFromStartup scrapes a gateway before any client: every
// family the README documents is there with its label values (route:
// the stack's route), every dsqlgate_ family exported is documented, no
// two families clash on a base name, and build_info and the reload time
// are set. A reload that adds a route creates that route's series at
// once, and a run of clients (queries, a transaction, an error, a lost
// upstream, a failed login, a cancel, a failed reload) makes no new
// series appear: each one it counts under existed from the start.
func TestMetricsFromStartup(t *testing.T) {
	ctx := testCtx(t, 2*time.Minute)
	startedAt := time.Now()
	st, err := harness.StartStack(ctx, harness.StackOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	addr := st.Gateway.OpsAddr
	start := harness.ScrapeExposition(t, addr)

	checkNoClash(t, start.Types)
	exported := map[string]map[string]map[string]bool{} // family → label → values
	for _, s := range start.Samples {
		f := start.Family(s)
		if !strings.HasPrefix(f, "dsqlgate_") {
			continue
		}
		if exported[f] == nil {
			exported[f] = map[string]map[string]bool{}
		}
		for n, v := range s.Labels {
			if n == "le" && start.Types[f] == "histogram" {
				continue
			}
			if exported[f][n] == nil {
				exported[f][n] = map[string]bool{}
			}
			exported[f][n][v] = true
		}
	}
	documented := map[string]bool{}
	for _, d := range readmeMetrics(t) {
		documented[d.name] = true
		got, ok := exported[d.name]
		if !ok {
			t.Errorf("%s is in README.md but not in /metrics at start-up", d.name)
			continue
		}
		for label, values := range d.labels {
			if label == "route" {
				values = []string{harness.StackDatabase}
			}
			if got[label] == nil {
				t.Errorf("%s at start-up: no %s label (README.md lists it)", d.name, label)
			}
			for _, v := range values {
				if !got[label][v] {
					t.Errorf("%s{%s=%q} missing at start-up (README.md lists it)", d.name, label, v)
				}
			}
		}
		for label := range got {
			if _, ok := d.labels[label]; !ok {
				t.Errorf("%s has a label %s that README.md does not list", d.name, label)
			}
		}
	}
	for f := range exported {
		if !documented[f] {
			t.Errorf("%s is exported but not in README.md's metrics table", f)
		}
	}

	// build_info and the reload time.
	var builds []harness.Sample
	for _, s := range start.Samples {
		if s.Name == "dsqlgate_build_info" {
			builds = append(builds, s)
		}
	}
	if len(builds) != 1 || builds[0].Value != 1 || builds[0].Labels["goversion"] != runtime.Version() || builds[0].Labels["version"] == "" {
		t.Errorf("dsqlgate_build_info: %+v, want one sample, 1, goversion %s and a version", builds, runtime.Version())
	}
	loaded := value(start, "dsqlgate_config_last_reload_success_timestamp_seconds", nil)
	if loaded < float64(startedAt.Unix()) || loaded > float64(time.Now().Unix()+1) {
		t.Errorf("dsqlgate_config_last_reload_success_timestamp_seconds at start-up: %v, want the start time (%d)", loaded, startedAt.Unix())
	}

	// A reload that adds a route: its series are there at once, as those
	// of the route from the start.
	time.Sleep(1100 * time.Millisecond) // the timestamp has second resolution in the check below
	next := *st.Gateway.Config()
	second := next.Routes[0]
	second.Database = "second"
	next.Routes = append(slices.Clone(next.Routes), second)
	if _, err := st.Gateway.Reload(ctx, &next); err != nil {
		t.Fatal(err)
	}
	reloaded := harness.ScrapeExposition(t, addr)
	have := keysOf(reloaded)
	for k := range keysOf(start) {
		if !have[k] {
			t.Errorf("after the reload, %s is gone", k)
		}
	}
	for _, s := range start.Samples {
		if s.Labels["route"] != harness.StackDatabase || !strings.HasPrefix(s.Name, "dsqlgate_") {
			continue
		}
		s.Labels["route"] = "second"
		if !have[s.Key()] {
			t.Errorf("after a reload adding route second: %s missing", s.Key())
		}
		s.Labels["route"] = harness.StackDatabase
	}
	if got := value(reloaded, "dsqlgate_config_reloads_total", map[string]string{"outcome": "ok"}); got != 1 {
		t.Errorf("config_reloads_total{ok} after a reload: %v, want 1", got)
	}
	if got := value(reloaded, "dsqlgate_config_last_reload_success_timestamp_seconds", nil); got <= loaded {
		t.Errorf("config_last_reload_success after a reload: %v, not after the start (%v)", got, loaded)
	}

	// A run of clients, and a reload that fails.
	conn := connect(t, st, "sslmode=disable")
	for i := 0; i < 3; i++ {
		var v int
		if err := conn.QueryRow(ctx, "select $1::int", i).Scan(&v); err != nil {
			t.Fatal(err)
		}
	}
	tx, err := conn.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	tx.Exec(ctx, "select 1")
	tx.Commit(ctx)
	conn.Exec(ctx, "select 1/0")
	st.Emulator.KillAll()
	var v int
	conn.QueryRow(ctx, "select 1").Scan(&v)
	cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	conn.PgConn().CancelRequest(cctx)
	cancel()
	if bad, err := pgx.Connect(ctx, strings.Replace(st.URL("sslmode=disable"), st.Password, "wrong", 1)); err == nil {
		bad.Close(ctx)
		t.Error("a wrong password logged in")
	}
	broken := *st.Gateway.Config()
	broken.ClientTLS.ACME = config.ACME{Domains: []string{"db.example.com"}} // needs a restart: refused
	if _, err := st.Gateway.Reload(ctx, &broken); err == nil {
		t.Error("a reload turning ACME on succeeded")
	}
	conn.Close(ctx)
	after := harness.ScrapeExposition(t, addr)
	for k := range keysOf(after) {
		if !have[k] {
			t.Errorf("%s appeared only once counted: it must exist from start-up (metrics.New/AddRoute)", k)
		}
	}
	for _, c := range []struct {
		name   string
		labels map[string]string
	}{
		{"dsqlgate_config_reloads_total", map[string]string{"outcome": "error"}},
		{"dsqlgate_client_connections_opened_total", map[string]string{"outcome": "auth_failed"}},
		{"dsqlgate_client_connections_opened_total", map[string]string{"outcome": "cancel"}},
		{"dsqlgate_upstream_errors_total", map[string]string{"route": harness.StackDatabase, "sqlstate": "other"}}, // 22012
	} {
		if got := value(after, c.name, c.labels); got < 1 {
			t.Errorf("%s%v after the run: %v, want at least 1", c.name, c.labels, got)
		}
	}
}

// value is the value of the sample of name with exactly labels, -1 when
// there is none.
func value(e harness.Exposition, name string, labels map[string]string) float64 {
	want := harness.Sample{Name: name, Labels: labels}.Key()
	for _, s := range e.Samples {
		if s.Key() == want {
			return s.Value
		}
	}
	return -1
}

// checkNoClash requires that no two families claim the same series name
// or base name: a gauge X and a counter X_total (the counter's base name
// is X in OpenMetrics), a histogram X and a family X_bucket, X_sum or
// X_count. Only dsqlgate_ families: the Go collector's own
// go_memstats_alloc_bytes and go_memstats_alloc_bytes_total clash, and are
// not ours to rename.
func checkNoClash(t *testing.T, types map[string]string) {
	t.Helper()
	owner := map[string]string{}
	for f, typ := range types {
		if !strings.HasPrefix(f, "dsqlgate_") {
			continue
		}
		names := []string{f}
		switch typ {
		case "counter":
			names = append(names, strings.TrimSuffix(f, "_total"), strings.TrimSuffix(f, "_total")+"_created")
		case "histogram", "summary":
			names = append(names, f+"_bucket", f+"_sum", f+"_count", f+"_created")
		}
		for _, n := range slices.Compact(slices.Sorted(slices.Values(names))) {
			if o, ok := owner[n]; ok {
				t.Errorf("families %s (%s) and %s (%s) both claim the name %s", f, typ, o, types[o], n)
			}
			owner[n] = f
		}
	}
}
