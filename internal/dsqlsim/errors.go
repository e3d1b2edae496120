package dsqlsim

import (
	"github.com/jackc/pgx/v5/pgproto3"
)

// Messages the emulator sends itself; DSQL's wording where it is known.
const (
	msgTLSRequired      = "TLS is required: connect with sslmode=require or stricter"
	msgNoSNI            = "unable to accept connection, sni was not received"
	msgUnknownSNI       = "unable to accept connection, unknown server name"
	msgNoALPN           = "direct TLS connection requires the ALPN protocol \"postgresql\""
	msgAuthFailed       = "IAM authentication failed"
	msgRateExceeded     = "Unable to accept connection, rate exceeded."
	msgTooManyConns     = "Unable to accept connection, too many open connections."
	msgNoUser           = "no PostgreSQL user name specified in startup packet"
	msgBackendAuth      = "backend PostgreSQL asked for a password: its unix socket must be trusted"
	msgBackendUnreached = "backend PostgreSQL is unreachable"
)

// clientError builds every ErrorResponse the emulator itself sends to a
// client: FATAL ones that end the connection, and the ERRORs that replace a
// refused statement's backend error. message and detail must be safe to
// show: never a token, a signature or a key.
func clientError(severity, code, message, detail string) *pgproto3.ErrorResponse {
	return &pgproto3.ErrorResponse{
		Severity:            severity,
		SeverityUnlocalized: severity,
		Code:                code,
		Message:             message,
		Detail:              detail,
	}
}

// fatal is clientError for an error that ends the connection.
func fatal(code, message, detail string) *pgproto3.ErrorResponse {
	return clientError("FATAL", code, message, detail)
}
