// Package replicas is a test bed of several dsqlgate replicas behind a real
// TCP load balancer (HAProxy), as users run them behind an NLB or a
// Kubernetes Service: three `dsqlgate serve` processes of the built binary
// on 127.0.0.11, .12 and .13, same ports on each, one configuration with
// peers, in front of one DSQL emulator. Its tests (build tag replicas,
// Linux only; make test-replicas) check that a CancelRequest reaches its
// session whichever replica the balancer gives it to, that forged and
// stale keys cancel nothing, that a rolling restart costs clients that
// reconnect no transaction, and that advisory locks exclude across
// replicas.
package replicas
