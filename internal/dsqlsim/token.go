package dsqlsim

import (
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"fmt"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"time"
)

// TokenReason names the check an IAM token failed. Tests compare it with the
// constants below; the text is safe to show a client.
type TokenReason string

// The checks VerifyToken makes, in the order it makes them.
const (
	ReasonMalformed         TokenReason = "malformed token"
	ReasonAlgorithm         TokenReason = "unsupported signing algorithm"
	ReasonSignedHeaders     TokenReason = "signed headers must be host"
	ReasonCredentialScope   TokenReason = "invalid credential scope"
	ReasonRegion            TokenReason = "token signed for another region"
	ReasonDate              TokenReason = "invalid date"
	ReasonExpires           TokenReason = "invalid expiry"
	ReasonNotYetValid       TokenReason = "token date is in the future"
	ReasonExpired           TokenReason = "token expired"
	ReasonHost              TokenReason = "token host does not match the server name"
	ReasonAction            TokenReason = "token action does not match the role"
	ReasonUnknownAccessKey  TokenReason = "unknown access key"
	ReasonSecurityToken     TokenReason = "security token mismatch"
	ReasonSignatureMismatch TokenReason = "signature mismatch"
)

// TokenError is the error VerifyToken returns for a refused token. Neither
// field ever holds the token, a signature or a secret key.
type TokenError struct {
	Reason TokenReason
	// Detail adds what is safe to say about the failure (a region, a date),
	// or is empty.
	Detail string
}

func (e *TokenError) Error() string {
	if e.Detail == "" {
		return "iam token: " + string(e.Reason)
	}
	return "iam token: " + string(e.Reason) + ": " + e.Detail
}

func tokenErr(reason TokenReason, format string, args ...any) *TokenError {
	return &TokenError{Reason: reason, Detail: fmt.Sprintf(format, args...)}
}

// SigV4 constants of a DSQL token.
const (
	sigV4Algorithm   = "AWS4-HMAC-SHA256"
	sigV4Terminator  = "aws4_request"
	dsqlService      = "dsql"
	sigV4DateLayout  = "20060102T150405Z"
	sigV4ScopeLayout = "20060102"
	maxTokenExpires  = 604800 // seconds, one week, SigV4's limit for presigned URLs
	maxTokenLength   = 16384  // bytes; real tokens are 1-2 KB
	// emptyPayloadHash is the hex SHA-256 of the empty string. The Go SDK,
	// the JS SDK (@aws-sdk/dsql-signer) and botocore (the AWS CLI) all sign
	// DSQL tokens with it; none uses UNSIGNED-PAYLOAD, so neither do we.
	emptyPayloadHash = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"

	actionConnect      = "DbConnect"
	actionConnectAdmin = "DbConnectAdmin"
	adminRole          = "admin"
)

// The query parameters of a presigned URL.
const (
	paramAction        = "Action"
	paramAlgorithm     = "X-Amz-Algorithm"
	paramCredential    = "X-Amz-Credential"
	paramDate          = "X-Amz-Date"
	paramExpires       = "X-Amz-Expires"
	paramSignedHeaders = "X-Amz-SignedHeaders"
	paramSecurityToken = "X-Amz-Security-Token"
	paramSignature     = "X-Amz-Signature"
)

// VerifyToken checks that token is a valid Aurora DSQL IAM token for a
// connection to sniHost as role, signed for region by one of creds, at time
// now. skew is allowed on either side of the validity window and nowhere
// else: X-Amz-Date may lie up to skew in the future, and the token is taken
// up to skew past X-Amz-Date + X-Amz-Expires. It returns nil or a
// *TokenError.
//
// A token is a SigV4 presigned GET URL without its scheme:
// "host?query" (the Go and JS SDKs) or "host/?query" (the AWS CLI). The
// signature is recomputed here from the SigV4 specification, not with an
// SDK's signer, so that a bug in a signer cannot hide in its own verifier.
// The payload hash signed is that of the empty string, which the Go SDK, the
// JS SDK and botocore all use; a token signed with UNSIGNED-PAYLOAD fails.
func VerifyToken(token, sniHost, role, region string, creds []Credential, now time.Time, skew time.Duration) error {
	if len(token) > maxTokenLength {
		return tokenErr(ReasonMalformed, "longer than %d bytes", maxTokenLength)
	}
	host, params, err := parseToken(token)
	if err != nil {
		return err
	}
	for _, name := range []string{paramAction, paramAlgorithm, paramCredential, paramDate, paramExpires, paramSignedHeaders, paramSignature} {
		if _, ok := params[name]; !ok {
			return tokenErr(ReasonMalformed, "no %s parameter", name)
		}
	}

	if params[paramAlgorithm] != sigV4Algorithm {
		return &TokenError{Reason: ReasonAlgorithm}
	}
	if params[paramSignedHeaders] != "host" {
		return &TokenError{Reason: ReasonSignedHeaders}
	}

	// AKID/yyyymmdd/region/service/aws4_request. An access key id holds no
	// "/", so splitting from the left is exact.
	scope := strings.Split(params[paramCredential], "/")
	if len(scope) != 5 || scope[0] == "" || scope[4] != sigV4Terminator {
		return tokenErr(ReasonCredentialScope, "want AKID/date/region/dsql/aws4_request")
	}
	accessKeyID, scopeDate, scopeRegion, scopeService := scope[0], scope[1], scope[2], scope[3]
	if scopeService != dsqlService {
		return tokenErr(ReasonCredentialScope, "service %q, want %q", truncate(scopeService), dsqlService)
	}
	if scopeRegion != region {
		return tokenErr(ReasonRegion, "signed for %q, cluster is in %q", truncate(scopeRegion), region)
	}

	date, err := time.Parse(sigV4DateLayout, params[paramDate])
	if err != nil {
		return tokenErr(ReasonDate, "X-Amz-Date is not yyyymmddThhmmssZ")
	}
	if scopeDate != date.Format(sigV4ScopeLayout) {
		return tokenErr(ReasonDate, "credential scope date does not match X-Amz-Date")
	}
	expiresText := params[paramExpires]
	expires, err := strconv.Atoi(expiresText)
	if err != nil || expires < 1 || expires > maxTokenExpires || expiresText != strconv.Itoa(expires) {
		return tokenErr(ReasonExpires, "X-Amz-Expires must be whole seconds in 1..%d", maxTokenExpires)
	}
	if now.Before(date.Add(-skew)) {
		return tokenErr(ReasonNotYetValid, "signed at %s", date.Format(time.RFC3339))
	}
	expiry := date.Add(time.Duration(expires) * time.Second)
	if now.After(expiry.Add(skew)) {
		return tokenErr(ReasonExpired, "expired at %s", expiry.Format(time.RFC3339))
	}

	if sniHost == "" || !strings.EqualFold(host, sniHost) {
		return &TokenError{Reason: ReasonHost}
	}
	wantAction := actionConnect
	if role == adminRole {
		wantAction = actionConnectAdmin
	}
	if params[paramAction] != wantAction {
		return tokenErr(ReasonAction, "role %q needs Action=%s", role, wantAction)
	}

	cred, ok := findCredential(creds, accessKeyID)
	if !ok {
		return &TokenError{Reason: ReasonUnknownAccessKey}
	}
	sessionToken, hasSessionToken := params[paramSecurityToken]
	switch {
	case cred.SessionToken == "" && hasSessionToken:
		return tokenErr(ReasonSecurityToken, "token carries a security token, the credential has none")
	case cred.SessionToken != "" && !hasSessionToken:
		return tokenErr(ReasonSecurityToken, "token carries no security token")
	case cred.SessionToken != "" && subtle.ConstantTimeCompare([]byte(sessionToken), []byte(cred.SessionToken)) != 1:
		return tokenErr(ReasonSecurityToken, "security token differs")
	}

	got, err := hex.DecodeString(params[paramSignature])
	if err != nil || len(got) != sha256.Size {
		return tokenErr(ReasonMalformed, "X-Amz-Signature is not 64 hex digits")
	}
	want := sigV4Signature(cred.SecretAccessKey, host, params, params[paramDate], scopeDate, scopeRegion, scopeService)
	if !hmac.Equal(got, want) {
		return &TokenError{Reason: ReasonSignatureMismatch}
	}
	return nil
}

// parseToken splits a token into its host and its decoded query parameters.
// A repeated or empty parameter name is malformed: SigV4 would sign it, but
// no DSQL signer produces one and it makes the checks ambiguous.
func parseToken(token string) (host string, params map[string]string, err error) {
	hostPart, query, ok := strings.Cut(token, "?")
	if !ok {
		return "", nil, tokenErr(ReasonMalformed, "no query string")
	}
	// The AWS CLI writes "host/?...", the SDKs "host?...": both have the
	// canonical URI "/". Any other path is not a DSQL token.
	host = strings.TrimSuffix(hostPart, "/")
	if host == "" || strings.ContainsAny(host, "/\\@ #") || strings.Contains(hostPart, "://") {
		return "", nil, tokenErr(ReasonMalformed, "bad host part")
	}
	params = make(map[string]string)
	for _, pair := range strings.Split(query, "&") {
		rawKey, rawValue, _ := strings.Cut(pair, "=")
		key, err1 := url.QueryUnescape(rawKey)
		value, err2 := url.QueryUnescape(rawValue)
		if err1 != nil || err2 != nil {
			return "", nil, tokenErr(ReasonMalformed, "bad percent-encoding")
		}
		if key == "" {
			return "", nil, tokenErr(ReasonMalformed, "empty parameter name")
		}
		if _, dup := params[key]; dup {
			return "", nil, tokenErr(ReasonMalformed, "repeated parameter %s", truncate(key))
		}
		params[key] = value
	}
	return host, params, nil
}

func findCredential(creds []Credential, accessKeyID string) (Credential, bool) {
	for _, c := range creds {
		if c.AccessKeyID == accessKeyID {
			return c, true
		}
	}
	return Credential{}, false
}

// sigV4Signature computes the signature of a presigned GET of "/" on host
// with the query params (X-Amz-Signature excluded), per the SigV4
// specification:
//
//	CanonicalRequest = "GET\n/\n" + CanonicalQueryString + "\n" +
//	                   "host:" + host + "\n" + "\n" + "host" + "\n" + hex(SHA256(""))
//	StringToSign     = "AWS4-HMAC-SHA256\n" + amzDate + "\n" + scope + "\n" + hex(SHA256(CanonicalRequest))
//	SigningKey       = HMAC(HMAC(HMAC(HMAC("AWS4"+secret, date), region), service), "aws4_request")
func sigV4Signature(secret, host string, params map[string]string, amzDate, scopeDate, region, service string) []byte {
	canonicalRequest := "GET\n/\n" + canonicalQueryString(params) + "\nhost:" + host + "\n\nhost\n" + emptyPayloadHash
	requestHash := sha256.Sum256([]byte(canonicalRequest))
	scope := scopeDate + "/" + region + "/" + service + "/" + sigV4Terminator
	stringToSign := sigV4Algorithm + "\n" + amzDate + "\n" + scope + "\n" + hex.EncodeToString(requestHash[:])

	key := hmacSHA256([]byte("AWS4"+secret), scopeDate)
	key = hmacSHA256(key, region)
	key = hmacSHA256(key, service)
	key = hmacSHA256(key, sigV4Terminator)
	return hmacSHA256(key, stringToSign)
}

func hmacSHA256(key []byte, data string) []byte {
	mac := hmac.New(sha256.New, key)
	mac.Write([]byte(data))
	return mac.Sum(nil)
}

// canonicalQueryString encodes every parameter but the signature with SigV4's
// URI encoding and sorts them by encoded name (names are unique here).
func canonicalQueryString(params map[string]string) string {
	type pair struct{ key, value string }
	pairs := make([]pair, 0, len(params))
	for k, v := range params {
		if k == paramSignature {
			continue
		}
		pairs = append(pairs, pair{sigV4Escape(k), sigV4Escape(v)})
	}
	sort.Slice(pairs, func(i, j int) bool { return pairs[i].key < pairs[j].key })
	var b strings.Builder
	for i, p := range pairs {
		if i > 0 {
			b.WriteByte('&')
		}
		b.WriteString(p.key)
		b.WriteByte('=')
		b.WriteString(p.value)
	}
	return b.String()
}

// sigV4Escape percent-encodes every byte except the unreserved characters
// A-Z a-z 0-9 - _ . ~, with upper-case hex digits, as SigV4 requires.
func sigV4Escape(s string) string {
	const hexDigits = "0123456789ABCDEF"
	var b strings.Builder
	b.Grow(len(s))
	for i := 0; i < len(s); i++ {
		c := s[i]
		if 'A' <= c && c <= 'Z' || 'a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-' || c == '_' || c == '.' || c == '~' {
			b.WriteByte(c)
			continue
		}
		b.WriteByte('%')
		b.WriteByte(hexDigits[c>>4])
		b.WriteByte(hexDigits[c&15])
	}
	return b.String()
}

// truncate bounds a value taken from a token before it goes into an error
// detail, so that a hostile token cannot fill a log line.
func truncate(s string) string {
	const max = 64
	if len(s) > max {
		return s[:max] + "..."
	}
	return s
}
