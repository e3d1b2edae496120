package pgwire

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"testing"
)

func message(typ byte, body []byte) []byte {
	m := []byte{typ, 0, 0, 0, 0}
	binary.BigEndian.PutUint32(m[1:], uint32(len(body)+4))
	return append(m, body...)
}

func TestFrameReader(t *testing.T) {
	small := message('Q', []byte("select 1\x00"))
	large := message('d', bytes.Repeat([]byte("x"), 3*clientReadBufferSize))
	empty := message('S', nil)
	cases := []struct {
		name    string
		input   []byte
		max     int
		want    [][]byte
		wantErr error
	}{
		{"one small message", small, 1 << 20, [][]byte{small}, io.EOF},
		{"several, one larger than the buffer", concat(small, large, empty, small), 1 << 20, [][]byte{small, large, empty, small}, io.EOF},
		{"too large", large, 1024, nil, &MessageTooLargeError{}},
		{"length smaller than itself", []byte{'Q', 0, 0, 0, 3}, 1 << 20, nil, errBadLength},
		{"truncated header", []byte{'Q', 0, 0}, 1 << 20, nil, io.ErrUnexpectedEOF},
		{"truncated body", small[:len(small)-2], 1 << 20, nil, io.ErrUnexpectedEOF},
		{"truncated large body", large[:len(large)-1], 1 << 20, nil, io.ErrUnexpectedEOF},
		{"nothing", nil, 1 << 20, nil, io.EOF},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			fr := frameReader{r: bufio.NewReaderSize(bytes.NewReader(tc.input), clientReadBufferSize), maxSize: tc.max}
			var got [][]byte
			var err error
			for {
				var msg []byte
				msg, err = fr.next()
				if err != nil {
					break
				}
				got = append(got, append([]byte(nil), msg...))
			}
			if len(got) != len(tc.want) {
				t.Fatalf("got %d messages, want %d", len(got), len(tc.want))
			}
			for i := range got {
				if !bytes.Equal(got[i], tc.want[i]) {
					t.Fatalf("message %d differs", i)
				}
			}
			var tooLarge *MessageTooLargeError
			switch want := tc.wantErr.(type) {
			case *MessageTooLargeError:
				if !errors.As(err, &tooLarge) || tooLarge.Limit != tc.max || tooLarge.Type != 'd' {
					t.Fatalf("err = %v, want MessageTooLargeError", err)
				}
			default:
				if !errors.Is(err, want) {
					t.Fatalf("err = %v, want %v", err, want)
				}
			}
		})
	}
}

func concat(parts ...[]byte) []byte { return bytes.Join(parts, nil) }

func FuzzFrameReader(f *testing.F) {
	f.Add(message('Q', []byte("select 1\x00")))
	f.Add([]byte{'Q', 0, 0, 0, 3})
	f.Add(concat(message('P', []byte("s\x00select $1\x00\x00\x01\x00\x00\x00\x17")), message('S', nil)))
	f.Fuzz(func(t *testing.T, input []byte) {
		fr := frameReader{r: bufio.NewReaderSize(bytes.NewReader(input), 64), maxSize: 4096}
		total := 0
		for {
			msg, err := fr.next()
			if err != nil {
				break
			}
			if len(msg) < 5 || int(binary.BigEndian.Uint32(msg[1:5]))+1 != len(msg) || len(msg) > 4096 {
				t.Fatalf("bad frame of %d bytes", len(msg))
			}
			total += len(msg)
		}
		if total > len(input) {
			t.Fatalf("read %d bytes from %d", total, len(input))
		}
	})
}
