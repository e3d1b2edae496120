package acme_test

import (
	"os"
	"path/filepath"
	"testing"
)

// TestMain removes Pebble's build directory, shared by the tests, at the
// end.
func TestMain(m *testing.M) {
	code := m.Run()
	if pebbleBin != nil {
		os.RemoveAll(filepath.Dir(pebbleBin.pebble))
	}
	os.Exit(code)
}
