package pgwire

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"hash/fnv"
	"io"
	"maps"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgerrcode"
	"github.com/jackc/pgx/v5/pgproto3"
	"go.uber.org/zap"

	"github.com/dsqlgate/dsqlgate/config"
)

// The engine's own tests: the engine (engine.go) is driven alone, with no
// session, socket or goroutine, against the model backend of
// modelserver_test.go run in memory. A sequence of client messages (the
// relay tests' alphabet, fuzz_relay_test.go) goes in one message at a
// time; what the engine builds for the upstream is run by the model at
// once, and the model's replies are handed back to the engine in order,
// as many at a time as the schedule says, so replies interleave with the
// client's later messages in every way a real upstream could make them.
// The engine detaches the upstream at safe points as its session would,
// attaches it again when a message needs it, and moves to a fresh model
// backend at each checkpoint (settings brought over as the session does).
//
// Checked: the client sees exactly what the model alone answers to the
// same messages (so every message is answered once, in order, with the
// right ReadyForQuery statuses), and at the end of every segment nothing
// is owed (the queue is empty and no batch is open: it never
// desynchronises). With an upstream loss injected, the answers cannot be
// the model's; then every ReadyForQuery status is legal, no terminator is
// answered twice, and the session is usable afterwards: a ROLLBACK and a
// query get their normal answers.

// engineHostStub is the session side of the engine in these tests: it
// collects what the engine writes to the client and does nothing else.
type engineHostStub struct {
	client []byte
	lim    config.Limits
}

func (h *engineHostStub) writeClientLocked(msg []byte)              { h.client = append(h.client, msg...) }
func (h *engineHostStub) now() time.Time                            { return time.Unix(0, 0) }
func (h *engineHostStub) limits() *config.Limits                    { return &h.lim }
func (h *engineHostStub) maxPrepared() int                          { return 3 } // small: the LRU evicts
func (h *engineHostStub) startStatementTimerLocked()                {}
func (h *engineHostStub) restartStatementTimerLocked(time.Duration) {}
func (h *engineHostStub) stopStatementTimerLocked()                 {}
func (h *engineHostStub) startIdleTimerLocked()                     {}
func (h *engineHostStub) upstreamErrorLocked(string)                {}
func (h *engineHostStub) observeUnitLocked(reply, byte)             {}
func (h *engineHostStub) releaseXactLocksLocked()                   {}
func (h *engineHostStub) appNameLocked(string)                      {}

// memModel is a model backend run in memory: messages written to in are
// run when pump is called; what it flushes collects in out.
type memModel struct {
	c   *modelConn
	in  bytes.Buffer
	out bytes.Buffer
}

func newMemModel(pid uint32) *memModel {
	m := &memModel{}
	m.c = &modelConn{be: pgproto3.NewBackend(&m.in, &m.out), pid: pid}
	m.c.open(map[string]string{"user": relayUpstreamUser, "database": relayDatabase})
	m.c.be.Flush()
	return m
}

// pump runs every message written to the model so far.
func (m *memModel) pump(t testing.TB) {
	for m.in.Len() > 0 {
		msg, err := m.c.be.Receive()
		if err != nil {
			t.Fatalf("model: %v", err)
		}
		m.c.handle(msg)
	}
}

// splitMessages cuts a byte stream into whole protocol messages.
func splitMessages(t testing.TB, b []byte) [][]byte {
	var msgs [][]byte
	for len(b) > 0 {
		if len(b) < 5 {
			t.Fatalf("truncated message: % x", b)
		}
		n := int(binary.BigEndian.Uint32(b[1:])) + 1
		if n < 5 || n > len(b) {
			t.Fatalf("bad message length %d of %d", n, len(b))
		}
		msgs = append(msgs, b[:n:n])
		b = b[n:]
	}
	return msgs
}

// decodeClientStream decodes what a client receives into normalised
// replies (relayNormalize), checking every ReadyForQuery status.
func decodeClientStream(t testing.TB, b []byte) (got []string, rfq int) {
	fe := pgproto3.NewFrontend(bytes.NewReader(b), io.Discard)
	for {
		msg, err := fe.Receive()
		if err == io.EOF || err == io.ErrUnexpectedEOF && len(b) == 0 {
			return got, rfq
		}
		if err != nil {
			if strings.Contains(err.Error(), "EOF") {
				return got, rfq
			}
			t.Fatalf("client stream: %v", err)
		}
		if z, ok := msg.(*pgproto3.ReadyForQuery); ok {
			rfq++
			if !strings.ContainsRune("ITE", rune(z.TxStatus)) {
				t.Fatalf("ReadyForQuery with status %q", z.TxStatus)
			}
		}
		if s, ok := relayNormalize(msg); ok {
			got = append(got, s)
		}
	}
}

// engineRig is one engine with its upstream, the model.
type engineRig struct {
	t       testing.TB
	host    *engineHostStub
	e       *engine
	model   *memModel
	us      *upstreamState
	pending [][]byte // upstream replies not yet handed to the engine
	rng     *rand.Rand
	nextPID uint32
	lossAt  int // hand in a loss of the upstream before this client message (-1: never)
	sent    int // client messages handed in
	lost    bool
	ended   bool        // the engine ended the session (a FATAL error or Terminate)
	hold    bool        // send hands in no reply
	locals  []localCall // the local calls run, in order
}

func newEngineRig(t testing.TB, seed uint64, lossAt int) *engineRig {
	h := &engineHostStub{lim: config.Default().Limits}
	e := newEngine(h, zap.NewNop(), newGUCState(nil, nil))
	r := &engineRig{t: t, host: h, e: &e, rng: rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)), lossAt: lossAt}
	r.fresh()
	return r
}

// fresh replaces the upstream with a new model backend.
func (r *engineRig) fresh() {
	r.nextPID++
	r.model = newMemModel(r.nextPID)
	r.model.out.Reset() // the greeting is the session's business, not the client's
	r.us = newUpstreamState(frameReader{}, map[string]string{})
	r.pending = nil
}

// attach attaches the upstream, brought to the client's settings as the
// session's syncUpstream does (its replies are not the client's).
func (r *engineRig) attach() {
	if sql := syncSQL(r.us.gucs, r.e.gucs.desired, false); sql != "" {
		q, start := beginMessage(nil, 'Q')
		q = appendCString(q, sql)
		r.model.in.Write(finishMessage(q, start))
		r.model.pump(r.t)
		r.model.out.Reset()
		r.us.unnamedOwner = nil
		r.us.gucs = maps.Clone(r.e.gucs.desired)
	}
	r.e.us = r.us
}

// send hands one client message to the engine, doing what the engine asks
// for, then hands in some of the replies owed.
func (r *engineRig) send(msg []byte) {
	if r.ended {
		return
	}
	if r.sent == r.lossAt && r.e.us != nil {
		r.loseUpstream()
	}
	r.sent++
	for {
		step, err := r.e.clientLocked(msg)
		r.toModel()
		if err != nil {
			r.ended = true
			return
		}
		switch step.need {
		case needUpstream:
			if step.redo != nil {
				msg = step.redo
			}
			if r.e.us != nil {
				r.t.Fatalf("the engine asked for an upstream with one attached")
			}
			r.attach()
			continue
		case needLocal:
			// A lock call the gateway answers: granted (the lock table is
			// the session's business, not the engine's).
			lc, ok := step.local.answer.(*lockCall)
			if !ok {
				r.t.Fatalf("a local call the rig cannot answer: %T", step.local.answer)
			}
			r.locals = append(r.locals, *step.local)
			r.e.localDoneLocked(step.local, lc.appendResult(nil, true, step.local.resultFormat), nil)
			r.toModel()
		case needReplies:
			if len(r.pending) == 0 {
				r.t.Fatalf("the engine waits for replies and none is owed: it would wait for ever")
			}
			r.deliver(len(r.pending))
			continue
		}
		break
	}
	if len(r.pending) > 0 && !r.hold {
		r.deliver(r.rng.IntN(len(r.pending) + 1))
	}
}

// toModel runs what the engine built for the upstream.
func (r *engineRig) toModel() {
	if len(r.e.out) == 0 {
		return
	}
	if r.e.us == nil {
		r.t.Fatalf("the engine built %d bytes for the upstream with none attached", len(r.e.out))
	}
	r.model.in.Write(r.e.out)
	r.e.out = r.e.out[:0]
	r.model.pump(r.t)
	r.pending = append(r.pending, splitMessages(r.t, bytes.Clone(r.model.out.Bytes()))...)
	r.model.out.Reset()
}

// deliver hands the next n upstream replies to the engine, detaching the
// upstream at a safe point as the session does.
func (r *engineRig) deliver(n int) {
	for _, msg := range r.pending[:n] {
		rfq, lost := r.e.serverLocked(msg)
		if lost != nil {
			r.t.Fatalf("the engine took a model reply for a loss: %v", lost)
		}
		if rfq && r.e.safeLocked() {
			r.e.us = nil
		}
	}
	r.pending = r.pending[n:]
}

// loseUpstream hands the engine the loss of its upstream, replies unread.
func (r *engineRig) loseUpstream() {
	r.lost = true
	r.e.lostLocked(false)
	r.fresh()
}

// settle hands in every reply owed and checks that nothing is left owed.
func (r *engineRig) settle(where string) {
	r.deliver(len(r.pending))
	e := r.e
	if e.q.len() != 0 || e.inBatch || e.unitOpen || e.skipUntilSync || e.serverSkipping {
		r.t.Fatalf("%s: the engine still owes replies: queue %d, batch %v, unit %v, skipping %v/%v",
			where, e.q.len(), e.inBatch, e.unitOpen, e.skipUntilSync, e.serverSkipping)
	}
}

// playEngine plays ops (in segments, as the relay tests do) through an
// engine and returns the client's normalised replies, the number of
// ReadyForQuery, and how many terminators (Sync, Query, FunctionCall) the
// client sent.
func playEngine(t testing.TB, ops []relayOp, seed uint64, lossAt int) (r *engineRig, got []string, rfq, terminators int) {
	r = newEngineRig(t, seed, lossAt)
	for i, seg := range relaySegments(ops) {
		if i > 0 {
			// A checkpoint: the next segment runs on another upstream.
			r.settle(fmt.Sprintf("segment %d", i))
			if r.e.us == nil && r.e.safeLocked() {
				r.fresh()
			}
		}
		for _, op := range seg.ops {
			switch op.kind {
			case relaySync, relaySync2, relayQuery, relayFunctionCall:
				terminators++
			}
			r.send(mustEncode(op.message()))
		}
	}
	if !r.ended {
		r.settle("the end")
	}
	got, rfq = decodeClientStream(t, r.host.client)
	return r, got, rfq, terminators
}

// playModel plays ops against the model alone, in memory, and returns its
// normalised replies and notes (the situations of known gateway bugs).
func playModel(t testing.TB, ops []relayOp) (got []string, notes []string) {
	m := newMemModel(1)
	m.out.Reset()
	for _, seg := range relaySegments(ops) {
		for _, op := range seg.ops {
			m.in.Write(mustEncode(op.message()))
			m.pump(t)
		}
	}
	got, _ = decodeClientStream(t, m.out.Bytes())
	return got, slices.Sorted(maps.Keys(m.c.notes))
}

// checkEngine plays ops through the engine with the replies handed in on
// the schedule seed picks, and compares with the model. A mismatch is
// skipped, not failed, when quarantine is set and the model noted a known
// gateway bug in the sequence.
func checkEngine(t *testing.T, ops []relayOp, seed uint64, quarantine bool) {
	t.Helper()
	want, notes := playModel(t, ops)
	_, got, _, _ := playEngine(t, ops, seed, -1)
	if slices.Equal(got, want) {
		return
	}
	msg := fmt.Sprintf("the engine's replies differ from the model's (schedule %d):\n%s\nsequence:\n%s", seed, sideBySide(want, got), formatOps(ops))
	if quarantine && len(notes) > 0 {
		t.Skipf("quarantined (known gateway bugs: %s): %s", strings.Join(notes, "; "), msg)
	}
	t.Error(msg)
}

// checkEngineLoss plays ops with the upstream lost before client message
// lossAt, then a ROLLBACK and a query, which must get their normal
// answers.
func checkEngineLoss(t *testing.T, ops []relayOp, seed uint64, lossAt int) {
	t.Helper()
	ops = append(slices.Clone(ops), opSync, opQuery("rollback"))
	n := 0
	for _, seg := range relaySegments(ops) {
		n += len(seg.ops)
	}
	// The loss comes before the ROLLBACK (and the Sync before it): a
	// ROLLBACK in flight when the upstream goes is answered 08007.
	lossAt %= n - 4
	r, got, rfq, terminators := playEngine(t, ops, seed, lossAt)
	if r.ended {
		return // the sequence ended the session (a FATAL error of its own)
	}
	if rfq > terminators+len(relaySegments(ops))*2 {
		t.Fatalf("%d ReadyForQuery for %d terminators:\n%s", rfq, terminators, indent(got))
	}
	tail := []string{"CommandComplete ROLLBACK", "ReadyForQuery I", "ReadyForQuery I", "RowDescription", `DataRow "424242"`, "CommandComplete SELECT 1", "ReadyForQuery I"}
	if len(got) < len(tail) || !slices.Equal(got[len(got)-len(tail):], tail) {
		t.Fatalf("after a loss at message %d (lost: %v) the session does not end its transaction and answer a query:\n%s\nsequence:\n%s", lossAt, r.lost, indent(got), formatOps(ops))
	}
}

// TestEngineMatchesServer plays each relay case through the engine alone,
// on several reply schedules.
func TestEngineMatchesServer(t *testing.T) {
	for _, tc := range relayCases {
		t.Run(tc.name, func(t *testing.T) {
			if tc.bug != "" {
				t.Skipf("known gateway bug, not fixed yet: %s", tc.bug)
			}
			for seed := range uint64(8) {
				checkEngine(t, tc.ops, seed, false)
			}
		})
	}
}

// TestEngineUpstreamLoss loses the upstream at every point of each relay
// case.
func TestEngineUpstreamLoss(t *testing.T) {
	for _, tc := range relayCases {
		t.Run(tc.name, func(t *testing.T) {
			n := 0
			for _, seg := range relaySegments(tc.ops) {
				n += len(seg.ops)
			}
			for at := range n - 1 {
				checkEngineLoss(t, tc.ops, uint64(at), at)
			}
		})
	}
}

// TestEngineLossAnswers pins what a client is told when its upstream is
// lost, by what was in flight.
func TestEngineLossAnswers(t *testing.T) {
	query := func(text string) []byte { return mustEncode(&pgproto3.Query{String: text}) }
	cases := []struct {
		name     string
		before   [][]byte // handed in, replies all delivered
		inFlight [][]byte // handed in, replies not delivered
		timedOut bool
		want     []string // after the loss
		lostTx   bool
	}{
		{"autocommit statement in flight: outcome unknown", nil,
			[][]byte{query("select 1")}, false,
			[]string{"ErrorResponse 08007", "ReadyForQuery I"}, false},
		{"statement in a transaction: the transaction is failed", [][]byte{query("begin")},
			[][]byte{query("select 1")}, false,
			[]string{"ErrorResponse 40001", "ReadyForQuery E"}, true},
		{"COMMIT in flight: outcome unknown", [][]byte{query("begin")},
			[][]byte{query("commit")}, false,
			[]string{"ErrorResponse 08007", "ReadyForQuery I"}, false},
		{"statement cancelled for statement_timeout", nil,
			[][]byte{query("select 1")}, true,
			[]string{"ErrorResponse 57014", "ReadyForQuery I"}, false},
		{"idle in a transaction: told at the next statement", [][]byte{query("begin")},
			nil, false, nil, true},
		{"batch without its Sync: answered now, ReadyForQuery at Sync", nil,
			[][]byte{mustEncode(&pgproto3.Parse{Query: "select 1"}), mustEncode(&pgproto3.Bind{}), mustEncode(&pgproto3.Execute{})}, false,
			[]string{"ErrorResponse 08007"}, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := newEngineRig(t, 0, -1)
			for _, m := range tc.before {
				r.send(m)
				r.deliver(len(r.pending))
			}
			r.hold = true
			for _, m := range tc.inFlight {
				r.send(m)
			}
			r.pending = nil
			r.host.client = nil
			r.e.lostLocked(tc.timedOut)
			got, _ := decodeClientStream(t, r.host.client)
			if !slices.Equal(got, tc.want) {
				t.Fatalf("after the loss the client got\n%s\nwant\n%s", indent(got), indent(tc.want))
			}
			if r.e.lostTx != tc.lostTx {
				t.Fatalf("lostTx = %v, want %v", r.e.lostTx, tc.lostTx)
			}
			if r.e.q.len() != 0 || r.e.us != nil {
				t.Fatalf("the engine still owes %d replies or holds its upstream", r.e.q.len())
			}
		})
	}
}

// FuzzEngine plays sequences decoded from the input (decodeRelayOps) through
// the engine alone, with the replies handed in on a schedule and an
// upstream loss at a point both taken from the input too: it runs in
// microseconds per sequence, so it explores far more interleavings than
// FuzzRelayMatchesServer can.
func FuzzEngine(f *testing.F) {
	for _, tc := range relayCases {
		if data, ok := encodeRelayOps(tc.ops); ok && tc.bug == "" {
			f.Add(data, uint8(0))
		}
	}
	f.Fuzz(func(t *testing.T, data []byte, loss uint8) {
		ops := decodeRelayOps(data)
		if len(ops) == 0 {
			return
		}
		h := fnv.New64a()
		h.Write(data)
		seed := h.Sum64()
		if loss == 0 {
			checkEngine(t, ops, seed, relayQuarantine)
			return
		}
		checkEngineLoss(t, ops, seed, int(loss)-1)
	})
}

// TestEngineLocalCallMeetsItsTransaction: an advisory-lock call the
// gateway answers itself is transaction-scoped or not by the status it
// meets, which a BEGIN pipelined before it decides: the call waits for the
// BEGIN's answer, or, inside the batch that began the transaction, reads
// it from the batch.
func TestEngineLocalCallMeetsItsTransaction(t *testing.T) {
	lockCall := "select pg_advisory_xact_lock(1)"
	t.Run("simple queries", func(t *testing.T) {
		r := newEngineRig(t, 0, -1)
		r.e.compat = compatFlags{enabled: true, advisoryLocks: true}
		r.hold = true
		r.send(mustEncode(&pgproto3.Query{String: "begin"}))
		step, err := r.e.clientLocked(mustEncode(&pgproto3.Query{String: lockCall}))
		if err != nil || step.need != needReplies {
			t.Fatalf("a lock call behind an unanswered BEGIN: step %+v, %v; want needReplies", step, err)
		}
		r.deliver(len(r.pending))
		step, err = r.e.clientLocked(mustEncode(&pgproto3.Query{String: lockCall}))
		if err != nil || step.need != needLocal || !step.local.inTx {
			t.Fatalf("the lock call after BEGIN's answer: step %+v, %v; want needLocal in a transaction", step, err)
		}
	})
	t.Run("extended batch", func(t *testing.T) {
		r := newEngineRig(t, 0, -1)
		r.e.compat = compatFlags{enabled: true, advisoryLocks: true}
		r.hold = true
		for _, m := range []pgproto3.FrontendMessage{&pgproto3.Parse{Query: "begin"}, &pgproto3.Bind{}, &pgproto3.Execute{},
			&pgproto3.Parse{Name: "l", Query: lockCall}, &pgproto3.Bind{DestinationPortal: "p", PreparedStatement: "l"}} {
			r.send(mustEncode(m))
		}
		step, err := r.e.clientLocked(mustEncode(&pgproto3.Execute{Portal: "p"}))
		if err != nil || step.need != needLocal || !step.local.inTx {
			t.Fatalf("the lock call in the batch that began a transaction: step %+v, %v; want needLocal in a transaction", step, err)
		}
	})
}

// TestReplyQueueStaysBounded: a client that always keeps a reply owed
// never empties the queue; its backing array must still stay the size of
// what is live, not of everything ever queued.
func TestReplyQueueStaysBounded(t *testing.T) {
	var q replyQueue
	q.push(reply{kind: rSync})
	for range 1_000_000 {
		q.push(reply{kind: rSync})
		q.pop()
	}
	if q.len() != 1 || cap(q.items) > 1024 {
		t.Fatalf("one entry live, backing array of %d entries", cap(q.items))
	}
	for range 10_000 {
		q.push(reply{kind: rSync})
	}
	for q.len() > 0 {
		q.pop()
	}
	if cap(q.items) > maxIdleQueue {
		t.Fatalf("an empty queue keeps a backing array of %d entries", cap(q.items))
	}
}

// lockRig is an engine rig with the advisory-lock calls answered by the
// gateway (the compatibility layer).
func lockRig(t *testing.T) *engineRig {
	r := newEngineRig(t, 0, -1)
	r.e.compat = compatFlags{enabled: true, advisoryLocks: true}
	return r
}

// TestEngineLocalCalls: the calls the gateway answers itself take the
// transaction status, the skipping and the bookkeeping PostgreSQL would
// give them at their place in the pipeline, however the replies before
// them come in.
func TestEngineLocalCalls(t *testing.T) {
	const lock = "select pg_advisory_xact_lock(1)"
	msgs := func(r *engineRig, ms ...pgproto3.FrontendMessage) {
		for _, m := range ms {
			r.send(mustEncode(m))
		}
	}
	lastCall := func(t *testing.T, r *engineRig) localCall {
		t.Helper()
		if len(r.locals) == 0 {
			t.Fatal("no local call ran")
		}
		return r.locals[len(r.locals)-1]
	}
	t.Run("behind a BEGIN not answered yet, in a batch", func(t *testing.T) {
		r := lockRig(t)
		r.hold = true
		msgs(r, &pgproto3.Query{String: "begin"},
			&pgproto3.Parse{Query: "select 1"}, &pgproto3.Bind{}, &pgproto3.Execute{},
			&pgproto3.Parse{Name: "l", Query: lock}, &pgproto3.Bind{DestinationPortal: "p", PreparedStatement: "l"},
			&pgproto3.Execute{Portal: "p"})
		if !lastCall(t, r).inTx {
			t.Fatal("the transaction lock was taken outside the transaction BEGIN opened")
		}
	})
	t.Run("after COMMIT then BEGIN in one batch", func(t *testing.T) {
		r := lockRig(t)
		msgs(r, &pgproto3.Query{String: "begin"})
		r.settle("begin")
		r.hold = true
		msgs(r, &pgproto3.Parse{Name: "c", Query: "commit"}, &pgproto3.Bind{PreparedStatement: "c"}, &pgproto3.Execute{},
			&pgproto3.Parse{Name: "b", Query: "begin"}, &pgproto3.Bind{PreparedStatement: "b"}, &pgproto3.Execute{},
			&pgproto3.Parse{Name: "l", Query: lock}, &pgproto3.Bind{DestinationPortal: "p", PreparedStatement: "l"},
			&pgproto3.Execute{Portal: "p"})
		if !lastCall(t, r).inTx {
			t.Fatal("the transaction lock was taken outside the transaction the batch's last BEGIN opened")
		}
	})
	t.Run("simple Query in the middle of a batch", func(t *testing.T) {
		r := lockRig(t)
		r.hold = true
		msgs(r, &pgproto3.Parse{Query: "select 1"}, &pgproto3.Bind{}, &pgproto3.Execute{},
			&pgproto3.Query{String: "select pg_advisory_lock(1)"})
		r.settle("the Query")
		got, _ := decodeClientStream(t, r.host.client)
		want := []string{"ParseComplete", "BindComplete", `DataRow "1"`, "CommandComplete SELECT 1",
			"RowDescription", `DataRow ""`, "CommandComplete SELECT 1", "ReadyForQuery I"} // void
		if !slices.Equal(got, want) {
			t.Fatalf("got\n%s\nwant\n%s", indent(got), indent(want))
		}
	})
	t.Run("skipped after an error", func(t *testing.T) {
		r := lockRig(t)
		r.hold = true
		msgs(r, &pgproto3.Parse{Query: "select syntax_error"}, &pgproto3.Parse{Name: "x", Query: lock},
			&pgproto3.Bind{DestinationPortal: "p", PreparedStatement: "x"}, &pgproto3.Execute{Portal: "p"}, &pgproto3.Sync{})
		r.settle("the batch")
		if len(r.locals) != 0 {
			t.Fatal("a lock call the server would have skipped ran")
		}
		if r.e.stmts.get("x") != nil {
			t.Fatal("a Parse the server would have skipped left its statement")
		}
		r.hold = false
		r.host.client = nil
		msgs(r, &pgproto3.Parse{Name: "x", Query: lock}, &pgproto3.Sync{})
		r.settle("the second Parse")
		got, _ := decodeClientStream(t, r.host.client)
		if want := []string{"ParseComplete", "ReadyForQuery I"}; !slices.Equal(got, want) {
			t.Fatalf("got\n%s\nwant\n%s", indent(got), indent(want))
		}
	})
	t.Run("in a failed transaction", func(t *testing.T) {
		r := lockRig(t)
		msgs(r, &pgproto3.Query{String: "begin"}, &pgproto3.Query{String: "fail"})
		r.settle("the failed transaction")
		r.host.client = nil
		msgs(r, &pgproto3.Parse{Name: "x", Query: lock}, &pgproto3.Sync{})
		r.settle("the Parse")
		got, _ := decodeClientStream(t, r.host.client)
		if want := []string{"ErrorResponse 25P02", "ReadyForQuery E"}; !slices.Equal(got, want) {
			t.Fatalf("got\n%s\nwant\n%s", indent(got), indent(want))
		}
	})
}

// TestEngineLossKeepsGatewayAnswers: what the gateway answers itself
// behind a lost unit, with no batch open, is still answered.
func TestEngineLossKeepsGatewayAnswers(t *testing.T) {
	r := newEngineRig(t, 0, -1)
	r.hold = true
	r.send(mustEncode(&pgproto3.Query{String: "select 1"}))
	r.send(mustEncode(&pgproto3.Close{ObjectType: 'S', Name: "x"}))
	r.pending = nil
	r.e.lostLocked(false)
	r.fresh()
	r.send(mustEncode(&pgproto3.Sync{}))
	got, _ := decodeClientStream(t, r.host.client)
	if want := []string{"ErrorResponse 08007", "ReadyForQuery I", "CloseComplete", "ReadyForQuery I"}; !slices.Equal(got, want) {
		t.Fatalf("got\n%s\nwant\n%s", indent(got), indent(want))
	}
}

// TestEngineLossMessage: the 08007 of a lost autocommit statement speaks
// of the statement, the one of a lost COMMIT of the commit.
func TestEngineLossMessage(t *testing.T) {
	for _, tc := range []struct {
		before []string
		query  string
		want   string
	}{
		{nil, "select 1", lostAutoMessage},
		{[]string{"begin"}, "commit", lostCommitMessage},
	} {
		r := newEngineRig(t, 0, -1)
		for _, q := range tc.before {
			r.send(mustEncode(&pgproto3.Query{String: q}))
			r.deliver(len(r.pending))
		}
		r.hold = true
		r.send(mustEncode(&pgproto3.Query{String: tc.query}))
		r.pending = nil
		r.host.client = nil
		r.e.lostLocked(false)
		er, err := decodeError(splitMessages(t, r.host.client)[0])
		if err != nil || er.Code != pgerrcode.TransactionResolutionUnknown || er.Message != tc.want {
			t.Fatalf("%q lost: %+v, %v; want 08007 %q", tc.query, er, err, tc.want)
		}
	}
}

// TestEngineLocalQueryAfterErrorInBatch: a simple Query the gateway would
// answer, sent in a batch behind a message that fails, is ignored as
// PostgreSQL ignores it (everything to the Sync), however the error and
// the Query cross: no lock is taken, one ReadyForQuery.
func TestEngineLocalQueryAfterErrorInBatch(t *testing.T) {
	for _, hold := range []bool{true, false} {
		r := lockRig(t)
		r.hold = hold
		for _, m := range []pgproto3.FrontendMessage{&pgproto3.Parse{Query: "select syntax_error"}, &pgproto3.Bind{},
			&pgproto3.Execute{}, &pgproto3.Query{String: "select pg_advisory_lock(1)"}, &pgproto3.Sync{}} {
			r.send(mustEncode(m))
		}
		r.settle("the batch")
		got, _ := decodeClientStream(t, r.host.client)
		if want := []string{"ErrorResponse 42601", "ReadyForQuery I"}; !slices.Equal(got, want) || len(r.locals) != 0 {
			t.Fatalf("replies held %v: %d lock calls ran; got\n%s\nwant\n%s", hold, len(r.locals), indent(got), indent(want))
		}
	}
}

// TestEngineClosedPortalsFreeTheirPlace: a portal closed in a long
// transaction no longer counts against limits.max_client_statements
// (pgjdbc binds and closes C_1, C_2, ... with a fetch size).
func TestEngineClosedPortalsFreeTheirPlace(t *testing.T) {
	r := newEngineRig(t, 0, -1)
	r.host.lim.MaxClientStatements = 3
	r.send(mustEncode(&pgproto3.Query{String: "begin"}))
	r.settle("begin")
	r.send(mustEncode(&pgproto3.Parse{Name: "s", Query: "select 1"}))
	r.send(mustEncode(&pgproto3.Sync{}))
	r.settle("parse")
	r.host.client = nil
	for i := range 6 {
		p := fmt.Sprintf("C_%d", i)
		for _, m := range []pgproto3.FrontendMessage{&pgproto3.Bind{DestinationPortal: p, PreparedStatement: "s"},
			&pgproto3.Execute{Portal: p, MaxRows: 10}, &pgproto3.Close{ObjectType: 'P', Name: p}, &pgproto3.Sync{}} {
			r.send(mustEncode(m))
		}
		r.settle(p)
	}
	if got, _ := decodeClientStream(t, r.host.client); slices.Contains(got, "ErrorResponse 54000") {
		t.Fatalf("closed portals counted against the limit:\n%s", indent(got))
	}
}

// timerHost records the statement_timeout clock's restarts.
type timerHost struct {
	*engineHostStub
	restarts []time.Duration
}

func (h *timerHost) restartStatementTimerLocked(d time.Duration) { h.restarts = append(h.restarts, d) }

// TestEngineTimeoutSetInPipeline: a SET statement_timeout in a pipeline
// restarts the clock for the statements after it, but not while a
// statement sent before it still runs (its clock is not the new value's).
func TestEngineTimeoutSetInPipeline(t *testing.T) {
	for _, tc := range []struct {
		before  []string
		restart bool
	}{
		{nil, true},
		{[]string{"select 1"}, false},
	} {
		r := newEngineRig(t, 0, -1)
		h := &timerHost{engineHostStub: r.host}
		r.e.host = h
		r.e.compat = compatFlags{enabled: true, settings: true}
		r.hold = true
		for _, q := range tc.before {
			for _, m := range []pgproto3.FrontendMessage{&pgproto3.Parse{Query: q}, &pgproto3.Bind{}, &pgproto3.Execute{}} {
				r.send(mustEncode(m))
			}
		}
		for _, m := range []pgproto3.FrontendMessage{&pgproto3.Parse{Query: "set statement_timeout = '1s'"}, &pgproto3.Bind{}, &pgproto3.Execute{}} {
			r.send(mustEncode(m))
		}
		if got := len(h.restarts) > 0; got != tc.restart {
			t.Fatalf("statements before the SET %v: restarts %v, want a restart %v", tc.before, h.restarts, tc.restart)
		}
	}
}

// TestReplyQueueCountsStatements: the count of running statements the
// engine reads instead of scanning the queue follows pushes, pops and
// compaction.
func TestReplyQueueCountsStatements(t *testing.T) {
	var q replyQueue
	for i := range 1000 {
		q.push(reply{kind: []replyKind{rParse, rExecute, rQuery, rSync}[i%4]})
		if i%3 == 0 {
			q.pop()
		}
	}
	want := 0
	for i := range q.len() {
		if q.at(i).kind.runsStatement() {
			want++
		}
	}
	if q.statements != want {
		t.Fatalf("counted %d running statements, the queue holds %d", q.statements, want)
	}
	q.reset()
	if q.statements != 0 {
		t.Fatalf("a reset queue counts %d", q.statements)
	}
}
