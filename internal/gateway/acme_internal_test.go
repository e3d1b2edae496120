package gateway

import (
	"testing"
	"time"

	"github.com/dsqlgate/dsqlgate/config"
)

// TestACMEChanged: a reload is refused for a change of ACME in force,
// and only then.
func TestACMEChanged(t *testing.T) {
	on := config.DefaultACME()
	on.Domains = []string{"db.example.com"}
	with := func(f func(*config.ACME)) config.ACME {
		a := on
		a.Domains = append([]string(nil), on.Domains...)
		f(&a)
		return a
	}
	off := config.DefaultACME()
	tests := []struct {
		name      string
		old, next config.ACME
		want      bool
	}{
		{"off, unchanged", off, off, false},
		{"off, other keys changed", off, func() config.ACME { a := off; a.Email = "x@example.com"; a.Domains = []string{}; return a }(), false},
		{"on, unchanged", on, with(func(*config.ACME) {}), false},
		{"turned on", off, on, true},
		{"turned off", on, off, true},
		{"domain added", on, with(func(a *config.ACME) { a.Domains = append(a.Domains, "db2.example.com") }), true},
		{"interval", on, with(func(a *config.ACME) { a.RenewCheckInterval = config.Duration(time.Minute) }), true},
		{"storage", on, with(func(a *config.ACME) { a.Storage = "route:app" }), true},
	}
	for _, tt := range tests {
		if got := acmeChanged(tt.old, tt.next); got != tt.want {
			t.Errorf("%s: acmeChanged = %v, want %v", tt.name, got, tt.want)
		}
	}
}
