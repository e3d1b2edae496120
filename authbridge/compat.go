package authbridge

import (
	"context"

	"github.com/dsqlgate/dsqlgate/config"
)

// Compat is the route's compatibility-layer configuration (pgwire applies
// it to the route's client sessions).
func (r *Route) Compat() config.Compat { return r.compat }

// Address is the host:port the route dials.
func (r *Route) Address() string { return r.address }

// CredentialsSource names where the AWS credentials that sign tokens come
// from (the SDK's provider name, such as EnvConfigCredentials), retrieving
// them if needed. It never returns a key.
func (b *Bridge) CredentialsSource(ctx context.Context) (string, error) {
	if b.creds == nil {
		return "", nil
	}
	c, err := b.creds.Retrieve(ctx)
	if err != nil {
		return "", err
	}
	return c.Source, nil
}
