//go:build replicas && !linux

package replicas

import "testing"

// TestReplicas needs several loopback addresses (127.0.0.11-13 answer
// without setup only on Linux), SO_REUSEPORT and HAProxy.
func TestReplicas(t *testing.T) {
	t.Skip("the replica test bed runs on Linux only")
}
