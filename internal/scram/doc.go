// Package scram is the server side of SCRAM-SHA-256 and SCRAM-SHA-256-PLUS
// (RFC 5802, RFC 7677, channel binding type tls-server-end-point from
// RFC 5929) as PostgreSQL implements it, plus the password verifiers that the
// gateway stores for its own users.
//
// # What this package does and does not do
//
// It produces and consumes the SCRAM message payloads only. Framing them in
// AuthenticationSASL, SASLInitialResponse, AuthenticationSASLContinue,
// SASLResponse and AuthenticationSASLFinal, choosing the SQLSTATE of the
// ErrorResponse, deadlines and message size limits on the connection all
// belong to the wire package (pgwire). Looking users up belongs to the caller
// too: for a user that does not exist, pass MockVerifier so that the client
// sees the same exchange as for a wrong password.
//
// # An exchange, step by step
//
//  1. Advertise Mechanisms(len(binding) > 0) in AuthenticationSASL, where
//     binding is TLSServerEndPoint of the certificate the gateway presented
//     (nil over plain TCP, or when the certificate's signature algorithm has
//     no tls-server-end-point hash).
//  2. On SASLInitialResponse, call NewServerExchange with the mechanism the
//     client chose and ServerOptions{ChannelBinding: binding}, then
//     ClientFirst with the initial response data, and send the result in
//     AuthenticationSASLContinue. A SASLInitialResponse without data (length
//     -1) is answered, as PostgreSQL does, with an empty
//     AuthenticationSASLContinue; the data of the next SASLResponse then goes
//     to ClientFirst.
//  3. On SASLResponse, call ClientFinal and send the result in
//     AuthenticationSASLFinal followed by AuthenticationOk.
//
// Any error ends the exchange: the ServerExchange refuses every later call.
// Like PostgreSQL, the server never sends a SCRAM "e=" error attribute; the
// caller sends an ErrorResponse instead:
//
//   - ErrAuthFailed: 28P01, "password authentication failed for user ...",
//     for a wrong password and an unknown user alike.
//   - ErrProtocol: 08P01. Two subsets let the caller use PostgreSQL's exact
//     codes: ErrChannelBinding (28000: a channel binding downgrade or a
//     binding that does not match this connection) and ErrFeatureNotSupported
//     (0A000: an authorization identity or a mandatory extension). Both are
//     also ErrProtocol, so a caller that only checks ErrProtocol is right too.
//
// Error strings never contain a password, a key, a proof or client input;
// they are safe for the log, not meant for the client (the client gets the
// fixed PostgreSQL message).
//
// # Where it differs from PostgreSQL on purpose
//
//   - The server nonce is 30 characters drawn from all of SCRAM's printable
//     characters (PostgreSQL: 18 random bytes in base64). Any RFC 5802 client
//     accepts both; drawing characters directly lets a test reproduce the
//     exchange of RFC 7677 byte for byte by injecting its nonce.
//   - A few malformed messages that PostgreSQL lets through are refused: an
//     empty client nonce, a trailing comma after the last attribute, and
//     messages over 4096 bytes (real ones are under 200).
//   - ParseVerifier accepts only the canonical text form that PostgreSQL
//     writes (no whitespace inside base64, no sign or leading zero in the
//     iteration count, a non-empty salt).
package scram
