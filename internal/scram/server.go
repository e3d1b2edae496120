package scram

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"strconv"
)

// SASL mechanism names, as advertised in AuthenticationSASL and chosen in
// SASLInitialResponse.
const (
	MechanismSCRAM     = "SCRAM-SHA-256"
	MechanismSCRAMPlus = "SCRAM-SHA-256-PLUS"
)

// ChannelBindingType is the only channel binding type the server accepts
// with SCRAM-SHA-256-PLUS (RFC 5929), as in PostgreSQL.
const ChannelBindingType = "tls-server-end-point"

const (
	// maxMessageLen bounds a client message in bytes. Real ones are under
	// 200 bytes; PostgreSQL itself has no limit below the wire's.
	maxMessageLen = 4096
	// serverNonceLen is the length of the server's part of the nonce in
	// characters: about 196 bits drawn from 93 printable characters.
	serverNonceLen = 30
	// maxNonceReads bounds the reads from ServerOptions.Rand for one nonce;
	// a uniform source needs more than a few with negligible probability.
	maxNonceReads = 64
)

var (
	// ErrAuthFailed reports a client proof that does not match the verifier:
	// a wrong password, or any password against a MockVerifier. The caller
	// reports 28P01 "password authentication failed for user ...". It is
	// returned unwrapped, so the two cases cannot be told apart even by the
	// error text.
	ErrAuthFailed = errors.New("scram: authentication failed")

	// ErrProtocol reports a message that breaks RFC 5802 or PostgreSQL's
	// rules: malformed syntax, a wrong nonce, inconsistent channel binding
	// flags, calls out of order. The caller reports 08P01. Errors wrap it
	// with a short reason that never holds secrets or client input.
	ErrProtocol = errors.New("scram: protocol violation")

	// ErrChannelBinding is the subset of ErrProtocol for which PostgreSQL
	// reports 28000 (invalid authorization specification): the client sent
	// "y" (supports channel binding but thinks the server does not) although
	// the server offered SCRAM-SHA-256-PLUS, or the channel binding data does
	// not match this connection (a man in the middle).
	ErrChannelBinding = fmt.Errorf("%w: channel binding", ErrProtocol)

	// ErrFeatureNotSupported is the subset of ErrProtocol for which
	// PostgreSQL reports 0A000 (feature not supported): an authorization
	// identity ("a=") or a mandatory extension ("m=").
	ErrFeatureNotSupported = fmt.Errorf("%w: not supported", ErrProtocol)
)

// Mechanisms returns the SASL mechanisms to advertise in AuthenticationSASL,
// in PostgreSQL's order: SCRAM-SHA-256-PLUS first when tls, then
// SCRAM-SHA-256. Pass tls = true exactly when ServerOptions.ChannelBinding
// will be set; a TLS connection without binding data advertises SCRAM-SHA-256
// only. The caller owns the returned slice.
func Mechanisms(tls bool) []string {
	if tls {
		return []string{MechanismSCRAMPlus, MechanismSCRAM}
	}
	return []string{MechanismSCRAM}
}

// ServerOptions tunes a ServerExchange. The zero value is right for a plain
// TCP connection.
type ServerOptions struct {
	// ChannelBinding is the tls-server-end-point binding data of the client
	// connection (TLSServerEndPoint of the gateway's certificate) when it is
	// TLS; nil over plain TCP. Non-nil also means the server supports channel
	// binding, so a client that sends the "y" flag is refused as a downgrade.
	// The exchange copies it.
	ChannelBinding []byte
	// Rand is the source of the server nonce; nil means crypto/rand. Tests
	// inject fixed bytes: every byte that is a printable ASCII character
	// other than ',' becomes the next nonce character (other bytes are
	// skipped), so injecting a nonce's own characters reproduces it.
	Rand io.Reader
}

type exchangeState uint8

const (
	awaitClientFirst exchangeState = iota
	awaitClientFinal
	ended // succeeded or failed; every later call fails
)

// ServerExchange is the server side of one SCRAM authentication exchange.
// It is not safe for concurrent use; one connection's goroutine drives it.
type ServerExchange struct {
	verifier Verifier
	plus     bool   // the client chose SCRAM-SHA-256-PLUS
	binding  []byte // tls-server-end-point data; nil without TLS
	rand     io.Reader
	state    exchangeState

	// Set by ClientFirst.
	gs2Header       string // "n,,", "y,," or "p=tls-server-end-point,,"
	clientFirstBare string
	serverFirst     string
	nonce           string // client nonce followed by server nonce
}

// NewServerExchange starts an exchange for the user whose verifier is v (a
// MockVerifier for an unknown user) with the mechanism the client chose in
// SASLInitialResponse. A mechanism other than the two SCRAM ones, or
// SCRAM-SHA-256-PLUS without opts.ChannelBinding, is an ErrProtocol error,
// as in PostgreSQL ("client selected an invalid SASL authentication
// mechanism"). A verifier without salt or iterations is an
// ErrInvalidVerifier error.
func NewServerExchange(v Verifier, mechanism string, opts ServerOptions) (*ServerExchange, error) {
	switch mechanism {
	case MechanismSCRAM:
	case MechanismSCRAMPlus:
		if len(opts.ChannelBinding) == 0 {
			return nil, fmt.Errorf("%w: client selected %s but the connection has no channel binding data", ErrProtocol, MechanismSCRAMPlus)
		}
	default:
		return nil, fmt.Errorf("%w: client selected an invalid SASL authentication mechanism", ErrProtocol)
	}
	if v.Iterations < 1 || len(v.Salt) == 0 {
		return nil, fmt.Errorf("%w: no salt or iterations", ErrInvalidVerifier)
	}
	v.Salt = bytes.Clone(v.Salt)
	e := &ServerExchange{
		verifier: v,
		plus:     mechanism == MechanismSCRAMPlus,
		rand:     opts.Rand,
	}
	if len(opts.ChannelBinding) > 0 {
		e.binding = bytes.Clone(opts.ChannelBinding)
	}
	if e.rand == nil {
		e.rand = rand.Reader
	}
	return e, nil
}

// ClientFirst consumes client-first-message (the data of SASLInitialResponse)
// and returns server-first-message for AuthenticationSASLContinue. msg is not
// retained; the caller owns the result. Errors wrap ErrProtocol, except a
// failing ServerOptions.Rand.
func (e *ServerExchange) ClientFirst(msg []byte) (serverFirst []byte, err error) {
	if e.state != awaitClientFirst {
		return nil, e.outOfOrder("client-first-message")
	}
	e.state = ended // until it succeeds
	first, err := e.readClientFirst(msg)
	if err != nil {
		return nil, err
	}
	serverNonce, err := e.serverNonce()
	if err != nil {
		return nil, err
	}
	e.gs2Header = first.gs2Header
	e.clientFirstBare = first.bare
	e.nonce = first.nonce + serverNonce
	e.serverFirst = "r=" + e.nonce +
		",s=" + base64.StdEncoding.EncodeToString(e.verifier.Salt) +
		",i=" + strconv.Itoa(e.verifier.Iterations)
	e.state = awaitClientFinal
	return []byte(e.serverFirst), nil
}

// ClientFinal consumes client-final-message (the data of SASLResponse),
// checks the channel binding, the nonce and the proof, and returns
// server-final-message for AuthenticationSASLFinal. A proof that does not
// match (or any proof against a MockVerifier) returns ErrAuthFailed; other
// errors wrap ErrProtocol. msg is not retained; the caller owns the result.
func (e *ServerExchange) ClientFinal(msg []byte) (serverFinal []byte, err error) {
	if e.state != awaitClientFinal {
		return nil, e.outOfOrder("client-final-message")
	}
	e.state = ended
	final, err := e.readClientFinal(msg)
	if err != nil {
		return nil, err
	}
	if final.nonce != e.nonce {
		return nil, fmt.Errorf("%w: nonce does not match", ErrProtocol)
	}

	authMessage := e.clientFirstBare + "," + e.serverFirst + "," + final.withoutProof
	clientSignature := hmacSHA256(e.verifier.StoredKey[:], authMessage)
	var clientKey [32]byte
	subtle.XORBytes(clientKey[:], final.proof[:], clientSignature[:])
	storedKey := sha256.Sum256(clientKey[:])
	// All of the work above is done for a MockVerifier too, so that an unknown
	// user takes as long as a wrong password.
	match := subtle.ConstantTimeCompare(storedKey[:], e.verifier.StoredKey[:])
	if match&^e.verifier.doomed() != 1 {
		return nil, ErrAuthFailed
	}
	serverSignature := hmacSHA256(e.verifier.ServerKey[:], authMessage)
	return []byte("v=" + base64.StdEncoding.EncodeToString(serverSignature[:])), nil
}

func (e *ServerExchange) outOfOrder(what string) error {
	switch e.state {
	case awaitClientFirst:
		return fmt.Errorf("%w: %s before client-first-message", ErrProtocol, what)
	case awaitClientFinal:
		return fmt.Errorf("%w: %s after client-first-message", ErrProtocol, what)
	default:
		return fmt.Errorf("%w: %s after the exchange ended", ErrProtocol, what)
	}
}

// serverNonce draws serverNonceLen printable characters from e.rand: each
// byte, reduced to 7 bits, is kept when it is printable and not ',' (93 of
// 128 values, so the kept characters stay uniform).
func (e *ServerExchange) serverNonce() (string, error) {
	nonce := make([]byte, 0, serverNonceLen)
	buf := make([]byte, serverNonceLen)
	for range maxNonceReads {
		chunk := buf[:serverNonceLen-len(nonce)]
		if _, err := io.ReadFull(e.rand, chunk); err != nil {
			return "", fmt.Errorf("scram: read server nonce: %w", err)
		}
		for _, b := range chunk {
			if c := b & 0x7f; isPrintable(c) {
				nonce = append(nonce, c)
			}
		}
		if len(nonce) == serverNonceLen {
			return string(nonce), nil
		}
	}
	return "", errors.New("scram: read server nonce: source yields too few usable bytes")
}

// protocolError wraps ErrProtocol with a fixed reason.
func protocolError(reason string) error {
	return fmt.Errorf("%w: %s", ErrProtocol, reason)
}

// checkMessage applies the limits common to both client messages and
// returns msg as a string (a copy, so msg is not retained).
func checkMessage(msg []byte) (string, error) {
	switch {
	case len(msg) == 0:
		return "", protocolError("empty message")
	case len(msg) > maxMessageLen:
		return "", protocolError("message longer than " + strconv.Itoa(maxMessageLen) + " bytes")
	case bytes.IndexByte(msg, 0) >= 0:
		return "", protocolError("NUL byte in message")
	}
	return string(msg), nil
}

// cutAttr splits one attribute, ALPHA "=" value (RFC 5802 attr-val).
func cutAttr(s string) (attr byte, value string, ok bool) {
	if len(s) < 2 || s[1] != '=' || !isAlpha(s[0]) {
		return 0, "", false
	}
	return s[0], s[2:], true
}

// isPrintable reports whether c is RFC 5802 "printable": ASCII 0x21-0x7E
// except ','.
func isPrintable(c byte) bool {
	return c >= 0x21 && c <= 0x7e && c != ','
}

func isAlpha(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z'
}
