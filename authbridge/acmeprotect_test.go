package authbridge

import (
	"context"
	"testing"

	"github.com/jackc/pgerrcode"

	"github.com/dsqlgate/dsqlgate/config"
	"github.com/dsqlgate/dsqlgate/internal/compat"
	"github.com/dsqlgate/dsqlgate/pgwire/sqllex"
)

// TestACMEStorageTableProtected: with client_tls.acme storing in a table on
// a route's cluster (the certificate's private key and the ACME account
// key), a client of the gateway, which logs in to the cluster with the
// same role as the storage, may not name that table or its lock table:
// it would read the private key, or plant a lock row that blocks every
// renewal. Like the advisory lock table, they are refused with 42501.
func TestACMEStorageTableProtected(t *testing.T) {
	cfg := updateConfig(t, map[string]string{"app": testPG.Addr()}, nil)
	cfg.ClientTLS.Mode = config.TLSAllow
	cfg.ClientTLS.ACME.Domains = []string{"db.example.com"}
	cfg.ClientTLS.ACME.Storage = "route:app"
	cfg.ClientTLS.ACME.StorageTable = "gate_certs"
	// Not validated: config refuses a route: storage on a kind postgres
	// route (this test's, which needs no AWS credentials); the tables are
	// protected whatever the route's kind.
	b, err := New(context.Background(), cfg, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	for _, sql := range []string{
		"SELECT key, value FROM gate_certs",
		`select value from public."gate_certs" where key like '%.key'`,
		"UPDATE gate_certs_locks SET expires_at = 'infinity'",
		"DELETE FROM gate_certs",
	} {
		st := sqllex.OneStmt(sql)
		rw := compat.Decide(st, st.Kind(), nil, compat.Options{}, nil)
		if rw == nil || rw.Err == nil || rw.Err.Code != pgerrcode.InsufficientPrivilege {
			t.Errorf("%s: %+v, want refused with 42501 (the ACME storage holds the certificate's private key)", sql, rw)
		}
	}
}
