package users

import (
	"crypto/hmac"
	"crypto/md5"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"strconv"
	"strings"

	"github.com/dsqlgate/dsqlgate/internal/scram"
)

// md5Hash is PostgreSQL's stored md5 password: "md5" + hex(md5(password +
// user)).
func md5Hash(password, user string) string {
	sum := md5.Sum([]byte(password + user))
	return "md5" + hex.EncodeToString(sum[:])
}

// fromPassword returns the SCRAM verifier and the md5 hash of a password
// given through password_env. The salt is derived from the password and the
// name rather than drawn at random, so the verifier is the same at every
// start: a user whose salt changed on each restart (while an unknown
// user's mock salt did not, or the reverse) could be told apart from an
// unknown one. Without the password the salt cannot be predicted.
func fromPassword(password, name string) (scram.Verifier, string) {
	mac := hmac.New(sha256.New, []byte(password))
	mac.Write([]byte("dsqlgate password_env salt\x00" + name))
	salt := mac.Sum(nil)[:scram.DefaultSaltLen]
	return scram.NewVerifier(password, salt, scram.DefaultIterations), md5Hash(password, name)
}

const (
	verifierPrefix = "SCRAM-SHA-256$"
	// verifierForm is the shape of a SCRAM verifier, for messages.
	verifierForm = "SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>, as `dsqlgate passwd NAME` prints"
)

// checkVerifier checks the syntax of a SCRAM-SHA-256 verifier as pg_authid
// stores it and returns what is wrong, or "". It accepts exactly what
// scram.ParseVerifier accepts, and says more precisely what is wrong. The
// reason never quotes any part of v.
func checkVerifier(v string) string {
	rest, ok := strings.CutPrefix(v, verifierPrefix)
	if !ok {
		return "it must start with SCRAM-SHA-256$ (store a verifier, never a password)"
	}
	iterSalt, keys, ok1 := strings.Cut(rest, "$")
	iter, salt, ok2 := strings.Cut(iterSalt, ":")
	storedKey, serverKey, ok3 := strings.Cut(keys, ":")
	if !ok1 || !ok2 || !ok3 {
		return "expected " + verifierForm
	}
	if n, err := strconv.ParseInt(iter, 10, 32); err != nil || n < 1 {
		return "the iteration count must be a whole number from 1 to 2147483647"
	}
	if b, err := base64.StdEncoding.DecodeString(salt); err != nil || len(b) == 0 {
		return "the salt must be non-empty base64"
	}
	if b, err := base64.StdEncoding.DecodeString(storedKey); err != nil || len(b) != 32 {
		return "StoredKey must be 32 bytes in base64"
	}
	if b, err := base64.StdEncoding.DecodeString(serverKey); err != nil || len(b) != 32 {
		return "ServerKey must be 32 bytes in base64"
	}
	// The finer points (canonical base64, no sign or leading zero in the
	// count): ParseVerifier's reasons never quote v either.
	if _, err := scram.ParseVerifier(v); err != nil {
		return strings.TrimPrefix(strings.TrimPrefix(err.Error(), scram.ErrInvalidVerifier.Error()), ": ")
	}
	return ""
}

// md5Form is the shape of an md5 password hash, for messages.
const md5Form = `expected "md5" and 32 lower-case hex digits: the md5 of the password followed by the user name, as PostgreSQL stores it (store the hash, never the password)`

// checkMD5 checks the syntax of an md5 password hash as pg_authid stores it
// and returns what is wrong, or "". The reason never quotes any part of s.
func checkMD5(s string) string {
	if strings.HasPrefix(s, verifierPrefix) {
		return "it is a SCRAM verifier: put it in verifier"
	}
	digits, ok := strings.CutPrefix(s, "md5")
	if !ok || len(digits) != 2*md5.Size {
		return md5Form
	}
	for i := range len(digits) {
		if c := digits[i]; !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return "the 32 digits after md5 must be lower-case hex"
		}
	}
	return ""
}
