package dsqlsim

import "bytes"

// dsqlServerVersion is the server_version a client is told at startup: DSQL
// reports PostgreSQL 16, whatever the real PostgreSQL behind the emulator
// is. Only the handshake's ParameterStatus is rewritten; SHOW
// server_version, server_version_num, current_setting() and version() still
// report the real PostgreSQL.
const dsqlServerVersion = "16.9"

// handshakeMessage returns the body of a backend handshake message as the
// client should see it: a ParameterStatus ('S') for server_version carries
// dsqlServerVersion; anything else is body itself.
func handshakeMessage(typ byte, body []byte) []byte {
	const name = "server_version\x00"
	if typ != 'S' || !bytes.HasPrefix(body, []byte(name)) {
		return body
	}
	return append([]byte(name), dsqlServerVersion+"\x00"...)
}
