package pgwire

import (
	"strings"
	"testing"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"
)

// A panic on the fresh stack reaches the caller's recoverSession, which
// logs where it happened (not where it was passed on) and not its value.
func TestOnFreshStackPanic(t *testing.T) {
	core, logs := observer.New(zap.ErrorLevel)
	func() {
		defer recoverSession(zap.New(core))
		onFreshStack(func() { panicsHere("secret-value") })
	}()
	entries := logs.All()
	if len(entries) != 1 {
		t.Fatalf("%d log entries, want 1", len(entries))
	}
	fields := entries[0].ContextMap()
	if stack, _ := fields["stack"].(string); !strings.Contains(stack, "panicsHere") {
		t.Errorf("stack does not show where the panic happened:\n%s", stack)
	}
	if fields["panic_type"] != "string" {
		t.Errorf("panic_type %v, want string", fields["panic_type"])
	}
	for k, v := range fields {
		if s, ok := v.(string); ok && strings.Contains(s, "secret-value") {
			t.Errorf("field %s holds the panic's value", k)
		}
	}
	ran := false
	onFreshStack(func() { ran = true })
	if !ran {
		t.Error("fn did not run")
	}
}

//go:noinline
func panicsHere(v string) { panic(v) }
