//go:build clients

package clients

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// TestProgramProtocol checks the runner's side of the protocol in doc.go
// with small fake programs: what becomes a row, and how a crash, a silent
// program and a non-zero exit show.
func TestProgramProtocol(t *testing.T) {
	allOK := ""
	for _, s := range standardSteps {
		allOK += `echo '{"step":"` + s + `","ok":true,"detail":"fine"}'` + "\n"
	}
	notReported := func(why string) []stepResult {
		var out []stepResult
		for _, s := range standardSteps {
			out = append(out, stepResult{Step: s, Detail: "not reported" + why})
		}
		return out
	}
	tests := []struct {
		name        string
		script      string
		timeout     time.Duration
		wantVersion string
		// want lists the rows that are not "ok, fine" for a standard step.
		want []stepResult
	}{
		{
			name:        "all steps ok, a version, stray output",
			script:      "echo hello\necho '{\"version\":\"fake 1.0\"}'\necho '[1]'\n" + allOK,
			wantVersion: "fake 1.0",
		},
		{
			name: "a skip, a failure, a repeated step and an extra step",
			script: allOK +
				`echo '{"step":"cancel","ok":true,"detail":"skipped: no cancel"}'` + "\n" +
				`echo '{"step":"tx_commit","ok":false,"detail":"boom"}'` + "\n" +
				`echo '{"step":"worker_fetch","ok":true,"detail":"extra"}'` + "\n" +
				"exit 1\n",
			want: []stepResult{
				{Step: "tx_commit", Detail: "boom"},
				{Step: "worker_fetch", OK: true, Detail: "extra"},
			},
		},
		{
			name:   "exit status after every step ok",
			script: allOK + "echo oops >&2\nexit 3\n",
			want:   []stepResult{{Step: "exit", Detail: "run.sh: exit status 3 (stderr: oops)"}},
		},
		{
			name:   "a crash before any step",
			script: "echo 'no such thing' >&2\nexit 2\n",
			want:   notReported(": run.sh: exit status 2 (stderr: no such thing)"),
		},
		{
			name:    "a hang",
			script:  "sleep 30 &\nwait\n",
			timeout: 500 * time.Millisecond,
			want:    notReported(": run.sh timed out and was killed"),
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			if err := os.WriteFile(filepath.Join(dir, "run.sh"), []byte("#!/bin/sh\n"+tt.script), 0o755); err != nil {
				t.Fatal(err)
			}
			timeout := tt.timeout
			if timeout == 0 {
				timeout = 20 * time.Second
			}
			ctx, cancel := context.WithTimeout(context.Background(), timeout)
			defer cancel()
			start := time.Now()
			rep := runProgram(ctx, dir, target{})
			if took := time.Since(start); took > timeout+10*time.Second {
				t.Errorf("runProgram returned after %s", took)
			}
			got := completeSteps(rep.steps, rep.ended)
			var unusual []stepResult
			for _, r := range got {
				if !(r.OK && r.Detail == "fine" && strings.Contains(strings.Join(standardSteps, " "), r.Step)) {
					unusual = append(unusual, r)
				}
			}
			if diff := cmp.Diff(tt.want, unusual); diff != "" {
				t.Errorf("rows (-want +got):\n%s\nlog:\n%s", diff, rep.log)
			}
			if rep.version != tt.wantVersion {
				t.Errorf("version %q, want %q", rep.version, tt.wantVersion)
			}
		})
	}
}

// TestRenderMatrix: cells, the n/a and failure notes, extra columns.
func TestRenderMatrix(t *testing.T) {
	var results []stepResult
	for _, mode := range poolModes {
		for _, s := range standardSteps {
			results = append(results, stepResult{Client: "a", Mode: mode, Step: s, OK: true})
			r := stepResult{Client: "b", Mode: mode, Step: s, OK: true}
			switch s {
			case "cancel":
				r.Detail = "skipped: no | cancel"
			case "bulk_insert":
				if mode == "session" {
					r.OK, r.Detail = false, "lost\nrows"
				}
			}
			results = append(results, r)
		}
	}
	results = append(results, stepResult{Client: "b", Mode: "session", Step: "extra", OK: true})
	md := renderMatrix([]string{"a", "b"}, map[string]string{"b": "b 2.0"}, results)
	for _, want := range []string{
		"| client | connect_tls | param_query | prepared_reuse | tx_commit | tx_rollback | error_recovery | set_observed | bulk_insert | cancel | survive_replacement | extra |",
		"| a | ✓ | ✓ | ✓ | ✓ | ✓ | ✓ | ✓ | ✓ | ✓ | ✓ | |",
		"| b (b 2.0) | ✓ | ✓ | ✓ | ✓ | ✓ | ✓ | ✓ | ✓ | n/a | ✓ | |",
		"| b (b 2.0) | ✓ | ✓ | ✓ | ✓ | ✓ | ✓ | ✓ | ✗ | n/a | ✓ | ✓ |",
		"- **b**, cancel: n/a: no | cancel\n",
		"- **b**, bulk_insert (session mode): FAILED: lost rows\n",
	} {
		if !strings.Contains(md, want) {
			t.Errorf("no %q in:\n%s", want, md)
		}
	}
}

func TestRenderReadmeMatrix(t *testing.T) {
	var results []stepResult
	for _, mode := range poolModes {
		for _, s := range standardSteps {
			r := stepResult{Client: "a", Mode: mode, Step: s, OK: true}
			if s == "cancel" {
				r.Detail = "skipped: no cancel"
			}
			if s == "bulk_insert" && mode == "session" {
				r.OK = false
			}
			results = append(results, r)
		}
	}
	block := renderReadmeMatrix([]string{"a"}, results)
	want := "| a | ✓ ✓ | ✓ ✓ | ✓ ✓ | ✓ ✓ | ✓ ✓ | ✓ ✓ | ✓ ✓ | ✓ ✗ | – – | ✓ ✓ |"
	if !strings.Contains(block, want) || !strings.Contains(block, "### Limits that come from DSQL") {
		t.Errorf("no %q or limits in:\n%s", want, block)
	}
	got, err := spliceReadme("intro\n"+readmeBegin+"\nold\n"+readmeEnd+"\nrest\n", block)
	if err != nil || got != "intro\n"+block+"\nrest\n" {
		t.Errorf("splice: %v\n%s", err, got)
	}
	if _, err := spliceReadme("no markers", block); err == nil {
		t.Error("splice into a README without markers succeeded")
	}
}
