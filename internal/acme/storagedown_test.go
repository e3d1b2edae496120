package acme_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/dsqlgate/dsqlgate/internal/acme"
)

// TestManagerStorageDownAtStart: a storage that fails when the manager
// starts (the cluster not reachable yet: a new IAM role, a network being
// set up) and answers a moment later must not leave the gateway waiting
// for ever: certmagic gives a domain up for good when its first look in
// the storage fails with anything but "not found", so Start must wait
// for the storage itself, and name it in its error while it is down.
func TestManagerStorageDownAtStart(t *testing.T) {
	if testing.Short() {
		t.Skip("starts Pebble")
	}
	httpPort := freePorts(t, 1)[0]
	pebble := startPebble(t, time.Hour, httpPort)
	a := pebble.http01ACME(t, "down.dsqlgate-acme.test")
	// The storage directory is a file for now: every read fails (not a
	// directory), as a storage that cannot be reached.
	if err := os.WriteFile(a.Storage, []byte("in the way"), 0o600); err != nil {
		t.Fatal(err)
	}
	m, err := acme.New(a, acme.Options{})
	if err != nil {
		t.Fatal(err)
	}

	short, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	err = m.Start(short)
	cancel()
	if err == nil {
		t.Fatal("Start succeeded with the storage down")
	}
	if !strings.Contains(err.Error(), "not a directory") {
		t.Errorf("Start's error does not say what is wrong with the storage: %v", err)
	}

	m.Close() // its http-01 port, for the next

	// Another manager, whose storage comes back two seconds into its one
	// Start, as the gateway calls it.
	b := a
	b.Storage = filepath.Join(t.TempDir(), "acme")
	if err := os.WriteFile(b.Storage, []byte("in the way"), 0o600); err != nil {
		t.Fatal(err)
	}
	m2, err := acme.New(b, acme.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer m2.Close()
	go func() {
		time.Sleep(2 * time.Second)
		os.Remove(b.Storage)
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 40*time.Second)
	defer cancel()
	if err := m2.Start(ctx); err != nil {
		t.Fatalf("Start, the storage back after 2s: %v", err)
	}
}
