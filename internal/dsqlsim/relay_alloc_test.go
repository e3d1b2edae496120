package dsqlsim

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"io"
	"testing"
	"time"

	"go.uber.org/zap"
)

// TestServerToClientAllocations: relaying DataRow and CommandComplete
// messages (including COMMIT and ROLLBACK tags, which the exit tracker
// looks at) and ReadyForQuery allocates nothing per message.
func TestServerToClientAllocations(t *testing.T) {
	msg := func(typ byte, body []byte) []byte {
		out := []byte{typ, 0, 0, 0, 0}
		binary.BigEndian.PutUint32(out[1:], uint32(len(body)+4))
		return append(out, body...)
	}
	var batch []byte
	batch = append(batch, msg('D', []byte("\x00\x01\x00\x00\x00\x02hi"))...)
	batch = append(batch, msg('C', []byte("SELECT 1\x00"))...)
	batch = append(batch, msg('C', tagCommit)...)
	batch = append(batch, msg('C', tagRollback)...)
	batch = append(batch, msg('Z', []byte("T"))...)

	s := &Server{cfg: Config{Now: time.Now}}
	s.maxConnDuration.Store(int64(time.Hour))
	refuser := newStatementRefuser("n")
	run := func(batches int) float64 {
		input := bytes.Repeat(batch, batches)
		r := bufio.NewReaderSize(bytes.NewReader(nil), connBufferSize)
		w := bufio.NewWriterSize(io.Discard, connBufferSize)
		return testing.AllocsPerRun(5, func() {
			sess := &session{started: time.Now()}
			exits := &txnExits{queue: make([]txnExit, 0, 2*batches)}
			for i := range batches {
				exits.queue = append(exits.queue, txnExit{batch: int64(i), commit: true}, txnExit{batch: int64(i)})
			}
			r.Reset(bytes.NewReader(input))
			if err := s.serverToClient(sess, r, w, refuser, exits); err == nil {
				t.Fatal("serverToClient returned no error at the end of its input")
			}
		})
	}
	few, many := run(10), run(1000)
	if perBatch := (many - few) / 990; perBatch > 0.01 {
		t.Fatalf("%.3f allocations per batch of DataRow, CommandComplete and ReadyForQuery (%v for 10 batches, %v for 1000)", perBatch, few, many)
	}
}

// TestClientToServerAllocations: relaying Bind, Execute and Sync (the
// extended protocol's hot path, a prepared COMMIT among them) allocates
// nothing per message.
func TestClientToServerAllocations(t *testing.T) {
	msg := func(typ byte, body []byte) []byte {
		out := []byte{typ, 0, 0, 0, 0}
		binary.BigEndian.PutUint32(out[1:], uint32(len(body)+4))
		return append(out, body...)
	}
	var batch []byte
	batch = append(batch, msg('B', []byte("\x00s\x00\x00\x00\x00\x01\x00\x00\x00\x011\x00\x00"))...)
	batch = append(batch, msg('E', []byte("\x00\x00\x00\x00\x00"))...)
	batch = append(batch, msg('S', nil)...)

	s := &Server{cfg: Config{Now: time.Now, MaxTxnDuration: time.Minute}}
	s.maxConnDuration.Store(int64(time.Hour))
	refuser := newStatementRefuser("n")
	log := zap.NewNop()
	run := func(batches int) float64 {
		input := bytes.Repeat(batch, batches)
		r := bufio.NewReaderSize(bytes.NewReader(nil), connBufferSize)
		w := bufio.NewWriterSize(io.Discard, connBufferSize)
		return testing.AllocsPerRun(5, func() {
			sess := &session{started: time.Now()}
			exits := &txnExits{stmts: map[string]bool{"c": true}} // a prepared COMMIT: Bind and Execute are looked at
			r.Reset(bytes.NewReader(input))
			if err := s.clientToServer(sess, r, w, refuser, exits, log); err == nil {
				t.Fatal("clientToServer returned no error at the end of its input")
			}
		})
	}
	few, many := run(10), run(1000)
	if perBatch := (many - few) / 990; perBatch > 0.01 {
		t.Fatalf("%.3f allocations per batch of Bind, Execute and Sync (%v for 10 batches, %v for 1000)", perBatch, few, many)
	}
}
