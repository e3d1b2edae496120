package authbridge

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsconfig "github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/credentials/ec2rolecreds"
	"github.com/aws/aws-sdk-go-v2/credentials/endpointcreds"
	"github.com/aws/aws-sdk-go-v2/credentials/processcreds"
	"github.com/aws/aws-sdk-go-v2/credentials/ssocreds"
	"github.com/aws/aws-sdk-go-v2/credentials/stscreds"
	"github.com/aws/smithy-go/logging"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// CredentialsTimeout bounds the first retrieval of AWS credentials: the
// default chain's last source, EC2 instance metadata, can take seconds to
// give up on a machine that is not an EC2 instance.
const CredentialsTimeout = 10 * time.Second

// LoadCredentials loads the AWS default credential chain with profile (""
// for AWS_PROFILE, else "default"), the SDK's own log lines going to log
// (nil for none), and retrieves credentials once, within
// CredentialsTimeout, so that a gateway without credentials says so when it
// starts rather than at its first client. When none can be had, the error
// is a *CredentialsError. The provider returned caches and refreshes them;
// a later refresh that fails surfaces where tokens are minted.
func LoadCredentials(ctx context.Context, profile string, log *zap.Logger) (aws.CredentialsProvider, error) {
	if log == nil {
		log = zap.NewNop()
	}
	awsCfg, err := awsconfig.LoadDefaultConfig(ctx, awsconfig.WithSharedConfigProfile(profile), awsconfig.WithLogger(SDKLogger(log)))
	if err != nil {
		var missing awsconfig.SharedConfigProfileNotExistError
		if errors.As(err, &missing) {
			return nil, fmt.Errorf("AWS profile %s is in neither %s nor %s: add it, or name another profile",
				profileInUse(profile),
				fileInUse("AWS_CONFIG_FILE", awsconfig.DefaultSharedConfigFilename()),
				fileInUse("AWS_SHARED_CREDENTIALS_FILE", awsconfig.DefaultSharedCredentialsFilename()))
		}
		return nil, fmt.Errorf("load AWS configuration: %w", err)
	}
	if awsCfg.Credentials == nil {
		return nil, &CredentialsError{NoneFound: true, Tried: triedSources(profile), Err: errors.New("the SDK resolved no credentials provider")}
	}
	rctx, cancel := context.WithTimeout(ctx, CredentialsTimeout)
	defer cancel()
	if _, err := awsCfg.Credentials.Retrieve(rctx); err != nil {
		if rctx.Err() != nil && ctx.Err() == nil {
			err = fmt.Errorf("no answer within %s: %w", CredentialsTimeout, err)
		}
		return nil, newCredentialsError(awsCfg.Credentials, profile, err)
	}
	return awsCfg.Credentials, nil
}

// CredentialsError is why no AWS credentials could be had: the default
// chain found none (it fell through to EC2 instance metadata, which had
// none either), or the source it found failed. Its message lists what to
// do and never holds a key.
type CredentialsError struct {
	// NoneFound is true when no source in the chain had credentials.
	NoneFound bool
	// Tried lists the sources the default chain looked at, in order, each
	// with the variable, file or profile it reads (when NoneFound); an
	// entry may span lines.
	Tried []string
	// Source is the source the chain chose and that failed, in words
	// (when not NoneFound).
	Source string
	// Err is the SDK's error: the last source's.
	Err error
}

// credentialsHint is what to do when the chain finds no credentials.
const credentialsHint = "Set AWS_PROFILE or AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, or run with an IAM role\n" +
	"(ECS task role, EC2 instance profile, EKS service account)."

func (e *CredentialsError) Error() string {
	if !e.NoneFound {
		return fmt.Sprintf("AWS credentials from %s could not be retrieved: %v", e.Source, e.Err)
	}
	var b strings.Builder
	b.WriteString("no AWS credentials found. The default chain looked, in order, at:")
	for i, s := range e.Tried {
		fmt.Fprintf(&b, "\n  %d. %s", i+1, strings.ReplaceAll(s, "\n", "\n     "))
	}
	b.WriteString("\n" + credentialsHint)
	fmt.Fprintf(&b, "\nThe last source's error: %v", e.Err)
	return b.String()
}

func (e *CredentialsError) Unwrap() error { return e.Err }

// newCredentialsError describes a failed retrieval from provider, the
// default chain's choice.
func newCredentialsError(provider aws.CredentialsProvider, profile string, err error) *CredentialsError {
	if aws.IsCredentialsProvider(provider, (*ec2rolecreds.Provider)(nil)) {
		// The chain reaches instance metadata only when every source
		// before it had nothing.
		return &CredentialsError{NoneFound: true, Tried: triedSources(profile), Err: err}
	}
	return &CredentialsError{Source: describeSource(provider, profileInUse(profile)), Err: err}
}

// describeSource names the source the default chain chose.
func describeSource(p aws.CredentialsProvider, profile string) string {
	switch {
	case aws.IsCredentialsProvider(p, (*ssocreds.Provider)(nil)):
		return fmt.Sprintf("SSO (profile %s; `aws sso login` renews the session)", profile)
	case aws.IsCredentialsProvider(p, (*stscreds.WebIdentityRoleProvider)(nil)):
		return "web identity (AWS_WEB_IDENTITY_TOKEN_FILE and AWS_ROLE_ARN, or web_identity_token_file in the profile)"
	case aws.IsCredentialsProvider(p, (*stscreds.AssumeRoleProvider)(nil)):
		return fmt.Sprintf("assuming the role_arn of profile %s", profile)
	case aws.IsCredentialsProvider(p, (*processcreds.Provider)(nil)):
		return fmt.Sprintf("the credential_process of profile %s", profile)
	case aws.IsCredentialsProvider(p, (*endpointcreds.Provider)(nil)):
		return "ECS container credentials (AWS_CONTAINER_CREDENTIALS_RELATIVE_URI or AWS_CONTAINER_CREDENTIALS_FULL_URI)"
	}
	return fmt.Sprintf("the default chain (profile %s)", profile)
}

// triedSources lists, in order, the sources the default chain looks at,
// with what each reads here. profile is the one named in code ("" for
// none).
func triedSources(profile string) []string {
	env := "environment variables AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY: " + envKeysState()
	if profile != "" {
		// A profile named in code takes precedence over the variables.
		env = "environment variables AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY: skipped, a profile is named"
	}
	return []string{
		env,
		fmt.Sprintf("shared config and credentials files, profile %s: no keys\n(%s, %s)", profileInUse(profile),
			fileInUse("AWS_CONFIG_FILE", awsconfig.DefaultSharedConfigFilename()),
			fileInUse("AWS_SHARED_CREDENTIALS_FILE", awsconfig.DefaultSharedCredentialsFilename())),
		"SSO (sso_session or sso_start_url in that profile): not configured",
		"web identity (AWS_WEB_IDENTITY_TOKEN_FILE): " + envState("AWS_WEB_IDENTITY_TOKEN_FILE"),
		"ECS container credentials (AWS_CONTAINER_CREDENTIALS_RELATIVE_URI / _FULL_URI): " +
			envState("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", "AWS_CONTAINER_CREDENTIALS_FULL_URI"),
		"EC2 instance metadata (IMDS): no role (its error is below)",
	}
}

// envKeysState says which of the access key variables are set (the SDK
// also reads AWS_ACCESS_KEY and AWS_SECRET_KEY).
func envKeysState() string {
	id := os.Getenv("AWS_ACCESS_KEY_ID") != "" || os.Getenv("AWS_ACCESS_KEY") != ""
	secret := os.Getenv("AWS_SECRET_ACCESS_KEY") != "" || os.Getenv("AWS_SECRET_KEY") != ""
	switch {
	case id && !secret:
		return "AWS_SECRET_ACCESS_KEY is not set"
	case secret && !id:
		return "AWS_ACCESS_KEY_ID is not set"
	}
	return "not set"
}

// envState says "not set" or which of the variables is set.
func envState(names ...string) string {
	for _, n := range names {
		if os.Getenv(n) != "" {
			return n + " is set"
		}
	}
	return "not set"
}

func fileInUse(envVar, def string) string {
	if f := os.Getenv(envVar); f != "" {
		return f + " (" + envVar + ")"
	}
	return def
}

// profileInUse names the shared-config profile the chain reads, quoted,
// with where the name came from.
func profileInUse(profile string) string {
	if profile != "" {
		return fmt.Sprintf("%q", profile)
	}
	for _, v := range []string{"AWS_PROFILE", "AWS_DEFAULT_PROFILE"} {
		if p := os.Getenv(v); p != "" {
			return fmt.Sprintf("%q (%s)", p, v)
		}
	}
	return `"default"`
}

// SDKLogger returns a logger for the AWS SDK (config.WithLogger) that
// writes the SDK's lines to log with component=aws-sdk, in log's format,
// instead of the SDK's own "SDK <time> WARN ..." lines on stderr: its
// warnings at Warn, its debug lines at Debug, anything else at Info.
func SDKLogger(log *zap.Logger) logging.Logger {
	return sdkLogger{log: log.WithOptions(zap.AddCallerSkip(1)).With(zap.String("component", "aws-sdk"))}
}

type sdkLogger struct{ log *zap.Logger }

func (l sdkLogger) Logf(c logging.Classification, format string, v ...any) {
	level := zapcore.InfoLevel
	switch c {
	case logging.Warn:
		level = zapcore.WarnLevel
	case logging.Debug:
		level = zapcore.DebugLevel
	}
	if ce := l.log.Check(level, ""); ce != nil {
		ce.Message = fmt.Sprintf(format, v...)
		ce.Write()
	}
}
