//go:build image

package imagetest

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// buildah runs the buildah command line.
type buildah struct {
	bin string
}

// findBuildah fails the test with what to do when buildah is missing.
func findBuildah(t *testing.T) *buildah {
	t.Helper()
	bin, err := exec.LookPath("buildah")
	if err != nil {
		t.Fatal("buildah is not installed: the image test builds and runs the image with it " +
			"(apt-get install buildah; .ci/run installs it before make test-image)")
	}
	if os.Geteuid() != 0 {
		t.Fatal("the image test runs as root: buildah mount, chroot isolation and the harness's PostgreSQL need it")
	}
	return &buildah{bin: bin}
}

// run runs buildah with args and returns its standard output, trimmed. The
// error carries the command (environment values redacted) and its standard
// error.
func (b *buildah) run(ctx context.Context, args ...string) (string, error) {
	var stdout, stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, b.bin, args...)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("buildah %s: %w\n%s", redact(args), err, tail(stderr.String(), 4000))
	}
	return strings.TrimSpace(stdout.String()), nil
}

// must is run that fails the test on an error.
func (b *buildah) must(ctx context.Context, t *testing.T, args ...string) string {
	t.Helper()
	out, err := b.run(ctx, args...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// from makes a working container from image and removes it when the test
// ends.
func (b *buildah) from(ctx context.Context, t *testing.T, image string) string {
	t.Helper()
	ctr := b.must(ctx, t, "from", "--pull=never", "--quiet", image)
	t.Cleanup(func() { b.cleanup(t, "rm", ctr) })
	return ctr
}

// cleanup runs a removal after the test, with its own time limit (the
// test's context may be gone), and reports a failure without failing.
func (b *buildah) cleanup(t *testing.T, args ...string) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if _, err := b.run(ctx, args...); err != nil {
		t.Logf("cleanup: %v", err)
	}
}

// imageConfig is the part of `buildah inspect --type image` the test reads.
type imageConfig struct {
	Manifest string `json:"Manifest"` // JSON
	OCIv1    struct {
		Config struct {
			User         string              `json:"User"`
			Env          []string            `json:"Env"`
			Entrypoint   []string            `json:"Entrypoint"`
			Cmd          []string            `json:"Cmd"`
			WorkingDir   string              `json:"WorkingDir"`
			ExposedPorts map[string]struct{} `json:"ExposedPorts"`
			Labels       map[string]string   `json:"Labels"`
		} `json:"config"`
		RootFS struct {
			DiffIDs []string `json:"diff_ids"`
		} `json:"rootfs"`
	} `json:"OCIv1"`
}

// inspect reads image's configuration.
func (b *buildah) inspect(ctx context.Context, t *testing.T, image string) imageConfig {
	t.Helper()
	var cfg imageConfig
	if err := json.Unmarshal([]byte(b.must(ctx, t, "inspect", "--type", "image", image)), &cfg); err != nil {
		t.Fatalf("buildah inspect %s: %v", image, err)
	}
	return cfg
}

// imageSize is the size of image as stored: the sum of its layers,
// uncompressed tar streams in local storage (what `podman images` shows),
// and its configuration, from the manifest cfg was read with.
func imageSize(t *testing.T, cfg imageConfig) int64 {
	t.Helper()
	var m struct {
		Config struct {
			Size int64 `json:"size"`
		} `json:"config"`
		Layers []struct {
			Size int64 `json:"size"`
		} `json:"layers"`
	}
	if err := json.Unmarshal([]byte(cfg.Manifest), &m); err != nil {
		t.Fatalf("the image's manifest: %v\n%s", err, cfg.Manifest)
	}
	size := m.Config.Size
	for _, l := range m.Layers {
		size += l.Size
	}
	return size
}

// redact shows a buildah command line without the values of -e NAME=VALUE
// and --env NAME=VALUE (credentials travel there).
func redact(args []string) string {
	out := make([]string, len(args))
	for i, a := range args {
		out[i] = a
		if i > 0 && (args[i-1] == "-e" || args[i-1] == "--env") {
			if name, _, ok := strings.Cut(a, "="); ok {
				out[i] = name + "=…"
			}
		}
	}
	return strings.Join(out, " ")
}

// tail is the last n bytes of s.
func tail(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return "…" + s[len(s)-n:]
}

// builderPrograms are the host programs the Containerfile's builder stage
// calls besides go: RUN's shell and the coreutils of its last step.
var builderPrograms = map[string]string{ // path in the image: program on the host
	"/bin/sh":    "sh",
	"/bin/mkdir": "mkdir",
	"/bin/cp":    "cp",
	"/bin/chown": "chown",
	"/bin/chmod": "chmod",
}

// makeGoBuilder commits an image that stands in for golang:1.26-bookworm
// where no registry is reachable: the host's Go toolchain, the programs
// the builder stage runs and their shared libraries, and the host's CA
// bundle, with golang's PATH, GOPATH and GOTOOLCHAIN. The test removes the
// image when it ends.
func makeGoBuilder(ctx context.Context, t *testing.T, b *buildah, name string) {
	t.Helper()
	goroot, err := exec.CommandContext(ctx, "go", "env", "GOROOT").Output()
	if err != nil {
		t.Fatalf("go env GOROOT: %v", err)
	}
	ctr := b.must(ctx, t, "from", "--quiet", "scratch")
	defer b.cleanup(t, "rm", ctr)
	mnt := b.must(ctx, t, "mount", ctr)
	files := map[string]string{"/etc/ssl/certs/ca-certificates.crt": "/etc/ssl/certs/ca-certificates.crt"}
	for dst, prog := range builderPrograms {
		src, err := exec.LookPath(prog)
		if err != nil {
			t.Fatalf("the builder image needs the host's %s: %v", prog, err)
		}
		files[dst] = src
		libs, err := sharedLibraries(ctx, src)
		if err != nil {
			t.Fatal(err)
		}
		for _, lib := range libs {
			files[lib] = lib
		}
	}
	for dst, src := range files {
		if err := copyResolved(src, filepath.Join(mnt, dst)); err != nil {
			t.Fatalf("builder image: %v", err)
		}
	}
	// The toolchain where the golang image has it.
	if err := os.MkdirAll(filepath.Join(mnt, "usr/local"), 0o755); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.CommandContext(ctx, "cp", "-a", strings.TrimSpace(string(goroot)), filepath.Join(mnt, "usr/local/go")).CombinedOutput(); err != nil {
		t.Fatalf("copy the Go toolchain into the builder image: %v\n%s", err, out)
	}
	for dir, mode := range map[string]os.FileMode{"tmp": 0o1777, "root": 0o700, "go/bin": 0o755, "go/src": 0o755} {
		p := filepath.Join(mnt, dir)
		if err := os.MkdirAll(p, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, mode); err != nil {
			t.Fatal(err)
		}
	}
	b.must(ctx, t, "umount", ctr)
	b.must(ctx, t, "config",
		"--env", "PATH=/go/bin:/usr/local/go/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
		"--env", "GOPATH=/go", "--env", "GOTOOLCHAIN=local", "--env", "HOME=/root",
		"--workingdir", "/go", ctr)
	b.must(ctx, t, "commit", "--quiet", ctr, name)
	t.Cleanup(func() { b.cleanup(t, "rmi", "--force", name) })
}

// sharedLibraries lists the shared libraries (and the dynamic loader) that
// ldd names for the program prog: absolute paths, possibly symbolic links.
func sharedLibraries(ctx context.Context, prog string) ([]string, error) {
	out, err := exec.CommandContext(ctx, "ldd", prog).Output()
	if err != nil {
		// A static program: ldd says so and exits 1.
		if strings.Contains(string(out), "not a dynamic executable") {
			return nil, nil
		}
		return nil, fmt.Errorf("ldd %s: %w\n%s", prog, err, out)
	}
	var libs []string
	for _, line := range strings.Split(string(out), "\n") {
		// "libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x...)" or
		// "/lib64/ld-linux-x86-64.so.2 (0x...)"; linux-vdso has no path.
		for _, f := range strings.Fields(line) {
			if strings.HasPrefix(f, "/") {
				libs = append(libs, f)
				break
			}
		}
	}
	return libs, nil
}

// copyResolved copies the file src (symbolic links followed) to dst,
// creating dst's directories, with src's permission bits.
func copyResolved(src, dst string) error {
	data, err := os.ReadFile(src)
	if err != nil {
		return err
	}
	fi, err := os.Stat(src)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return err
	}
	return os.WriteFile(dst, data, fi.Mode().Perm())
}
