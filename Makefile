# dsqlgate: the two commands a newcomer needs are `make demo` and `make test`.

GO      ?= go
BIN     := bin/dsqlgate
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -X main.version=$(VERSION)
# The whole suite on a 2-core machine, race detector on.
TEST_TIMEOUT ?= 40m

.PHONY: all build demo test test-short deps vet fmt clean

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
# detector on.
test: deps vet
	$(GO) test -race -timeout $(TEST_TIMEOUT) ./...

test-short:
	$(GO) test -short ./...

vet:
	$(GO) vet ./...

fmt:
	gofmt -w $$(git ls-files '*.go')

clean:
	rm -rf bin
