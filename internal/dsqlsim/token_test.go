package dsqlsim

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/feature/dsql/auth"
)

const (
	testHost   = "abcdefghijklmnopqrstuvwxyz.dsql.us-east-1.on.aws"
	testRegion = "us-east-1"
	testSkew   = defaultClockSkew // the tests run at the emulator's default
)

// Made-up credentials; the secrets contain characters that need escaping.
var (
	testCred        = Credential{AccessKeyID: "AKIDDSQLSIMTEST00001", SecretAccessKey: "dsqlsim/test+secret=key0123456789abcdefgh"}
	testSessionCred = Credential{AccessKeyID: "ASIADSQLSIMTEST00002", SecretAccessKey: "dsqlsim/temp+secret=key0123456789abcdefgh",
		SessionToken: "IQoJb3JpZ2luX2VjE/made+up=session token"}
	testCreds = []Credential{testCred, testSessionCred}
)

// sdkToken mints a token with the Go SDK, as the gateway does: the admin
// token for role "admin", the user token otherwise.
func sdkToken(t testing.TB, host, region, role string, cred Credential, expiresIn time.Duration) string {
	t.Helper()
	provider := credentials.NewStaticCredentialsProvider(cred.AccessKeyID, cred.SecretAccessKey, cred.SessionToken)
	opt := func(o *auth.TokenOptions) { o.ExpiresIn = expiresIn }
	var token string
	var err error
	if role == adminRole {
		token, err = auth.GenerateDBConnectAdminAuthToken(context.Background(), host, region, provider, opt)
	} else {
		token, err = auth.GenerateDbConnectAuthToken(context.Background(), host, region, provider, opt)
	}
	if err != nil {
		t.Fatalf("mint token with the go sdk: %v", err)
	}
	return token
}

// cliForm turns "host?query" into the AWS CLI's "host/?query".
func cliForm(token string) string { return strings.Replace(token, "?", "/?", 1) }

// tokenDate is a token's X-Amz-Date: tests verify at a clock relative to it.
func tokenDate(t testing.TB, token string) time.Time {
	t.Helper()
	_, query, _ := strings.Cut(token, "?")
	values, err := url.ParseQuery(query)
	if err != nil {
		t.Fatalf("parse token query: %v", err)
	}
	date, err := time.Parse(sigV4DateLayout, values.Get(paramDate))
	if err != nil {
		t.Fatalf("parse X-Amz-Date: %v", err)
	}
	return date
}

// replaceParam sets one query parameter of a token without re-signing it.
func replaceParam(token, name, value string) string {
	host, query, _ := strings.Cut(token, "?")
	parts := strings.Split(query, "&")
	for i, p := range parts {
		if k, _, _ := strings.Cut(p, "="); k == name {
			parts[i] = name + "=" + url.QueryEscape(value)
		}
	}
	return host + "?" + strings.Join(parts, "&")
}

func tokenParam(token, name string) string {
	_, query, _ := strings.Cut(token, "?")
	values, _ := url.ParseQuery(query)
	return values.Get(name)
}

func TestVerifyTokenAccepts(t *testing.T) {
	tests := []struct {
		name  string
		token func(t *testing.T) string
		role  string
		sni   string
		at    time.Duration // verification time relative to X-Amz-Date
	}{
		{name: "go sdk user token", role: "app", token: func(t *testing.T) string {
			return sdkToken(t, testHost, testRegion, "app", testCred, 15*time.Minute)
		}},
		{name: "go sdk admin token", role: "admin", token: func(t *testing.T) string {
			return sdkToken(t, testHost, testRegion, "admin", testCred, 15*time.Minute)
		}},
		{name: "cli form user token", role: "app", token: func(t *testing.T) string {
			return cliForm(sdkToken(t, testHost, testRegion, "app", testCred, 15*time.Minute))
		}},
		{name: "cli form admin token", role: "admin", token: func(t *testing.T) string {
			return cliForm(sdkToken(t, testHost, testRegion, "admin", testCred, 15*time.Minute))
		}},
		{name: "temporary credentials", role: "app", token: func(t *testing.T) string {
			return sdkToken(t, testHost, testRegion, "app", testSessionCred, 15*time.Minute)
		}},
		{name: "sni in other case", role: "app", sni: strings.ToUpper(testHost), token: func(t *testing.T) string {
			return sdkToken(t, testHost, testRegion, "app", testCred, 15*time.Minute)
		}},
		{name: "just before expiry plus skew", role: "app", at: 15*time.Minute + testSkew, token: func(t *testing.T) string {
			return sdkToken(t, testHost, testRegion, "app", testCred, 15*time.Minute)
		}},
		{name: "date in the future within skew", role: "app", at: -testSkew, token: func(t *testing.T) string {
			return sdkToken(t, testHost, testRegion, "app", testCred, 15*time.Minute)
		}},
		{name: "one week", role: "app", at: 7*24*time.Hour - time.Second, token: func(t *testing.T) string {
			return sdkToken(t, testHost, testRegion, "app", testCred, 7*24*time.Hour)
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			token := tt.token(t)
			sni := tt.sni
			if sni == "" {
				sni = testHost
			}
			now := tokenDate(t, token).Add(tt.at)
			if err := VerifyToken(token, sni, tt.role, testRegion, testCreds, now, testSkew); err != nil {
				t.Fatalf("VerifyToken: %v", err)
			}
		})
	}
}

// TestVerifyTokenBotocore verifies a token that botocore (the AWS CLI's
// library) minted, kept in testdata with the made-up credentials that
// signed it; see testdata/tokens/mint_botocore.py.
func TestVerifyTokenBotocore(t *testing.T) {
	raw, err := os.ReadFile("testdata/tokens/botocore.json")
	if err != nil {
		t.Fatal(err)
	}
	var golden struct {
		Host, Region, Role, Token string
		AccessKeyID               string `json:"access_key_id"`
		SecretAccessKey           string `json:"secret_access_key"`
		SessionToken              string `json:"session_token"`
	}
	if err := json.Unmarshal(raw, &golden); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(golden.Token, "/?") {
		t.Fatalf("botocore token is not in the CLI's host/?query form")
	}
	creds := []Credential{{AccessKeyID: golden.AccessKeyID, SecretAccessKey: golden.SecretAccessKey, SessionToken: golden.SessionToken}}
	now := tokenDate(t, golden.Token).Add(time.Minute)
	if err := VerifyToken(golden.Token, golden.Host, golden.Role, golden.Region, creds, now, testSkew); err != nil {
		t.Fatalf("VerifyToken: %v", err)
	}
	err = VerifyToken(golden.Token, golden.Host, "app", golden.Region, creds, now, testSkew)
	assertReason(t, err, ReasonAction)
}

func TestVerifyTokenRefuses(t *testing.T) {
	userToken := sdkToken(t, testHost, testRegion, "app", testCred, 15*time.Minute)
	adminToken := sdkToken(t, testHost, testRegion, "admin", testCred, 15*time.Minute)
	sessionToken := sdkToken(t, testHost, testRegion, "app", testSessionCred, 15*time.Minute)
	wrongSession := testSessionCred
	wrongSession.SessionToken = "another session token"
	wrongSessionToken := sdkToken(t, testHost, testRegion, "app", wrongSession, 15*time.Minute)
	noSession := testSessionCred
	noSession.SessionToken = ""
	noSessionToken := sdkToken(t, testHost, testRegion, "app", noSession, 15*time.Minute)
	otherRegionToken := sdkToken(t, testHost, "eu-west-1", "app", testCred, 15*time.Minute)
	date := tokenDate(t, userToken)
	sig := tokenParam(userToken, paramSignature)
	flipped := sig[:len(sig)-1] + string("0123456789abcdef"[(strings.IndexByte("0123456789abcdef", sig[len(sig)-1])+1)%16])

	tests := []struct {
		name   string
		token  string
		role   string        // default "app"
		sni    string        // default testHost
		creds  []Credential  // default testCreds
		at     time.Duration // verification time relative to the user token's date
		reason TokenReason
	}{
		{name: "tampered signature", token: replaceParam(userToken, paramSignature, flipped), reason: ReasonSignatureMismatch},
		{name: "tampered expiry", token: replaceParam(userToken, paramExpires, "3600"), reason: ReasonSignatureMismatch},
		{name: "tampered host", token: strings.Replace(userToken, "abcdefghij", "abcdefghik", 1), sni: strings.Replace(testHost, "abcdefghij", "abcdefghik", 1), reason: ReasonSignatureMismatch},
		{name: "wrong secret", token: userToken, creds: []Credential{{AccessKeyID: testCred.AccessKeyID, SecretAccessKey: "not the secret"}}, reason: ReasonSignatureMismatch},
		{name: "unsigned payload", token: unsignedPayloadToken(t, userToken, testCred.SecretAccessKey), reason: ReasonSignatureMismatch},
		{name: "wrong region", token: otherRegionToken, reason: ReasonRegion},
		{name: "admin token for a user role", token: adminToken, role: "app", reason: ReasonAction},
		{name: "user token for admin", token: userToken, role: "admin", reason: ReasonAction},
		{name: "expired", token: userToken, at: 15*time.Minute + testSkew + time.Second, reason: ReasonExpired},
		{name: "date in the future", token: userToken, at: -testSkew - time.Second, reason: ReasonNotYetValid},
		{name: "host is not the sni", token: userToken, sni: "zyxwvutsrqponmlkjihgfedcba.dsql.us-east-1.on.aws", reason: ReasonHost},
		{name: "no sni", token: userToken, sni: "-", reason: ReasonHost},
		{name: "unknown access key", token: userToken, creds: []Credential{testSessionCred}, reason: ReasonUnknownAccessKey},
		{name: "missing security token", token: noSessionToken, reason: ReasonSecurityToken},
		{name: "wrong security token", token: wrongSessionToken, reason: ReasonSecurityToken},
		{name: "unexpected security token", token: sessionToken, creds: []Credential{noSession}, reason: ReasonSecurityToken},
		{name: "algorithm", token: replaceParam(userToken, paramAlgorithm, "AWS4-ECDSA-P256-SHA256"), reason: ReasonAlgorithm},
		{name: "signed headers", token: replaceParam(userToken, paramSignedHeaders, "host;x-amz-date"), reason: ReasonSignedHeaders},
		{name: "service", token: replaceParam(userToken, paramCredential, testCred.AccessKeyID+"/"+date.Format("20060102")+"/us-east-1/rds-db/aws4_request"), reason: ReasonCredentialScope},
		{name: "scope terminator", token: replaceParam(userToken, paramCredential, testCred.AccessKeyID+"/"+date.Format("20060102")+"/us-east-1/dsql/aws4"), reason: ReasonCredentialScope},
		{name: "scope parts", token: replaceParam(userToken, paramCredential, testCred.AccessKeyID+"/us-east-1/dsql/aws4_request"), reason: ReasonCredentialScope},
		{name: "scope date", token: replaceParam(userToken, paramCredential, testCred.AccessKeyID+"/"+date.Add(-24*time.Hour).Format("20060102")+"/us-east-1/dsql/aws4_request"), reason: ReasonDate},
		{name: "date format", token: replaceParam(userToken, paramDate, date.Format(time.RFC3339)), reason: ReasonDate},
		{name: "expires zero", token: replaceParam(userToken, paramExpires, "0"), reason: ReasonExpires},
		{name: "expires over a week", token: replaceParam(userToken, paramExpires, "604801"), reason: ReasonExpires},
		{name: "expires not a number", token: replaceParam(userToken, paramExpires, "15m"), reason: ReasonExpires},
		{name: "expires with a sign", token: replaceParam(userToken, paramExpires, "+900"), reason: ReasonExpires},
		{name: "signature not hex", token: replaceParam(userToken, paramSignature, strings.Repeat("z", 64)), reason: ReasonMalformed},
		{name: "signature short", token: replaceParam(userToken, paramSignature, sig[:62]), reason: ReasonMalformed},
		{name: "empty", token: "", reason: ReasonMalformed},
		{name: "no query", token: testHost, reason: ReasonMalformed},
		{name: "no host", token: "?" + strings.SplitN(userToken, "?", 2)[1], reason: ReasonMalformed},
		{name: "with scheme", token: "https://" + userToken, reason: ReasonMalformed},
		{name: "other path", token: strings.Replace(userToken, "?", "/x?", 1), reason: ReasonMalformed},
		{name: "bad escape", token: userToken + "&a=%zz", reason: ReasonMalformed},
		{name: "repeated parameter", token: userToken + "&Action=DbConnect", reason: ReasonMalformed},
		{name: "empty parameter name", token: userToken + "&=x", reason: ReasonMalformed},
		{name: "no signature", token: strings.Split(userToken, "&X-Amz-Signature=")[0], reason: ReasonMalformed},
		{name: "no action", token: strings.Replace(userToken, "Action=DbConnect&", "", 1), reason: ReasonMalformed},
		{name: "too long", token: userToken + "&X-Pad=" + strings.Repeat("a", maxTokenLength), reason: ReasonMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			role, sni, creds := tt.role, tt.sni, tt.creds
			if role == "" {
				role = "app"
			}
			switch sni {
			case "":
				sni = testHost
			case "-":
				sni = ""
			}
			if creds == nil {
				creds = testCreds
			}
			err := VerifyToken(tt.token, sni, role, testRegion, creds, date.Add(tt.at), testSkew)
			assertReason(t, err, tt.reason)
			assertNoSecrets(t, err.Error(), tt.token)
		})
	}
}

func assertReason(t *testing.T, err error, want TokenReason) {
	t.Helper()
	var te *TokenError
	if !errors.As(err, &te) {
		t.Fatalf("VerifyToken = %v, want a *TokenError with reason %q", err, want)
	}
	if te.Reason != want {
		t.Fatalf("VerifyToken reason = %q (%v), want %q", te.Reason, err, want)
	}
}

// assertNoSecrets fails when text holds a secret key, a session token or
// the token's signature.
func assertNoSecrets(t *testing.T, text, token string) {
	t.Helper()
	secrets := []string{testCred.SecretAccessKey, testSessionCred.SecretAccessKey, testSessionCred.SessionToken,
		url.QueryEscape(testSessionCred.SessionToken)}
	if sig := tokenParam(token, paramSignature); len(sig) >= 16 {
		secrets = append(secrets, sig)
	}
	if len(token) >= 16 {
		secrets = append(secrets, token)
	}
	for _, secret := range secrets {
		if strings.Contains(text, secret) {
			t.Fatalf("%q contains a secret or the signature", text)
		}
	}
}

// unsignedPayloadToken re-signs token with "UNSIGNED-PAYLOAD" as the payload
// hash, a form no DSQL signer produces (see TestJSSignerPayloadHash).
func unsignedPayloadToken(t *testing.T, token, secret string) string {
	t.Helper()
	host, params, err := parseToken(token)
	if err != nil {
		t.Fatal(err)
	}
	scope := strings.Split(params[paramCredential], "/")
	canonical := "GET\n/\n" + canonicalQueryString(params) + "\nhost:" + host + "\n\nhost\nUNSIGNED-PAYLOAD"
	sum := sha256.Sum256([]byte(canonical))
	stringToSign := sigV4Algorithm + "\n" + params[paramDate] + "\n" + strings.Join(scope[1:], "/") + "\n" + hex.EncodeToString(sum[:])
	key := hmacSHA256([]byte("AWS4"+secret), scope[1])
	for _, part := range scope[2:] {
		key = hmacSHA256(key, part)
	}
	mac := hmac.New(sha256.New, key)
	mac.Write([]byte(stringToSign))
	return replaceParam(token, paramSignature, hex.EncodeToString(mac.Sum(nil)))
}

func TestSigV4Escape(t *testing.T) {
	tests := []struct{ name, in, want string }{
		{"unreserved", "AZaz09-_.~", "AZaz09-_.~"},
		{"slash", "a/b", "a%2Fb"},
		{"space", "a b", "a%20b"},
		{"plus and equals", "a+b=c", "a%2Bb%3Dc"},
		{"utf-8", "é", "%C3%A9"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := sigV4Escape(tt.in); got != tt.want {
				t.Fatalf("sigV4Escape(%q) = %q, want %q", tt.in, got, tt.want)
			}
		})
	}
}

// TestCanonicalQueryOrder checks that parameters sort by name, not by the
// joined "name=value" text (which would put "a1" before "a").
func TestCanonicalQueryOrder(t *testing.T) {
	got := canonicalQueryString(map[string]string{"a1": "x", "a": "y", "B": "z", paramSignature: "s"})
	if want := "B=z&a=y&a1=x"; got != want {
		t.Fatalf("canonicalQueryString = %q, want %q", got, want)
	}
}

// TestDefaultClockSkew pins the strict default: a token is refused 31 s
// past its expiry or 31 s before its X-Amz-Date (five minutes used to pass).
func TestDefaultClockSkew(t *testing.T) {
	cfg, err := Config{Region: testRegion, Hostnames: []string{testHost}, Credentials: testCreds,
		BackendSocketDir: "/tmp", BackendPort: 5432}.withDefaults()
	if err != nil {
		t.Fatalf("withDefaults: %v", err)
	}
	if cfg.ClockSkew != 30*time.Second {
		t.Fatalf("default ClockSkew = %v, want 30s", cfg.ClockSkew)
	}
	token := sdkToken(t, testHost, testRegion, "app", testCred, 15*time.Minute)
	date := tokenDate(t, token)
	for _, tt := range []struct {
		name   string
		at     time.Duration // relative to X-Amz-Date
		reason TokenReason   // "" means accepted
	}{
		{"29 s past expiry", 15*time.Minute + 29*time.Second, ""},
		{"31 s past expiry", 15*time.Minute + 31*time.Second, ReasonExpired},
		{"4 min past expiry", 15*time.Minute + 4*time.Minute, ReasonExpired},
		{"date 29 s ahead", -29 * time.Second, ""},
		{"date 31 s ahead", -31 * time.Second, ReasonNotYetValid},
		{"date 4 min ahead", -4 * time.Minute, ReasonNotYetValid},
	} {
		t.Run(tt.name, func(t *testing.T) {
			err := VerifyToken(token, testHost, "app", testRegion, testCreds, date.Add(tt.at), cfg.ClockSkew)
			if tt.reason == "" {
				if err != nil {
					t.Fatalf("VerifyToken: %v", err)
				}
				return
			}
			assertReason(t, err, tt.reason)
		})
	}
}
