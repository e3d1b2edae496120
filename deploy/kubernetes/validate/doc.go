// Package validate checks the Kubernetes manifests in the directory above
// without a cluster: each decodes strictly (no unknown field) into the real
// Kubernetes API types, and they agree with each other and with the
// gateway configuration the ConfigMap carries (ports, probes, labels and
// selectors, timeouts, the users Secret). It is a module of its own so that
// the Kubernetes API modules stay out of the gateway's go.mod; run it with
// `make test-deploy` (or `go test ./...` in this directory).
package validate
