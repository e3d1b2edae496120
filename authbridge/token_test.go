package authbridge

import (
	"context"
	"errors"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"

	"github.com/dsqlgate/dsqlgate/internal/dsqlsim"
)

const (
	testHost   = "abcdefghijklmnopqrstuvwxyz.dsql.us-east-1.on.aws"
	testRegion = "us-east-1"
	testAKID   = "AKIAIOSFODNN7EXAMPLE"
	testSecret = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
)

// TestMint checks minted tokens with the emulator's verifier, which
// recomputes SigV4 independently of the SDK: the right Action per role,
// the configured expiry, and refusal of the wrong role's token.
func TestMint(t *testing.T) {
	creds := credentials.NewStaticCredentialsProvider(testAKID, testSecret, "")
	simCreds := []dsqlsim.Credential{{AccessKeyID: testAKID, SecretAccessKey: testSecret}}
	cases := []struct {
		name       string
		role       string
		expiry     time.Duration
		wantAction string
	}{
		{"admin", "admin", 15 * time.Minute, "DbConnectAdmin"},
		{"custom role", "app_reader", 15 * time.Minute, "DbConnect"},
		{"short expiry", "admin", 3 * time.Second, "DbConnectAdmin"},
		{"a week", "app", 168 * time.Hour, "DbConnect"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			m := NewTokenMinter(testHost, testRegion, tc.role, tc.expiry, creds)
			token, err := m.Mint(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			host, query, ok := strings.Cut(token, "?")
			if !ok || host != testHost {
				t.Fatalf("token does not start with %q?: %.60s...", testHost, token)
			}
			q, err := url.ParseQuery(query)
			if err != nil {
				t.Fatal(err)
			}
			if got := q.Get("Action"); got != tc.wantAction {
				t.Fatalf("Action = %q, want %q", got, tc.wantAction)
			}
			if got := q.Get("X-Amz-Expires"); got != itoa(int(tc.expiry.Seconds())) {
				t.Fatalf("X-Amz-Expires = %q, want %v", got, tc.expiry.Seconds())
			}
			now := time.Now()
			if err := dsqlsim.VerifyToken(token, testHost, tc.role, testRegion, simCreds, now, time.Minute); err != nil {
				t.Fatalf("the emulator refused a minted token: %v", err)
			}
			other := "admin"
			if tc.role == "admin" {
				other = "someone"
			}
			var te *dsqlsim.TokenError
			if err := dsqlsim.VerifyToken(token, testHost, other, testRegion, simCreds, now, time.Minute); !errors.As(err, &te) {
				t.Fatalf("the token for %q was accepted for role %q (%v)", tc.role, other, err)
			}
			if err := dsqlsim.VerifyToken(token, testHost, tc.role, testRegion, simCreds, now.Add(tc.expiry+2*time.Minute), time.Minute); !errors.As(err, &te) {
				t.Fatalf("an expired token was accepted (%v)", err)
			}
		})
	}
}

// TestMintErrorsCarryNoSecret: a credentials failure is reported without
// the secret key, and a token never appears in a mint error.
func TestMintErrorsCarryNoSecret(t *testing.T) {
	failing := aws.CredentialsProviderFunc(func(context.Context) (aws.Credentials, error) {
		return aws.Credentials{}, errors.New("no credentials in the chain")
	})
	_, err := NewTokenMinter(testHost, testRegion, "admin", time.Minute, failing).Mint(context.Background())
	if err == nil || !strings.Contains(err.Error(), "no credentials") {
		t.Fatalf("got %v", err)
	}
	if strings.Contains(err.Error(), testSecret) || strings.Contains(err.Error(), "X-Amz-Signature") {
		t.Fatalf("mint error leaks a secret: %v", err)
	}
}

func itoa(i int) string {
	if i == 0 {
		return "0"
	}
	var b []byte
	for ; i > 0; i /= 10 {
		b = append([]byte{byte('0' + i%10)}, b...)
	}
	return string(b)
}
