package scram_test

import (
	"crypto/hmac"
	"crypto/pbkdf2"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// testClient is the client side of SCRAM-SHA-256 written from RFC 5802 for
// the tests, independently of the package: it shares no code with it and
// derives keys with crypto/pbkdf2 instead of the package's Hi. It does no
// SASLprep; tests give it the prepared password.
type testClient struct {
	password  string
	gs2Header string // "n,,", "y,," or "p=tls-server-end-point,,"
	cbData    []byte // appended to gs2Header in c= when the header is "p=..."
	nonce     string
	username  string // sent in n=, which the server ignores

	firstExt    string // appended to client-first-message-bare, e.g. ",x=1"
	finalExt    string // appended to client-final-message-without-proof
	finalHeader string // gs2 header repeated in c=; "" means gs2Header

	clientFirstBare string
	serverSignature []byte
}

func newTestClient(password, gs2Header string, cbData []byte) *testClient {
	return &testClient{password: password, gs2Header: gs2Header, cbData: cbData, nonce: "fyko+d2lbbFgONRv9qkxdawL"}
}

// first returns client-first-message.
func (c *testClient) first() []byte {
	c.clientFirstBare = "n=" + c.username + ",r=" + c.nonce + c.firstExt
	return []byte(c.gs2Header + c.clientFirstBare)
}

// final checks server-first-message and returns client-final-message.
func (c *testClient) final(serverFirst []byte) ([]byte, error) {
	attrs := strings.Split(string(serverFirst), ",")
	if len(attrs) != 3 || !strings.HasPrefix(attrs[0], "r=") || !strings.HasPrefix(attrs[1], "s=") || !strings.HasPrefix(attrs[2], "i=") {
		return nil, fmt.Errorf("malformed server-first-message %q", serverFirst)
	}
	nonce := attrs[0][2:]
	if !strings.HasPrefix(nonce, c.nonce) || len(nonce) == len(c.nonce) {
		return nil, fmt.Errorf("server nonce %q does not extend client nonce %q", nonce, c.nonce)
	}
	for _, ch := range []byte(nonce) {
		if ch < 0x21 || ch > 0x7e || ch == ',' {
			return nil, fmt.Errorf("non-printable nonce %q", nonce)
		}
	}
	salt, err := base64.StdEncoding.DecodeString(attrs[1][2:])
	if err != nil {
		return nil, fmt.Errorf("salt: %w", err)
	}
	iterations, err := strconv.Atoi(attrs[2][2:])
	if err != nil || iterations < 1 {
		return nil, fmt.Errorf("iterations %q", attrs[2])
	}

	header := c.gs2Header
	if c.finalHeader != "" {
		header = c.finalHeader
	}
	cbindInput := []byte(header)
	if strings.HasPrefix(header, "p=") {
		cbindInput = append(cbindInput, c.cbData...)
	}
	withoutProof := "c=" + base64.StdEncoding.EncodeToString(cbindInput) + ",r=" + nonce + c.finalExt
	authMessage := c.clientFirstBare + "," + string(serverFirst) + "," + withoutProof

	salted, err := pbkdf2.Key(sha256.New, c.password, salt, iterations, sha256.Size)
	if err != nil {
		return nil, err
	}
	clientKey := mac(salted, "Client Key")
	storedKey := sha256.Sum256(clientKey)
	clientSignature := mac(storedKey[:], authMessage)
	proof := make([]byte, len(clientKey))
	for i := range proof {
		proof[i] = clientKey[i] ^ clientSignature[i]
	}
	c.serverSignature = mac(mac(salted, "Server Key"), authMessage)
	return []byte(withoutProof + ",p=" + base64.StdEncoding.EncodeToString(proof)), nil
}

// verify checks server-final-message.
func (c *testClient) verify(serverFinal []byte) error {
	v, ok := strings.CutPrefix(string(serverFinal), "v=")
	if !ok {
		return fmt.Errorf("malformed server-final-message %q", serverFinal)
	}
	sig, err := base64.StdEncoding.DecodeString(v)
	if err != nil || !hmac.Equal(sig, c.serverSignature) {
		return errors.New("wrong server signature")
	}
	return nil
}

func mac(key []byte, msg string) []byte {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(msg))
	return m.Sum(nil)
}
