//go:build image

// Package imagetest is the container image's test (`make test-image`): it
// builds the repository's Containerfile with buildah, checks the image it
// makes, and runs `dsqlgate serve` from it against the DSQL emulator. It
// holds test files only, all behind the build tag `image`, so `go test
// ./...` skips it; it needs buildah (`apt-get install buildah`) and root.
//
// # No registry
//
// No container registry has to be reachable. The Containerfile's builder
// stage starts FROM ${GO_IMAGE} (golang:1.26-bookworm by default); the test
// makes a stand-in, localhost/dsqlgate-go-builder:<random>, from the host
// itself: the Go toolchain the test runs with (go env GOROOT), a shell and
// the coreutils the stage's RUN lines call (each with the shared libraries
// ldd names), and the host's CA bundle. It passes that image as GO_IMAGE, so
// the same Containerfile is built as everywhere else. Modules come from the
// host's module cache, mounted read-only into the build and named first in
// GOPROXY (file:///...), then from the host's own GOPROXY for any module the
// cache lacks.
//
// # What it checks
//
//   - the image's configuration: user 65532:65532, working directory,
//     DSQLGATE_METRICS_LISTEN=0.0.0.0:9187, entrypoint and command, exposed
//     ports, OCI labels; its size (logged, and at most maxImageBytes);
//   - its file system (through buildah mount): a static binary, the CA
//     bundle holding Amazon Root CA 1, a working directory and /tmp the user
//     can write, no shell;
//   - `dsqlgate --version` in the image prints the VERSION build argument;
//   - the image's entrypoint and command, run with `buildah run --isolation
//     chroot --network host` as the image's user, with a configuration and
//     the emulator's CA mounted read-only at /etc/dsqlgate and the AWS
//     credentials in the environment, serve /readyz, take a pgx client
//     through to the emulator (CREATE TABLE, INSERT, SELECT), and exit 0 on
//     SIGTERM after draining.
//
// Every container and image it makes is removed when it ends. buildah's
// own settings apply (storage.conf; STORAGE_DRIVER=vfs where overlay mounts
// are refused); the default overlay driver works as root on Debian 12.
package imagetest
