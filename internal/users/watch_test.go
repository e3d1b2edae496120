package users

import (
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

// TestWatch: changed is called for a version of the file other than the
// one seen, once per version, and not while the file is missing.
func TestWatch(t *testing.T) {
	path := filepath.Join(t.TempDir(), "users")
	var mu sync.Mutex
	var seen *Stamp
	calls := make(chan Stamp, 10)
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		Watch(stop, func() string { return path },
			func() *Stamp { mu.Lock(); defer mu.Unlock(); return seen },
			func(st Stamp) { mu.Lock(); seen = &st; mu.Unlock(); calls <- st })
	}()
	defer func() { close(stop); <-done }()

	expect := func(what string, want bool) Stamp {
		t.Helper()
		select {
		case st := <-calls:
			if !want {
				t.Fatalf("%s: changed called (%+v)", what, st)
			}
			return st
		case <-time.After(FilePoll + FilePoll/2):
			if want {
				t.Fatalf("%s: changed not called within %v", what, FilePoll+FilePoll/2)
			}
			return Stamp{}
		}
	}
	expect("no file", false)
	if err := os.WriteFile(path, []byte("alice SCRAM-SHA-256$4096:c2FsdA==$a:b\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	first := expect("file written", true)
	expect("file unchanged", false)
	if err := os.WriteFile(path, []byte("alice SCRAM-SHA-256$4096:c2FsdA==$a:b\nbob SCRAM-SHA-256$4096:c2FsdA==$a:b\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if second := expect("file rewritten", true); second == first {
		t.Fatalf("the rewritten file has the first version's stamp %+v", first)
	}
}
