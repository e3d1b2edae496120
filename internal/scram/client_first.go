package scram

import (
	"fmt"
	"strings"
)

// clientFirst is a parsed client-first-message (RFC 5802 section 7):
//
//	gs2-header client-first-message-bare
//	gs2-header                = gs2-cbind-flag "," [ authzid ] ","
//	gs2-cbind-flag            = ("p=" cb-name) / "n" / "y"
//	client-first-message-bare = [reserved-mext ","] username "," nonce ["," extensions]
//
// For example "n,,n=,r=rOprNGfwEbeRWgbNEkqO".
type clientFirst struct {
	gs2Header string // as sent, repeated by the client in client-final-message's c=
	bare      string // client-first-message-bare, the first part of AuthMessage
	nonce     string // c-nonce: printable, not empty
}

// readClientFirst parses client-first-message and applies PostgreSQL's
// rules in the order of its read_client_first_message, so that the first
// rule broken decides the error (and so the SQLSTATE):
//
//   - the channel binding flag must agree with the mechanism: "n" and "y"
//     only with SCRAM-SHA-256, "p" only with SCRAM-SHA-256-PLUS; "y" while
//     the server supports channel binding is a downgrade (ErrChannelBinding);
//     "p" must name tls-server-end-point;
//   - an authorization identity is refused (ErrFeatureNotSupported);
//   - a mandatory extension "m=" is refused (ErrFeatureNotSupported);
//   - the username "n=" must be there but is ignored: PostgreSQL, and the
//     gateway, authenticate the user of the startup message, and libpq sends
//     an empty one;
//   - the nonce "r=" must be printable ASCII without ',', and not empty;
//   - optional extensions after the nonce are ignored if well-formed.
func (e *ServerExchange) readClientFirst(msg []byte) (clientFirst, error) {
	s, err := checkMessage(msg)
	if err != nil {
		return clientFirst{}, err
	}

	var rest string // what follows the gs2-cbind-flag
	switch s[0] {
	case 'n', 'y':
		if e.plus {
			return clientFirst{}, protocolError("client selected " + MechanismSCRAMPlus + " but sent no channel binding data")
		}
		if s[0] == 'y' && e.binding != nil {
			return clientFirst{}, fmt.Errorf("%w: client supports it but thinks the server does not, and the server does", ErrChannelBinding)
		}
		rest = s[1:]
		if !strings.HasPrefix(rest, ",") {
			return clientFirst{}, protocolError("comma expected after the channel binding flag")
		}
		rest = rest[1:]
	case 'p':
		if !e.plus {
			return clientFirst{}, protocolError("client selected " + MechanismSCRAM + " but sent channel binding data")
		}
		attr, value, _ := cutAttr(s)
		if attr != 'p' {
			return clientFirst{}, protocolError("'=' expected after the channel binding flag")
		}
		cbName, after, _ := strings.Cut(value, ",")
		if cbName != ChannelBindingType {
			return clientFirst{}, protocolError("unsupported channel binding type")
		}
		rest = after
	default:
		return clientFirst{}, protocolError("unexpected channel binding flag")
	}

	// rest is now "[authzid] ," client-first-message-bare.
	if strings.HasPrefix(rest, "a") {
		return clientFirst{}, fmt.Errorf("%w: client uses an authorization identity", ErrFeatureNotSupported)
	}
	if !strings.HasPrefix(rest, ",") {
		return clientFirst{}, protocolError("unexpected attribute in the gs2 header")
	}
	bare := rest[1:]
	gs2Header := s[:len(s)-len(bare)]

	if strings.HasPrefix(bare, "m") {
		return clientFirst{}, fmt.Errorf("%w: client requires a SCRAM extension", ErrFeatureNotSupported)
	}
	attrs := strings.Split(bare, ",")
	if attr, _, ok := cutAttr(attrs[0]); !ok || attr != 'n' {
		return clientFirst{}, protocolError("username attribute 'n' expected")
	}
	if len(attrs) < 2 {
		return clientFirst{}, protocolError("nonce attribute 'r' expected")
	}
	attr, nonce, ok := cutAttr(attrs[1])
	if !ok || attr != 'r' {
		return clientFirst{}, protocolError("nonce attribute 'r' expected")
	}
	if nonce == "" {
		return clientFirst{}, protocolError("empty nonce")
	}
	for i := 0; i < len(nonce); i++ {
		if !isPrintable(nonce[i]) {
			return clientFirst{}, protocolError("non-printable characters in nonce")
		}
	}
	for _, ext := range attrs[2:] {
		if _, _, ok := cutAttr(ext); !ok {
			return clientFirst{}, protocolError("malformed attribute after the nonce")
		}
	}
	return clientFirst{gs2Header: gs2Header, bare: bare, nonce: nonce}, nil
}
