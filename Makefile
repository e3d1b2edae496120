# dsqlgate: the two commands a newcomer needs are `make demo` and `make test`.

GO      ?= go
BIN     := bin/dsqlgate
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -X main.version=$(VERSION)
# The whole suite on a 2-core machine, race detector on.
TEST_TIMEOUT ?= 40m

.PHONY: all build demo test test-short fuzz-smoke fuzz deps deps-bench bench bench-quick test-clients deps-clients test-replicas deps-replicas test-conformance deps-conformance vet lint cross fmt clean test-deploy image test-image

all: build

build:
	$(GO) build -ldflags "$(LDFLAGS)" -o $(BIN) ./cmd/dsqlgate

# Run the gateway against a private PostgreSQL behind the DSQL emulator; it
# prints a psql command that connects. Ctrl-C removes everything.
demo:
	$(GO) run ./cmd/dsqlgate demo

# Test dependencies that do not come from the Go module proxy: the JS SDK's
# DSQL signer, which mints tokens the emulator must accept.
deps:
	cd internal/dsqlsim/testdata/jssigner && npm ci --no-audit --no-fund --loglevel=error

# The whole test suite: unit, end-to-end against real PostgreSQL, race
# detector on (and netio's tests once more on the fallback other systems
# use); then every fuzz target briefly.
test: deps vet
	$(GO) test -race -timeout $(TEST_TIMEOUT) ./...
	$(GO) test -race -tags netio_portable ./internal/netio/
	$(MAKE) fuzz-smoke

# Every fuzz target for FUZZTIME (default 3s) each, one after another
# (about three minutes in all); the first failure stops it and names the
# target. FUZZ_MATCH=regexp runs only the targets whose names match.
fuzz-smoke:
	GO=$(GO) FUZZTIME=$(or $(FUZZTIME),3s) bash scripts/fuzz-smoke.sh

# The same, longer: FUZZTIME defaults to 60s a target (make fuzz
# FUZZTIME=10m FUZZ_MATCH=FuzzHandshake to dig at one).
fuzz:
	GO=$(GO) FUZZTIME=$(or $(FUZZTIME),60s) bash scripts/fuzz-smoke.sh

# Benchmark dependencies that do not come from the Go module proxy:
# PgBouncer (Debian's), installed only when it is missing.
deps-bench:
	@command -v pgbouncer >/dev/null 2>&1 || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq pgbouncer; }

# pgbench against PostgreSQL, PgBouncer and dsqlgate side by side, plus
# memory per idle client, the cost of an upstream replacement and hot-row
# contention under DSQL's optimistic concurrency; writes BENCHMARKS.md
# (under 20 minutes on two cores). bench-quick is a short form (under 3
# minutes) that writes the same tables with fewer cells.
# BASELINE=path/to/an/earlier/dsqlgate runs that build beside this one
# (target gw-pg-base) and adds a before/after table.
BENCH_FLAGS = -dsqlgate $(BIN) -out BENCHMARKS.md $(if $(BASELINE),-baseline $(BASELINE))

bench: deps-bench build
	$(GO) run ./internal/benchrun $(BENCH_FLAGS)

bench-quick: deps-bench build
	$(GO) run ./internal/benchrun -quick $(BENCH_FLAGS)

# The client compatibility suite: every client (psql, pgx in each exec
# mode, database/sql, lib/pq, GORM, psycopg, SQLAlchemy, JDBC and those in
# testdata/clients/*) runs one scenario through the gateway in both pool
# modes; writes docs/CLIENTS.md; any failed step fails it (a few minutes).
# DSQLGATE_CLIENTS=psql,jdbc runs only the named clients (and writes no doc).
test-clients: deps-clients
	$(GO) test -tags clients -count=1 -timeout 20m -v ./internal/clients/

# The replica test bed (Linux): three `dsqlgate serve` processes on
# 127.0.0.11-13, same ports, peers configured, behind HAProxy (Debian's
# haproxy, installed by .ci/run) in TCP mode with /readyz health checks.
# It checks that psql's and pgx's cancels reach their session from any
# replica, that forged and stale cancel keys cancel nothing, that a
# rolling restart (drain in HAProxy, SIGTERM, successor on the same
# address; then again with SIGTERM first, as when Kubernetes removes the
# endpoint and signals the pod at once) fails no transaction of pgbench -C,
# a pgxpool or a node-postgres Pool, and that advisory locks exclude
# across replicas; it logs the counts (a few minutes). Needs haproxy, psql,
# pgbench and node.
test-replicas: deps-replicas
	$(GO) test -tags replicas -count=1 -timeout 15m -v ./internal/replicas/

# What the replica test bed needs beyond Go and Debian's packages:
# node-postgres, from the node-pg client's lock file (the copy
# deps-clients installs too).
deps-replicas:
	cd testdata/clients/node-pg && npm ci --no-audit --no-fund --loglevel=error

# What the client suite needs beyond Go: Debian packages, each installed
# only when it is missing (Debian's release pins their versions), and
# `npm ci` from the lock file in every client directory with a package.json.
CLIENT_DEBS := python3-psycopg python3-psycopg2 python3-sqlalchemy libpostgresql-jdbc-java bsdutils curl
deps-clients:
	@missing=""; \
	for p in $(CLIENT_DEBS); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q 'install ok installed' || missing="$$missing $$p"; \
	done; \
	ls /usr/lib/postgresql/*/bin/psql >/dev/null 2>&1 || missing="$$missing postgresql-client"; \
	command -v javac >/dev/null 2>&1 || missing="$$missing openjdk-17-jdk-headless"; \
	if [ -n "$$missing" ]; then \
	  echo "deps-clients: installing$$missing"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing; \
	fi
	@for f in testdata/clients/*/package.json; do \
	  [ -e "$$f" ] || continue; \
	  d=$$(dirname "$$f"); echo "deps-clients: npm ci in $$d"; \
	  (cd "$$d" && npm ci --no-audit --no-fund --loglevel=error) || exit 1; \
	done

# The pgx conformance suite: pgx's own tests (the version go.mod names, from
# the module cache) against PostgreSQL directly and through the gateway (a
# kind postgres route in pool modes session and transaction, and the route to
# the DSQL emulator), each on a fresh stack. A failing test that is not in
# internal/conformance/testdata/expected-failures.txt fails it, and so does a
# listed test that passes (about 5 minutes). CONFORMANCE_TARGETS=direct,emulator
# runs only those; CONFORMANCE_RUN=regexp is go test -run for pgx's tests;
# CONFORMANCE_WRITE=1 on a full run writes the counts into README.md;
# CONFORMANCE_LOG_DIR=dir keeps each target's go test JSON and logs.
test-conformance: deps-conformance
	GO=$(GO) CONFORMANCE_WRITE=$(CONFORMANCE_WRITE) $(GO) test -tags conformance -count=1 -timeout 90m -v ./internal/conformance/

# pgx's module and the modules its tests need, into the module cache.
PGX_MODULE := github.com/jackc/pgx/v5
deps-conformance:
	$(GO) mod download $(PGX_MODULE)
	cd "$$($(GO) list -m -f '{{.Dir}}' $(PGX_MODULE))" && GOWORK=off $(GO) mod download

# The deployment files (deploy/, docs/DEPLOY.md): cfn-lint on the
# CloudFormation stack (when cfn-lint is installed: pip install cfn-lint),
# the Kubernetes manifests decoded strictly into the Kubernetes API types
# (a nested module, so its dependencies stay out of go.mod), and the Go
# tests under deploy/, whose config-drift tests run `dsqlgate check` on the
# stack's and the ConfigMap's configuration against the DSQL emulator.
test-deploy:
	@if command -v cfn-lint >/dev/null 2>&1; then cfn-lint -- deploy/aws/dsqlgate.yaml; \
	  else echo "test-deploy: cfn-lint not installed; skipping the template's lint"; fi
	cd deploy/kubernetes/validate && $(GO) vet ./... && $(GO) test -count=1 ./...
	$(GO) test -race -count=1 ./deploy/...

# The container image (Containerfile), tagged $(IMAGE):$(VERSION) and
# $(IMAGE):latest, with the first tool that works: docker when its daemon
# answers, else podman, else buildah (CONTAINER_TOOL=... picks one).
# GO_IMAGE=... replaces the builder stage's golang image (a mirror, or a
# local one where no registry is reachable); IMAGE_BUILD_FLAGS are passed on.
# buildah runs the RUN steps with chroot isolation (BUILDAH_ISOLATION=oci
# for its default): it needs no cgroup or network setup, so it works inside
# a container or CI sandbox as well, and the build only compiles.
IMAGE ?= dsqlgate
image:
	@tool="$(CONTAINER_TOOL)"; \
	if [ -z "$$tool" ]; then \
	  if command -v docker >/dev/null 2>&1 && docker info >/dev/null 2>&1; then tool=docker; \
	  elif command -v podman >/dev/null 2>&1; then tool=podman; \
	  elif command -v buildah >/dev/null 2>&1; then tool=buildah; \
	  else echo "image: no docker daemon answers and neither podman nor buildah is installed (apt-get install buildah)" >&2; exit 1; fi; \
	fi; \
	isolation=""; if [ "$$tool" = buildah ]; then isolation="--isolation $(or $(BUILDAH_ISOLATION),chroot)"; fi; \
	echo "image: building $(IMAGE):$(VERSION) with $$tool"; \
	set -x; $$tool build $$isolation -f Containerfile --build-arg VERSION=$(VERSION) \
	  $(if $(GO_IMAGE),--build-arg GO_IMAGE=$(GO_IMAGE)) $(IMAGE_BUILD_FLAGS) \
	  -t $(IMAGE):$(VERSION) -t $(IMAGE):latest .

# Builds the image with buildah from the host's own Go toolchain (no
# registry needed), checks it, and serves a pgx client from it through the
# DSQL emulator (internal/imagetest; a few minutes). Needs root and buildah;
# STORAGE_DRIVER=vfs where overlay mounts are refused.
test-image:
	$(GO) test -tags image -count=1 -timeout 30m -v ./internal/imagetest/

test-short:
	$(GO) test -short ./...

vet:
	$(GO) vet ./...

# Static checks; any finding fails: gofmt, go.mod and go.sum as go mod tidy
# leaves them, vet, staticcheck (the version pinned here, built by go run
# from the module proxy; the build tags bring in the client and conformance
# suites, the replica test bed and the image test), and the builds for the
# other systems (cross).
STATICCHECK := honnef.co/go/tools/cmd/staticcheck@v0.8.2
lint: vet cross
	@unformatted=$$(gofmt -l .); if [ -n "$$unformatted" ]; then \
	  echo "gofmt -l: not formatted:"; echo "$$unformatted"; exit 1; fi
	$(GO) mod tidy -diff
	$(GO) run $(STATICCHECK) -tags clients,conformance,replicas,image ./...

# The gateway builds and vets (tests included) on each of CROSS_PLATFORMS,
# so that it runs on a developer's Mac or Windows machine as well as on
# the Linux it is deployed on.
CROSS_PLATFORMS := darwin/arm64 windows/amd64
cross:
	@for p in $(CROSS_PLATFORMS); do \
	  echo "cross: $$p"; \
	  GOOS=$${p%/*} GOARCH=$${p#*/} $(GO) build ./... && \
	  GOOS=$${p%/*} GOARCH=$${p#*/} $(GO) vet ./... || exit 1; \
	done

fmt:
	gofmt -w $$(git ls-files '*.go')

clean:
	rm -rf bin
