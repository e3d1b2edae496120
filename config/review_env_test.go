package config_test

import "testing"

// TestServiceLinkOnAKnownKey: Kubernetes injects, for a Service named
// dsqlgate-reuse in the namespace, DSQLGATE_REUSE_PORT=tcp://host:port,
// which is also the variable of the new key reuse_port. The change ignores
// service links "for a Service whose name starts with dsqlgate" in
// silence, but this one is parsed as reuse_port and the gateway refuses to
// start. A service link's value (proto://host:port) is never a setting of
// a boolean key.
func TestServiceLinkOnAKnownKey(t *testing.T) {
	c, err := parseWithEnv(t, "", map[string]string{"DSQLGATE_REUSE_PORT": "tcp://10.96.0.14:6432"}, user)
	if err != nil {
		t.Fatalf("a Kubernetes service link stops the gateway: %v", err)
	}
	if c.ReusePort {
		t.Errorf("reuse_port set from a service link")
	}
}
