package scram_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"

	"github.com/dsqlgate/dsqlgate/internal/scram"
	"github.com/google/go-cmp/cmp"
)

// postgresVerifiers were produced by a real PostgreSQL 15.18 (initdb -E
// SQL_ASCII, so that any bytes can be a password):
//
//	SET password_encryption = 'scram-sha-256';
//	CREATE ROLE <name> PASSWORD E'<password bytes>';
//	SELECT rolname, rolpassword FROM pg_authid;
//
// NewVerifier with the same salt must reproduce each one exactly, SASLprep
// (and PostgreSQL's fallback to the raw bytes) included. The passwords are
// test values, not secrets.
var postgresVerifiers = []struct {
	name     string
	password string
	verifier string
}{
	{"ascii", "pencil",
		"SCRAM-SHA-256$4096:NhXxF1FVZWe7E4Qf/VgmxQ==$W5jJubfCguNxDORy8z+w9slJraNbl8Ym/23Eozzxfz4=:P2u+H9dYUV639DaihGbQZoXr2NNWINOSloME+N0TX3M="},
	{"ascii control kept", "tab\there",
		"SCRAM-SHA-256$4096:7LMlls2WNko6jvwmux22EQ==$YZ7s53OEDUnPXeosIQuaMQxqoOAMcg+z4tvK39MNlFs=:hYKTaxn9eSbic7LX1tdhFL2tKcD6MyktaRRbtQz5bIU="},
	{"no-break space mapped to space", "pass\u00a0word",
		"SCRAM-SHA-256$4096:jRHEY3SPygJ4W3SrxtMB9w==$ZAu2OrryVOniRpyv1JOUjfKjcKku67nlvOtaHRtFd5s=:rWjXpqIECLIlCzuA+PHrLnMAYDRJsAGiqHUG11lyiuc="},
	{"ideographic space mapped to space", "pass\u3000word",
		"SCRAM-SHA-256$4096:EvHA3/zN9kNVT0TdDQLO/Q==$nZpXc2Tq/bVjh+kxzW2E/z/q49d0EdxuWWDEUhMoU7Y=:k9CvB/f7zMa+NdeGhJPe6SZAmxpCyZ1ysB0okfo9EBM="},
	{"zero width space mapped to space", "a\u200bb",
		"SCRAM-SHA-256$4096:ijZS6YASjKVXsqhwhzhOlw==$Ogiz3ga5S8obJovJqs4FwH883Ip1K4ompl6G27sUCqo=:gptbtmmMVHazhdGNd/gFnMKpLn89Azll0xIdYP3nTWA="},
	{"soft hyphen removed", "soft\u00adhyphen",
		"SCRAM-SHA-256$4096:n/GzCdEqimx9ytnjJ2//pg==$8QJOjDnge/2enc8VqbthEZpCxwhRldzhG9i+vbvmOcU=:lDrN63exEOhGdVsoz2y6dif0fpg1gL+ZYUJvG6a07Oo="},
	{"RFC 4013 I soft hyphen X", "I\u00adX",
		"SCRAM-SHA-256$4096:I7G707LjcpNoRdHt6iLWbw==$+jI66HfdpTDbieB/s0wFY39xwdy50iqxZrF7GL2vAgU=:wROkIPHT9iVV8plGU6i3UUoyqi7j2FHhLZc10GCOVkg="},
	{"NFKC roman numeral nine", "\u2168",
		"SCRAM-SHA-256$4096:JorsQ8zrftNZO+9nnvMdjQ==$tGTYJ3Z29T77rqS2vgZ5Yxi8Gf29zY7wzuJcTAYKFAQ=:9wNWUAqRGDFOfLoCOekSxHBhGrd1TH1bmBW29dSyy4g="},
	{"NFKC fi ligature", "\ufb01nance",
		"SCRAM-SHA-256$4096:6sPuENQd3cAzBeBcIIF8cQ==$vQ77lRWpC4ogpque2Qm3zCCPpTCWQoKFI7RGhqNqIJY=:4FuN4NVs2Qup3SV90IEyjopixBX9GSgoRlF1X6JnefQ="},
	{"NFKC fullwidth letters", "\uff50\uff41\uff53\uff53",
		"SCRAM-SHA-256$4096:0AmGAc8+ZNCxtkKfOOYbRg==$EQF/pv7RaMbLtu4f2hWk7hvgk6x0lmtjE7KBc5o74YE=:q4wNH3NXtkKfswcni+5bzXcEr2qrvRKFH+Fc2gPh4uI="},
	{"NFKC feminine ordinal", "\u00aa",
		"SCRAM-SHA-256$4096:aQTiKcyY29S9mTF7wPNLWQ==$9+16qjdA0QCZzqmxLxPTenvAL1n7xCanAVEBnViGqZc=:+qRs+1O+lAg052KMIkYq34x4GOrM913aPFFO4gmZN2c="},
	{"NFKC composes a combining accent", "cafe\u0301",
		"SCRAM-SHA-256$4096:zy0kPyFXtJlzdZMpGTdNFw==$aNLnafjTX8H/cOybH8t7RHoV2ooxHzNxcl4vVrjLLdc=:YCj2Zb7fjyLAgYAwlz4sxhnt+bDXxnJ7s7VysICqlqU="},
	{"precomposed", "caf\u00e9",
		"SCRAM-SHA-256$4096:bglMYDsq0MwjJMH4p6uwdQ==$Ps2UBKHPxN2BQz39g7pqn5fI/SqlIetyt8mKtLHH/so=:1ZRFqueAbIYuaehSfPjQA+zygSzSBKVaqyRoAWsyY4E="},
	{"only a soft hyphen falls back to raw", "\u00ad",
		"SCRAM-SHA-256$4096:VpqSqAuLIL+nYVr/i56GJQ==$abpVcZGUyXWta5DqMxbt25s6Y0OxaLyyOZVxK7r4bmg=:6KxCM4vkjcCowYUionPuA1ItJIR942axO0HaQNA+CaU="},
	{"C1 control falls back to raw", "p\u00e4ss\u0085",
		"SCRAM-SHA-256$4096:zTpuIIgUbu6uyFUXIMTIjQ==$YfD09M8Rol9MLaJ3uHYZbT4sDgR1VNb+pkZo3u7YygY=:Paa54VgpNPezdsxGWOwLxu256VQTEOj3hcmsAzNtsDM="},
	{"private use falls back to raw", "\ue000x",
		"SCRAM-SHA-256$4096:65/wx9iNRffpqT3cDYG6/g==$3BGsGpJNjVF1cNGetzueD04O+qyhAberfmYXFUCeCtA=:r4pXi7wad27A4Q3WkzRs9GKXncHiYBO/9H8SQXFkRLE="},
	{"unassigned in Unicode 3.2 falls back to raw", "pass\u0221",
		"SCRAM-SHA-256$4096:1BEb8sRjEDT8tiO7f6+AXQ==$XyYRyL1PU7d+dztsOmO0Nqmpq4gRfYLqvUfrseljHvo=:8S049NyqUkoeb4be2wzDJSy+S2zyBSBgGQgM2V+IJco="},
	{"emoji falls back to raw", "pass\U0001F600",
		"SCRAM-SHA-256$4096:nwhGGQbrglQJMyfEfUGMTg==$ja4wvXOL+Q3QaioTGqwwiLMNaGu+WwooPM0y1j5pmro=:+XpWB9O6JZWWPBXX+EJvfOLoIhN/FRsk6CbewryTNiA="},
	{"right-to-left only", "\u05d0\u05d1",
		"SCRAM-SHA-256$4096:GHRxDeTPUWbjNqCNKLIibg==$9urZ1fs+TdxDoE4MrmgBGNs3UnKOqu3J00SAtcxjOhQ=:ffTk95S4GFYKRVufXpea04IlPzw0jGnwZr98i8apMWg="},
	{"mixed direction falls back to raw", "\u05d0a",
		"SCRAM-SHA-256$4096:e/ZNX8zZCvKBYWqFLJnglw==$a78FLajHvS7Jfxq5rwdoY3cLkI85zNnaoeVQ9TswlaA=:d4cKRJ4VJVYErQMdzcWK7ubjB6YSobEKvUcJiOzZJvk="},
	{"right-to-left not last falls back to raw", "\u05d01",
		"SCRAM-SHA-256$4096:h7yLbogC83lcxwAfIqlS/g==$ULbLR7FhRm1QykAhkR1Qag6YCdcbo3Le/hBHhmKRLSE=:+/pQwExY70eyh6kE0Vi3guvdhfuni+0dEnDolb2FwjI="},
	{"invalid UTF-8 falls back to raw", "\xff\xfepass",
		"SCRAM-SHA-256$4096:qyeK0/n673pmu308VkP9zg==$eetnVKRsHrxHNh6aQL4F/zajvcEIJk1hwdBn1ZJWf94=:PwwGBqIGTXLvWz4SDAKVD2Faa3go7nViSygC1l7K/UU="},
	{"NFKC small number sign", "\ufe5f",
		"SCRAM-SHA-256$4096:8Mj/DiYJnM/eu170UXVN6A==$Mrk7ht1MrgYPED3gWSiBd0yY5zV6zwHfn7jiBoTMqMg=:EaG+KF1ZDw8dfmKbaCwd07VEI5XodXqueZIT0xeswcs="},
	{"prohibited before NFKC falls back to raw", "a\u0340",
		"SCRAM-SHA-256$4096:rjJ7XMyycDzcG6eJKACGsg==$p4/8uZGWNMt1fg9JQZlJApQ7979f13iXA0jFPl1wdaY=:/4DBuHqqLOFlleJRG0FuXe2CGBhKnM6yuVv3Hr+LSVw="},
}

func TestNewVerifierMatchesPostgres(t *testing.T) {
	for _, tt := range postgresVerifiers {
		t.Run(tt.name, func(t *testing.T) {
			pg, err := scram.ParseVerifier(tt.verifier)
			if err != nil {
				t.Fatalf("ParseVerifier: %v", err)
			}
			got := scram.NewVerifier(tt.password, pg.Salt, pg.Iterations)
			if got.Encode() != tt.verifier {
				t.Fatalf("NewVerifier:\n got %s\nwant %s", got.Encode(), tt.verifier)
			}
			if !pg.VerifyPassword(tt.password) {
				t.Errorf("VerifyPassword(right password) = false")
			}
			if pg.VerifyPassword(tt.password + "x") {
				t.Errorf("VerifyPassword(wrong password) = true")
			}
		})
	}
}

// TestNewVerifierRFC7677 checks the keys NewVerifier derives with RFC 7677's
// salt by running the RFC's exchange against them.
func TestNewVerifierRFC7677(t *testing.T) {
	v := scram.NewVerifier("pencil", rfcSalt(t), 4096)
	e := newExchange(t, v, scram.MechanismSCRAM, scram.ServerOptions{Rand: fixedNonce()})
	if _, err := e.ClientFirst([]byte(rfcClientFirst)); err != nil {
		t.Fatal(err)
	}
	out, err := e.ClientFinal([]byte(rfcClientFinal))
	if err != nil || string(out) != rfcServerFinal {
		t.Fatalf("ClientFinal = %q, %v; want %q", out, err, rfcServerFinal)
	}
	if !v.VerifyPassword("pencil") {
		t.Fatal("VerifyPassword(pencil) = false")
	}
}

func TestParseVerifierRoundTrip(t *testing.T) {
	v := rfcVerifier(t)
	got, err := scram.ParseVerifier(v.Encode())
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(v, got); diff != "" {
		t.Fatalf("ParseVerifier(Encode()) (-want +got):\n%s", diff)
	}
	if !strings.HasPrefix(v.Encode(), "SCRAM-SHA-256$4096:W22ZaJ0SNY7soEsUEjb6gQ==$") {
		t.Fatalf("Encode() = %s", v.Encode())
	}
}

func TestParseVerifierInvalid(t *testing.T) {
	const (
		salt   = "W22ZaJ0SNY7soEsUEjb6gQ=="
		stored = "W5jJubfCguNxDORy8z+w9slJraNbl8Ym/23Eozzxfz4="
		server = "P2u+H9dYUV639DaihGbQZoXr2NNWINOSloME+N0TX3M="
	)
	valid := "SCRAM-SHA-256$4096:" + salt + "$" + stored + ":" + server
	if _, err := scram.ParseVerifier(valid); err != nil {
		t.Fatalf("valid verifier: %v", err)
	}
	tests := []struct {
		name string
		in   string
	}{
		{"empty", ""},
		{"scheme only", "SCRAM-SHA-256"},
		{"lower case scheme", strings.ToLower("SCRAM-SHA-256") + "$4096:" + salt + "$" + stored + ":" + server},
		{"SCRAM-SHA-1", "SCRAM-SHA-1$4096:" + salt + "$" + stored + ":" + server},
		{"md5", "md5" + strings.Repeat("0", 32)},
		{"plain password", "pencil"},
		{"leading space", " " + valid},
		{"trailing newline", valid + "\n"},
		{"no iteration separator", "SCRAM-SHA-256$4096" + salt + "$" + stored + ":" + server},
		{"no salt separator", "SCRAM-SHA-256$4096:" + salt + stored + ":" + server},
		{"no key separator", "SCRAM-SHA-256$4096:" + salt + "$" + stored + server},
		{"third key", valid + ":" + server},
		{"zero iterations", "SCRAM-SHA-256$0:" + salt + "$" + stored + ":" + server},
		{"negative iterations", "SCRAM-SHA-256$-1:" + salt + "$" + stored + ":" + server},
		{"plus sign", "SCRAM-SHA-256$+4096:" + salt + "$" + stored + ":" + server},
		{"leading zero", "SCRAM-SHA-256$04096:" + salt + "$" + stored + ":" + server},
		{"iterations with space", "SCRAM-SHA-256$4096 :" + salt + "$" + stored + ":" + server},
		{"iterations hex", "SCRAM-SHA-256$0x1000:" + salt + "$" + stored + ":" + server},
		{"iterations over int32", "SCRAM-SHA-256$2147483648:" + salt + "$" + stored + ":" + server},
		{"iterations overflow", "SCRAM-SHA-256$99999999999999999999:" + salt + "$" + stored + ":" + server},
		{"empty iterations", "SCRAM-SHA-256$:" + salt + "$" + stored + ":" + server},
		{"empty salt", "SCRAM-SHA-256$4096:$" + stored + ":" + server},
		{"salt not base64", "SCRAM-SHA-256$4096:W22ZaJ0S*Y7soEsUEjb6gQ==$" + stored + ":" + server},
		{"salt without padding", "SCRAM-SHA-256$4096:W22ZaJ0SNY7soEsUEjb6gQ$" + stored + ":" + server},
		{"salt not canonical", "SCRAM-SHA-256$4096:W22ZaJ0SNY7soEsUEjb6gR==$" + stored + ":" + server},
		{"salt with newline", "SCRAM-SHA-256$4096:W22ZaJ0SNY7s\noEsUEjb6gQ==$" + stored + ":" + server},
		{"stored key of 31 bytes", "SCRAM-SHA-256$4096:" + salt + "$" + "W5jJubfCguNxDORy8z+w9slJraNbl8Ym/23Eozzxfw==" + ":" + server},
		{"server key of 33 bytes", "SCRAM-SHA-256$4096:" + salt + "$" + stored + ":" + server + "AAAA"},
		{"stored key hex", "SCRAM-SHA-256$4096:" + salt + "$" + strings.Repeat("ab", 32) + ":" + server},
		{"server key without padding", "SCRAM-SHA-256$4096:" + salt + "$" + stored + ":" + strings.TrimRight(server, "=")},
		{"empty keys", "SCRAM-SHA-256$4096:" + salt + "$:"},
		{"PostgreSQL 10 beta format", "scram-sha-256:" + salt + ":4096:" + strings.Repeat("ab", 32) + ":" + strings.Repeat("cd", 32)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v, err := scram.ParseVerifier(tt.in)
			if !errors.Is(err, scram.ErrInvalidVerifier) {
				t.Fatalf("ParseVerifier(%q) = %v, %v; want ErrInvalidVerifier", tt.in, v, err)
			}
			for _, secret := range []string{stored, server, stored[:20], server[:20], strings.Repeat("ab", 32)} {
				if strings.Contains(err.Error(), secret) {
					t.Fatalf("error %q contains key material", err)
				}
			}
		})
	}
}

func TestGenerateVerifier(t *testing.T) {
	v1, err := scram.GenerateVerifier("s3cret")
	if err != nil {
		t.Fatal(err)
	}
	v2, err := scram.GenerateVerifier("s3cret")
	if err != nil {
		t.Fatal(err)
	}
	if len(v1.Salt) != 16 || v1.Iterations != 4096 {
		t.Fatalf("salt %d bytes, %d iterations; want 16 and 4096", len(v1.Salt), v1.Iterations)
	}
	if bytes.Equal(v1.Salt, v2.Salt) || v1.StoredKey == v2.StoredKey {
		t.Fatal("two verifiers share a salt")
	}
	if !v1.VerifyPassword("s3cret") || v1.VerifyPassword("s3cret ") {
		t.Fatal("VerifyPassword disagrees with GenerateVerifier")
	}
	if _, err := scram.ParseVerifier(v1.Encode()); err != nil {
		t.Fatalf("ParseVerifier(Encode()): %v", err)
	}
}

func TestVerifyPassword(t *testing.T) {
	nbsp := scram.NewVerifier("pass\u00a0word", []byte("salt"), 1)
	tests := []struct {
		name     string
		verifier scram.Verifier
		password string
		want     bool
	}{
		{"right", rfcVerifier(t), "pencil", true},
		{"wrong", rfcVerifier(t), "pencil!", false},
		{"empty", rfcVerifier(t), "", false},
		{"SASLprep-equivalent spelling", nbsp, "pass word", true},
		{"SASLprep-equivalent spelling, other space", nbsp, "pass\u2003word", true},
		{"raw spelling not equivalent", nbsp, "password", false},
		{"mock verifier with empty password", scram.MockVerifier("u", []byte("k")), "", false},
		{"mock verifier", scram.MockVerifier("u", []byte("k")), "pencil", false},
		{"zero verifier", scram.Verifier{}, "", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.verifier.VerifyPassword(tt.password); got != tt.want {
				t.Fatalf("VerifyPassword = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestMockVerifier(t *testing.T) {
	secret := []byte("0123456789abcdef0123456789abcdef")
	a1, a2 := scram.MockVerifier("alice", secret), scram.MockVerifier("alice", secret)
	if diff := cmp.Diff(a1, a2); diff != "" {
		t.Fatalf("not deterministic (-first +second):\n%s", diff)
	}
	if len(a1.Salt) != 16 || a1.Iterations != 4096 {
		t.Fatalf("salt %d bytes, %d iterations; want 16 and 4096 like a real verifier", len(a1.Salt), a1.Iterations)
	}
	if bytes.Equal(a1.Salt, scram.MockVerifier("bob", secret).Salt) {
		t.Fatal("same salt for two users")
	}
	if bytes.Equal(a1.Salt, scram.MockVerifier("alice", []byte("another secret")).Salt) {
		t.Fatal("same salt for two secrets")
	}
	v, err := scram.ParseVerifier(a1.Encode())
	if err != nil {
		t.Fatalf("ParseVerifier(Encode()): %v", err)
	}
	if diff := cmp.Diff(a1, v); diff != "" {
		t.Fatalf("round trip (-want +got):\n%s", diff)
	}
}

func TestNewVerifierPanics(t *testing.T) {
	tests := []struct {
		name       string
		salt       []byte
		iterations int
	}{
		{"zero iterations", []byte("salt"), 0},
		{"negative iterations", []byte("salt"), -1},
		{"empty salt", nil, 4096},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			defer func() {
				r := recover()
				if r == nil {
					t.Fatal("no panic")
				}
				if msg := fmt.Sprint(r); strings.Contains(msg, "hunter2") {
					t.Fatalf("panic %q contains the password", msg)
				}
			}()
			scram.NewVerifier("hunter2", tt.salt, tt.iterations)
		})
	}
}

func TestNewVerifierCopiesSalt(t *testing.T) {
	salt := []byte("0123456789abcdef")
	v := scram.NewVerifier("pencil", salt, 1)
	salt[0] = 'X'
	if v.Salt[0] != '0' {
		t.Fatal("verifier shares the caller's salt")
	}
}

// TestVerifierRedaction checks every way a verifier can be printed: none may
// show the keys in any encoding.
func TestVerifierRedaction(t *testing.T) {
	v := rfcVerifier(t)
	secrets := verifierSecrets(v)
	type holder struct {
		User     string
		Verifier scram.Verifier
		Ptr      *scram.Verifier
	}
	h := holder{User: "alice", Verifier: v, Ptr: &v}

	var slogText, slogJSON bytes.Buffer
	slog.New(slog.NewTextHandler(&slogText, nil)).Info("login", "verifier", v, "holder", h)
	slog.New(slog.NewJSONHandler(&slogJSON, nil)).Info("login", "verifier", v, "holder", h)
	jsonBytes, err := json.Marshal(h)
	if err != nil {
		t.Fatal(err)
	}

	outputs := map[string]string{
		"String":            v.String(),
		"%v":                fmt.Sprintf("%v", v),
		"%+v":               fmt.Sprintf("%+v", v),
		"%#v":               fmt.Sprintf("%#v", v),
		"%s":                fmt.Sprintf("%s", v),
		"%q":                fmt.Sprintf("%q", v),
		"%x":                fmt.Sprintf("%x", v),
		"%X":                fmt.Sprintf("%X", v),
		"%d":                fmt.Sprintf("%d", v),
		"%T %v":             fmt.Sprintf("%T %v", v, v),
		"pointer %v":        fmt.Sprintf("%v", &v),
		"pointer %#v":       fmt.Sprintf("%#v", &v),
		"Println":           fmt.Sprintln(v),
		"in struct %v":      fmt.Sprintf("%v", h),
		"in struct %+v":     fmt.Sprintf("%+v", h),
		"in struct %#v":     fmt.Sprintf("%#v", h),
		"in slice %v":       fmt.Sprintf("%v", []scram.Verifier{v}),
		"in map %v":         fmt.Sprintf("%v", map[string]scram.Verifier{"alice": v}),
		"in error %v":       fmt.Errorf("user %v", v).Error(),
		"slog text handler": slogText.String(),
		"slog JSON handler": slogJSON.String(),
		"json.Marshal":      string(jsonBytes),
	}
	for name, out := range outputs {
		t.Run(name, func(t *testing.T) {
			for _, s := range secrets {
				if strings.Contains(out, s) {
					t.Fatalf("output contains a key: %s", out)
				}
			}
			if !strings.Contains(out, "redacted") {
				t.Fatalf("output %q does not say it is redacted", out)
			}
		})
	}
	if want := "SCRAM-SHA-256$4096:W22ZaJ0SNY7soEsUEjb6gQ==$<redacted>:<redacted>"; v.String() != want {
		t.Errorf("String() = %s, want %s", v.String(), want)
	}
	if !strings.Contains(v.Encode(), secrets[0]) {
		t.Errorf("Encode() does not hold the stored key")
	}
}
