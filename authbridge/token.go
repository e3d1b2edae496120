package authbridge

import (
	"context"
	"fmt"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	dsqlauth "github.com/aws/aws-sdk-go-v2/feature/dsql/auth"
)

// AdminRole is the DSQL role that needs an admin token (Action=DbConnectAdmin).
const AdminRole = "admin"

// TokenMinter mints DSQL IAM authentication tokens for one endpoint and role.
// Minting is a local SigV4 signature; the only possible I/O is the
// credentials provider refreshing its credentials. The zero value is not
// usable; use NewTokenMinter. Safe for concurrent use.
type TokenMinter struct {
	host   string // endpoint host name, without port: the token is signed for it
	region string
	role   string
	expiry time.Duration
	creds  aws.CredentialsProvider
}

// NewTokenMinter returns a minter. creds should be cached
// (aws.NewCredentialsCache); config.LoadDefaultConfig's provider already is.
func NewTokenMinter(host, region, role string, expiry time.Duration, creds aws.CredentialsProvider) *TokenMinter {
	return &TokenMinter{host: host, region: region, role: role, expiry: expiry, creds: creds}
}

// Mint returns a fresh token. The token is a secret: never log it, never put
// it in an error. Errors returned here describe the failure without it.
func (m *TokenMinter) Mint(ctx context.Context) (string, error) {
	opt := func(o *dsqlauth.TokenOptions) { o.ExpiresIn = m.expiry }
	var (
		token string
		err   error
	)
	if m.role == AdminRole {
		token, err = dsqlauth.GenerateDBConnectAdminAuthToken(ctx, m.host, m.region, m.creds, opt)
	} else {
		token, err = dsqlauth.GenerateDbConnectAuthToken(ctx, m.host, m.region, m.creds, opt)
	}
	if err != nil {
		return "", fmt.Errorf("mint token for %s in %s: %w", m.host, m.region, err)
	}
	return token, nil
}
