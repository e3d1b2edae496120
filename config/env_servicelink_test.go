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

// TestUsersEnvFromTheEnvironment: users_env set by its own variable
// (DSQLGATE_USERS_ENV=DSQLGATE_USERLIST, as an orchestrator that injects
// both would) names a variable that holds a secret: it must not be
// reported as an unknown variable that "no verifier_env or password_env
// key names".
func TestUsersEnvFromTheEnvironment(t *testing.T) {
	c, err := parseWithEnv(t, "", map[string]string{"DSQLGATE_USERS_ENV": "DSQLGATE_USERLIST", "DSQLGATE_USERLIST": "\"alice\" \"" + testVerifier + "\"\n"}, user)
	if err != nil {
		t.Fatal(err)
	}
	if c.UsersEnv != "DSQLGATE_USERLIST" {
		t.Fatalf("users_env %q", c.UsersEnv)
	}
	if w := c.Warnings(); len(w) > 0 {
		t.Errorf("the users variable is reported as unknown: %v", w)
	}
}
