package pgwire

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// Buffer sizes of a client connection, in bytes. Messages up to the read
// buffer's size are returned without copying.
const (
	clientReadBufferSize  = 4 * 1024
	clientWriteBufferSize = 8 * 1024
	// largeMessageKeep is the largest scratch buffer a frameReader keeps
	// between messages; larger ones are dropped after use.
	largeMessageKeep = 1 << 20
)

// MessageTooLargeError is returned by frameReader.next for a message whose
// declared length exceeds the limit. The message has not been read.
type MessageTooLargeError struct {
	Type  byte
	Size  int // declared size of the whole message, bytes
	Limit int
}

func (e *MessageTooLargeError) Error() string {
	return fmt.Sprintf("message of type %q is %d bytes, more than the limit of %d", e.Type, e.Size, e.Limit)
}

// errBadLength is a message whose length field is smaller than itself.
var errBadLength = errors.New("invalid message length")

// frameReader reads whole protocol messages (type byte, int32 length that
// counts itself, body) from a buffered reader.
//
// The slice next returns holds the whole message, header included, so it can
// be forwarded as it is. It is only valid until the next call to next (or
// any other read of r).
type frameReader struct {
	r       *bufio.Reader
	maxSize int    // largest whole message accepted, bytes
	big     []byte // scratch for messages larger than r's buffer
	// partial is the size of the large message whose first len(big)
	// bytes were read when a read failed (a deadline): the next call goes
	// on with it. Messages that fit r's buffer are only peeked until
	// whole, so a failed read loses nothing of them either.
	partial int
}

func (f *frameReader) next() ([]byte, error) {
	if f.partial > 0 {
		return f.readLarge(f.partial)
	}
	hdr, err := f.r.Peek(5)
	if err != nil {
		if len(hdr) > 0 && err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return nil, err
	}
	n := int(binary.BigEndian.Uint32(hdr[1:5]))
	if n < 4 {
		return nil, errBadLength
	}
	total := n + 1
	if total > f.maxSize || total < 0 {
		return nil, &MessageTooLargeError{Type: hdr[0], Size: total, Limit: f.maxSize}
	}
	if total <= f.r.Size() {
		msg, err := f.r.Peek(total)
		if err != nil {
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return nil, err
		}
		f.r.Discard(total)
		return msg, nil
	}
	f.big = f.big[:0]
	return f.readLarge(total)
}

// readLarge reads (the rest of) a message of total bytes into f.big.
func (f *frameReader) readLarge(total int) ([]byte, error) {
	msg, err := readGrowing(f.r, f.big, total)
	f.big = msg
	if err != nil {
		f.partial = total
		return nil, err
	}
	f.partial = 0
	if total > largeMessageKeep {
		f.big = nil // don't pin a huge buffer for the rest of the session
	}
	return msg, nil
}

// growStep is the first allocation readGrowing makes for a large
// message; it doubles from there as the bytes arrive.
const growStep = 64 << 10

// readGrowing reads n bytes from r into dst (which may hold a first part),
// growing it as the bytes arrive rather than by what the peer announced:
// a client that announces a large message and sends a few bytes holds
// little memory. It returns the (possibly reallocated) buffer.
func readGrowing(r io.Reader, dst []byte, n int) ([]byte, error) {
	for len(dst) < n {
		if len(dst) == cap(dst) {
			grown := make([]byte, len(dst), min(n, max(2*cap(dst), growStep)))
			copy(grown, dst)
			dst = grown
		}
		m, err := r.Read(dst[len(dst):min(cap(dst), n)])
		dst = dst[:len(dst)+m]
		if err != nil && len(dst) < n {
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return dst, err
		}
	}
	return dst, nil
}

// buffered reports how many bytes are waiting in the reader: zero means the
// peer has sent nothing more for now, a good time to flush the other side.
func (f *frameReader) buffered() int { return f.r.Buffered() }

// body returns the message without its 5-byte header.
func body(msg []byte) []byte { return msg[5:] }

// readCString returns the NUL-terminated string at the start of b and the
// rest after the NUL. ok is false when there is no NUL.
func readCString(b []byte) (s string, rest []byte, ok bool) {
	for i, c := range b {
		if c == 0 {
			return string(b[:i]), b[i+1:], true
		}
	}
	return "", nil, false
}

// cstringBytes is readCString without the string allocation.
func cstringBytes(b []byte) (s []byte, rest []byte, ok bool) {
	for i, c := range b {
		if c == 0 {
			return b[:i], b[i+1:], true
		}
	}
	return nil, nil, false
}

// beginMessage appends a message header with a placeholder length to dst
// and returns the result and the header's offset for finishMessage.
func beginMessage(dst []byte, typ byte) ([]byte, int) {
	start := len(dst)
	return append(dst, typ, 0, 0, 0, 0), start
}

// finishMessage patches the length of the message that starts at start.
func finishMessage(dst []byte, start int) []byte {
	binary.BigEndian.PutUint32(dst[start+1:], uint32(len(dst)-start-1))
	return dst
}

func appendCString(dst []byte, s string) []byte {
	dst = append(dst, s...)
	return append(dst, 0)
}

func appendInt16(dst []byte, v int16) []byte {
	return binary.BigEndian.AppendUint16(dst, uint16(v))
}

func appendInt32(dst []byte, v int32) []byte {
	return binary.BigEndian.AppendUint32(dst, uint32(v))
}
