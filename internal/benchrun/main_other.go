//go:build !linux

package main

import (
	"fmt"
	"os"
)

func main() {
	fmt.Fprintln(os.Stderr, "benchrun runs on Linux only: it measures the programs under test through /proc")
	os.Exit(2)
}
