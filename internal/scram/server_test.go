package scram_test

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"regexp"
	"strings"
	"sync"
	"testing"
	"testing/iotest"

	"github.com/dsqlgate/dsqlgate/internal/scram"
	"github.com/dsqlgate/dsqlgate/internal/scramclient"
	"github.com/google/go-cmp/cmp"
)

// The exchange of RFC 7677 section 3 (user "user", password "pencil").
const (
	rfcPassword    = "pencil"
	rfcSaltB64     = "W22ZaJ0SNY7soEsUEjb6gQ=="
	rfcClientNonce = "rOprNGfwEbeRWgbNEkqO"
	rfcServerNonce = "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0"
	rfcClientFirst = "n,,n=user,r=rOprNGfwEbeRWgbNEkqO"
	rfcServerFirst = "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096"
	rfcClientFinal = "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ="
	rfcServerFinal = "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="
)

// testBinding stands for the tls-server-end-point data of a TLS connection.
var testBinding = bytes.Repeat([]byte{0xcb}, sha256.Size)

func rfcSalt(t testing.TB) []byte {
	t.Helper()
	salt, err := base64.StdEncoding.DecodeString(rfcSaltB64)
	if err != nil {
		t.Fatal(err)
	}
	return salt
}

// rfcVerifier is the verifier of RFC 7677's user, derived once: 4096
// iterations take a while under the race detector.
func rfcVerifier(t testing.TB) scram.Verifier {
	t.Helper()
	return rfcVerifierOnce()
}

var rfcVerifierOnce = sync.OnceValue(func() scram.Verifier {
	salt, err := base64.StdEncoding.DecodeString(rfcSaltB64)
	if err != nil {
		panic(err)
	}
	return scram.NewVerifier(rfcPassword, salt, 4096)
})

// fixedNonce makes the server use the RFC 7677 server nonce.
func fixedNonce() io.Reader { return strings.NewReader(rfcServerNonce) }

func newExchange(t testing.TB, v scram.Verifier, mechanism string, opts scram.ServerOptions) *scram.ServerExchange {
	t.Helper()
	e, err := scram.NewServerExchange(v, mechanism, opts)
	if err != nil {
		t.Fatalf("NewServerExchange: %v", err)
	}
	return e
}

func TestRFC7677Vector(t *testing.T) {
	e := newExchange(t, rfcVerifier(t), scram.MechanismSCRAM, scram.ServerOptions{Rand: fixedNonce()})
	serverFirst, err := e.ClientFirst([]byte(rfcClientFirst))
	if err != nil {
		t.Fatalf("ClientFirst: %v", err)
	}
	if string(serverFirst) != rfcServerFirst {
		t.Fatalf("server-first-message:\n got %s\nwant %s", serverFirst, rfcServerFirst)
	}
	serverFinal, err := e.ClientFinal([]byte(rfcClientFinal))
	if err != nil {
		t.Fatalf("ClientFinal: %v", err)
	}
	if string(serverFinal) != rfcServerFinal {
		t.Fatalf("server-final-message:\n got %s\nwant %s", serverFinal, rfcServerFinal)
	}
}

// TestRFC7677VectorIndependentClient checks that the test client, which
// shares no code with the package, computes the RFC's client proof from the
// password, and accepts the server's signature: the keys NewVerifier derives
// are the ones the RFC's exchange was computed with.
func TestRFC7677VectorIndependentClient(t *testing.T) {
	c := newTestClient(rfcPassword, "n,,", nil)
	c.Username, c.Nonce = "user", rfcClientNonce
	if got := string(c.First()); got != rfcClientFirst {
		t.Fatalf("client-first-message %s", got)
	}
	final, err := c.Final([]byte(rfcServerFirst))
	if err != nil {
		t.Fatal(err)
	}
	if string(final) != rfcClientFinal {
		t.Fatalf("client-final-message:\n got %s\nwant %s", final, rfcClientFinal)
	}
	if err := c.Verify([]byte(rfcServerFinal)); err != nil {
		t.Fatal(err)
	}
}

func TestMechanisms(t *testing.T) {
	tests := []struct {
		name string
		tls  bool
		want []string
	}{
		{"plain TCP", false, []string{"SCRAM-SHA-256"}},
		{"TLS advertises PLUS first", true, []string{"SCRAM-SHA-256-PLUS", "SCRAM-SHA-256"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if diff := cmp.Diff(tt.want, scram.Mechanisms(tt.tls)); diff != "" {
				t.Errorf("Mechanisms(%v) (-want +got):\n%s", tt.tls, diff)
			}
		})
	}
}

func TestNewServerExchange(t *testing.T) {
	v := rfcVerifier(t)
	tests := []struct {
		name      string
		verifier  scram.Verifier
		mechanism string
		binding   []byte
		wantErr   error
	}{
		{"SCRAM over plain TCP", v, scram.MechanismSCRAM, nil, nil},
		{"SCRAM over TLS", v, scram.MechanismSCRAM, testBinding, nil},
		{"PLUS over TLS", v, scram.MechanismSCRAMPlus, testBinding, nil},
		{"PLUS without binding data", v, scram.MechanismSCRAMPlus, nil, scram.ErrProtocol},
		{"PLUS with empty binding data", v, scram.MechanismSCRAMPlus, []byte{}, scram.ErrProtocol},
		{"SCRAM-SHA-1", v, "SCRAM-SHA-1", nil, scram.ErrProtocol},
		{"lower case name", v, "scram-sha-256", nil, scram.ErrProtocol},
		{"empty mechanism", v, "", nil, scram.ErrProtocol},
		{"zero verifier", scram.Verifier{}, scram.MechanismSCRAM, nil, scram.ErrInvalidVerifier},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e, err := scram.NewServerExchange(tt.verifier, tt.mechanism, scram.ServerOptions{ChannelBinding: tt.binding})
			if !errors.Is(err, tt.wantErr) || (err == nil) != (tt.wantErr == nil) {
				t.Fatalf("error %v, want %v", err, tt.wantErr)
			}
			if (e == nil) == (err == nil) {
				t.Fatalf("exchange %v with error %v", e, err)
			}
		})
	}
}

// runExchange runs a whole exchange between e and c and returns the error of
// the step that failed, if any, with the step's name.
func runExchange(e *scram.ServerExchange, c *scramclient.Client) (step string, err error) {
	serverFirst, err := e.ClientFirst(c.First())
	if err != nil {
		return "ClientFirst", err
	}
	final, err := c.Final(serverFirst)
	if err != nil {
		return "client final", err
	}
	serverFinal, err := e.ClientFinal(final)
	if err != nil {
		return "ClientFinal", err
	}
	return "client verify", c.Verify(serverFinal)
}

// TestExchangeChannelBinding covers the gs2 header against the mechanism and
// the connection, as PostgreSQL's read_client_first_message and
// read_client_final_message decide.
func TestExchangeChannelBinding(t *testing.T) {
	otherBinding := bytes.Repeat([]byte{0x5a}, sha256.Size)
	tests := []struct {
		name          string
		mechanism     string
		serverBinding []byte // nil: plain TCP
		header        string
		clientBinding []byte
		finalHeader   string // gs2 header the client repeats in c=; "" for header
		wantStep      string // "" for success
		wantErr       error
		notErr        error // the error must not also be this one
	}{
		{name: "n over plain TCP", mechanism: scram.MechanismSCRAM, header: "n,,"},
		{name: "n over TLS, client without channel binding", mechanism: scram.MechanismSCRAM, serverBinding: testBinding, header: "n,,"},
		{name: "y over plain TCP", mechanism: scram.MechanismSCRAM, header: "y,,"},
		{name: "y over TLS is a downgrade", mechanism: scram.MechanismSCRAM, serverBinding: testBinding, header: "y,,",
			wantStep: "ClientFirst", wantErr: scram.ErrChannelBinding},
		{name: "p with PLUS", mechanism: scram.MechanismSCRAMPlus, serverBinding: testBinding,
			header: "p=tls-server-end-point,,", clientBinding: testBinding},
		{name: "p with PLUS but another certificate (man in the middle)", mechanism: scram.MechanismSCRAMPlus, serverBinding: testBinding,
			header: "p=tls-server-end-point,,", clientBinding: otherBinding, wantStep: "ClientFinal", wantErr: scram.ErrChannelBinding},
		{name: "p with PLUS but no binding data in c=", mechanism: scram.MechanismSCRAMPlus, serverBinding: testBinding,
			header: "p=tls-server-end-point,,", clientBinding: nil, wantStep: "ClientFinal", wantErr: scram.ErrChannelBinding},
		{name: "p without PLUS", mechanism: scram.MechanismSCRAM, serverBinding: testBinding,
			header: "p=tls-server-end-point,,", clientBinding: testBinding, wantStep: "ClientFirst", wantErr: scram.ErrProtocol, notErr: scram.ErrChannelBinding},
		{name: "n with PLUS", mechanism: scram.MechanismSCRAMPlus, serverBinding: testBinding, header: "n,,",
			wantStep: "ClientFirst", wantErr: scram.ErrProtocol, notErr: scram.ErrChannelBinding},
		{name: "y with PLUS", mechanism: scram.MechanismSCRAMPlus, serverBinding: testBinding, header: "y,,",
			wantStep: "ClientFirst", wantErr: scram.ErrProtocol, notErr: scram.ErrChannelBinding},
		{name: "p=tls-unique refused", mechanism: scram.MechanismSCRAMPlus, serverBinding: testBinding,
			header: "p=tls-unique,,", clientBinding: testBinding, wantStep: "ClientFirst", wantErr: scram.ErrProtocol},
		{name: "p=tls-exporter refused", mechanism: scram.MechanismSCRAMPlus, serverBinding: testBinding,
			header: "p=tls-exporter,,", clientBinding: testBinding, wantStep: "ClientFirst", wantErr: scram.ErrProtocol},
		{name: "p= with empty type refused", mechanism: scram.MechanismSCRAMPlus, serverBinding: testBinding,
			header: "p=,,", clientBinding: testBinding, wantStep: "ClientFirst", wantErr: scram.ErrProtocol},
		{name: "authzid refused", mechanism: scram.MechanismSCRAM, header: "n,a=admin,",
			wantStep: "ClientFirst", wantErr: scram.ErrFeatureNotSupported},
		{name: "authzid with PLUS refused", mechanism: scram.MechanismSCRAMPlus, serverBinding: testBinding,
			header: "p=tls-server-end-point,a=admin,", clientBinding: testBinding, wantStep: "ClientFirst", wantErr: scram.ErrFeatureNotSupported},
		{name: "c= repeats y where client-first said n", mechanism: scram.MechanismSCRAM, header: "n,,", finalHeader: "y,,",
			wantStep: "ClientFinal", wantErr: scram.ErrProtocol, notErr: scram.ErrChannelBinding},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newExchange(t, rfcVerifier(t), tt.mechanism, scram.ServerOptions{ChannelBinding: tt.serverBinding})
			c := newTestClient(rfcPassword, tt.header, tt.clientBinding)
			c.FinalHeader = tt.finalHeader
			step, err := runExchange(e, c)
			if tt.wantStep == "" {
				if err != nil {
					t.Fatalf("%s: %v", step, err)
				}
				return
			}
			if step != tt.wantStep || !errors.Is(err, tt.wantErr) {
				t.Fatalf("%s: %v; want %s: %v", step, err, tt.wantStep, tt.wantErr)
			}
			if tt.notErr != nil && errors.Is(err, tt.notErr) {
				t.Fatalf("%s: %v is also %v", step, err, tt.notErr)
			}
		})
	}
}

func TestExchangeClientFirstVariants(t *testing.T) {
	tests := []struct {
		name     string
		username string
		nonce    string
	}{
		{"empty username as libpq sends", "", "fyko+d2lbbFgONRv9qkxdawL"},
		{"username is ignored", "somebody-else", "fyko+d2lbbFgONRv9qkxdawL"},
		{"escaped username", "a=2Cb=3Dc", "fyko+d2lbbFgONRv9qkxdawL"},
		{"one-character nonce", "", "x"},
		{"nonce of every printable character", "", printableASCII()},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newExchange(t, rfcVerifier(t), scram.MechanismSCRAM, scram.ServerOptions{})
			c := newTestClient(rfcPassword, "n,,", nil)
			c.Username, c.Nonce = tt.username, tt.nonce
			if step, err := runExchange(e, c); err != nil {
				t.Fatalf("%s: %v", step, err)
			}
		})
	}
}

func TestExchangeExtensions(t *testing.T) {
	t.Run("optional extension after the client nonce is ignored", func(t *testing.T) {
		e := newExchange(t, rfcVerifier(t), scram.MechanismSCRAM, scram.ServerOptions{})
		c := newTestClient(rfcPassword, "n,,", nil)
		c.FirstExt = ",x=whatever"
		if step, err := runExchange(e, c); err != nil {
			t.Fatalf("%s: %v", step, err)
		}
	})
	t.Run("optional extension before the proof is ignored but signed", func(t *testing.T) {
		e := newExchange(t, rfcVerifier(t), scram.MechanismSCRAM, scram.ServerOptions{})
		c := newTestClient(rfcPassword, "n,,", nil)
		c.FinalExt = ",x=1,y=2"
		if step, err := runExchange(e, c); err != nil {
			t.Fatalf("%s: %v", step, err)
		}
	})
	t.Run("mandatory extension refused", func(t *testing.T) {
		e := newExchange(t, rfcVerifier(t), scram.MechanismSCRAM, scram.ServerOptions{})
		_, err := e.ClientFirst([]byte("n,,m=ext,n=,r=abc"))
		if !errors.Is(err, scram.ErrFeatureNotSupported) {
			t.Fatalf("error %v, want ErrFeatureNotSupported", err)
		}
	})
}

func printableASCII() string {
	var b strings.Builder
	for c := byte(0x21); c <= 0x7e; c++ {
		if c != ',' {
			b.WriteByte(c)
		}
	}
	return b.String()
}

// hostileClientFirst are client-first-messages that must fail with
// ErrProtocol, never panic, and never produce a server-first-message.
var hostileClientFirst = []struct {
	name string
	msg  string
}{
	{"empty", ""},
	{"only the flag", "n"},
	{"flag and comma", "n,"},
	{"gs2 header only", "n,,"},
	{"username without =", "n,,n"},
	{"no nonce", "n,,n="},
	{"no nonce after comma", "n,,n=,"},
	{"nonce without =", "n,,n=,r"},
	{"empty nonce", "n,,n=,r="},
	{"unknown flag", "x,,n=,r=abc"},
	{"upper case flag", "N,,n=,r=abc"},
	{"leading space", " n,,n=,r=abc"},
	{"no gs2 header", "n=,r=abc"},
	{"missing username", "n,,r=abc"},
	{"upper case username attribute", "n,,N=,r=abc"},
	{"wrong attribute for nonce", "n,,n=,x=abc"},
	{"nonce with DEL", "n,,n=,r=ab\x7fc"},
	{"nonce with space", "n,,n=,r=ab c"},
	{"nonce with tab", "n,,n=,r=ab\tc"},
	{"nonce with UTF-8", "n,,n=,r=ab\xc3\xa9c"},
	{"nonce with invalid byte", "n,,n=,r=ab\xffc"},
	{"NUL in nonce", "n,,n=,r=abc\x00def"},
	{"NUL in username", "n,,n=a\x00b,r=abc"},
	{"only NUL", "\x00"},
	{"trailing comma", "n,,n=,r=abc,"},
	{"extension with digit name", "n,,n=,r=abc,1=x"},
	{"extension without name", "n,,n=,r=abc,=x"},
	{"extension without =", "n,,n=,r=abc,x"},
	{"empty field between extensions", "n,,n=,r=abc,,x=1"},
	{"authzid on the wrong place", "n,,,n=,r=abc"},
	{"p flag without PLUS", "p=tls-server-end-point,,n=,r=abc"},
	{"p flag without =", "p,,n=,r=abc"},
	{"oversized nonce", "n,,n=,r=" + strings.Repeat("a", 5000)},
	{"oversized username", "n,,n=" + strings.Repeat("u", 4096) + ",r=abc"},
	{"many commas", "n,," + strings.Repeat(",", 4000)},
	{"client-final sent first", rfcClientFinal},
}

func TestClientFirstHostile(t *testing.T) {
	secrets := verifierSecrets(rfcVerifier(t))
	t.Run("nil", func(t *testing.T) {
		e := newExchange(t, rfcVerifier(t), scram.MechanismSCRAM, scram.ServerOptions{})
		if out, err := e.ClientFirst(nil); !errors.Is(err, scram.ErrProtocol) || out != nil {
			t.Fatalf("ClientFirst(nil) = %q, %v; want ErrProtocol", out, err)
		}
	})
	for _, tt := range hostileClientFirst {
		t.Run(tt.name, func(t *testing.T) {
			e := newExchange(t, rfcVerifier(t), scram.MechanismSCRAM, scram.ServerOptions{})
			out, err := e.ClientFirst([]byte(tt.msg))
			if !errors.Is(err, scram.ErrProtocol) || out != nil {
				t.Fatalf("ClientFirst(%q) = %q, %v; want ErrProtocol", tt.msg, out, err)
			}
			assertNoSecrets(t, err, secrets...)
		})
	}
}

// rfcFinalWith replaces the proof of the RFC's client-final-message.
func rfcFinalWith(proof string) string {
	return "c=biws,r=" + rfcClientNonce + rfcServerNonce + ",p=" + proof
}

const rfcProof = "dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ="

func TestClientFinalHostile(t *testing.T) {
	nonce := rfcClientNonce + rfcServerNonce
	tests := []struct {
		name string
		msg  string
	}{
		{"empty", ""},
		{"only NUL", "\x00"},
		{"NUL inside", "c=biws,r=" + nonce + "\x00,p=" + rfcProof},
		{"channel binding only", "c=biws"},
		{"no proof", "c=biws,r=" + nonce},
		{"no proof after extension", "c=biws,r=" + nonce + ",x=1"},
		{"empty proof", rfcFinalWith("")},
		{"proof not base64", rfcFinalWith("!!!!" + rfcProof[4:])},
		{"proof without padding", rfcFinalWith(strings.TrimRight(rfcProof, "="))},
		{"proof of 31 bytes", rfcFinalWith(base64.StdEncoding.EncodeToString(make([]byte, 31)))},
		{"proof of 33 bytes", rfcFinalWith(base64.StdEncoding.EncodeToString(make([]byte, 33)))},
		{"garbage after the proof", rfcFinalWith(rfcProof) + ",x=1"},
		{"trailing comma", rfcFinalWith(rfcProof) + ","},
		{"malformed extension", "c=biws,r=" + nonce + ",1=x,p=" + rfcProof},
		{"order swapped", "r=" + nonce + ",c=biws,p=" + rfcProof},
		{"no channel binding", "r=" + nonce + ",p=" + rfcProof},
		{"empty channel binding", "c=,r=" + nonce + ",p=" + rfcProof},
		{"channel binding of y", "c=eSws,r=" + nonce + ",p=" + rfcProof},
		{"channel binding of p", "c=" + base64.StdEncoding.EncodeToString([]byte("p=tls-server-end-point,,")) + ",r=" + nonce + ",p=" + rfcProof},
		{"channel binding lower case", "c=BIWS,r=" + nonce + ",p=" + rfcProof},
		{"client nonce only", "c=biws,r=" + rfcClientNonce + ",p=" + rfcProof},
		{"server nonce changed", "c=biws,r=" + nonce[:len(nonce)-1] + "x,p=" + rfcProof},
		{"client nonce changed", "c=biws,r=x" + nonce[1:] + ",p=" + rfcProof},
		{"nonce extended", "c=biws,r=" + nonce + "x,p=" + rfcProof},
		{"empty nonce", "c=biws,r=,p=" + rfcProof},
		{"oversized", rfcFinalWith(rfcProof) + strings.Repeat("x", 4096)},
		{"client-first sent again", rfcClientFirst},
	}
	secrets := verifierSecrets(rfcVerifier(t))
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newExchange(t, rfcVerifier(t), scram.MechanismSCRAM, scram.ServerOptions{Rand: fixedNonce()})
			if _, err := e.ClientFirst([]byte(rfcClientFirst)); err != nil {
				t.Fatal(err)
			}
			out, err := e.ClientFinal([]byte(tt.msg))
			if !errors.Is(err, scram.ErrProtocol) || out != nil {
				t.Fatalf("ClientFinal(%q) = %q, %v; want ErrProtocol", tt.msg, out, err)
			}
			assertNoSecrets(t, err, append(secrets, rfcProof)...)
		})
	}
}

func TestWrongPassword(t *testing.T) {
	tests := []struct {
		name     string
		password string
	}{
		{"wrong password", "pencil2"},
		{"empty password", ""},
		{"case differs", "Pencil"},
		{"right password with trailing space", "pencil "},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newExchange(t, rfcVerifier(t), scram.MechanismSCRAM, scram.ServerOptions{})
			step, err := runExchange(e, newTestClient(tt.password, "n,,", nil))
			if step != "ClientFinal" || err != scram.ErrAuthFailed {
				t.Fatalf("%s: %v; want ClientFinal: ErrAuthFailed (unwrapped)", step, err)
			}
		})
	}
	t.Run("proof with one bit flipped", func(t *testing.T) {
		proof, _ := base64.StdEncoding.DecodeString(rfcProof)
		proof[7] ^= 0x10
		e := newExchange(t, rfcVerifier(t), scram.MechanismSCRAM, scram.ServerOptions{Rand: fixedNonce()})
		if _, err := e.ClientFirst([]byte(rfcClientFirst)); err != nil {
			t.Fatal(err)
		}
		if _, err := e.ClientFinal([]byte(rfcFinalWith(base64.StdEncoding.EncodeToString(proof)))); err != scram.ErrAuthFailed {
			t.Fatalf("error %v, want ErrAuthFailed", err)
		}
	})
}

var serverFirstShape = regexp.MustCompile(`^r=fyko\+d2lbbFgONRv9qkxdawL[!-+\--~]{30},s=[A-Za-z0-9+/]{22}==,i=4096$`)

// TestUnknownUser checks that an unknown user, run with MockVerifier, sees
// what a known user with a wrong password sees: the same message shapes, a
// stable salt, and the same error at the same step.
func TestUnknownUser(t *testing.T) {
	secret := []byte("0123456789abcdef0123456789abcdef")
	known, err := scram.GenerateVerifier("right password")
	if err != nil {
		t.Fatal(err)
	}

	attempt := func(v scram.Verifier, password string) (serverFirst string, err error) {
		e := newExchange(t, v, scram.MechanismSCRAM, scram.ServerOptions{})
		c := newTestClient(password, "n,,", nil)
		sf, err := e.ClientFirst(c.First())
		if err != nil {
			return "", err
		}
		final, err := c.Final(sf)
		if err != nil {
			t.Fatal(err)
		}
		out, err := e.ClientFinal(final)
		if out != nil {
			t.Fatalf("server-final-message %q for a failed attempt", out)
		}
		return string(sf), err
	}
	salt := func(serverFirst string) string { return strings.Split(serverFirst, ",")[1] }

	knownFirst, knownErr := attempt(known, "wrong password")
	mockFirst1, mockErr1 := attempt(scram.MockVerifier("nobody", secret), "wrong password")
	mockFirst2, mockErr2 := attempt(scram.MockVerifier("nobody", secret), "another password")
	otherFirst, _ := attempt(scram.MockVerifier("somebody", secret), "x")
	otherSecretFirst, _ := attempt(scram.MockVerifier("nobody", []byte("another secret of 32 bytes......")), "x")

	for _, sf := range []string{knownFirst, mockFirst1, mockFirst2, otherFirst} {
		if !serverFirstShape.MatchString(sf) {
			t.Errorf("server-first-message %q does not have the shape of a real one", sf)
		}
	}
	if knownErr != scram.ErrAuthFailed || mockErr1 != scram.ErrAuthFailed || mockErr2 != scram.ErrAuthFailed {
		t.Errorf("errors %v, %v, %v; want ErrAuthFailed for all", knownErr, mockErr1, mockErr2)
	}
	if salt(mockFirst1) != salt(mockFirst2) {
		t.Errorf("salt changed between attempts: %s, %s", salt(mockFirst1), salt(mockFirst2))
	}
	if salt(mockFirst1) == salt(otherFirst) || salt(mockFirst1) == salt(otherSecretFirst) {
		t.Errorf("mock salt does not depend on the user and the secret")
	}
	if mockFirst1 == mockFirst2 {
		t.Errorf("server nonce repeated")
	}
}

func TestTamperedNonce(t *testing.T) {
	tests := []struct {
		name   string
		tamper func(nonce string) string
	}{
		{"server part changed", func(n string) string { return n[:len(n)-1] + string(n[len(n)-1]^1) }},
		{"client part changed", func(n string) string { return string(n[0]^1) + n[1:] }},
		{"server part cut", func(n string) string { return n[:len(n)-1] }},
		{"server part dropped", func(n string) string { return n[:len("fyko+d2lbbFgONRv9qkxdawL")] }},
		{"extended", func(n string) string { return n + "A" }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newExchange(t, rfcVerifier(t), scram.MechanismSCRAM, scram.ServerOptions{})
			c := newTestClient(rfcPassword, "n,,", nil)
			serverFirst, err := e.ClientFirst(c.First())
			if err != nil {
				t.Fatal(err)
			}
			nonce := strings.TrimPrefix(strings.Split(string(serverFirst), ",")[0], "r=")
			tampered := strings.Replace(string(serverFirst), nonce, tt.tamper(nonce), 1)
			// The client signs what it received, so only the nonce check can catch it.
			final, err := c.Final([]byte(tampered))
			if err != nil {
				final = []byte("c=biws,r=" + tt.tamper(nonce) + ",p=" + rfcProof)
			}
			out, err := e.ClientFinal(final)
			if !errors.Is(err, scram.ErrProtocol) || out != nil {
				t.Fatalf("ClientFinal = %q, %v; want ErrProtocol", out, err)
			}
		})
	}
}

func TestReplayedClientFinal(t *testing.T) {
	v := rfcVerifier(t)
	first := newExchange(t, v, scram.MechanismSCRAM, scram.ServerOptions{})
	c := newTestClient(rfcPassword, "n,,", nil)
	serverFirst, err := first.ClientFirst(c.First())
	if err != nil {
		t.Fatal(err)
	}
	recorded, err := c.Final(serverFirst)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := first.ClientFinal(recorded); err != nil {
		t.Fatalf("original exchange: %v", err)
	}

	t.Run("into a new exchange with the same client nonce", func(t *testing.T) {
		e := newExchange(t, v, scram.MechanismSCRAM, scram.ServerOptions{})
		if _, err := e.ClientFirst(c.First()); err != nil {
			t.Fatal(err)
		}
		if out, err := e.ClientFinal(recorded); !errors.Is(err, scram.ErrProtocol) || out != nil {
			t.Fatalf("replay = %q, %v; want ErrProtocol", out, err)
		}
	})
	t.Run("into the same exchange again", func(t *testing.T) {
		if out, err := first.ClientFinal(recorded); !errors.Is(err, scram.ErrProtocol) || out != nil {
			t.Fatalf("replay = %q, %v; want ErrProtocol", out, err)
		}
	})
}

func TestOutOfOrder(t *testing.T) {
	v := rfcVerifier(t)
	tests := []struct {
		name  string
		calls func(e *scram.ServerExchange) error // returns the error of the last call
	}{
		{"final before first", func(e *scram.ServerExchange) error {
			_, err := e.ClientFinal([]byte(rfcClientFinal))
			return err
		}},
		{"first twice", func(e *scram.ServerExchange) error {
			if _, err := e.ClientFirst([]byte(rfcClientFirst)); err != nil {
				return nil
			}
			_, err := e.ClientFirst([]byte(rfcClientFirst))
			return err
		}},
		{"final after a failed first", func(e *scram.ServerExchange) error {
			if _, err := e.ClientFirst([]byte("garbage")); err == nil {
				return nil
			}
			_, err := e.ClientFinal([]byte(rfcClientFinal))
			return err
		}},
		{"first after a failed first", func(e *scram.ServerExchange) error {
			if _, err := e.ClientFirst([]byte("garbage")); err == nil {
				return nil
			}
			_, err := e.ClientFirst([]byte(rfcClientFirst))
			return err
		}},
		{"final after a failed final", func(e *scram.ServerExchange) error {
			if _, err := e.ClientFirst([]byte(rfcClientFirst)); err != nil {
				return nil
			}
			if _, err := e.ClientFinal([]byte(rfcFinalWith(base64.StdEncoding.EncodeToString(make([]byte, 32))))); err != scram.ErrAuthFailed {
				return nil
			}
			_, err := e.ClientFinal([]byte(rfcClientFinal))
			return err
		}},
		{"final after success", func(e *scram.ServerExchange) error {
			if _, err := e.ClientFirst([]byte(rfcClientFirst)); err != nil {
				return nil
			}
			if _, err := e.ClientFinal([]byte(rfcClientFinal)); err != nil {
				return nil
			}
			_, err := e.ClientFinal([]byte(rfcClientFinal))
			return err
		}},
		{"first after success", func(e *scram.ServerExchange) error {
			if _, err := e.ClientFirst([]byte(rfcClientFirst)); err != nil {
				return nil
			}
			if _, err := e.ClientFinal([]byte(rfcClientFinal)); err != nil {
				return nil
			}
			_, err := e.ClientFirst([]byte(rfcClientFirst))
			return err
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newExchange(t, v, scram.MechanismSCRAM, scram.ServerOptions{Rand: fixedNonce()})
			if err := tt.calls(e); !errors.Is(err, scram.ErrProtocol) {
				t.Fatalf("error %v, want ErrProtocol", err)
			}
		})
	}
}

func TestServerNonce(t *testing.T) {
	t.Run("crypto/rand nonces differ and are printable", func(t *testing.T) {
		seen := map[string]bool{}
		for range 50 {
			e := newExchange(t, rfcVerifier(t), scram.MechanismSCRAM, scram.ServerOptions{})
			c := newTestClient(rfcPassword, "n,,", nil)
			sf, err := e.ClientFirst(c.First())
			if err != nil {
				t.Fatal(err)
			}
			if !serverFirstShape.MatchString(string(sf)) {
				t.Fatalf("server-first-message %q", sf)
			}
			if seen[string(sf)] {
				t.Fatalf("repeated server-first-message %q", sf)
			}
			seen[string(sf)] = true
		}
	})
	t.Run("unusable bytes are skipped", func(t *testing.T) {
		var src []byte
		for b := 0; b < 256; b++ {
			src = append(src, byte(b))
		}
		e := newExchange(t, rfcVerifier(t), scram.MechanismSCRAM, scram.ServerOptions{Rand: bytes.NewReader(src)})
		sf, err := e.ClientFirst([]byte("n,,n=,r=abc"))
		if err != nil {
			t.Fatal(err)
		}
		want := "r=abc" + printableASCII()[:30] + ","
		if !strings.HasPrefix(string(sf), want) {
			t.Fatalf("server-first-message %q, want prefix %q", sf, want)
		}
	})
	tests := []struct {
		name string
		rand io.Reader
	}{
		{"failing source", iotest.ErrReader(errors.New("entropy gone"))},
		{"short source", strings.NewReader("abc")},
		{"source of zeros", zeroReader{}},
		{"source of commas", bytes.NewReader(bytes.Repeat([]byte{','}, 1<<16))},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newExchange(t, rfcVerifier(t), scram.MechanismSCRAM, scram.ServerOptions{Rand: tt.rand})
			out, err := e.ClientFirst([]byte(rfcClientFirst))
			if err == nil || errors.Is(err, scram.ErrProtocol) || out != nil {
				t.Fatalf("ClientFirst = %q, %v; want a non-protocol error", out, err)
			}
		})
	}
}

type zeroReader struct{}

func (zeroReader) Read(p []byte) (int, error) {
	clear(p)
	return len(p), nil
}

// TestInputNotRetained checks that the exchange copies its input: the
// caller may reuse its read buffer after each call.
func TestInputNotRetained(t *testing.T) {
	e := newExchange(t, rfcVerifier(t), scram.MechanismSCRAM, scram.ServerOptions{Rand: fixedNonce()})
	buf := []byte(rfcClientFirst)
	if _, err := e.ClientFirst(buf); err != nil {
		t.Fatal(err)
	}
	for i := range buf {
		buf[i] = 'X'
	}
	buf = append(buf[:0], rfcClientFinal...)
	out, err := e.ClientFinal(buf)
	if err != nil || string(out) != rfcServerFinal {
		t.Fatalf("ClientFinal = %q, %v", out, err)
	}
}

// verifierSecrets lists the forms in which a verifier's keys could leak.
func verifierSecrets(v scram.Verifier) []string {
	return []string{
		base64.StdEncoding.EncodeToString(v.StoredKey[:]),
		base64.StdEncoding.EncodeToString(v.ServerKey[:]),
		strings.Trim(fmt.Sprint(v.StoredKey), "[]"),
		strings.Trim(fmt.Sprint(v.ServerKey), "[]"),
		hex.EncodeToString(v.StoredKey[:]),
		hex.EncodeToString(v.ServerKey[:]),
	}
}

func assertNoSecrets(t *testing.T, err error, secrets ...string) {
	t.Helper()
	if err == nil {
		return
	}
	for _, s := range secrets {
		if s != "" && strings.Contains(err.Error(), s) {
			t.Fatalf("error %q contains a secret", err)
		}
	}
}
