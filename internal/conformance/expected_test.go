//go:build conformance

package conformance

import (
	"bufio"
	"fmt"
	"slices"
	"strings"
)

// anyGateway is the target field of an expected failure that holds for
// every gateway target.
const anyGateway = "*"

// expectation is one line of testdata/expected-failures.txt.
type expectation struct {
	Target  string // a target's name or anyGateway
	Package string // relative to pgx's module ("." for the root), or the full import path
	Test    string // a top-level test
	Reason  string
	Line    int
}

func (e expectation) String() string {
	return fmt.Sprintf("line %d: %s %s %s # %s", e.Line, e.Target, e.Package, e.Test, e.Reason)
}

// hangs tells whether the reason starts with "hangs" or "flaky": such a
// test is not run at all (go test -skip), since it would stop its package
// for go test's whole -timeout, or fail or pass by chance; it counts as an
// expected failure, and whether it now passes cannot be seen.
func (e expectation) hangs() bool {
	r := strings.ToLower(e.Reason)
	return strings.HasPrefix(r, "hangs") || strings.HasPrefix(r, "flaky")
}

// appliesTo tells whether e is about the target.
func (e expectation) appliesTo(target string, gateway bool) bool {
	return e.Target == target || e.Target == anyGateway && gateway
}

// matches tells whether e names the test of the package (an import path).
func (e expectation) matches(pkg, test string) bool {
	return e.Test == test && (e.Package == rel(pkg) || e.Package == pkg)
}

// parseExpectations reads the list; targets are the valid target names.
func parseExpectations(text string, targets []string) ([]expectation, error) {
	var out []expectation
	var errs []string
	seen := map[[3]string]int{}
	sc := bufio.NewScanner(strings.NewReader(text))
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		spec, reason, hasReason := strings.Cut(line, "#")
		reason = strings.TrimSpace(reason)
		f := strings.Fields(spec)
		switch {
		case len(f) != 3:
			errs = append(errs, fmt.Sprintf("line %d: want <target> <package> <TestName> # reason, got %q", n, line))
			continue
		case !hasReason || reason == "":
			errs = append(errs, fmt.Sprintf("line %d: %s %s %s has no reason (add # why it is expected to fail)", n, f[0], f[1], f[2]))
			continue
		case f[0] != anyGateway && !slices.Contains(targets, f[0]):
			errs = append(errs, fmt.Sprintf("line %d: unknown target %q (want one of %s or %s)", n, f[0], strings.Join(targets, ", "), anyGateway))
			continue
		case strings.Contains(f[2], "/"):
			errs = append(errs, fmt.Sprintf("line %d: %s is a subtest; list its top-level test", n, f[2]))
			continue
		}
		key := [3]string{f[0], f[1], f[2]}
		if prev, dup := seen[key]; dup {
			errs = append(errs, fmt.Sprintf("line %d: repeats line %d", n, prev))
			continue
		}
		seen[key] = n
		out = append(out, expectation{Target: f[0], Package: f[1], Test: f[2], Reason: reason, Line: n})
	}
	if len(errs) > 0 {
		return nil, fmt.Errorf("testdata/expected-failures.txt:\n\t%s", strings.Join(errs, "\n\t"))
	}
	return out, nil
}

// rel is an import path of pgx's module relative to the module, "." for
// its root.
func rel(importPath string) string {
	if importPath == pgxModule {
		return "."
	}
	return strings.TrimPrefix(importPath, pgxModule+"/")
}
