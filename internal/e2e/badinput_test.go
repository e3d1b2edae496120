package e2e

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"
)

// TestBadClients: each broken or hostile client gets a clear error with
// the right SQLSTATE (or a close where PostgreSQL closes silently), and a
// good client working at the same time notices nothing.
func TestBadClients(t *testing.T) {
	good := connect(t, shared, "")
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var goodErr error
	goodQueries := 0
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			var v int
			if err := good.QueryRow(context.Background(), "select $1::int + 1", goodQueries).Scan(&v); err != nil || v != goodQueries+1 {
				goodErr = errors.Join(goodErr, err)
				return
			}
			goodQueries++
		}
	}()

	u, _ := url.Parse(shared.URL("sslmode=disable"))
	withUser := func(user, password, db string) string {
		v := *u
		v.User = url.UserPassword(user, password)
		v.Path = "/" + db
		return v.String()
	}
	pgxCases := []struct {
		name     string
		url      string
		code     string
		contains string
	}{
		{"wrong password", withUser(shared.User, "wrong", "postgres"), "28P01", `password authentication failed for user "demo"`},
		{"unknown user", withUser("nobody", "whatever", "postgres"), "28P01", `password authentication failed for user "nobody"`},
		{"unknown database", withUser(shared.User, shared.Password, "nosuchdb"), "3D000", `database "nosuchdb" does not exist`},
	}
	for _, tc := range pgxCases {
		t.Run(tc.name, func(t *testing.T) {
			ctx := testCtx(t, 30*time.Second)
			conn, err := pgx.Connect(ctx, tc.url)
			if err == nil {
				conn.Close(ctx)
				t.Fatal("connected, want an error")
			}
			var pgErr *pgconn.PgError
			if !errors.As(err, &pgErr) {
				t.Fatalf("error %v is not a server error", err)
			}
			if pgErr.Code != tc.code || !strings.Contains(pgErr.Message, tc.contains) || pgErr.Severity != "FATAL" {
				t.Fatalf("got %s %s %q, want FATAL %s containing %q", pgErr.Severity, pgErr.Code, pgErr.Message, tc.code, tc.contains)
			}
		})
	}

	rawCases := []struct {
		name     string
		send     []byte
		code     string // "" means the gateway just closes
		contains string
	}{
		{"oversize startup packet", startupPacket(map[string]string{"user": "demo", "database": "postgres", "application_name": strings.Repeat("x", 2<<20)}), "08P01", "exceeds the limit"},
		{"http request instead of startup", []byte("GET / HTTP/1.1\r\nHost: localhost\r\n\r\n"), "08P01", "exceeds the limit"},
		{"tiny length", []byte{0, 0, 0, 3, 1, 2, 3}, "08P01", "invalid length of startup packet"},
		{"wrong protocol version", versionPacket(2, 0), "0A000", "unsupported frontend protocol"},
		{"startup without user", startupPacket(map[string]string{"database": "postgres"}), "28000", "no PostgreSQL user name"},
		{"unterminated parameters", lengthPrefixed(append(binary.BigEndian.AppendUint32(nil, 3<<16), []byte("user\x00demo")...)), "08P01", "invalid startup packet layout"},
		{"truncated then closed", []byte{0, 0, 0, 100, 0, 3}, "", ""},
		{"cancel with unknown key", append([]byte{0, 0, 0, 16, 0x04, 0xd2, 0x16, 0x2e}, 1, 2, 3, 4, 5, 6, 7, 8), "", ""},
	}
	for _, tc := range rawCases {
		t.Run(tc.name, func(t *testing.T) {
			conn, err := net.DialTimeout("tcp", shared.Gateway.Addr, 5*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			conn.SetDeadline(time.Now().Add(15 * time.Second))
			go func() {
				conn.Write(tc.send)
				if tc.code == "" {
					conn.(*net.TCPConn).CloseWrite()
				}
			}()
			got, err := readUntilClose(conn)
			if tc.code == "" {
				if err != nil || len(got) > 0 {
					t.Fatalf("want a silent close, got %d messages, err %v", len(got), err)
				}
				return
			}
			if err != nil {
				t.Fatalf("reading the answer: %v", err)
			}
			if len(got) != 1 {
				t.Fatalf("got %d messages %v, want one ErrorResponse", len(got), got)
			}
			er, ok := got[0].(*pgproto3.ErrorResponse)
			if !ok || er.Code != tc.code || !strings.Contains(er.Message, tc.contains) || er.Severity != "FATAL" {
				t.Fatalf("got %#v, want FATAL %s containing %q", got[0], tc.code, tc.contains)
			}
		})
	}
	close(stop)
	wg.Wait()
	if goodErr != nil || goodQueries == 0 {
		t.Fatalf("the good client failed: %v after %d queries", goodErr, goodQueries)
	}
}

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
