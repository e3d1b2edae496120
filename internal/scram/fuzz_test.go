package scram_test

import (
	"bytes"
	"crypto/hmac"
	"crypto/pbkdf2"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"strings"
	"sync"
	"testing"

	"github.com/dsqlgate/dsqlgate/internal/scram"
)

// fuzzSetups are the connections the fuzz targets run on; the fuzzed mode
// byte picks one.
var fuzzSetups = []struct {
	name      string
	mechanism string
	binding   []byte
	header    string // the gs2 header ClientFinal seeds use
}{
	{"plain TCP", scram.MechanismSCRAM, nil, "n,,"},
	{"TLS without PLUS", scram.MechanismSCRAM, testBinding, "n,,"},
	{"TLS with PLUS", scram.MechanismSCRAMPlus, testBinding, "p=tls-server-end-point,,"},
	{"plain TCP, client supports binding", scram.MechanismSCRAM, nil, "y,,"},
}

// fuzzKeys holds what the oracle needs, derived once: the RFC 7677 verifier
// and its ClientKey, computed with crypto/pbkdf2 rather than the package.
var fuzzKeys = sync.OnceValues(func() (scram.Verifier, []byte) {
	salt, _ := base64.StdEncoding.DecodeString(rfcSaltB64)
	salted, err := pbkdf2.Key(sha256.New, rfcPassword, salt, 4096, sha256.Size)
	if err != nil {
		panic(err)
	}
	return rfcVerifierOnce(), mac(salted, "Client Key")
})

// wantProof is the proof a client that knows the password sends for the
// given AuthMessage parts.
func wantProof(clientFirstBare, serverFirst, withoutProof string) []byte {
	_, clientKey := fuzzKeys()
	storedKey := sha256.Sum256(clientKey)
	signature := mac(storedKey[:], clientFirstBare+","+serverFirst+","+withoutProof)
	proof := make([]byte, len(clientKey))
	for i := range proof {
		proof[i] = clientKey[i] ^ signature[i]
	}
	return proof
}

func fuzzExchange(t testing.TB, mode uint8) (*scram.ServerExchange, []byte) {
	setup := fuzzSetups[int(mode)%len(fuzzSetups)]
	v, _ := fuzzKeys()
	e, err := scram.NewServerExchange(v, setup.mechanism, scram.ServerOptions{ChannelBinding: setup.binding, Rand: fixedNonce()})
	if err != nil {
		t.Fatal(err)
	}
	return e, setup.binding
}

// FuzzClientFirst checks that ClientFirst never panics, fails only with
// ErrProtocol, and that every message it accepts leads to an exchange that a
// client knowing the password completes.
func FuzzClientFirst(f *testing.F) {
	for _, tt := range hostileClientFirst {
		f.Add([]byte(tt.msg), uint8(0))
	}
	f.Add([]byte(rfcClientFirst), uint8(0))
	f.Add([]byte("y,,n=,r=abc,x=1"), uint8(3))
	f.Add([]byte("p=tls-server-end-point,,n=,r=abc"), uint8(2))

	f.Fuzz(func(t *testing.T, msg []byte, mode uint8) {
		e, binding := fuzzExchange(t, mode)
		serverFirst, err := e.ClientFirst(msg)
		if (serverFirst == nil) == (err == nil) {
			t.Fatalf("ClientFirst = %q, %v", serverFirst, err)
		}
		if err != nil {
			if !errors.Is(err, scram.ErrProtocol) {
				t.Fatalf("error %v is not ErrProtocol", err)
			}
			return
		}
		if len(msg) > 4096 || bytes.IndexByte(msg, 0) >= 0 {
			t.Fatalf("accepted %d bytes with NUL %v", len(msg), bytes.IndexByte(msg, 0) >= 0)
		}
		if !bytes.HasPrefix(serverFirst, []byte("r=")) || !bytes.HasSuffix(serverFirst, []byte(rfcServerNonce+",s="+rfcSaltB64+",i=4096")) {
			t.Fatalf("server-first-message %q", serverFirst)
		}
		clientNonce := strings.TrimSuffix(strings.TrimPrefix(string(serverFirst), "r="), rfcServerNonce+",s="+rfcSaltB64+",i=4096")
		if !strings.Contains(string(msg)+",", ",r="+clientNonce+",") {
			t.Fatalf("client nonce %q is not in %q", clientNonce, msg)
		}

		var header string
		for _, h := range []string{"n,,", "y,,", "p=tls-server-end-point,,"} {
			if strings.HasPrefix(string(msg), h) {
				header = h
			}
		}
		if header == "" {
			t.Fatalf("accepted gs2 header of %q", msg)
		}
		cbind := []byte(header)
		if header[0] == 'p' {
			cbind = append(cbind, binding...)
		}
		withoutProof := "c=" + base64.StdEncoding.EncodeToString(cbind) + ",r=" + clientNonce + rfcServerNonce
		proof := wantProof(string(msg[len(header):]), string(serverFirst), withoutProof)
		final := withoutProof + ",p=" + base64.StdEncoding.EncodeToString(proof)
		if len(final) > 4096 {
			return // a nonce this long makes any client-final too long, which is refused by design
		}
		serverFinal, err := e.ClientFinal([]byte(final))
		if err != nil || !bytes.HasPrefix(serverFinal, []byte("v=")) {
			t.Fatalf("ClientFinal after accepted %q = %q, %v", msg, serverFinal, err)
		}
	})
}

// FuzzClientFinal checks that ClientFinal never panics, fails only with
// ErrProtocol or ErrAuthFailed, and accepts only a message whose proof is
// the one a client that knows the password computes for it.
func FuzzClientFinal(f *testing.F) {
	for mode, setup := range fuzzSetups {
		c := newTestClient(rfcPassword, setup.header, setup.binding)
		c.Username, c.Nonce = "user", rfcClientNonce
		e, _ := fuzzExchange(f, uint8(mode))
		serverFirst, err := e.ClientFirst(c.First())
		if err != nil {
			f.Fatal(err)
		}
		final, err := c.Final(serverFirst)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(final, uint8(mode))
	}

	f.Fuzz(func(t *testing.T, msg []byte, mode uint8) {
		setup := fuzzSetups[int(mode)%len(fuzzSetups)]
		e, binding := fuzzExchange(t, mode)
		clientFirstBare := "n=user,r=" + rfcClientNonce
		serverFirst, err := e.ClientFirst([]byte(setup.header + clientFirstBare))
		if err != nil {
			t.Fatal(err)
		}
		serverFinal, err := e.ClientFinal(msg)
		if (serverFinal == nil) == (err == nil) {
			t.Fatalf("ClientFinal = %q, %v", serverFinal, err)
		}
		if err != nil {
			if !errors.Is(err, scram.ErrProtocol) && err != scram.ErrAuthFailed {
				t.Fatalf("error %v is neither ErrProtocol nor ErrAuthFailed", err)
			}
			return
		}

		cbind := []byte(setup.header)
		if setup.header[0] == 'p' {
			cbind = append(cbind, binding...)
		}
		wantStart := "c=" + base64.StdEncoding.EncodeToString(cbind) + ",r=" + rfcClientNonce + rfcServerNonce
		i := bytes.LastIndex(msg, []byte(",p="))
		if i < 0 || !bytes.HasPrefix(msg, []byte(wantStart)) || (len(msg[:i]) > len(wantStart) && msg[len(wantStart)] != ',') {
			t.Fatalf("accepted %q, which does not start with %q", msg, wantStart)
		}
		proof, err := base64.StdEncoding.DecodeString(string(msg[i+3:]))
		if err != nil || !bytes.Equal(proof, wantProof(clientFirstBare, string(serverFirst), string(msg[:i]))) {
			t.Fatalf("accepted %q with a wrong proof", msg)
		}
	})
}

func mac(key []byte, msg string) []byte {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(msg))
	return m.Sum(nil)
}
