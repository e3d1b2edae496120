package compat

import (
	"context"
	"errors"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/jackc/pgerrcode"

	"github.com/dsqlgate/dsqlgate/pgwire/sqllex"
)

// fakeTable is a LockTable in memory that records the calls reaching it.
type fakeTable struct {
	held  map[LockKey]string
	calls []string
	fail  error
}

func (f *fakeTable) TryLock(_ context.Context, owner string, k LockKey) (bool, error) {
	f.calls = append(f.calls, "try "+k.String())
	if f.fail != nil {
		return false, f.fail
	}
	if h, ok := f.held[k]; ok && h != owner {
		return false, nil
	}
	f.held[k] = owner
	return true, nil
}

func (f *fakeTable) Lock(ctx context.Context, owner string, k LockKey) error {
	f.calls = append(f.calls, "lock "+k.String())
	if f.fail != nil {
		return f.fail
	}
	if h, ok := f.held[k]; ok && h != owner {
		return context.DeadlineExceeded // it would wait
	}
	f.held[k] = owner
	return nil
}

func (f *fakeTable) Unlock(_ context.Context, owner string, k LockKey) (bool, error) {
	f.calls = append(f.calls, "unlock "+k.String())
	if f.held[k] != owner {
		return false, nil
	}
	delete(f.held, k)
	return true, nil
}

func (f *fakeTable) UnlockAll(_ context.Context, owner string) error {
	f.calls = append(f.calls, "unlock all")
	for k, h := range f.held {
		if h == owner {
			delete(f.held, k)
		}
	}
	return nil
}

func mustLockCall(t *testing.T, sql string) *LockCall {
	t.Helper()
	call, ok := sqllex.ParseSelectCall(sql)
	if !ok {
		t.Fatalf("%q is not a call", sql)
	}
	lc, ok := ParseLockCall(call, nil)
	if !ok {
		t.Fatalf("%q is not a lock call", sql)
	}
	return lc
}

// TestSessionLocks: PostgreSQL's per-session semantics over the lock
// table: re-entries are counted and reach the table once, transaction
// locks go at the transaction's end, and an unlock of a lock not held is a
// warning.
func TestSessionLocks(t *testing.T) {
	type step struct {
		sql     string
		inTx    bool
		ok      bool
		warning string // SQLSTATE
		calls   []string
	}
	for _, tc := range []struct {
		name  string
		steps []step
		// then ReleaseXact (xact) or ReleaseAll, and the calls they make
		releaseXact bool
		release     []string
		held        int
	}{
		{name: "reentrant session lock", steps: []step{
			{sql: "SELECT pg_advisory_lock(1)", ok: true, calls: []string{"lock bigint 1"}},
			{sql: "SELECT pg_advisory_lock(1)", ok: true},
			{sql: "SELECT pg_advisory_unlock(1)", ok: true},
			{sql: "SELECT pg_advisory_unlock(1)", ok: true, calls: []string{"unlock bigint 1"}},
			{sql: "SELECT pg_advisory_unlock(1)", warning: pgerrcode.Warning},
		}},
		{name: "pair and bigint keys differ", steps: []step{
			{sql: "SELECT pg_try_advisory_lock(1, 2)", ok: true, calls: []string{"try pair 1,2"}},
			{sql: "SELECT pg_try_advisory_lock(4294967298)", ok: true, calls: []string{"try bigint 4294967298"}},
		}, release: []string{"unlock all"}, held: 0},
		{name: "transaction lock outside a transaction", steps: []step{
			{sql: "SELECT pg_advisory_xact_lock(5)", ok: true, calls: []string{"lock bigint 5", "unlock bigint 5"}},
		}},
		{name: "transaction lock released at the end", steps: []step{
			{sql: "SELECT pg_advisory_xact_lock(5)", inTx: true, ok: true, calls: []string{"lock bigint 5"}},
			{sql: "SELECT pg_advisory_xact_lock(5)", inTx: true, ok: true},
			{sql: "SELECT pg_advisory_unlock(5)", inTx: true, warning: pgerrcode.Warning},
		}, releaseXact: true, release: []string{"unlock bigint 5"}},
		{name: "a session hold outlives the transaction", steps: []step{
			{sql: "SELECT pg_advisory_lock(5)", ok: true, calls: []string{"lock bigint 5"}},
			{sql: "SELECT pg_advisory_xact_lock(5)", inTx: true, ok: true},
		}, releaseXact: true, held: 1},
		{name: "unlock all keeps transaction locks", steps: []step{
			{sql: "SELECT pg_advisory_lock(1)", ok: true, calls: []string{"lock bigint 1"}},
			{sql: "SELECT pg_advisory_xact_lock(2)", inTx: true, ok: true, calls: []string{"lock bigint 2"}},
			{sql: "SELECT pg_advisory_unlock_all()", inTx: true, ok: true, calls: []string{"unlock bigint 1"}},
		}, releaseXact: true, release: []string{"unlock bigint 2"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tbl := &fakeTable{held: map[LockKey]string{}}
			var s SessionLocks
			for _, st := range tc.steps {
				lc := mustLockCall(t, st.sql)
				vals, verr := lc.Values(nil, nil)
				if verr != nil {
					t.Fatal(verr)
				}
				tbl.calls = nil
				ok, warning, err := s.Run(context.Background(), tbl, lc, vals, st.inTx)
				code := ""
				if warning != nil {
					code = warning.Code
				}
				if err != nil || ok != st.ok || code != st.warning {
					t.Fatalf("%s: %v, warning %+v, %v; want %v, warning %q", st.sql, ok, warning, err, st.ok, st.warning)
				}
				if diff := cmp.Diff(st.calls, tbl.calls); diff != "" {
					t.Fatalf("%s reached the table with (-want +got):\n%s", st.sql, diff)
				}
			}
			tbl.calls = nil
			if tc.releaseXact {
				s.ReleaseXact(context.Background(), tbl, func(err error) { t.Fatal(err) })
			} else if err := s.ReleaseAll(context.Background(), tbl); err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.release, tbl.calls); diff != "" {
				t.Fatalf("release reached the table with (-want +got):\n%s", diff)
			}
			if len(tbl.held) != tc.held {
				t.Fatalf("the table holds %v, want %d keys", tbl.held, tc.held)
			}
		})
	}
}

// TestSessionLocksTableFails: a failure of the table is returned, and the
// session does not count a lock it did not get.
func TestSessionLocksTableFails(t *testing.T) {
	boom := errors.New("no route to cluster")
	tbl := &fakeTable{held: map[LockKey]string{}, fail: boom}
	var s SessionLocks
	lc := mustLockCall(t, "SELECT pg_advisory_lock(1)")
	if _, _, err := s.Run(context.Background(), tbl, lc, []int64{1}, false); !errors.Is(err, boom) {
		t.Fatalf("Run = %v, want %v", err, boom)
	}
	tbl.fail, tbl.calls = nil, nil
	unlock := mustLockCall(t, "SELECT pg_advisory_unlock(1)")
	if ok, warning, err := s.Run(context.Background(), tbl, unlock, []int64{1}, false); ok || warning == nil || err != nil || len(tbl.calls) != 0 {
		t.Fatalf("unlock after a failed lock: %v, %+v, %v, calls %v", ok, warning, err, tbl.calls)
	}
}

func TestLockCallValues(t *testing.T) {
	lc := mustLockCall(t, "SELECT pg_advisory_lock($2, 3)")
	for _, tc := range []struct {
		params  [][]byte
		formats []int16
		want    []int64
		code    string
	}{
		{[][]byte{nil, []byte(" 7 ")}, nil, []int64{7, 3}, ""},
		{[][]byte{nil, {0, 0, 0, 9}}, []int16{0, 1}, []int64{9, 3}, ""},
		{[][]byte{{1}}, nil, nil, pgerrcode.ProtocolViolation},
		{[][]byte{nil, nil}, nil, nil, pgerrcode.NullValueNotAllowedDataException},
		{[][]byte{nil, []byte("x")}, nil, nil, pgerrcode.InvalidTextRepresentation},
		{[][]byte{nil, {1, 2, 3}}, []int16{1}, nil, pgerrcode.InvalidBinaryRepresentation},
		{[][]byte{nil, []byte("2147483648")}, nil, nil, pgerrcode.NumericValueOutOfRange},
	} {
		got, err := lc.Values(tc.params, tc.formats)
		code := ""
		if err != nil {
			code = err.Code
		}
		if code != tc.code || !cmp.Equal(got, tc.want) {
			t.Errorf("Values(%q, %v) = %v, %+v; want %v, %q", tc.params, tc.formats, got, err, tc.want, tc.code)
		}
	}
}
