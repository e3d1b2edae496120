package pgwire

import (
	"bufio"
	"bytes"
	"crypto/hmac"
	"crypto/md5"
	"crypto/pbkdf2"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"

	"go.uber.org/zap"

	"github.com/dsqlgate/dsqlgate/config"
	"github.com/dsqlgate/dsqlgate/internal/scram"
	"github.com/jackc/pgerrcode"
)

// Fuzz targets for authentication (startup.go, users.go), run through
// Server.authenticate against a client played by a script: each client
// message is either what a real client computes from the server's
// challenge (right or wrong password) or arbitrary bytes.

const (
	fuzzPassword = "pencil"
	fuzzMD5User  = "md5user"
	fuzzSCRAM    = "scramuser"
)

// fuzzUsers is the user table the auth targets run against: a SCRAM user
// and an md5 user, both with password fuzzPassword.
var fuzzUsers = sync.OnceValue(func() *userTable {
	v := scram.NewVerifier(fuzzPassword, []byte("fuzz-salt-16byte"), 4096)
	return &userTable{
		byName: map[string]*userEntry{
			fuzzSCRAM:   {name: fuzzSCRAM, auth: config.AuthSCRAM, verifier: v, hasSCRAM: true},
			fuzzMD5User: {name: fuzzMD5User, auth: config.AuthMD5, md5: md5Hash(fuzzPassword, fuzzMD5User)},
		},
		mockSecret: []byte("fuzz mock secret"),
	}
})

// authServer is a Server with the fuzz users, as far as authenticate
// needs one.
func authServer() *Server {
	srv := plainServer(1024)
	srv.users.Store(fuzzUsers())
	return srv
}

// md5Hash is the md5 password PostgreSQL stores: "md5" + hex(md5(password
// + user)).
func md5Hash(password, user string) string {
	sum := md5.Sum([]byte(password + user))
	return "md5" + hex.EncodeToString(sum[:])
}

// serverMessages splits what the server wrote into messages (the
// incomplete rest, if any, is dropped).
func serverMessages(b []byte) [][]byte {
	var out [][]byte
	for len(b) >= 5 {
		n := int(binary.BigEndian.Uint32(b[1:5])) + 1
		if n < 5 || n > len(b) {
			break
		}
		out = append(out, b[:n])
		b = b[n:]
	}
	return out
}

// authResult checks the common properties of an authentication the
// server ran: what it wrote is a sequence of Authentication messages that
// ends with AuthenticationOk exactly when it succeeded, and a failure is a
// FATAL error for the client (or the client leaving) that holds no secret.
func authResult(t *testing.T, conn *scriptConn, err error, secrets ...string) {
	t.Helper()
	msgs := serverMessages(conn.written)
	total := 0
	for _, m := range msgs {
		total += len(m)
		if m[0] != 'R' || len(m) < 9 {
			t.Fatalf("the server wrote %q during authentication", m)
		}
	}
	if total != len(conn.written) {
		t.Fatalf("the server wrote a partial message: %q", conn.written)
	}
	ok := len(msgs) > 0 && bytes.Equal(msgs[len(msgs)-1], authOK)
	if ok != (err == nil) {
		t.Fatalf("authentication returned %v, AuthenticationOk sent: %v", err, ok)
	}
	if err == nil {
		return
	}
	var pe *pgError
	switch {
	case errors.As(err, &pe):
		if pe.Severity != severityFatal || !slices.Contains([]string{pgerrcode.InvalidPassword, pgerrcode.ProtocolViolation, pgerrcode.InvalidAuthorizationSpecification, pgerrcode.FeatureNotSupported}, pe.Code) {
			t.Fatalf("authentication failed with %+v", pe)
		}
	case errors.Is(err, errClientGone):
	default:
		t.Fatalf("authentication failed with %T %v", err, err)
	}
	for _, s := range secrets {
		if strings.Contains(err.Error(), s) {
			t.Fatalf("the error %q holds a secret", err)
		}
	}
}

// passwordFailed is the error a wrong password gets, for user.
func passwordFailed(user string) string {
	return (&pgError{Severity: severityFatal, Code: pgerrcode.InvalidPassword,
		Message: fmt.Sprintf("password authentication failed for user %q", user)}).Error()
}

// FuzzAuthMD5 runs md5 authentication. The client answers the server's
// AuthenticationMD5Password with the response for the right or a wrong
// password, framed right or wrong, or with arbitrary bytes. The server must
// accept exactly a PasswordMessage whose string is the response a client
// computes from the stored hash and the salt the server sent (computed here
// without md5Response), and fail a wrong password as a wrong password. An
// unknown user or a SCRAM user gets the SCRAM exchange instead, which this
// client cannot pass.
func FuzzAuthMD5(f *testing.F) {
	f.Add(uint8(0), uint8(0), []byte(nil))
	f.Add(uint8(1), uint8(0), []byte("junk"))
	f.Add(uint8(2), uint8(0), []byte("p\x00\x00\x00\x08abc\x00"))
	f.Add(uint8(4), uint8(1), []byte(nil))
	f.Add(uint8(0), uint8(2), []byte(nil))
	f.Add(uint8(6), uint8(3), []byte("x"))
	f.Fuzz(func(t *testing.T, reply, who uint8, junk []byte) {
		user := []string{fuzzMD5User, fuzzMD5User, "nobody", fuzzSCRAM}[who%4]
		var expected string
		var clientSent []byte
		script := func(written []byte) []byte {
			msgs := serverMessages(written)
			if len(msgs) != 1 {
				return nil
			}
			m := msgs[0]
			if len(m) != 13 || binary.BigEndian.Uint32(m[5:9]) != 5 {
				return nil // not AuthenticationMD5Password: answer nothing
			}
			salt := m[9:13]
			inner := md5Hash(fuzzPassword, user)[3:]
			sum := md5.Sum(append([]byte(inner), salt...))
			expected = "md5" + hex.EncodeToString(sum[:])
			if got := md5Response(md5Hash(fuzzPassword, user), salt); got != expected {
				t.Fatalf("md5Response = %q, want %q", got, expected)
			}
			wrong := md5.Sum(append([]byte(md5Hash(fuzzPassword+"!", user)[3:]), salt...))
			var out []byte
			switch reply % 8 {
			case 0:
				out = message('p', append([]byte(expected), 0))
			case 1:
				// Bytes after the string: PostgreSQL refuses the packet
				// ("invalid password packet size"); the gateway reads the
				// string and ignores them, and so does the check below.
				out = message('p', append(append([]byte(expected), 0), junk...))
			case 2:
				out = junk
			case 3:
				out = message('p', junk)
			case 4:
				out = message('p', append([]byte("md5"+hex.EncodeToString(wrong[:])), 0))
			case 5:
				out = message('Q', append([]byte(expected), 0))
			case 6:
				out = message('p', []byte(expected))
			case 7:
				out = message('p', append([]byte(strings.ToUpper(expected)), 0))
			}
			if reply&8 != 0 {
				out = append(out, junk...) // pipelined bytes
			}
			clientSent = out
			return out
		}
		conn := &scriptConn{respond: script, chunk: int(reply >> 4)}
		_, err := authServer().authenticate(conn, bufio.NewReader(conn), user, zap.NewNop())

		authResult(t, conn, err, md5Hash(fuzzPassword, user)[3:])
		if expected == "" {
			if err == nil {
				t.Fatalf("user %q authenticated without an md5 challenge", user)
			}
			return
		}
		// What the server must accept: a whole PasswordMessage whose
		// string is the expected response, for a user with an md5 hash.
		want := false
		if user == fuzzMD5User && len(clientSent) >= 5 && clientSent[0] == 'p' {
			n := int(binary.BigEndian.Uint32(clientSent[1:5])) + 1
			if n >= 5 && n <= len(clientSent) && n <= 1024 {
				// PostgreSQL wants the string and nothing after it.
				s, rest, ok := cstringBytes(clientSent[5:n])
				want = ok && len(rest) == 0 && string(s) == expected
			}
		}
		if (err == nil) != want {
			t.Fatalf("client sent %q for %q: authentication error %v, want success %v", clientSent, user, err, want)
		}
		if reply%8 == 4 && err.Error() != passwordFailed(user) {
			t.Fatalf("a wrong password for %q failed with %v", user, err)
		}
		if strings.Contains(fmt.Sprint(err), expected) {
			t.Fatalf("the error holds the expected response: %v", err)
		}
	})
}

// scramKeys caches the SCRAM keys a client derives from a password, salt
// and iteration count (PBKDF2 is slow; the fuzz salts are few).
var scramKeys sync.Map

func clientKeys(password string, salt []byte, iterations int) (clientKey, serverKey []byte) {
	k := password + "\x00" + string(salt) + "\x00" + strconv.Itoa(iterations)
	if v, ok := scramKeys.Load(k); ok {
		keys := v.([2][]byte)
		return keys[0], keys[1]
	}
	salted, err := pbkdf2.Key(sha256.New, password, salt, iterations, sha256.Size)
	if err != nil {
		panic(err)
	}
	keys := [2][]byte{hmacSHA256(salted, "Client Key"), hmacSHA256(salted, "Server Key")}
	scramKeys.Store(k, keys)
	return keys[0], keys[1]
}

func hmacSHA256(key []byte, msg string) []byte {
	h := hmac.New(sha256.New, key)
	h.Write([]byte(msg))
	return h.Sum(nil)
}

// saslInitialResponse is the client's first SASL message; n -1 sends no
// data (the client waits for an empty challenge).
func saslInitialResponse(mech string, data []byte, n int32) []byte {
	b := append([]byte(mech), 0)
	b = binary.BigEndian.AppendUint32(b, uint32(n))
	return message('p', append(b, data...))
}

// Client behaviour bits of FuzzAuthSCRAM's mode.
const (
	scramOwnFirst   = 1 << iota // send a real client-first (else the raw first bytes)
	scramEmptyFirst             // ... with the initial response left empty (length -1)
	scramOwnFinal               // send a real client-final (else the raw final bytes)
	scramCorrupt                // flip a bit of the proof
	scramWrongPass              // derive the proof from a wrong password
	scramUnknown                // log in as a user that does not exist
	scramPlus                   // ask for SCRAM-SHA-256-PLUS, which is not offered without TLS
)

// FuzzAuthSCRAM runs SCRAM-SHA-256 authentication (the SASL framing in
// authSCRAM and the exchange behind it). The client is a real SCRAM
// client, or sends arbitrary bytes for either message, or corrupts its
// proof, uses a wrong password, an unknown user or a mechanism not
// offered. The server must succeed exactly for the real client with the
// right password, prove that it knows the verifier (its signature is the
// one the client computes), and fail a wrong password and an unknown user
// with the same error.
func FuzzAuthSCRAM(f *testing.F) {
	own := uint8(scramOwnFirst | scramOwnFinal)
	f.Add(own, []byte(nil), []byte(nil), uint8(0))
	f.Add(own|scramEmptyFirst, []byte(nil), []byte(nil), uint8(7))
	f.Add(own|scramCorrupt, []byte(nil), []byte{5}, uint8(0))
	f.Add(own|scramWrongPass, []byte(nil), []byte(nil), uint8(0))
	f.Add(own|scramUnknown, []byte(nil), []byte(nil), uint8(1))
	f.Add(own|scramPlus, []byte(nil), []byte(nil), uint8(0))
	f.Add(uint8(scramOwnFinal), saslInitialResponse(scram.MechanismSCRAM, []byte("n,,n=,r=abc"), 11), []byte(nil), uint8(0))
	f.Add(uint8(0), saslInitialResponse(scram.MechanismSCRAM, nil, 5), message('p', []byte("c=biws,r=x,p=AAAA")), uint8(2))
	f.Add(uint8(scramOwnFirst), []byte(nil), message('p', []byte("c=biws,r=x,p=AAAA")), uint8(0))
	f.Fuzz(func(t *testing.T, mode uint8, first, final []byte, chunk uint8) {
		user := fuzzSCRAM
		if mode&scramUnknown != 0 {
			user = "mallory"
		}
		password := fuzzPassword
		if mode&scramWrongPass != 0 {
			password = "pencil!"
		}
		const clientNonce = "fyko+d2lbbFgONRv9qkxdawL"
		clientFirstBare := "n=,r=" + clientNonce
		var serverSignature string // what the server must send on success
		answered := 0
		script := func(written []byte) []byte {
			msgs := serverMessages(written)
			if len(msgs) == answered || len(msgs) == 0 {
				return nil // nothing new to answer
			}
			answered = len(msgs)
			last := msgs[len(msgs)-1]
			if last[0] != 'R' || len(last) < 9 {
				return nil
			}
			data := last[9:]
			switch binary.BigEndian.Uint32(last[5:9]) {
			case 10: // AuthenticationSASL
				if want := scram.MechanismSCRAM + "\x00\x00"; string(data) != want {
					t.Fatalf("AuthenticationSASL offers %q, want %q without TLS", data, want)
				}
				if mode&scramOwnFirst == 0 {
					return first
				}
				mech := scram.MechanismSCRAM
				if mode&scramPlus != 0 {
					mech = scram.MechanismSCRAMPlus
				}
				if mode&scramEmptyFirst != 0 {
					return saslInitialResponse(mech, nil, -1)
				}
				cf := "n,," + clientFirstBare
				return saslInitialResponse(mech, []byte(cf), int32(len(cf)))
			case 11: // AuthenticationSASLContinue
				if len(data) == 0 {
					if mode&scramOwnFirst == 0 {
						return final
					}
					return message('p', []byte("n,,"+clientFirstBare))
				}
				if mode&(scramOwnFirst|scramOwnFinal) != scramOwnFirst|scramOwnFinal {
					return final
				}
				serverFirst := string(data)
				var nonce, salt64, iter string
				for _, attr := range strings.Split(serverFirst, ",") {
					switch {
					case strings.HasPrefix(attr, "r="):
						nonce = attr[2:]
					case strings.HasPrefix(attr, "s="):
						salt64 = attr[2:]
					case strings.HasPrefix(attr, "i="):
						iter = attr[2:]
					}
				}
				salt, err := base64.StdEncoding.DecodeString(salt64)
				iterations, ierr := strconv.Atoi(iter)
				if !strings.HasPrefix(nonce, clientNonce) || len(nonce) == len(clientNonce) || err != nil || len(salt) == 0 || ierr != nil || iterations < 1 {
					t.Fatalf("server-first-message %q", serverFirst)
				}
				clientKey, serverKey := clientKeys(password, salt, iterations)
				withoutProof := "c=biws,r=" + nonce
				authMessage := clientFirstBare + "," + serverFirst + "," + withoutProof
				storedKey := sha256.Sum256(clientKey)
				proof := hmacSHA256(storedKey[:], authMessage)
				for i := range proof {
					proof[i] ^= clientKey[i]
				}
				if mode&scramCorrupt != 0 {
					i := 0
					if len(final) > 0 {
						i = int(final[0]) % len(proof)
					}
					proof[i] ^= 1
				}
				serverSignature = "v=" + base64.StdEncoding.EncodeToString(hmacSHA256(serverKey, authMessage))
				return message('p', []byte(withoutProof+",p="+base64.StdEncoding.EncodeToString(proof)))
			}
			return nil
		}
		conn := &scriptConn{respond: script, chunk: int(chunk)}
		_, err := authServer().authenticate(conn, bufio.NewReader(conn), user, zap.NewNop())
		authResult(t, conn, err, fuzzPassword)

		honest := mode&(scramOwnFirst|scramOwnFinal) == scramOwnFirst|scramOwnFinal && mode&scramPlus == 0 && mode&scramCorrupt == 0
		switch {
		case honest && mode&(scramWrongPass|scramUnknown) == 0:
			if err != nil {
				t.Fatalf("a real client with the right password failed: %v", err)
			}
		case err == nil:
			t.Fatalf("authentication succeeded for mode %08b", mode)
		case honest:
			// A wrong password and an unknown user look the same.
			if err.Error() != passwordFailed(user) {
				t.Fatalf("mode %08b failed with %v, want %s", mode, err, passwordFailed(user))
			}
		}
		if err != nil {
			return
		}
		msgs := serverMessages(conn.written)
		if len(msgs) < 2 {
			t.Fatalf("success after %q", conn.written)
		}
		saslFinal := msgs[len(msgs)-2]
		if binary.BigEndian.Uint32(saslFinal[5:9]) != 12 || string(saslFinal[9:]) != serverSignature {
			t.Fatalf("AuthenticationSASLFinal %q, want %q", saslFinal, serverSignature)
		}
	})
}
