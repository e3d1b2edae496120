package pgwire

import (
	"bytes"
	"encoding/binary"
	"errors"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func startupBody(pairs ...string) []byte {
	var b []byte
	for _, p := range pairs {
		b = append(b, p...)
		b = append(b, 0)
	}
	return append(b, 0)
}

func TestParseStartupMessage(t *testing.T) {
	cases := []struct {
		name     string
		version  uint32
		body     []byte
		want     *startupInfo
		wantCode string
	}{
		{"user and database", protocolVersion30, startupBody("user", "alice", "database", "app", "application_name", "psql"),
			&startupInfo{user: "alice", database: "app", params: map[string]string{"application_name": "psql"}}, ""},
		{"database defaults to user", protocolVersion30, startupBody("user", "bob"),
			&startupInfo{user: "bob", database: "bob", params: map[string]string{}}, ""},
		{"protocol 3.2 and options", 3<<16 | 2, startupBody("user", "u", "_pq_.test", "x"),
			&startupInfo{user: "u", database: "u", params: map[string]string{}, minor: 2, unknownProtocolOptions: []string{"_pq_.test"}}, ""},
		{"no user", protocolVersion30, startupBody("database", "x"), nil, codeInvalidAuthorization},
		{"protocol 2", 2 << 16, startupBody("user", "u"), nil, codeFeatureNotSupported},
		{"protocol 4", 4 << 16, startupBody("user", "u"), nil, codeFeatureNotSupported},
		{"no terminator", protocolVersion30, []byte("user\x00u\x00"), nil, codeProtocolViolation},
		{"name without value", protocolVersion30, []byte("user\x00u\x00database\x00"), nil, codeProtocolViolation},
		{"bytes after terminator", protocolVersion30, []byte("user\x00u\x00\x00junk"), nil, codeProtocolViolation},
		{"empty", protocolVersion30, nil, nil, codeProtocolViolation},
		{"replication", protocolVersion30, startupBody("user", "u", "replication", "database"), nil, codeFeatureNotSupported},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseStartupMessage(tc.version, tc.body)
			if tc.wantCode != "" {
				var pe *pgError
				if !errors.As(err, &pe) || pe.Code != tc.wantCode {
					t.Fatalf("err = %v, want SQLSTATE %s", err, tc.wantCode)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want, got, cmp.AllowUnexported(startupInfo{})); diff != "" {
				t.Fatalf("(-want +got):\n%s", diff)
			}
		})
	}
}

func TestReadStartupPacket(t *testing.T) {
	pkt := func(code uint32, rest []byte) []byte {
		b := binary.BigEndian.AppendUint32(nil, uint32(8+len(rest)))
		b = binary.BigEndian.AppendUint32(b, code)
		return append(b, rest...)
	}
	code, rest, err := readStartupPacket(bytes.NewReader(pkt(codeSSLRequest, nil)), 1024)
	if err != nil || code != codeSSLRequest || len(rest) != 0 {
		t.Fatalf("SSLRequest: %d %v %v", code, rest, err)
	}
	if _, _, err := readStartupPacket(bytes.NewReader(pkt(protocolVersion30, make([]byte, 2000))), 1024); !isCode(err, codeProtocolViolation) {
		t.Fatalf("oversize: %v", err)
	}
	if _, _, err := readStartupPacket(bytes.NewReader([]byte{0, 0, 0, 4, 0, 0, 0, 0}), 1024); !isCode(err, codeProtocolViolation) {
		t.Fatalf("length 4: %v", err)
	}
	if _, _, err := readStartupPacket(bytes.NewReader(nil), 1024); !errors.Is(err, errClientGone) {
		t.Fatalf("empty: %v", err)
	}
}

func FuzzParseStartupMessage(f *testing.F) {
	f.Add(uint32(protocolVersion30), startupBody("user", "alice", "database", "app"))
	f.Add(uint32(3<<16|2), startupBody("user", "u", "_pq_.x", "1", "options", "-c search_path=a"))
	f.Add(uint32(protocolVersion30), []byte("user\x00"))
	f.Fuzz(func(t *testing.T, version uint32, body []byte) {
		info, err := parseStartupMessage(version, body)
		if err == nil && (info.user == "" || info.database == "") {
			t.Fatal("accepted a startup message without user or database")
		}
	})
}
