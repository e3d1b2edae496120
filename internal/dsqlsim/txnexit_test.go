package dsqlsim

import "testing"

func TestExitKind(t *testing.T) {
	tests := []struct {
		sql          string
		exit, commit bool
	}{
		{"COMMIT", true, true},
		{"commit work", true, true},
		{"END TRANSACTION", true, true},
		{"COMMIT AND CHAIN", true, true},
		{"COMMIT PREPARED 'x'", false, true},
		{"ROLLBACK", true, false},
		{"abort", true, false},
		{"ROLLBACK TO SAVEPOINT a", false, false},
		{"ROLLBACK TRANSACTION TO a", false, false},
		{"ROLLBACK PREPARED 'x'", false, false},
		{"SELECT 'commit'", false, false},
		{"BEGIN", false, false},
	}
	for _, tc := range tests {
		exit, commit := exitKind(tc.sql, splitStatements(tc.sql)[0])
		if exit != tc.exit || (exit && commit != tc.commit) {
			t.Errorf("exitKind(%q) = %v, %v; want %v, %v", tc.sql, exit, commit, tc.exit, tc.commit)
		}
	}
}

// TestTxnExitsPairing replays what the relay sees of a session and checks
// that each COMMIT or ROLLBACK tag is paired with the client's statement.
func TestTxnExitsPairing(t *testing.T) {
	var x txnExits
	want := func(commit, ok bool) {
		t.Helper()
		exit, found := x.answered()
		if found != ok || (found && exit.commit != commit) {
			t.Fatalf("answered() = %+v, %v; want commit %v, %v", exit, found, commit, ok)
		}
	}
	// Batch 0: a Query holding a ROLLBACK then a COMMIT; batch 1: a COMMIT.
	x.query([]byte("ROLLBACK; SELECT 1; COMMIT"))
	x.query([]byte("commit"))
	want(false, true)
	want(true, true)
	want(false, false) // batch 0 has no more
	x.readyForQuery()
	want(true, true)
	x.readyForQuery()

	// Extended protocol: batch 2 prepares and runs a COMMIT, then an error
	// skips a ROLLBACK; batch 3 runs the prepared COMMIT again.
	x.parse([]byte("c"), []byte("COMMIT"))
	x.parse([]byte(""), []byte("ROLLBACK"))
	if !x.watchesExtended() {
		t.Fatal("an exit statement was prepared, but Bind and Execute are not watched")
	}
	x.bind([]byte("p\x00c\x00rest"))
	x.execute([]byte("p\x00\x00\x00\x00\x00"))
	x.bind([]byte("\x00\x00rest"))
	x.execute([]byte("\x00\x00\x00\x00\x00"))
	x.sync()
	x.bind([]byte("\x00c\x00"))
	x.execute([]byte("\x00\x00\x00\x00\x00"))
	x.sync()
	want(true, true) // the ROLLBACK was skipped: no tag
	x.readyForQuery()
	want(true, true)
	x.readyForQuery()

	// A statement re-prepared under the name is no exit any more.
	x.parse([]byte("c"), []byte("SELECT 1"))
	x.bind([]byte("p\x00c\x00"))
	x.execute([]byte("p\x00\x00\x00\x00\x00"))
	x.sync()
	want(false, false)
	x.close([]byte("S\x00"))
	x.close([]byte("P\x00"))
	if x.watchesExtended() {
		t.Fatalf("still watching: statements %v, portals %v", x.stmts, x.portals)
	}
	x.readyForQuery()

	// Stale entries (batches the backend skipped) are forgotten.
	for range 100 {
		x.query([]byte("COMMIT"))
		x.readyForQuery()
	}
	x.query([]byte("COMMIT"))
	if len(x.queue) > 2 {
		t.Fatalf("queue holds %d entries, want the stale ones forgotten", len(x.queue))
	}
}

func TestAgedQuery(t *testing.T) {
	r := newStatementRefuser("n")
	tests := []struct {
		sql    string
		same   bool // passed through
		commit bool // sent as ROLLBACK
	}{
		{"ROLLBACK", true, false},
		{"abort; rollback", true, false},
		{"", true, false},
		{"COMMIT", false, true},
		{" end ;", false, true},
		{"SELECT 1", false, false},
		{"COMMIT; SELECT 1", false, false},
		{"ROLLBACK TO SAVEPOINT a", false, false},
	}
	for _, tc := range tests {
		got, commit := agedQuery(tc.sql, r, "too old")
		switch {
		case commit != tc.commit:
			t.Errorf("agedQuery(%q) commit = %v, want %v", tc.sql, commit, tc.commit)
		case tc.same && got != tc.sql:
			t.Errorf("agedQuery(%q) = %q, want it unchanged", tc.sql, got)
		case tc.commit && got != "ROLLBACK":
			t.Errorf("agedQuery(%q) = %q, want ROLLBACK", tc.sql, got)
		case !tc.same && !tc.commit:
			code, msg, ok := r.takeMarker([]byte(got))
			if !ok || code != "54000" || msg != "too old" {
				t.Errorf("agedQuery(%q) = %q (marker %v %q %q), want a 54000 marker", tc.sql, got, ok, code, msg)
			}
		}
	}
}
