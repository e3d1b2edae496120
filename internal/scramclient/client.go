// Package scramclient is the client side of SCRAM-SHA-256 and
// SCRAM-SHA-256-PLUS with tls-server-end-point channel binding (RFC 5802,
// RFC 7677, RFC 5929), for the tests and the benchmark driver. It is
// written from the RFCs and shares no code with internal/scram, the server
// side it tests, so that a bug in one cannot hide behind the same bug in
// the other. It does no SASLprep: callers give it prepared (ASCII)
// passwords.
//
// Its exported fields let a test play a broken or hostile client: other
// gs2 headers, extensions, a forged nonce or binding.
package scramclient

import (
	"crypto/hmac"
	"crypto/pbkdf2"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// Mechanism names.
const (
	SCRAM     = "SCRAM-SHA-256"
	SCRAMPlus = "SCRAM-SHA-256-PLUS"
)

// Client is one exchange. Set the fields, then call First, Final and
// Verify in that order.
type Client struct {
	Password string
	// GS2Header is "n,," (no binding, the default when empty), "y,,"
	// (the client could bind but thinks the server cannot) or
	// "p=tls-server-end-point,," (binding to CBData).
	GS2Header string
	CBData    []byte
	// Nonce is the client's part of the nonce; empty means a random one.
	Nonce string
	// Username is sent in n=; PostgreSQL ignores it and libpq sends "".
	Username string
	// FirstExt is appended to client-first-message-bare (",x=1"),
	// FinalExt to client-final-message-without-proof; FinalHeader, when
	// set, is the gs2 header repeated in c= instead of GS2Header.
	FirstExt, FinalExt, FinalHeader string
	// Edit, if set, may change the nonce or the channel-binding input
	// before the proof is computed over them.
	Edit func(nonce *string, cbindInput *[]byte)
	// SaltedPassword, if set, derives SaltedPassword (a cache shared by
	// many clients); nil runs PBKDF2 each time.
	SaltedPassword func(salt []byte, iterations int) ([]byte, error)

	clientFirstBare string
	serverSignature []byte
}

// New starts an exchange for password: SCRAM-SHA-256 without binding, or,
// with cbData, SCRAM-SHA-256-PLUS bound to it.
func New(password string, cbData []byte) *Client {
	c := &Client{Password: password}
	if cbData != nil {
		c.GS2Header, c.CBData = "p=tls-server-end-point,,", cbData
	}
	return c
}

// TLSServerEndPoint is RFC 5929's binding data for a certificate signed
// with SHA-256 (or MD5 or SHA-1, which the RFC maps to SHA-256): the
// SHA-256 of the certificate.
func TLSServerEndPoint(cert *x509.Certificate) []byte {
	sum := sha256.Sum256(cert.Raw)
	return sum[:]
}

func (c *Client) header() string {
	if c.GS2Header == "" {
		return "n,,"
	}
	return c.GS2Header
}

// Mechanism is the mechanism the gs2 header asks for.
func (c *Client) Mechanism() string {
	if strings.HasPrefix(c.header(), "p=") {
		return SCRAMPlus
	}
	return SCRAM
}

// First returns client-first-message.
func (c *Client) First() []byte {
	if c.Nonce == "" {
		b := make([]byte, 18)
		rand.Read(b)
		c.Nonce = base64.StdEncoding.EncodeToString(b)
	}
	c.clientFirstBare = "n=" + c.Username + ",r=" + c.Nonce + c.FirstExt
	return []byte(c.header() + c.clientFirstBare)
}

// Final checks server-first-message and returns client-final-message.
func (c *Client) Final(serverFirst []byte) ([]byte, error) {
	attrs := strings.Split(string(serverFirst), ",")
	if len(attrs) != 3 || !strings.HasPrefix(attrs[0], "r=") || !strings.HasPrefix(attrs[1], "s=") || !strings.HasPrefix(attrs[2], "i=") {
		return nil, fmt.Errorf("malformed server-first-message %q", serverFirst)
	}
	nonce := attrs[0][2:]
	if !strings.HasPrefix(nonce, c.Nonce) || len(nonce) == len(c.Nonce) {
		return nil, fmt.Errorf("server nonce %q does not extend client nonce %q", nonce, c.Nonce)
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

	header := c.header()
	if c.FinalHeader != "" {
		header = c.FinalHeader
	}
	cbindInput := []byte(header)
	if strings.HasPrefix(header, "p=") {
		cbindInput = append(cbindInput, c.CBData...)
	}
	if c.Edit != nil {
		c.Edit(&nonce, &cbindInput)
	}
	withoutProof := "c=" + base64.StdEncoding.EncodeToString(cbindInput) + ",r=" + nonce + c.FinalExt
	authMessage := c.clientFirstBare + "," + string(serverFirst) + "," + withoutProof

	derive := c.SaltedPassword
	if derive == nil {
		derive = func(salt []byte, iterations int) ([]byte, error) {
			return pbkdf2.Key(sha256.New, c.Password, salt, iterations, sha256.Size)
		}
	}
	salted, err := derive(salt, iterations)
	if err != nil {
		return nil, err
	}
	clientKey := mac(salted, "Client Key")
	storedKey := sha256.Sum256(clientKey)
	signature := mac(storedKey[:], authMessage)
	proof := make([]byte, len(clientKey))
	for i := range proof {
		proof[i] = clientKey[i] ^ signature[i]
	}
	c.serverSignature = mac(mac(salted, "Server Key"), authMessage)
	return []byte(withoutProof + ",p=" + base64.StdEncoding.EncodeToString(proof)), nil
}

// Verify checks server-final-message: the server knew the password too.
func (c *Client) Verify(serverFinal []byte) error {
	v, ok := strings.CutPrefix(strings.TrimSpace(string(serverFinal)), "v=")
	if !ok {
		return fmt.Errorf("malformed server-final-message %q", serverFinal)
	}
	sig, err := base64.StdEncoding.DecodeString(v)
	if err != nil || c.serverSignature == nil || !hmac.Equal(sig, c.serverSignature) {
		return errors.New("wrong server signature")
	}
	return nil
}

func mac(key []byte, msg string) []byte {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(msg))
	return m.Sum(nil)
}
