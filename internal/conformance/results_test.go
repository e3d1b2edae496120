//go:build conformance

package conformance

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strings"
)

// tailLines is how many of a test's output lines a failure shows.
const tailLines = 20

// event is one line of `go test -json` (cmd/test2json), with the fields
// of build events (Go 1.24 and later) too.
type event struct {
	Action      string
	Package     string
	Test        string
	Output      string
	Elapsed     float64
	ImportPath  string // build-output, build-fail
	FailedBuild string // on a package's fail when its build failed
}

// Outcomes of a top-level test.
const (
	outcomePass = "pass"
	outcomeFail = "fail"
	outcomeSkip = "skip"
)

// testRun is one top-level test of one package.
type testRun struct {
	Package string // import path
	Name    string
	Outcome string // pass, fail, skip; "" while it runs (or when it never ended)
	Elapsed float64
	// printed is the outcome of its own "--- PASS: Name" line, which can
	// come without the event when the binary dies right after it.
	printed string
	// waiting: a parallel test paused and never resumed (when its package
	// dies, it never ran at all).
	waiting bool
	// Its meaningful output lines, subtests' included: the first few and
	// the last tailLines, and how many there were.
	head, tail []string
	nLines     int
	order      int // when it started, within the whole run
}

// headLines is how many of a test's first output lines a failure shows
// beside its last ones: the first error is often the telling one.
const headLines = 8

// Tail is the test's output without go test's framing: its last tailLines
// lines, after its first headLines when there were more.
func (r *testRun) Tail() []string {
	if r.nLines <= len(r.tail) {
		return r.tail
	}
	out := slices.Clone(r.head)
	if skipped := r.nLines - len(r.head) - len(r.tail); skipped > 0 {
		out = append(out, fmt.Sprintf("... (%d lines)", skipped))
	}
	n := min(len(r.tail), r.nLines-len(r.head))
	return append(out, r.tail[len(r.tail)-n:]...)
}

// pkgRun is one package of the run.
type pkgRun struct {
	Path        string
	Outcome     string // pass, fail, skip (no test files); "" when it never ended
	BuildFailed bool
	Elapsed     float64
	tests       map[string]*testRun
	tail        []string // package-level output (build errors, a timeout's report)
	lastActive  string   // the top-level test that last started or resumed
	panics      []string // "TestX: panic: ..." for every panic seen
	// timedOut are the tests go test's -timeout report lists as running
	// (test2json files the report under whichever test printed last).
	timedOut        []string
	inTimeoutReport bool
}

// runResults is what one `go test -json` run reported.
type runResults struct {
	pkgs    map[string]*pkgRun
	order   []string // packages in the order they first appeared
	nTests  int
	nonJSON []string // stray lines (the last few)
}

func newRunResults() *runResults { return &runResults{pkgs: map[string]*pkgRun{}} }

// topLevel is the top-level test of a (sub)test name.
func topLevel(name string) string {
	if i := strings.IndexByte(name, '/'); i >= 0 {
		return name[:i]
	}
	return name
}

// appendTail adds line to a tail kept at most n lines long.
func appendTail(tail []string, line string, n int) []string {
	tail = append(tail, line)
	if len(tail) > n {
		tail = slices.Delete(tail, 0, len(tail)-n)
	}
	return tail
}

// framing tells go test's own progress lines from a test's output.
func framing(line string) bool {
	t := strings.TrimSpace(line)
	for _, p := range []string{"=== RUN", "=== PAUSE", "=== CONT", "=== NAME", "--- PASS", "--- SKIP"} {
		if strings.HasPrefix(t, p) {
			return true
		}
	}
	return t == ""
}

func (rr *runResults) pkg(path string) *pkgRun {
	p := rr.pkgs[path]
	if p == nil {
		p = &pkgRun{Path: path, tests: map[string]*testRun{}}
		rr.pkgs[path] = p
		rr.order = append(rr.order, path)
	}
	return p
}

// read consumes a `go test -json` stream; copy, when not nil, gets every
// line as it was read.
func (rr *runResults) read(r io.Reader, copy io.Writer) error {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 1<<20), 64<<20)
	for sc.Scan() {
		line := sc.Bytes()
		if copy != nil {
			copy.Write(line)
			copy.Write([]byte{'\n'})
		}
		var ev event
		if len(line) == 0 || line[0] != '{' || json.Unmarshal(line, &ev) != nil {
			rr.nonJSON = appendTail(rr.nonJSON, string(line), 40)
			continue
		}
		rr.add(ev)
	}
	return sc.Err()
}

// add applies one event.
func (rr *runResults) add(ev event) {
	switch ev.Action {
	case "build-output":
		p := rr.pkg(buildPackage(ev.ImportPath))
		p.tail = appendTail(p.tail, strings.TrimRight(ev.Output, "\n"), 40)
		return
	case "build-fail":
		rr.pkg(buildPackage(ev.ImportPath)).BuildFailed = true
		return
	}
	if ev.Package == "" {
		if ev.Output != "" {
			rr.nonJSON = appendTail(rr.nonJSON, strings.TrimRight(ev.Output, "\n"), 40)
		}
		return
	}
	p := rr.pkg(ev.Package)
	if ev.Action == "output" {
		p.scanTimeout(strings.TrimRight(ev.Output, "\n"))
	}
	if ev.Test == "" {
		switch ev.Action {
		case "output":
			line := strings.TrimRight(ev.Output, "\n")
			if strings.HasPrefix(line, "panic: ") {
				p.panics = append(p.panics, "after "+p.lastActive+": "+line)
			}
			if !framing(line) {
				p.tail = appendTail(p.tail, line, 40)
			}
		case "pass", "fail", "skip":
			p.Outcome = ev.Action
			p.Elapsed = ev.Elapsed
			if ev.FailedBuild != "" {
				p.BuildFailed = true
			}
		}
		return
	}
	name := topLevel(ev.Test)
	tr := p.tests[name]
	if tr == nil {
		tr = &testRun{Package: ev.Package, Name: name, order: rr.nTests}
		rr.nTests++
		p.tests[name] = tr
	}
	switch ev.Action {
	case "run", "cont":
		p.lastActive = name
		if ev.Test == name {
			tr.waiting = false
		}
	case "pause":
		if ev.Test == name {
			tr.waiting = true
		}
	case "output":
		line := strings.TrimRight(ev.Output, "\n")
		if trimmed := strings.TrimSpace(line); strings.HasPrefix(trimmed, "panic: ") && !strings.HasPrefix(trimmed, "panic: test timed out") {
			p.panics = append(p.panics, name+": "+trimmed)
		}
		for _, o := range []string{outcomePass, outcomeFail, outcomeSkip} {
			if strings.HasPrefix(line, "--- "+strings.ToUpper(o)+": "+name+" (") {
				tr.printed = o
			}
		}
		if !framing(line) {
			if len(tr.head) < headLines {
				tr.head = append(tr.head, line)
			}
			tr.tail = appendTail(tr.tail, line, tailLines)
			tr.nLines++
		}
	case "pass", "fail", "skip":
		if ev.Test == name {
			tr.Outcome = ev.Action
			tr.Elapsed = ev.Elapsed
		}
	}
}

// scanTimeout notes the tests that go test's -timeout report lists:
//
//	panic: test timed out after 6m0s
//		running tests:
//			TestListenNotify (5m43s)
func (p *pkgRun) scanTimeout(line string) {
	if strings.HasPrefix(line, "panic: test timed out") {
		p.inTimeoutReport = true
		return
	}
	if !p.inTimeoutReport {
		return
	}
	switch {
	case strings.TrimSpace(line) == "running tests:":
	case strings.HasPrefix(line, "\t\t"):
		name, _, _ := strings.Cut(strings.TrimSpace(line), " ")
		if name = topLevel(name); !slices.Contains(p.timedOut, name) {
			p.timedOut = append(p.timedOut, name)
		}
	default:
		p.inTimeoutReport = false
	}
}

// settle gives the tests that never got their end event the outcome of
// their own "--- PASS" line, if they printed one.
func (rr *runResults) settle() {
	for _, p := range rr.pkgs {
		for _, tr := range p.tests {
			if tr.Outcome == "" && tr.printed != "" {
				tr.Outcome = tr.printed
			}
		}
	}
}

// buildPackage maps a build event's ImportPath ("p [p.test]") to the
// package.
func buildPackage(importPath string) string {
	if i := strings.IndexByte(importPath, ' '); i >= 0 {
		return importPath[:i]
	}
	return importPath
}

// tests is every top-level test, in the order they started.
func (rr *runResults) tests() []*testRun {
	var out []*testRun
	for _, path := range rr.order {
		for _, tr := range rr.pkgs[path].tests {
			out = append(out, tr)
		}
	}
	slices.SortFunc(out, func(a, b *testRun) int { return a.order - b.order })
	return out
}

// problems are the ways the run did not finish cleanly, one message each:
// a build failure, a panic, a test that never ended (go test's timeout or
// a crash), a package that failed with no failing test, or one that never
// reported its end. wanted are the packages the run was asked for.
func (rr *runResults) problems(wanted []string) []string {
	var out []string
	for _, path := range rr.order {
		p := rr.pkgs[path]
		if p.BuildFailed {
			out = append(out, fmt.Sprintf("%s: build failed:\n%s", rel(path), indent(p.tail)))
			continue
		}
		var unfinished, failed []string
		notRun := 0
		for _, tr := range rr.tests() {
			if tr.Package != path {
				continue
			}
			switch {
			case tr.Outcome == "" && tr.waiting:
				notRun++
			case tr.Outcome == "":
				unfinished = append(unfinished, tr.Name)
			case tr.Outcome == outcomeFail:
				failed = append(failed, tr.Name)
			}
		}
		stopped := "the package's remaining tests did not run"
		if notRun > 0 {
			stopped = fmt.Sprintf("%d more of its tests had not run yet", notRun)
		}
		last := p.lastActive
		if last == "" {
			last = "(none)"
		}
		for _, pn := range p.panics {
			out = append(out, fmt.Sprintf("%s: panic in %s (%s)", rel(path), pn, stopped))
		}
		if len(p.timedOut) > 0 {
			out = append(out, fmt.Sprintf("%s: go test -timeout %s hit while running %s (hung; %s)",
				rel(path), goTestTimeout, strings.Join(p.timedOut, ", "), stopped))
			continue
		}
		if len(unfinished) > 0 {
			out = append(out, fmt.Sprintf("%s: did not finish (crash or kill) while running %s; last running test %s; %s; package output:\n%s",
				rel(path), strings.Join(unfinished, ", "), last, stopped, indent(p.tail)))
			continue
		}
		switch p.Outcome {
		case "":
			out = append(out, fmt.Sprintf("%s: never reported its end (go test killed?); last running test %s", rel(path), last))
		case outcomeFail:
			if len(failed) == 0 && len(p.panics) == 0 {
				out = append(out, fmt.Sprintf("%s: failed without a failing test (TestMain, os.Exit or a crash); last running test %s; package output:\n%s",
					rel(path), last, indent(p.tail)))
			}
		}
	}
	for _, w := range wanted {
		if _, ok := rr.pkgs[w]; !ok {
			out = append(out, fmt.Sprintf("%s: no result at all", rel(w)))
		}
	}
	return out
}

func indent(lines []string) string {
	if len(lines) == 0 {
		return "\t(no output)"
	}
	return "\t" + strings.Join(lines, "\n\t")
}
