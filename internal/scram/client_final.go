package scram

import (
	"encoding/base64"
	"fmt"
	"strings"
)

// clientFinal is a parsed client-final-message (RFC 5802 section 7):
//
//	client-final-message-without-proof "," proof
//	client-final-message-without-proof = channel-binding "," nonce ["," extensions]
//	channel-binding = "c=" base64(gs2-header [cbind-data])
//	proof           = "p=" base64
//
// For example "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=".
type clientFinal struct {
	withoutProof string // client-final-message-without-proof, the last part of AuthMessage
	nonce        string // as sent; the caller compares it with the combined nonce
	proof        [32]byte
}

// readClientFinal parses client-final-message in the order of PostgreSQL's
// read_client_final_message:
//
//   - "c=" must be the base64 of the gs2 header of client-first-message
//     followed, with SCRAM-SHA-256-PLUS, by the connection's channel binding
//     data; a mismatch with -PLUS is ErrChannelBinding (the client talks to
//     someone else's TLS endpoint), without it a plain protocol error;
//   - "r=" must follow (the caller compares it);
//   - optional extensions are skipped up to "p=", which must be last and hold
//     exactly 32 bytes of base64.
func (e *ServerExchange) readClientFinal(msg []byte) (clientFinal, error) {
	s, err := checkMessage(msg)
	if err != nil {
		return clientFinal{}, err
	}
	attrs := strings.Split(s, ",")

	attr, binding, ok := cutAttr(attrs[0])
	if !ok || attr != 'c' {
		return clientFinal{}, protocolError("channel binding attribute 'c' expected")
	}
	cbindInput := []byte(e.gs2Header)
	if e.plus {
		cbindInput = append(cbindInput, e.binding...)
	}
	// Not secret (a certificate hash), so a plain comparison is fine.
	if binding != base64.StdEncoding.EncodeToString(cbindInput) {
		if e.plus {
			return clientFinal{}, fmt.Errorf("%w: data does not match the connection", ErrChannelBinding)
		}
		return clientFinal{}, protocolError("unexpected channel binding attribute")
	}

	if len(attrs) < 2 {
		return clientFinal{}, protocolError("nonce attribute 'r' expected")
	}
	attr, nonce, ok := cutAttr(attrs[1])
	if !ok || attr != 'r' {
		return clientFinal{}, protocolError("nonce attribute 'r' expected")
	}

	last := len(attrs) - 1
	for i, a := range attrs[2:] {
		attr, proof, ok := cutAttr(a)
		switch {
		case !ok:
			return clientFinal{}, protocolError("malformed attribute before the proof")
		case attr != 'p':
			continue // an extension: ignored, as in PostgreSQL
		case 2+i != last:
			return clientFinal{}, protocolError("garbage after the proof")
		}
		f := clientFinal{
			withoutProof: s[:len(s)-len(a)-1],
			nonce:        nonce,
		}
		decoded, err := base64.StdEncoding.DecodeString(proof)
		if err != nil || len(decoded) != len(f.proof) {
			return clientFinal{}, protocolError("proof is not 32 bytes of base64")
		}
		copy(f.proof[:], decoded)
		return f, nil
	}
	return clientFinal{}, protocolError("proof attribute 'p' expected")
}
