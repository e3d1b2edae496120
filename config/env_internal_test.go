package config

import (
	"reflect"
	"strings"
	"testing"
)

// TestSetEnvHidesSecretValues checks the rule for a secret key that the
// environment could set (none can today): a bad value is not shown, while
// the value of any other key is, to help the user.
func TestSetEnvHidesSecretValues(t *testing.T) {
	const value = "Sekr1tValue"
	f, _ := reflect.TypeFor[Config]().FieldByName("ShutdownTimeout")
	tests := []struct {
		path string
		show bool
	}{
		{"fake.password", false},
		{"fake.verifier", false},
		{"fake.md5", false},
		{"shutdown_timeout", true},
	}
	for _, tt := range tests {
		c := Default()
		c.src = &origin{env: map[string]string{}}
		p := c.setEnv(envKey{name: "DSQLGATE_FAKE", path: tt.path, index: f.Index, typ: f.Type}, value)
		if p == nil {
			t.Fatalf("setEnv(%s) accepted %q as a duration", tt.path, value)
		}
		if shown := strings.Contains(p.Error(), value); shown != tt.show {
			t.Errorf("setEnv(%s): value shown %v, want %v: %v", tt.path, shown, tt.show, p)
		}
		if len(c.src.env) != 0 || c.ShutdownTimeout != Default().ShutdownTimeout {
			t.Errorf("setEnv(%s) changed the config after a bad value", tt.path)
		}
	}
}
