package harness

import (
	"bufio"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// Scrape reads the /metrics of the gateway whose metrics listener is
// addr (host:port) and returns the value of every sample, keyed by its
// name and labels as printed (`dsqlgate_pool_size{route="postgres"}`).
func Scrape(t testing.TB, addr string) map[string]float64 {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	out := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "#") || line == "" {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err == nil {
			out[line[:i]] = v
		}
	}
	return out
}

// Exposition is one /metrics scrape: each family's type, and each sample
// with its labels.
type Exposition struct {
	Types   map[string]string // family → counter, gauge, histogram, ...
	Samples []Sample
}

// Sample is one line of the text format.
type Sample struct {
	Name   string
	Labels map[string]string
	Value  float64
}

// Key is the sample's name and labels, sorted, as one string.
func (s Sample) Key() string {
	names := make([]string, 0, len(s.Labels))
	for n := range s.Labels {
		names = append(names, n)
	}
	slices.Sort(names)
	var b strings.Builder
	b.WriteString(s.Name)
	for _, n := range names {
		b.WriteString("," + n + "=" + strconv.Quote(s.Labels[n]))
	}
	return b.String()
}

// ScrapeExposition reads and parses the /metrics of the gateway whose
// metrics listener is addr.
func ScrapeExposition(t testing.TB, addr string) Exposition {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	e := Exposition{Types: map[string]string{}}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if f, ok := strings.CutPrefix(line, "# TYPE "); ok {
			name, typ, _ := strings.Cut(f, " ")
			e.Types[name] = typ
			continue
		}
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		s, err := parseSample(line)
		if err != nil {
			t.Fatalf("/metrics line %q: %v", line, err)
		}
		e.Samples = append(e.Samples, s)
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return e
}

// parseSample parses `name{a="x",b="y"} value` (the gateway's samples
// carry no timestamps).
func parseSample(line string) (Sample, error) {
	s := Sample{Labels: map[string]string{}}
	i := strings.LastIndexByte(line, ' ')
	if i < 0 {
		return s, strconv.ErrSyntax
	}
	v, err := strconv.ParseFloat(line[i+1:], 64)
	if err != nil {
		return s, err
	}
	s.Value = v
	head := line[:i]
	name, rest, hasLabels := strings.Cut(head, "{")
	s.Name = name
	if !hasLabels {
		return s, nil
	}
	rest = strings.TrimSuffix(rest, "}")
	for rest != "" {
		n, after, ok := strings.Cut(rest, "=")
		if !ok {
			return s, strconv.ErrSyntax
		}
		q, err := strconv.QuotedPrefix(after)
		if err != nil {
			return s, err
		}
		val, err := strconv.Unquote(q)
		if err != nil {
			return s, err
		}
		s.Labels[n] = val
		rest = strings.TrimPrefix(after[len(q):], ",")
	}
	return s, nil
}

// Family is the family a sample belongs to: its name without the
// _bucket/_sum/_count of a histogram's series.
func (e Exposition) Family(s Sample) string {
	for _, suffix := range []string{"_bucket", "_sum", "_count"} {
		if base, ok := strings.CutSuffix(s.Name, suffix); ok && e.Types[base] == "histogram" {
			return base
		}
	}
	return s.Name
}
