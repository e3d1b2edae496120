//go:build image

package imagetest

import (
	"context"
	"crypto/x509"
	"debug/elf"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/dsqlgate/dsqlgate/internal/harness"
	"github.com/dsqlgate/dsqlgate/internal/pgtest"
)

// Settings the image promises (the Containerfile's).
const (
	imageUser       = "65532:65532"
	imageUID        = 65532
	imageWorkDir    = "/var/lib/dsqlgate"
	imageBinary     = "/usr/local/bin/dsqlgate"
	imageCABundle   = "/etc/ssl/certs/ca-certificates.crt"
	imageConfigDir  = "/etc/dsqlgate"
	imageMetricsEnv = "DSQLGATE_METRICS_LISTEN=0.0.0.0:9187"
	// maxImageBytes bounds the image: the binary (about 16 MB) and the CA
	// bundle, with room for growth; a base image slipping in would pass it.
	maxImageBytes = 40 << 20
)

// TestImage builds the Containerfile and checks the image, then serves
// clients from it. The steps share one image, so they are one test.
func TestImage(t *testing.T) {
	b := findBuildah(t)
	ctx, cancel := context.WithTimeout(context.Background(), 25*time.Minute)
	defer cancel()
	root := harness.ModuleRootOf(t)
	id := pgtest.RandomHex(4)
	version := "v0.0.0-imagetest." + id
	image := "localhost/dsqlgate-imagetest:" + id

	start := time.Now()
	builder := "localhost/dsqlgate-go-builder:" + id
	makeGoBuilder(ctx, t, b, builder)
	t.Logf("builder image %s from the host's Go toolchain: %s", builder, time.Since(start).Round(time.Second))

	start = time.Now()
	buildImage(ctx, t, b, root, image, builder, version)
	t.Logf("image %s built: %s", image, time.Since(start).Round(time.Second))

	cfg := b.inspect(ctx, t, image)
	checkConfig(t, cfg, version)
	size := imageSize(t, cfg)
	t.Logf("image size: %.1f MiB (%d bytes, %d layers)", float64(size)/(1<<20), size, len(cfg.OCIv1.RootFS.DiffIDs))
	if size <= 0 || size > maxImageBytes {
		t.Errorf("image size %d bytes, want at most %d: did a base image or build output slip into the final stage?", size, maxImageBytes)
	}

	ctr := b.from(ctx, t, image)
	mnt := b.must(ctx, t, "mount", ctr)
	checkFiles(t, mnt)
	b.must(ctx, t, "umount", ctr)

	t.Run("version", func(t *testing.T) { checkVersion(ctx, t, b, ctr, version) })
	t.Run("serve", func(t *testing.T) {
		start := time.Now()
		serveFromImage(ctx, t, b, ctr, cfg)
		t.Logf("serve from the image: %s", time.Since(start).Round(time.Second))
	})
}

// buildImage builds the Containerfile in root as image, with builder as
// the Go image and the host's modules, and removes the image when the test
// ends.
func buildImage(ctx context.Context, t *testing.T, b *buildah, root, image, builder, version string) {
	t.Helper()
	modcache, err := exec.CommandContext(ctx, "go", "env", "GOMODCACHE").Output()
	if err != nil {
		t.Fatalf("go env GOMODCACHE: %v", err)
	}
	downloads := filepath.Join(strings.TrimSpace(string(modcache)), "cache", "download")
	const mounted = "/host-module-cache"
	proxy := "file://" + mounted
	if p := goEnv(ctx, t, "GOPROXY"); p != "" && p != "off" {
		proxy += "," + p
	}
	args := []string{"build",
		"--isolation", "chroot", "--network", "host", "--pull=never",
		"-f", filepath.Join(root, "Containerfile"),
		"--build-arg", "GO_IMAGE=" + builder,
		"--build-arg", "VERSION=" + version,
		"--build-arg", "GOPROXY=" + proxy,
		"-v", downloads + ":" + mounted + ":ro",
		"-t", image,
	}
	for _, name := range []string{"GOSUMDB", "GONOSUMDB", "GOPRIVATE"} {
		if v := goEnv(ctx, t, name); v != "" {
			args = append(args, "--build-arg", name+"="+v)
		}
	}
	args = append(args, root)
	t.Cleanup(func() { b.cleanup(t, "rmi", "--force", image) })
	cmd := exec.CommandContext(ctx, b.bin, args...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("buildah %s: %v\n%s", redact(args), err, tail(string(out), 8000))
	}
}

// goEnv is `go env name`.
func goEnv(ctx context.Context, t *testing.T, name string) string {
	t.Helper()
	out, err := exec.CommandContext(ctx, "go", "env", name).Output()
	if err != nil {
		t.Fatalf("go env %s: %v", name, err)
	}
	return strings.TrimSpace(string(out))
}

// checkConfig checks the image's configuration against the Containerfile's
// promises.
func checkConfig(t *testing.T, cfg imageConfig, version string) {
	t.Helper()
	c := cfg.OCIv1.Config
	if c.User != imageUser {
		t.Errorf("image user %q, want %q (non-root, numeric)", c.User, imageUser)
	}
	if c.WorkingDir != imageWorkDir {
		t.Errorf("working directory %q, want %q", c.WorkingDir, imageWorkDir)
	}
	if !slices.Contains(c.Env, imageMetricsEnv) {
		t.Errorf("environment %q lacks %s (the load balancer's health check reaches /readyz there)", c.Env, imageMetricsEnv)
	}
	if want := []string{imageBinary}; !slices.Equal(c.Entrypoint, want) {
		t.Errorf("entrypoint %q, want %q", c.Entrypoint, want)
	}
	if want := []string{"serve", "--config", imageConfigDir + "/dsqlgate.yaml"}; !slices.Equal(c.Cmd, want) {
		t.Errorf("command %q, want %q", c.Cmd, want)
	}
	for _, p := range []string{"5432/tcp", "9187/tcp"} {
		if _, ok := c.ExposedPorts[p]; !ok {
			t.Errorf("port %s not exposed: %v", p, c.ExposedPorts)
		}
	}
	for k, want := range map[string]string{
		"org.opencontainers.image.licenses": "Apache-2.0",
		"org.opencontainers.image.source":   "https://github.com/dsqlgate/dsqlgate",
		"org.opencontainers.image.version":  version,
	} {
		if got := c.Labels[k]; got != want {
			t.Errorf("label %s = %q, want %q", k, got, want)
		}
	}
}

// checkFiles checks the image's file system, mounted at mnt: a static
// binary, the CA bundle with DSQL's root, directories the user can write,
// and nothing to run but the binary.
func checkFiles(t *testing.T, mnt string) {
	t.Helper()
	bin := filepath.Join(mnt, imageBinary)
	if err := checkStatic(bin); err != nil {
		t.Errorf("%s: %v", imageBinary, err)
	}
	if err := checkBundle(filepath.Join(mnt, imageCABundle), "Amazon Root CA 1"); err != nil {
		t.Errorf("%s: %v", imageCABundle, err)
	}
	for dir, mode := range map[string]os.FileMode{imageWorkDir: 0o755, "/tmp": 0o777 | os.ModeSticky} {
		fi, err := os.Stat(filepath.Join(mnt, dir))
		if err != nil {
			t.Errorf("%s: %v", dir, err)
			continue
		}
		st := fi.Sys().(*syscall.Stat_t)
		if !fi.IsDir() || fi.Mode()&(os.ModePerm|os.ModeSticky) != mode {
			t.Errorf("%s: mode %v, want a directory with %v", dir, fi.Mode(), mode)
		}
		if dir == imageWorkDir && (st.Uid != imageUID || st.Gid != imageUID) {
			t.Errorf("%s owned by %d:%d, want %s (ACME's default storage is written there)", dir, st.Uid, st.Gid, imageUser)
		}
	}
	passwd, err := os.ReadFile(filepath.Join(mnt, "/etc/passwd"))
	if err != nil || !strings.Contains(string(passwd), ":65532:65532:") {
		t.Errorf("/etc/passwd does not name user 65532: %v %q", err, passwd)
	}
	if _, err := os.Lstat(filepath.Join(mnt, "/bin/sh")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("/bin/sh in the image (want an empty base): %v", err)
	}
}

// checkStatic fails unless path is an ELF executable with neither a
// dynamic loader nor shared libraries.
func checkStatic(path string) error {
	f, err := elf.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			return errors.New("dynamically linked (has an interpreter): build with CGO_ENABLED=0")
		}
	}
	if libs, _ := f.ImportedLibraries(); len(libs) > 0 {
		return fmt.Errorf("needs shared libraries %v", libs)
	}
	return nil
}

// checkBundle fails unless path is a PEM bundle holding a certificate whose
// subject's common name is cn.
func checkBundle(path, cn string) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	n := 0
	for {
		var block *pem.Block
		block, data = pem.Decode(data)
		if block == nil {
			break
		}
		cert, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			continue
		}
		n++
		if cert.Subject.CommonName == cn {
			return nil
		}
	}
	return fmt.Errorf("%d certificates, none is %q", n, cn)
}

// checkVersion runs `dsqlgate --version` in the image.
func checkVersion(ctx context.Context, t *testing.T, b *buildah, ctr, version string) {
	out, err := b.run(ctx, "run", "--isolation", "chroot", "--network", "host", ctr, "--", imageBinary, "--version")
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("in the image: %s", out)
	if !strings.HasPrefix(out, "dsqlgate "+version+" ") {
		t.Errorf("version output %q lacks the VERSION build argument %q", out, version)
	}
}
