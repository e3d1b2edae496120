package pgwire

import (
	"bytes"
	"testing"

	"github.com/jackc/pgx/v5/pgproto3"
)

// The cold-path messages (authentication, the greeting, cancel) are
// encoded by pgproto3. These tests pin their bytes to the wire format
// spelled out by hand, as the gateway built them before: a pgproto3
// upgrade that changed a byte would fail here rather than at a client.

// handAuth is an Authentication message ('R') of type typ with data after it.
func handAuth(typ int32, data []byte) []byte {
	out, start := beginMessage(nil, 'R')
	out = appendInt32(out, typ)
	out = append(out, data...)
	return finishMessage(out, start)
}

func TestColdPathEncodingMatchesWireFormat(t *testing.T) {
	salt := [4]byte{0xde, 0xad, 0xbe, 0xef}
	scramData := []byte("r=abc,s=c2FsdA==,i=4096")
	sasl := func(mechs ...string) []byte {
		out, start := beginMessage(nil, 'R')
		out = appendInt32(out, 10)
		for _, m := range mechs {
			out = appendCString(out, m)
		}
		out = append(out, 0)
		return finishMessage(out, start)
	}
	keyData := func(pid, secret uint32) []byte {
		out, start := beginMessage(nil, 'K')
		out = appendInt32(out, int32(pid))
		out = appendInt32(out, int32(secret))
		return finishMessage(out, start)
	}
	paramStatus := func(name, value string) []byte {
		out, start := beginMessage(nil, 'S')
		out = appendCString(out, name)
		out = appendCString(out, value)
		return finishMessage(out, start)
	}
	for _, c := range []struct {
		name      string
		got, want []byte
	}{
		{"AuthenticationOk", authOK, []byte{'R', 0, 0, 0, 8, 0, 0, 0, 0}},
		{"AuthenticationCleartextPassword", encode(&pgproto3.AuthenticationCleartextPassword{}), []byte{'R', 0, 0, 0, 8, 0, 0, 0, 3}},
		{"AuthenticationMD5Password", encode(&pgproto3.AuthenticationMD5Password{Salt: salt}),
			[]byte{'R', 0, 0, 0, 12, 0, 0, 0, 5, 0xde, 0xad, 0xbe, 0xef}},
		{"AuthenticationSASL", encode(&pgproto3.AuthenticationSASL{AuthMechanisms: []string{"SCRAM-SHA-256"}}), sasl("SCRAM-SHA-256")},
		{"AuthenticationSASL PLUS", encode(&pgproto3.AuthenticationSASL{AuthMechanisms: []string{"SCRAM-SHA-256-PLUS", "SCRAM-SHA-256"}}),
			sasl("SCRAM-SHA-256-PLUS", "SCRAM-SHA-256")},
		{"AuthenticationSASLContinue empty", encode(&pgproto3.AuthenticationSASLContinue{}), []byte{'R', 0, 0, 0, 8, 0, 0, 0, 11}},
		{"AuthenticationSASLContinue", encode(&pgproto3.AuthenticationSASLContinue{Data: scramData}), handAuth(11, scramData)},
		{"AuthenticationSASLFinal", encode(&pgproto3.AuthenticationSASLFinal{Data: []byte("v=abc")}), handAuth(12, []byte("v=abc"))},
		{"BackendKeyData", cancelKey{pid: 0x7fffffff, secret: []byte{0x80, 0, 0, 1}}.backendKeyData(), keyData(0x7fffffff, 0x80000001)},
		{"BackendKeyData zero", cancelKey{}.backendKeyData(), []byte{'K', 0, 0, 0, 12, 0, 0, 0, 0, 0, 0, 0, 0}},
		{"ParameterStatus", parameterStatus("DateStyle", "ISO, MDY"), paramStatus("DateStyle", "ISO, MDY")},
		{"ParameterStatus empty", parameterStatus("application_name", ""), paramStatus("application_name", "")},
		// The whole version 3.0 in the version field, as PostgreSQL sends it.
		{"NegotiateProtocolVersion", negotiateProtocolVersion(0, []string{"_pq_.x"}),
			[]byte{'v', 0, 0, 0, 19, 0, 3, 0, 0, 0, 0, 0, 1, '_', 'p', 'q', '_', '.', 'x', 0}},
		{"NegotiateProtocolVersion none", negotiateProtocolVersion(1, nil), []byte{'v', 0, 0, 0, 12, 0, 3, 0, 0, 0, 0, 0, 0}},
		{"NegotiateProtocolVersion 3.2", negotiateProtocolVersion(3, nil), []byte{'v', 0, 0, 0, 12, 0, 3, 0, 2, 0, 0, 0, 0}},
	} {
		if !bytes.Equal(c.got, c.want) {
			t.Errorf("%s: got % x, want % x", c.name, c.got, c.want)
		}
	}
}
