package deploy

import (
	"context"
	"encoding/json"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/dsqlgate/dsqlgate/internal/harness"
)

// dashboard is what the test reads of grafana/dsqlgate.json.
type dashboard struct {
	Title         string `json:"title"`
	UID           string `json:"uid"`
	SchemaVersion int    `json:"schemaVersion"`
	Templating    struct {
		List []struct {
			Name       string      `json:"name"`
			Type       string      `json:"type"`
			Query      any         `json:"query"` // a string, or an object in newer schemas
			Definition string      `json:"definition"`
			Datasource *datasource `json:"datasource"`
		} `json:"list"`
	} `json:"templating"`
	Panels []struct {
		ID         int         `json:"id"`
		Type       string      `json:"type"`
		Title      string      `json:"title"`
		Datasource *datasource `json:"datasource"`
		GridPos    struct {
			H, W, X, Y int
		} `json:"gridPos"`
		Targets []struct {
			RefID      string      `json:"refId"`
			Expr       string      `json:"expr"`
			Datasource *datasource `json:"datasource"`
		} `json:"targets"`
	} `json:"panels"`
}

// datasource is a panel's, a target's or a variable's data source.
type datasource struct {
	Type string `json:"type"`
	UID  string `json:"uid"`
}

// dsVariable is the data source every query must use: the dashboard's
// variable, so that an import picks the Prometheus to read.
const dsVariable = "${datasource}"

// TestGrafanaDashboard checks grafana/dsqlgate.json: Grafana can import it
// (a Prometheus data source variable that every panel and query uses,
// instance and route variables, panels with unique ids, a place on the
// grid and queries), every dsqlgate_ metric a query names is one a freshly
// started gateway exports, every label value a query matches exactly is
// one it exports from start-up, counters and histogram buckets are read
// through rate() or increase(), and each histogram_quantile sums by le.
func TestGrafanaDashboard(t *testing.T) {
	raw, err := os.ReadFile("grafana/dsqlgate.json")
	if err != nil {
		t.Fatal(err)
	}
	var d dashboard
	if err := json.Unmarshal(raw, &d); err != nil {
		t.Fatalf("grafana/dsqlgate.json: %v", err)
	}
	if d.Title == "" || d.UID == "" || d.SchemaVersion < 30 || len(d.Panels) == 0 {
		t.Errorf("dashboard: title %q, uid %q, schemaVersion %d, %d panels", d.Title, d.UID, d.SchemaVersion, len(d.Panels))
	}

	var exprs []string
	vars := map[string]string{}
	for _, v := range d.Templating.List {
		vars[v.Name] = v.Type
		switch v.Type {
		case "datasource":
			if v.Query != "prometheus" {
				t.Errorf("variable %s: a datasource variable for %v, want prometheus", v.Name, v.Query)
			}
		case "query":
			q, ok := v.Query.(string)
			if !ok || q == "" || v.Definition != q {
				t.Errorf("variable %s: query %v, definition %q", v.Name, v.Query, v.Definition)
			}
			if v.Datasource == nil || v.Datasource.UID != dsVariable {
				t.Errorf("variable %s: datasource %+v, want uid %s", v.Name, v.Datasource, dsVariable)
			}
			exprs = append(exprs, q)
		}
	}
	for name, typ := range map[string]string{"datasource": "datasource", "instance": "query", "route": "query"} {
		if vars[name] != typ {
			t.Errorf("variable %s: type %q, want %q", name, vars[name], typ)
		}
	}

	ids := map[int]bool{}
	for _, p := range d.Panels {
		if p.ID <= 0 || ids[p.ID] {
			t.Errorf("panel %q: id %d (zero or used twice)", p.Title, p.ID)
		}
		ids[p.ID] = true
		g := p.GridPos
		if p.Title == "" || p.Type == "" || g.W <= 0 || g.H <= 0 || g.X < 0 || g.X+g.W > 24 {
			t.Errorf("panel %d: title %q, type %q, gridPos %+v", p.ID, p.Title, p.Type, g)
		}
		if p.Datasource == nil || p.Datasource.Type != "prometheus" || p.Datasource.UID != dsVariable {
			t.Errorf("panel %q: datasource %+v, want prometheus %s", p.Title, p.Datasource, dsVariable)
		}
		if len(p.Targets) == 0 {
			t.Errorf("panel %q has no query", p.Title)
		}
		refs := map[string]bool{}
		for _, tg := range p.Targets {
			if tg.Expr == "" || tg.RefID == "" || refs[tg.RefID] {
				t.Errorf("panel %q: target %q with refId %q (empty or used twice)", p.Title, tg.Expr, tg.RefID)
			}
			refs[tg.RefID] = true
			if tg.Datasource == nil || tg.Datasource.UID != dsVariable {
				t.Errorf("panel %q: target datasource %+v, want uid %s", p.Title, tg.Datasource, dsVariable)
			}
			exprs = append(exprs, tg.Expr)
		}
	}

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	st, err := harness.StartStack(ctx, harness.StackOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	exp, labels := scrapeFamilies(t, st.Gateway.OpsAddr)
	types := exp.Types
	familyOf := func(name string) string { return exp.Family(harness.Sample{Name: name}) }

	nameRe := regexp.MustCompile(`dsqlgate_[a-zA-Z0-9_]+`)
	matcherRe := regexp.MustCompile(`(dsqlgate_[a-zA-Z0-9_]+)\{([^}]*)\}`)
	exactRe := regexp.MustCompile(`([a-zA-Z_]+)="([^"$]*)"`)
	quantileRe := regexp.MustCompile(`histogram_quantile\(\s*0?\.?[0-9]+\s*,\s*sum by \(le\b[^)]*\)\s*\(rate\(dsqlgate_[a-z0-9_]+_bucket\{`)
	used := map[string]bool{}
	for _, e := range exprs {
		for _, name := range nameRe.FindAllString(e, -1) {
			family := familyOf(name)
			used[family] = true
			if _, ok := types[family]; !ok {
				t.Errorf("query %q: %s is not exported by the gateway", e, name)
				continue
			}
			counted := types[family] == "counter" || (types[family] == "histogram" && name != family)
			if counted && !regexp.MustCompile(`(rate|increase)\(`+name+`\{[^}]*\}\[\$__(rate_interval|range)\]\)`).MatchString(e) {
				t.Errorf("query %q: %s is a counter, read it through rate() or increase() over $__rate_interval", e, name)
			}
		}
		for _, m := range matcherRe.FindAllStringSubmatch(e, -1) {
			family := familyOf(m[1])
			for _, x := range exactRe.FindAllStringSubmatch(m[2], -1) {
				if !labels[family][x[1]][x[2]] {
					t.Errorf("query %q: %s{%s=%q} is not exported at start-up", e, family, x[1], x[2])
				}
			}
		}
		if strings.Contains(e, "histogram_quantile") && !quantileRe.MatchString(e) {
			t.Errorf("query %q: histogram_quantile must sum the rate of _bucket by (le, ...)", e)
		}
	}
	// The series docs/DEPLOY.md says to watch are all on the dashboard.
	for _, f := range []string{
		"dsqlgate_client_connections", "dsqlgate_client_connections_opened_total", "dsqlgate_pool_wait_seconds",
		"dsqlgate_upstream_connections", "dsqlgate_pool_size", "dsqlgate_upstream_dials_total", "dsqlgate_token_mints_total",
		"dsqlgate_upstream_errors_total", "dsqlgate_occ_retries_total", "dsqlgate_occ_retries_exhausted_total",
		"dsqlgate_upstream_replacements_total", "dsqlgate_transaction_duration_seconds", "dsqlgate_query_duration_seconds",
		"dsqlgate_client_tls_certificate_expiry_timestamp_seconds", "dsqlgate_cancel_requests_total",
		"dsqlgate_bytes_total", "dsqlgate_build_info", "dsqlgate_config_reloads_total", "dsqlgate_peers",
	} {
		if !used[f] {
			t.Errorf("no panel shows %s", f)
		}
	}
}

// scrapeFamilies reads the /metrics of the gateway whose metrics listener
// is addr, and the values each family's labels have.
func scrapeFamilies(t *testing.T, addr string) (e harness.Exposition, labels map[string]map[string]map[string]bool) {
	t.Helper()
	e = harness.ScrapeExposition(t, addr)
	labels = map[string]map[string]map[string]bool{}
	for _, s := range e.Samples {
		family := e.Family(s)
		if labels[family] == nil {
			labels[family] = map[string]map[string]bool{}
		}
		for n, v := range s.Labels {
			if labels[family][n] == nil {
				labels[family][n] = map[string]bool{}
			}
			labels[family][n][v] = true
		}
	}
	return e, labels
}
