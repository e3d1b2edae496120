package acme_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/caddyserver/certmagic"
	"github.com/jackc/pgx/v5/pgconn"
	"go.uber.org/zap"

	"github.com/dsqlgate/dsqlgate/internal/acme"
	"github.com/dsqlgate/dsqlgate/internal/harness"
	"github.com/dsqlgate/dsqlgate/internal/pgtest"
)

// storageStack is the emulator stack of the storage tests, and a dial
// through its gateway's route, as the gateway's own storage dials.
func storageStack(t *testing.T) acme.DialFunc {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	st, err := harness.StartStack(ctx, harness.StackOptions{})
	if err != nil {
		t.Fatalf("start the emulator stack: %v", err)
	}
	t.Cleanup(st.Close)
	route := st.Gateway.Bridge.Route(harness.StackDatabase)
	return func(ctx context.Context) (*pgconn.PgConn, error) {
		return route.DialLocks(ctx, map[string]string{"application_name": "acme storage test"})
	}
}

// TestTableStorage: certmagic's storage contract on the DSQL emulator
// (its rules: one DDL statement per transaction, no DDL with DML,
// optimistic concurrency), shared by two storages as by two gateways.
func TestTableStorage(t *testing.T) {
	if testing.Short() {
		t.Skip("starts PostgreSQL and the emulator")
	}
	dial := storageStack(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	table := "acme_" + pgtest.RandomHex(4)
	s1 := acme.NewTableStorage(dial, table, nil)
	s2 := acme.NewTableStorage(dial, table, nil)
	defer s1.Close()
	defer s2.Close()

	t.Run("values", func(t *testing.T) {
		if _, err := s1.Load(ctx, "certificates/ca/x/x.crt"); !errors.Is(err, fs.ErrNotExist) {
			t.Fatalf("Load of a missing key: %v, want fs.ErrNotExist", err)
		}
		all := make([]byte, 256)
		for i := range all {
			all[i] = byte(i)
		}
		files := map[string][]byte{
			"certificates/ca/x/x.crt":  all,
			"certificates/ca/x/x.key":  []byte("key"),
			"certificates/ca/x/x.json": []byte("{}"),
			"certificates/ca/y/y.crt":  []byte("y"),
			"acme/ca/users/u/u.json":   []byte("{}"),
			"last_clean.json":          []byte("{}"),
		}
		for k, v := range files {
			if err := s1.Store(ctx, k, v); err != nil {
				t.Fatal(err)
			}
		}
		if err := s2.Store(ctx, "certificates/ca/x/x.key", []byte("key2")); err != nil { // overwrite
			t.Fatal(err)
		}
		files["certificates/ca/x/x.key"] = []byte("key2")
		for k, v := range files {
			got, err := s2.Load(ctx, k)
			if err != nil || !bytes.Equal(got, v) {
				t.Errorf("Load(%s) = %q, %v; want %q", k, got, err, v)
			}
		}
		for _, k := range []string{"certificates", "certificates/ca/x", "certificates/ca/x/x.crt", "certificates/ca/x/"} {
			if !s2.Exists(ctx, k) {
				t.Errorf("Exists(%s) = false", k)
			}
		}
		for _, k := range []string{"certificates/ca/x/x", "certificates/c", "nothing"} {
			if s2.Exists(ctx, k) {
				t.Errorf("Exists(%s) = true", k)
			}
		}
		info, err := s1.Stat(ctx, "certificates/ca/x/x.crt")
		if err != nil || !info.IsTerminal || info.Size != 256 || time.Since(info.Modified) > time.Minute || info.Modified.After(time.Now().Add(time.Minute)) {
			t.Errorf("Stat of a key = %+v, %v", info, err)
		}
		if info, err := s1.Stat(ctx, "certificates/ca"); err != nil || info.IsTerminal {
			t.Errorf("Stat of a directory = %+v, %v", info, err)
		}
		if _, err := s1.Stat(ctx, "certificates/zz"); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("Stat of nothing: %v, want fs.ErrNotExist", err)
		}
		list := func(path string, recursive bool, want ...string) {
			t.Helper()
			got, err := s1.List(ctx, path, recursive)
			if err != nil || !slices.Equal(got, want) {
				t.Errorf("List(%q, %v) = %q, %v; want %q", path, recursive, got, err, want)
			}
		}
		list("certificates/ca", false, "certificates/ca/x", "certificates/ca/y")
		list("certificates/ca/x", false, "certificates/ca/x/x.crt", "certificates/ca/x/x.json", "certificates/ca/x/x.key")
		list("certificates", true, "certificates/ca", "certificates/ca/x", "certificates/ca/x/x.crt", "certificates/ca/x/x.json",
			"certificates/ca/x/x.key", "certificates/ca/y", "certificates/ca/y/y.crt")
		list("", false, "acme", "certificates", "last_clean.json")

		if err := s2.Delete(ctx, "certificates/ca/x"); err != nil {
			t.Fatal(err)
		}
		if err := s2.Delete(ctx, "certificates/ca/x"); err != nil {
			t.Errorf("Delete of what is gone: %v", err)
		}
		list("certificates", true, "certificates/ca", "certificates/ca/y", "certificates/ca/y/y.crt")
		if err := s2.Delete(ctx, "last_clean.json"); err != nil {
			t.Fatal(err)
		}
		if s1.Exists(ctx, "last_clean.json") {
			t.Error("a deleted key exists")
		}
	})

	t.Run("concurrent writes", func(t *testing.T) {
		// Writers of one key on two connections meet optimistic
		// concurrency conflicts, which are retried.
		var wg sync.WaitGroup
		errs := make(chan error, 40)
		for i := range 8 {
			s := []*acme.TableStorage{s1, s2}[i%2]
			wg.Go(func() {
				for j := range 5 {
					if err := s.Store(ctx, "hot", fmt.Appendf(nil, "%d-%d", i, j)); err != nil {
						errs <- err
					}
				}
			})
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Errorf("concurrent Store: %v", err)
		}
		t.Logf("write conflicts retried: %d", s1.Conflicts()+s2.Conflicts())
	})

	t.Run("locks", func(t *testing.T) {
		if err := s1.Lock(ctx, "issue_cert_x"); err != nil {
			t.Fatal(err)
		}
		if err := s1.Lock(ctx, "issue_cert_y"); err != nil { // another name is free
			t.Fatal(err)
		}
		short, cancelShort := context.WithTimeout(ctx, 700*time.Millisecond)
		err := s2.Lock(short, "issue_cert_x")
		cancelShort()
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("a second gateway's Lock of a held lock: %v, want it to wait until its context ends", err)
		}
		done := make(chan error, 1)
		go func() { done <- s2.Lock(ctx, "issue_cert_x") }()
		time.Sleep(300 * time.Millisecond)
		select {
		case err := <-done:
			t.Fatalf("Lock returned %v while the lock was held", err)
		default:
		}
		if err := s1.Unlock(ctx, "issue_cert_x"); err != nil {
			t.Fatal(err)
		}
		select {
		case err := <-done:
			if err != nil {
				t.Fatal(err)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("Lock did not take the lock after it was released")
		}
		if err := s1.Unlock(ctx, "issue_cert_x"); err == nil {
			t.Error("Unlock of a lock this storage does not hold succeeded")
		}
		if err := s2.Unlock(ctx, "issue_cert_x"); err != nil {
			t.Fatal(err)
		}
		if err := s1.Unlock(ctx, "issue_cert_y"); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("expired lock", func(t *testing.T) {
		old := acme.NewTableStorage(dial, table, zap.NewNop())
		defer old.Close()
		if err := old.Lock(ctx, "issue_cert_z"); err != nil {
			t.Fatal(err)
		}
		// The holder stops renewing (as a gateway that died): its row
		// expires, and another gateway takes the lock over.
		expireLocks(t, ctx, dial, table)
		if err := s2.Lock(ctx, "issue_cert_z"); err != nil {
			t.Fatal(err)
		}
		// The old holder's Unlock deletes only its own row: the lock
		// stays with s2.
		old.Unlock(ctx, "issue_cert_z")
		short, cancelShort := context.WithTimeout(ctx, 700*time.Millisecond)
		err := s1.Lock(short, "issue_cert_z")
		cancelShort()
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("Lock after the expired holder's Unlock: %v, want still held by the gateway that took it over", err)
		}
		if err := s2.Unlock(ctx, "issue_cert_z"); err != nil {
			t.Fatal(err)
		}
	})
}

// expireLocks makes every lock row of table expired, on a connection of
// its own.
func expireLocks(t *testing.T, ctx context.Context, dial acme.DialFunc, table string) {
	t.Helper()
	conn, err := dial(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	if _, err := conn.Exec(ctx, "UPDATE "+table+"_locks SET expires_at = now() - interval '1 second'").ReadAll(); err != nil {
		t.Fatal(err)
	}
}

var _ certmagic.Storage = (*acme.TableStorage)(nil)
