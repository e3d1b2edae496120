package harness

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// ModuleRoot is the directory holding go.mod, from a test running in a
// package two levels below it (internal/<package>).
func ModuleRoot() (string, error) {
	dir, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		return "", err
	}
	if _, err := os.Stat(filepath.Join(dir, "go.mod")); err != nil {
		return "", fmt.Errorf("module root not found from %s: %w", dir, err)
	}
	return dir, nil
}

// ModuleRootOf is ModuleRoot for a test, which fails when it is not
// found.
func ModuleRootOf(t testing.TB) string {
	t.Helper()
	dir, err := ModuleRoot()
	if err != nil {
		t.Fatal(err)
	}
	return dir
}

// SpliceMarked replaces the block of doc from the line begin to the line
// end (markers included) with block, which carries its own markers: how the
// suites write their tables into README.md.
func SpliceMarked(doc, begin, end, block string) (string, error) {
	start := strings.Index(doc, begin)
	stop := strings.Index(doc, end)
	if start < 0 || stop < start {
		return "", fmt.Errorf("no %q ... %q block", begin, end)
	}
	return doc[:start] + block + doc[stop+len(end):], nil
}
