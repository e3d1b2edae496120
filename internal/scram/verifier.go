package scram

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"strconv"
	"strings"
)

const (
	// DefaultIterations is the PBKDF2 iteration count of GenerateVerifier and
	// MockVerifier, PostgreSQL's default (scram_iterations).
	DefaultIterations = 4096
	// DefaultSaltLen is the salt length in bytes of GenerateVerifier and
	// MockVerifier, PostgreSQL's SCRAM_DEFAULT_SALT_LEN.
	DefaultSaltLen = 16

	verifierPrefix = MechanismSCRAM + "$"
	redacted       = "<redacted>"
)

// ErrInvalidVerifier reports a verifier that ParseVerifier cannot use. The
// wrapped reason never contains the verifier or any part of it.
var ErrInvalidVerifier = errors.New("scram: invalid verifier")

// Verifier is a stored password verifier as in pg_authid.rolpassword:
//
//	SCRAM-SHA-256$<iterations>:<salt base64>$<StoredKey base64>:<ServerKey base64>
//
// StoredKey and ServerKey are secrets: anyone who has ServerKey can pose as
// the server, and StoredKey together with one observed exchange lets an
// attacker log in. So every way of printing a Verifier (String, %v, %+v, %#v,
// any other verb, slog and JSON) prints the redacted form that only shows
// the iterations and the salt; only Encode writes the keys.
//
// Printing cannot be redacted when a Verifier sits in an unexported field of
// another struct that is printed with %v (fmt cannot call methods there), so
// keep verifiers out of structs that get logged.
type Verifier struct {
	Iterations int    // PBKDF2 iterations, at least 1
	Salt       []byte // not secret; sent to the client
	StoredKey  [32]byte
	ServerKey  [32]byte
}

// ParseVerifier parses the text form that Encode writes and PostgreSQL stores.
// It is strict: the scheme must be SCRAM-SHA-256, the iteration count a
// decimal number from 1 to 2147483647 without sign or leading zero, the salt
// non-empty, and the salt and both keys canonical padded base64 with 32-byte
// keys. Errors wrap ErrInvalidVerifier and never quote s.
func ParseVerifier(s string) (Verifier, error) {
	rest, ok := strings.CutPrefix(s, verifierPrefix)
	if !ok {
		return Verifier{}, fmt.Errorf("%w: scheme is not %s", ErrInvalidVerifier, MechanismSCRAM)
	}
	iterations, rest, ok := strings.Cut(rest, ":")
	if !ok {
		return Verifier{}, fmt.Errorf("%w: missing ':' after the iteration count", ErrInvalidVerifier)
	}
	salt, keys, ok := strings.Cut(rest, "$")
	if !ok {
		return Verifier{}, fmt.Errorf("%w: missing '$' after the salt", ErrInvalidVerifier)
	}
	storedKey, serverKey, ok := strings.Cut(keys, ":")
	if !ok {
		return Verifier{}, fmt.Errorf("%w: missing ':' between the keys", ErrInvalidVerifier)
	}

	var v Verifier
	var err error
	if v.Iterations, err = parseIterations(iterations); err != nil {
		return Verifier{}, err
	}
	if v.Salt, err = decodeCanonical(salt); err != nil || len(v.Salt) == 0 {
		return Verifier{}, fmt.Errorf("%w: salt is not non-empty canonical base64", ErrInvalidVerifier)
	}
	if err := decodeKey(storedKey, &v.StoredKey); err != nil {
		return Verifier{}, fmt.Errorf("%w: stored key is not 32 bytes of canonical base64", ErrInvalidVerifier)
	}
	if err := decodeKey(serverKey, &v.ServerKey); err != nil {
		return Verifier{}, fmt.Errorf("%w: server key is not 32 bytes of canonical base64", ErrInvalidVerifier)
	}
	return v, nil
}

func parseIterations(s string) (int, error) {
	bad := fmt.Errorf("%w: iteration count is not a number from 1 to %d", ErrInvalidVerifier, math.MaxInt32)
	if s == "" || len(s) > 10 || s[0] == '0' {
		return 0, bad
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, bad
		}
	}
	n, err := strconv.Atoi(s)
	if err != nil || n > math.MaxInt32 {
		return 0, bad
	}
	return n, nil
}

// decodeCanonical decodes padded standard base64 and refuses every other
// spelling of the same bytes (the decoder alone skips '\r' and '\n' and
// ignores stray low bits).
func decodeCanonical(s string) ([]byte, error) {
	b, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		return nil, err
	}
	if base64.StdEncoding.EncodeToString(b) != s {
		return nil, errors.New("not canonical base64")
	}
	return b, nil
}

func decodeKey(s string, key *[32]byte) error {
	b, err := decodeCanonical(s)
	if err != nil {
		return err
	}
	if len(b) != len(key) {
		return errors.New("wrong key length")
	}
	copy(key[:], b)
	return nil
}

// NewVerifier derives the verifier of password with the given salt and
// iteration count. The password goes through SASLprep first when it is valid
// UTF-8 without prohibited characters, and is used as raw bytes otherwise,
// exactly as PostgreSQL does, so NewVerifier(p, salt, i) equals the verifier
// PostgreSQL stores for password p with that salt and count.
//
// NewVerifier panics if iterations < 1 or salt is empty (programming errors;
// the panic message holds neither the password nor the salt). The salt is
// copied.
func NewVerifier(password string, salt []byte, iterations int) Verifier {
	if iterations < 1 {
		panic("scram: NewVerifier: iterations must be at least 1")
	}
	if len(salt) == 0 {
		panic("scram: NewVerifier: empty salt")
	}
	salted := saltedPassword(preparePassword(password), salt, iterations)
	clientKey := hmacSHA256(salted[:], "Client Key")
	return Verifier{
		Iterations: iterations,
		Salt:       append([]byte(nil), salt...),
		StoredKey:  sha256.Sum256(clientKey[:]),
		ServerKey:  hmacSHA256(salted[:], "Server Key"),
	}
}

// GenerateVerifier derives the verifier of password with a random 16-byte
// salt and 4096 iterations, as PostgreSQL does for CREATE ROLE ... PASSWORD.
func GenerateVerifier(password string) (Verifier, error) {
	salt := make([]byte, DefaultSaltLen)
	if _, err := rand.Read(salt); err != nil {
		return Verifier{}, fmt.Errorf("scram: generate salt: %w", err)
	}
	return NewVerifier(password, salt, DefaultIterations), nil
}

// MockVerifier is the verifier to run the exchange with when username does
// not exist (or has no usable verifier), as PostgreSQL's mock authentication
// does. Its salt is the first 16 bytes of HMAC-SHA-256(secret, username): the
// same on every attempt for the same user, different per user, and not
// computable without secret, so an attacker cannot tell an unknown user from
// a known one by the salt. Its iterations are DefaultIterations; set the
// field if the gateway's real verifiers use another count.
//
// Its keys are all zero, which no password can produce, and an exchange with
// a zero StoredKey fails with ErrAuthFailed after the same work as a wrong
// password (PostgreSQL's "doomed" exchange); VerifyPassword reports false.
//
// secret must be random (at least 32 bytes), kept for the life of the
// gateway and preferably across restarts, like PostgreSQL's
// mock_authentication_nonce; a salt that changes on restart while real salts
// do not would give unknown users away.
func MockVerifier(username string, secret []byte) Verifier {
	mac := hmac.New(sha256.New, secret)
	mac.Write([]byte(username))
	return Verifier{
		Iterations: DefaultIterations,
		Salt:       mac.Sum(nil)[:DefaultSaltLen],
	}
}

// VerifyPassword reports whether password is the one v was made from, for
// cleartext password authentication (PostgreSQL's
// scram_verify_plain_password). It costs v.Iterations HMAC computations and
// compares in constant time. It is always false for a MockVerifier.
func (v Verifier) VerifyPassword(password string) bool {
	if v.Iterations < 1 || len(v.Salt) == 0 {
		return false
	}
	w := NewVerifier(password, v.Salt, v.Iterations)
	stored := subtle.ConstantTimeCompare(w.StoredKey[:], v.StoredKey[:])
	server := subtle.ConstantTimeCompare(w.ServerKey[:], v.ServerKey[:])
	return stored&server&^v.doomed() == 1
}

// doomed is 1 when no exchange with v may succeed (a MockVerifier's zero
// StoredKey), 0 otherwise; computed in constant time.
func (v Verifier) doomed() int {
	var zero [32]byte
	return subtle.ConstantTimeCompare(v.StoredKey[:], zero[:])
}

// Encode returns the full text form, keys included, for a config file or
// pg_authid. It is the only method that writes the keys.
func (v Verifier) Encode() string {
	return verifierPrefix + strconv.Itoa(v.Iterations) + ":" + base64.StdEncoding.EncodeToString(v.Salt) +
		"$" + base64.StdEncoding.EncodeToString(v.StoredKey[:]) + ":" + base64.StdEncoding.EncodeToString(v.ServerKey[:])
}

// String returns the redacted form: Encode's text with both keys replaced by
// "<redacted>".
func (v Verifier) String() string {
	return verifierPrefix + strconv.Itoa(v.Iterations) + ":" + base64.StdEncoding.EncodeToString(v.Salt) +
		"$" + redacted + ":" + redacted
}

// GoString returns a redacted Go-syntax form, for %#v.
func (v Verifier) GoString() string {
	return fmt.Sprintf("scram.Verifier{Iterations:%d, Salt:%q, StoredKey:%s, ServerKey:%s}",
		v.Iterations, base64.StdEncoding.EncodeToString(v.Salt), redacted, redacted)
}

// Format implements fmt.Formatter so that every verb prints a redacted form:
// %#v prints GoString, %q the quoted String, any other verb String (so %x
// cannot dump the key bytes either).
func (v Verifier) Format(f fmt.State, verb rune) {
	switch {
	case verb == 'v' && f.Flag('#'):
		fmt.Fprint(f, v.GoString())
	case verb == 'q':
		fmt.Fprint(f, strconv.Quote(v.String()))
	default:
		fmt.Fprint(f, v.String())
	}
}

// LogValue implements slog.LogValuer with the redacted form.
func (v Verifier) LogValue() slog.Value {
	return slog.StringValue(v.String())
}

// MarshalJSON writes the redacted form as a JSON string, so that a logger
// that encodes values as JSON (zap.Any, for one) cannot write the keys. Use
// Encode for the stored form.
func (v Verifier) MarshalJSON() ([]byte, error) {
	return json.Marshal(v.String())
}

var (
	_ fmt.Stringer   = Verifier{}
	_ fmt.GoStringer = Verifier{}
	_ fmt.Formatter  = Verifier{}
	_ slog.LogValuer = Verifier{}
	_ json.Marshaler = Verifier{}
)

// saltedPassword is Hi(password, salt, iterations) of RFC 5802 section 2.2:
// PBKDF2 with HMAC-SHA-256 and one 32-byte output block.
func saltedPassword(password string, salt []byte, iterations int) [32]byte {
	mac := hmac.New(sha256.New, []byte(password))
	mac.Write(salt)
	mac.Write(binary.BigEndian.AppendUint32(nil, 1))
	u := mac.Sum(nil)
	var hi [32]byte
	copy(hi[:], u)
	for range iterations - 1 {
		mac.Reset()
		mac.Write(u)
		u = mac.Sum(u[:0])
		subtle.XORBytes(hi[:], hi[:], u)
	}
	return hi
}

func hmacSHA256(key []byte, msg string) [32]byte {
	mac := hmac.New(sha256.New, key)
	mac.Write([]byte(msg))
	var sum [32]byte
	mac.Sum(sum[:0])
	return sum
}
