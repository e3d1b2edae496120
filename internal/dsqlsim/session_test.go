package dsqlsim

import (
	"testing"
	"time"
)

// TestTransactionTracking checks what the duration cap sees of a session:
// idle between transactions with nothing outstanding, and a transaction's
// start for the grace DSQL gives one that began before the cap.
func TestTransactionTracking(t *testing.T) {
	t0 := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	at := func(d time.Duration) func() int64 { return func() int64 { return t0.Add(d).UnixNano() } }
	const maxTxn = 5 * time.Minute

	var s session
	if !s.idle() {
		t.Fatal("a new session is not idle")
	}
	s.clientSent('Q', at(0)) // BEGIN
	if s.idle() {
		t.Fatal("idle with a Query outstanding")
	}
	s.readyForQuery('T')
	if s.idle() {
		t.Fatal("idle inside a transaction")
	}
	s.clientSent('Q', at(time.Second)) // a later statement does not move the start
	s.readyForQuery('T')
	tests := []struct {
		name  string
		capAt time.Duration
		now   time.Duration
		want  bool
	}{
		{"began before the cap", time.Second, 2 * time.Second, true},
		{"began at the cap", 0, 2 * time.Second, true},
		{"began after the cap", -time.Second, 2 * time.Second, false},
		{"reached the transaction limit", time.Second, maxTxn, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := s.finishingTransaction(t0.Add(tt.capAt), t0.Add(tt.now), maxTxn); got != tt.want {
				t.Fatalf("finishingTransaction = %v, want %v", got, tt.want)
			}
		})
	}

	s.clientSent('Q', at(2*time.Second)) // COMMIT
	s.readyForQuery('I')
	if !s.idle() || s.busySince.Load() != 0 {
		t.Fatal("not idle after the transaction ended")
	}

	// Pipelined: two Syncs, idle only after both ReadyForQuery.
	s.clientSent('P', at(3*time.Second))
	s.clientSent('S', at(3*time.Second))
	s.clientSent('S', at(3*time.Second))
	s.readyForQuery('I')
	if s.idle() {
		t.Fatal("idle with a Sync outstanding")
	}
	s.readyForQuery('I')
	if !s.idle() {
		t.Fatal("not idle after both Syncs were answered")
	}
}
