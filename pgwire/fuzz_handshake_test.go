package pgwire

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"testing"
	"testing/iotest"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/jackc/pgerrcode"
	"go.uber.org/zap"

	"github.com/dsqlgate/dsqlgate/config"
	"github.com/dsqlgate/dsqlgate/internal/metrics"
)

// Fuzz targets for the startup phase before authentication (startup.go,
// cancel.go): the length-prefixed startup packets and the handshake that
// reads them from an untrusted client.

// scriptConn is a client connection played by a script: when the server
// reads and nothing is pending, respond is given everything the server has
// written so far and returns what the client sends next (nil or empty: the
// client closes). Reads return at most chunk bytes (0: no limit).
type scriptConn struct {
	respond func(written []byte) []byte
	chunk   int

	pending []byte
	eof     bool
	written []byte
	read    int // bytes delivered to the server
}

func (c *scriptConn) Read(p []byte) (int, error) {
	if len(c.pending) == 0 && !c.eof {
		c.pending = c.respond(c.written)
		c.eof = len(c.pending) == 0
	}
	if len(c.pending) == 0 {
		return 0, io.EOF
	}
	if c.chunk > 0 && len(p) > c.chunk {
		p = p[:c.chunk]
	}
	n := copy(p, c.pending)
	c.pending = c.pending[n:]
	c.read += n
	return n, nil
}

func (c *scriptConn) Write(p []byte) (int, error) {
	c.written = append(c.written, p...)
	return len(p), nil
}

var (
	scriptServerAddr = &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 6432}
	scriptClientAddr = &net.TCPAddr{IP: net.IPv4(192, 0, 2, 1), Port: 50000}
)

func (c *scriptConn) Close() error                     { return nil }
func (c *scriptConn) LocalAddr() net.Addr              { return scriptServerAddr }
func (c *scriptConn) RemoteAddr() net.Addr             { return scriptClientAddr }
func (c *scriptConn) SetDeadline(time.Time) error      { return nil }
func (c *scriptConn) SetReadDeadline(time.Time) error  { return nil }
func (c *scriptConn) SetWriteDeadline(time.Time) error { return nil }

var _ net.Conn = (*scriptConn)(nil)

// sends is a script that sends input at once, then closes.
func sends(input []byte) func([]byte) []byte {
	done := false
	return func([]byte) []byte {
		if done {
			return nil
		}
		done = true
		return input
	}
}

// startupPacket is a length-prefixed startup-phase packet.
func startupPacket(code uint32, rest []byte) []byte {
	b := binary.BigEndian.AppendUint32(nil, uint32(8+len(rest)))
	b = binary.BigEndian.AppendUint32(b, code)
	return append(b, rest...)
}

// plainServer is a Server without TLS, as far as the startup phase needs
// one, that accepts startup packets up to maxStartup bytes.
func plainServer(maxStartup config.ByteSize) *Server {
	srv := &Server{metrics: metrics.New()}
	srv.conf.Store(&config.Config{Limits: config.Limits{MaxStartupPacket: maxStartup}})
	srv.tls.Store(&serverTLS{})
	return srv
}

// FuzzReadStartupPacket reads packets from arbitrary bytes, delivered a
// few at a time, with arbitrary limits: each packet returned is exactly
// the bytes its length covers (code, then body), at most max long; a
// length below 8 or above max is refused with a FATAL 08P01 before
// anything after it is read (no allocation of what a client claims);
// nothing at all, or a Terminate first, is errClientGone.
func FuzzReadStartupPacket(f *testing.F) {
	f.Add(startupPacket(codeSSLRequest, nil), uint16(1024), uint8(0))
	f.Add(append(startupPacket(protocolVersion30, startupBody("user", "u")), startupPacket(codeCancelRequest, []byte{0, 0, 0, 1, 0, 0, 0, 2})...), uint16(30), uint8(1))
	f.Add([]byte{0, 0, 0, 4, 0, 0, 0, 0}, uint16(1024), uint8(3))
	f.Add([]byte{0x7f, 0xff, 0xff, 0xff, 0, 3, 0, 0}, uint16(65535), uint8(0))
	f.Add([]byte{0, 0, 0}, uint16(8), uint8(2))
	f.Fuzz(func(t *testing.T, input []byte, maxSize uint16, chunk uint8) {
		limit := int(maxSize)
		var r io.Reader = bytes.NewReader(input)
		if chunk%4 == 1 {
			r = iotest.OneByteReader(r)
		} else if chunk%4 == 2 {
			r = iotest.HalfReader(r)
		}
		pos := 0
		for {
			code, rest, err := readStartupPacket(r, limit)
			remaining := len(input) - pos
			if err != nil {
				var pe *pgError
				switch {
				case remaining == 0:
					if !errors.Is(err, errClientGone) {
						t.Fatalf("at the end of input: %v, want errClientGone", err)
					}
				case remaining < 4:
					if !errors.Is(err, io.ErrUnexpectedEOF) {
						t.Fatalf("%d bytes of a length: %v", remaining, err)
					}
				case bytes.HasPrefix(input[pos:], []byte{'X', 0, 0, 0}):
					// A Terminate before any startup packet: a client that
					// left at once, closed on without a word.
					if !errors.Is(err, errClientGone) {
						t.Fatalf("a Terminate first: %v, want errClientGone", err)
					}
				case errors.As(err, &pe):
					n := int(binary.BigEndian.Uint32(input[pos:]))
					if pe.Severity != severityFatal || pe.Code != pgerrcode.ProtocolViolation || (n >= 8 && n <= limit) {
						t.Fatalf("length %d (limit %d) refused with %+v", n, limit, pe)
					}
					if left, _ := io.Copy(io.Discard, r); int(left) != remaining-4 {
						t.Fatalf("refusing length %d read %d bytes past it", n, remaining-4-int(left))
					}
				default:
					n := int(binary.BigEndian.Uint32(input[pos:]))
					// A read that gets nothing is io.EOF, a partial one
					// io.ErrUnexpectedEOF; either way wrapped.
					if n < 8 || n > limit || n <= remaining || !(errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF)) || errors.Is(err, errClientGone) {
						t.Fatalf("length %d with %d bytes left (limit %d): %v", n, remaining, limit, err)
					}
				}
				return
			}
			n := 8 + len(rest)
			if n > limit || n > remaining || int(binary.BigEndian.Uint32(input[pos:])) != n ||
				code != binary.BigEndian.Uint32(input[pos+4:]) || !bytes.Equal(rest, input[pos+8:pos+n]) || cap(rest) > limit {
				t.Fatalf("packet at %d: code %d, %d bytes of body (cap %d), limit %d, from %q", pos, code, len(rest), cap(rest), limit, input[pos:])
			}
			pos += n
		}
	})
}

// FuzzHandshake runs the whole startup handshake (SSLRequest,
// GSSENCRequest, CancelRequest, StartupMessage, in any order and any
// number, delivered in pieces) against a server without TLS. The server
// may only answer 'N' to the first SSLRequest and GSSENCRequest; the
// StartupMessage it returns is the one the packets hold (and the reader
// it returns holds exactly the bytes after it); a cancel reaches a session
// only with its exact key; every failure is a FATAL error for the client
// or the client's end of input.
func FuzzHandshake(f *testing.F) {
	key := cancelKey{pid: makePID(issuedHops, 0, 4242), secret: []byte{0, 0x5e, 0xc2, 0xe7}}
	cancelBody := append(binary.BigEndian.AppendUint32(nil, key.pid), key.secret...)
	startup := startupPacket(protocolVersion30, startupBody("user", "alice", "database", "app", "options", "-c search_path=x"))
	f.Add(startup, uint8(0))
	f.Add(append(startupPacket(codeSSLRequest, nil), startup...), uint8(8))
	f.Add(bytes.Join([][]byte{startupPacket(codeGSSENCRequest, nil), startupPacket(codeSSLRequest, nil), startup}, nil), uint8(8))
	f.Add(append(startupPacket(codeSSLRequest, nil), startupPacket(codeSSLRequest, nil)...), uint8(8))
	f.Add(startupPacket(codeCancelRequest, cancelBody), uint8(3))
	f.Add(startupPacket(codeCancelRequest, append(cancelBody[:7:7], 0)), uint8(0))
	f.Add(startupPacket(codeCancelRequest, append(cancelBody[:4:4], make([]byte, secretLen32)...)), uint8(5)) // a 3.2 key's length
	f.Add(startupPacket(codeCancelRequest, append([]byte{0, 0, 0x10, 0x92}, key.secret...)), uint8(2))        // hops 0
	f.Add(startupPacket(protocolVersion32, startupBody("user", "alice", "database", "app")), uint8(0))
	f.Add([]byte{tlsRecordHandshake, 3, 1, 0, 5}, uint8(0))
	f.Fuzz(func(t *testing.T, input []byte, chunk uint8) {
		const limit = 1024
		srv := plainServer(limit)
		target := &session{key: key}
		cancels := 0
		target.advisory.waiting = func() { cancels++ }
		srv.keys.sessions = map[uint16]*session{4242: target}
		conn := &scriptConn{respond: sends(input), chunk: int(chunk)}

		gotConn, br, info, err := srv.handshake(conn, zap.NewNop())
		if gotConn != conn {
			t.Fatal("handshake returned another connection without TLS")
		}
		for _, c := range conn.written {
			if c != 'N' {
				t.Fatalf("the server wrote %q", conn.written)
			}
		}

		// Walk the packets as the handshake must.
		pos, requests := 0, 0
		sslSeen, gssSeen := false, false
		var terminal []byte // the packet that ends the handshake
		afterSSL := -1      // where the bytes after the first SSLRequest start
		for terminal == nil && len(input) > 0 && input[0] != tlsRecordHandshake && len(input)-pos >= 8 {
			n := int(binary.BigEndian.Uint32(input[pos:]))
			if n < 8 || n > limit || len(input)-pos < n {
				break
			}
			pkt := input[pos : pos+n]
			pos += n
			switch code := binary.BigEndian.Uint32(pkt[4:]); {
			case code == codeSSLRequest && !sslSeen:
				sslSeen, afterSSL = true, pos
				requests++
			case code == codeGSSENCRequest && !gssSeen:
				gssSeen = true
				requests++
			default:
				terminal = pkt
			}
		}
		if len(conn.written) > requests {
			t.Fatalf("%d 'N' answers to %d requests", len(conn.written), requests)
		}
		consumed := conn.read
		if br != nil {
			consumed -= br.Buffered()
		}

		if err != nil {
			if info != nil {
				t.Fatalf("handshake returned %+v and %v", info, err)
			}
			var pe *pgError
			switch {
			case errors.As(err, &pe):
				if pe.Severity != severityFatal || pe.Code == "" {
					t.Fatalf("handshake error %+v is not FATAL", pe)
				}
				if pe.Message == "received unencrypted data after SSL request" && (afterSSL < 0 || afterSSL == len(input)) {
					t.Fatalf("%v, but nothing followed the SSLRequest", pe)
				}
				if terminal != nil && pe.Message != "received unencrypted data after SSL request" {
					_, want := parseStartupMessage(binary.BigEndian.Uint32(terminal[4:]), terminal[8:])
					if want == nil || want.Error() != err.Error() {
						t.Fatalf("handshake failed with %v; the StartupMessage parses with %v", err, want)
					}
				}
			case errors.Is(err, errClientGone), errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, io.EOF):
				if terminal != nil {
					t.Fatalf("handshake says the client left (%v) after a whole packet", err)
				}
			case len(input) > 0 && input[0] == tlsRecordHandshake:
			default:
				t.Fatalf("handshake failed with %T %v", err, err)
			}
			if cancels != 0 {
				t.Fatal("a failed handshake cancelled a session")
			}
			return
		}

		if terminal == nil || br == nil || consumed != pos {
			t.Fatalf("handshake ended after %d bytes (reader %v), the packets after %d (terminal %q)", consumed, br != nil, pos, terminal)
		}
		code, rest := binary.BigEndian.Uint32(terminal[4:]), terminal[8:]
		if info == nil {
			if code != codeCancelRequest {
				t.Fatalf("handshake returned nothing for packet code %d", code)
			}
			// The key's hops do not matter to its own replica, but a key
			// claiming more hops than the gateway issues is no key.
			want := 0
			if len(rest) == len(cancelBody) && rest[0]&0x9f == cancelBody[0]&0x9f && bytes.Equal(rest[1:], cancelBody[1:]) &&
				uint32(rest[0]>>5&keyHopsMask) <= issuedHops {
				want = 1
			}
			if cancels != want {
				t.Fatalf("CancelRequest %x cancelled %d times, want %d", rest, cancels, want)
			}
			return
		}
		if cancels != 0 {
			t.Fatal("a StartupMessage cancelled a session")
		}
		want, werr := parseStartupMessage(code, rest)
		if werr != nil || info.user == "" || info.database == "" {
			t.Fatalf("handshake accepted %q (%v)", terminal, werr)
		}
		if diff := cmp.Diff(want, info, cmp.AllowUnexported(startupInfo{})); diff != "" {
			t.Fatalf("handshake's StartupMessage (-packet +returned):\n%s", diff)
		}
	})
}
