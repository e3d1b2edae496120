package e2e

import (
	"bufio"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"strings"

	"github.com/jackc/pgx/v5/pgproto3"
)

// Helpers for protocol-level tests. The bad clients themselves are in the
// catalogue (badinput_catalogue_test.go).

func lengthPrefixed(b []byte) []byte {
	return append(binary.BigEndian.AppendUint32(nil, uint32(len(b)+4)), b...)
}

func startupPacket(params map[string]string) []byte {
	b := binary.BigEndian.AppendUint32(nil, 3<<16)
	for k, v := range params {
		b = append(b, k...)
		b = append(b, 0)
		b = append(b, v...)
		b = append(b, 0)
	}
	b = append(b, 0)
	return lengthPrefixed(b)
}

func versionPacket(major, minor uint16) []byte {
	b := binary.BigEndian.AppendUint32(nil, uint32(major)<<16|uint32(minor))
	b = append(b, "user\x00demo\x00\x00"...)
	return lengthPrefixed(b)
}

// readUntilClose decodes backend messages until the server closes the
// connection (a clean close returns a nil error).
func readUntilClose(conn net.Conn) ([]pgproto3.BackendMessage, error) {
	fe := pgproto3.NewFrontend(bufio.NewReader(conn), conn)
	var got []pgproto3.BackendMessage
	for {
		msg, err := fe.Receive()
		if err != nil {
			if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, net.ErrClosed) || isReset(err) {
				return got, nil
			}
			return got, err
		}
		// Receive reuses its message structs: keep a copy of errors.
		if er, ok := msg.(*pgproto3.ErrorResponse); ok {
			c := *er
			got = append(got, &c)
			continue
		}
		got = append(got, msg)
	}
}

func isReset(err error) bool {
	return strings.Contains(err.Error(), "connection reset")
}
