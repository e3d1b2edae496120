// Command genref writes docs/CONFIG.md, the configuration reference, from
// the config package and the key descriptions in
// config/internal/reference/keys.md (see package reference). Run it from
// anywhere in the module after changing a config type, a default or a
// description:
//
//	go run ./config/internal/genref
//
// go generate ./config/ runs it too.
package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/dsqlgate/dsqlgate/config/internal/reference"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "genref:", err)
		os.Exit(1)
	}
}

func run() error {
	root, err := moduleRoot()
	if err != nil {
		return err
	}
	page, err := reference.Generate()
	if err != nil {
		return err
	}
	out := filepath.Join(root, "docs", "CONFIG.md")
	if err := os.MkdirAll(filepath.Dir(out), 0o755); err != nil {
		return err
	}
	return os.WriteFile(out, page, 0o644)
}

// moduleRoot returns the nearest directory at or above the working
// directory that holds go.mod.
func moduleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("no go.mod at or above the working directory: run it inside the dsqlgate module")
		}
		dir = parent
	}
}
