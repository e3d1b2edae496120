//go:build conformance

package conformance

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestReadTest2JSON reads go test -json output of three packages: one that
// does not build, one that hits -timeout in a subtest while two parallel
// tests wait, and one with a pass, a skip, a failed subtest and a panic
// (testdata/test2json-sample.json, from Go 1.26; goroutine dumps cut).
func TestReadTest2JSON(t *testing.T) {
	f, err := os.Open(filepath.Join("testdata", "test2json-sample.json"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	rr := newRunResults()
	if err := rr.read(f, nil); err != nil {
		t.Fatal(err)
	}
	rr.settle()
	got := map[string]string{}
	for _, tr := range rr.tests() {
		o := tr.Outcome
		if o == "" && tr.waiting {
			o = "waiting"
		}
		got[tr.Package+" "+tr.Name] = o
	}
	want := map[string]string{
		"t2j/hang TestA":         "pass",
		"t2j/hang TestWaits":     "waiting",
		"t2j/hang TestNeverRuns": "waiting",
		"t2j/hang TestHang":      "",
		"t2j/panicky TestA":      "pass",
		"t2j/panicky TestSkip":   "skip",
		"t2j/panicky TestFail":   "fail",
		"t2j/panicky TestPanic":  "fail",
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s: outcome %q, want %q", k, got[k], v)
		}
	}
	if len(got) != len(want) {
		t.Errorf("tests %v, want %v", got, want)
	}
	if tail := strings.Join(rr.pkgs["t2j/panicky"].tests["TestFail"].Tail(), "\n"); !strings.Contains(tail, "p_test.go:9: boom") {
		t.Errorf("TestFail's tail lacks its error:\n%s", tail)
	}

	problems := rr.problems([]string{"t2j/broken", "t2j/hang", "t2j/panicky", "t2j/missing"})
	wantProblems := []string{
		"t2j/broken: build failed:",
		"undefined: undefined",
		"t2j/hang: go test -timeout " + goTestTimeout + " hit while running TestHang (hung; 2 more of its tests had not run yet)",
		"t2j/panicky: panic in TestPanic: panic: assignment to entry in nil map",
		"t2j/missing: no result at all",
	}
	all := strings.Join(problems, "\n")
	for _, w := range wantProblems {
		if !strings.Contains(all, w) {
			t.Errorf("problems lack %q:\n%s", w, all)
		}
	}
	if len(problems) != 4 {
		t.Errorf("%d problems, want 4:\n%s", len(problems), all)
	}
}

func TestParseExpectations(t *testing.T) {
	good := "# comment\n\n* . TestConnect # the gateway logs in upstream as its own role\nemulator pgtype TestHstore # hangs: never answers\n"
	exps, err := parseExpectations(good, targetNames())
	if err != nil {
		t.Fatal(err)
	}
	if len(exps) != 2 || exps[0].Target != "*" || exps[0].Reason != "the gateway logs in upstream as its own role" || !exps[1].hangs() || exps[0].hangs() {
		t.Fatalf("parsed %+v", exps)
	}
	if !exps[0].appliesTo("pg-session", true) || exps[0].appliesTo("direct", false) {
		t.Error("* must mean every gateway target and only those")
	}
	if !exps[0].matches(pgxModule, "TestConnect") || exps[0].matches(pgxModule+"/stdlib", "TestConnect") {
		t.Error(". must match the root package only")
	}
	if !exps[1].matches(pgxModule+"/pgtype", "TestHstore") {
		t.Error("a relative package must match its import path")
	}
	for _, bad := range []string{
		"emulator . TestX\n",                 // no reason
		"emulator . TestX #   \n",            // empty reason
		"nowhere . TestX # why\n",            // unknown target
		"emulator TestX # why\n",             // two fields
		"emulator . TestX/sub # why\n",       // a subtest
		"* . TestX # a\n* . TestX # again\n", // repeated
	} {
		if _, err := parseExpectations(bad, targetNames()); err == nil {
			t.Errorf("%q parsed", bad)
		}
	}
}

func TestTail(t *testing.T) {
	for _, c := range []struct {
		n    int
		want string
	}{
		{3, "1 2 3"},
		{25, "1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20 21 22 23 24 25"},
		{40, "1 2 3 4 5 6 7 8 ... (12 lines) 21 22 23 24 25 26 27 28 29 30 31 32 33 34 35 36 37 38 39 40"},
	} {
		rr := newRunResults()
		rr.add(event{Action: "run", Package: "p", Test: "TestX"})
		for i := 1; i <= c.n; i++ {
			rr.add(event{Action: "output", Package: "p", Test: "TestX/sub", Output: fmt.Sprintf("%d\n", i)})
		}
		if got := strings.Join(rr.pkgs["p"].tests["TestX"].Tail(), " "); got != c.want {
			t.Errorf("%d lines: got %s, want %s", c.n, got, c.want)
		}
	}
}
