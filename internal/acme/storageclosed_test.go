package acme_test

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/dsqlgate/dsqlgate/internal/acme"
)

// TestTableStorageClosed: once closed (the manager's Close, at the
// gateway's shutdown), the storage dials nothing more: certmagic's
// background work that is still finishing would otherwise open a new
// connection to the cluster that nothing ever closes.
func TestTableStorageClosed(t *testing.T) {
	var dials atomic.Int64
	s := acme.NewTableStorage(func(ctx context.Context) (*pgconn.PgConn, error) {
		dials.Add(1)
		return nil, errors.New("no cluster here")
	}, "certs", nil)
	s.Close()
	if _, err := s.Load(context.Background(), "certificates/x"); err == nil {
		t.Error("Load after Close succeeded")
	}
	if err := s.Store(context.Background(), "certificates/x", []byte("x")); err == nil {
		t.Error("Store after Close succeeded")
	}
	if n := dials.Load(); n != 0 {
		t.Errorf("%d dials after Close, want none", n)
	}
}
