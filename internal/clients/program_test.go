//go:build clients

package clients

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/dsqlgate/dsqlgate/internal/harness"
)

// programClients finds the clients that are programs: every directory
// under testdata/clients with an executable run.sh, in name order.
func programClients(t *testing.T) []client {
	t.Helper()
	root := filepath.Join(harness.ModuleRootOf(t), "testdata", "clients")
	entries, err := os.ReadDir(root)
	if err != nil {
		t.Fatalf("read %s: %v", root, err)
	}
	var out []client
	for _, e := range entries {
		if !e.IsDir() {
			continue
		}
		dir := filepath.Join(root, e.Name())
		fi, err := os.Stat(filepath.Join(dir, "run.sh"))
		if err != nil || fi.Mode()&0o111 == 0 {
			continue
		}
		out = append(out, client{name: e.Name(), run: func(ctx context.Context, tg target) report {
			return runProgram(ctx, dir, tg)
		}})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].name < out[j].name })
	return out
}

// programLine is one line of a program's standard output.
type programLine struct {
	Step    *string `json:"step"`
	OK      *bool   `json:"ok"`
	Detail  string  `json:"detail"`
	Version string  `json:"version"`
}

// runProgram runs dir/run.sh with tg's environment until it exits or ctx
// ends, and collects the steps it reports. Its whole process group is
// killed afterwards, so nothing it started outlives it.
func runProgram(ctx context.Context, dir string, tg target) report {
	cmd := exec.CommandContext(ctx, "./run.sh")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), tg.env()...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 5 * time.Second
	stderr := &tailBuffer{max: 8 << 10}
	cmd.Stderr = stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return report{steps: []stepResult{{Step: "exit", Detail: err.Error()}}}
	}
	if err := cmd.Start(); err != nil {
		return report{steps: []stepResult{{Step: "exit", Detail: "start run.sh: " + err.Error()}}}
	}
	var rep report
	stray := &tailBuffer{max: 4 << 10}
	sc := bufio.NewScanner(stdout)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := bytes.TrimSpace(sc.Bytes())
		var pl programLine
		if len(line) == 0 || line[0] != '{' || json.Unmarshal(line, &pl) != nil {
			stray.Write(append(line, '\n'))
			continue
		}
		switch {
		case pl.Version != "":
			rep.version = pl.Version
		case pl.Step != nil && *pl.Step != "" && pl.OK != nil:
			rep.steps = append(rep.steps, stepResult{Step: *pl.Step, OK: *pl.OK, Detail: pl.Detail})
		default:
			stray.Write(append(line, '\n'))
		}
	}
	io.Copy(io.Discard, stdout)
	waitErr := cmd.Wait()
	// Whatever the program left behind in its group goes with it.
	_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)

	var logs strings.Builder
	if s := stray.String(); s != "" {
		fmt.Fprintf(&logs, "--- stdout (not JSON) ---\n%s", s)
	}
	if s := stderr.String(); s != "" {
		fmt.Fprintf(&logs, "--- stderr (end) ---\n%s", s)
	}
	rep.log = logs.String()
	if waitErr != nil {
		why := "run.sh: " + waitErr.Error()
		if errors.Is(ctx.Err(), context.DeadlineExceeded) {
			why = "run.sh timed out and was killed"
		}
		rep.ended = why + tailHint(stderr.String())
		// Steps it did not report fail in completeSteps with this reason;
		// when it reported every step ok, the exit status is a failure of
		// its own.
		if allReportedOK(rep.steps) {
			rep.steps = append(rep.steps, stepResult{Step: "exit", Detail: rep.ended})
		}
	}
	return rep
}

// allReportedOK reports whether every standard step was reported, and
// none failed.
func allReportedOK(steps []stepResult) bool {
	seen := map[string]bool{}
	for _, r := range steps {
		if !r.OK {
			return false
		}
		seen[r.Step] = true
	}
	for _, step := range standardSteps {
		if !seen[step] {
			return false
		}
	}
	return true
}

// tailHint is the last line of a program's stderr, for a failure's detail.
func tailHint(stderr string) string {
	if l := lastLine(stderr); l != "" {
		return " (stderr: " + l + ")"
	}
	return ""
}

// tailBuffer keeps the last max bytes written to it. Safe for concurrent
// use (exec copies stderr from its own goroutine).
type tailBuffer struct {
	mu  sync.Mutex
	max int
	buf []byte
	cut bool
}

func (b *tailBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.buf = append(b.buf, p...)
	if over := len(b.buf) - b.max; over > 0 {
		b.buf = append(b.buf[:0], b.buf[over:]...)
		b.cut = true
	}
	return len(p), nil
}

func (b *tailBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.cut {
		return "...\n" + string(b.buf)
	}
	return string(b.buf)
}
