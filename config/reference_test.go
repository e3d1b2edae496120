package config_test

import (
	"os"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/dsqlgate/dsqlgate/config/internal/reference"
)

// referencePath is the generated reference of every key.
const referencePath = "../docs/CONFIG.md"

// TestReferenceIsCurrent regenerates docs/CONFIG.md from this package's
// types and defaults and the descriptions in internal/reference/keys.md, and
// fails when the committed page differs, or when a key has no description.
func TestReferenceIsCurrent(t *testing.T) {
	want, err := reference.Generate()
	if err != nil {
		t.Fatalf("generate %s: %v", referencePath, err)
	}
	got, err := os.ReadFile(referencePath)
	if err != nil {
		t.Fatalf("%v; generate it from the repository root with\n\n\t%s", err, reference.Command)
	}
	lines := func(b []byte) []string { return strings.Split(string(b), "\n") }
	if diff := cmp.Diff(lines(want), lines(got)); diff != "" {
		t.Errorf("%s is out of date; regenerate it from the repository root with\n\n\t%s\n\ndiff (-generated +committed):\n%s", referencePath, reference.Command, diff)
	}
}
