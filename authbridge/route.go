package authbridge

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgerrcode"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/dsqlgate/dsqlgate/config"
	"github.com/dsqlgate/dsqlgate/internal/compat"
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

// Locks returns the route's advisory lock table, creating it on first use.
// Nothing is dialled until a lock is asked for. After Bridge.Close it
// returns a closed one.
func (r *Route) Locks() *compat.LockManager {
	r.locksMu.Lock()
	defer r.locksMu.Unlock()
	if r.locks == nil {
		r.locks = compat.NewLockManager(r, compat.LockTableConfig{
			Table:      r.compat.AdvisoryLockTable,
			Lease:      r.compat.AdvisoryLockLease.D(),
			MaxConnAge: r.pool.cfg().MaxLifetime.D(),
			Log:        r.log,
			Now:        r.pool.now,
		})
		if r.locksClosed {
			r.locks.Close()
		}
	}
	return r.locks
}

// closeLocks closes the route's lock table, if any, and any made later.
func (r *Route) closeLocks() {
	r.locksMu.Lock()
	r.locksClosed = true
	m := r.locks
	r.locksMu.Unlock()
	if m != nil {
		m.Close()
	}
}

// DialLocks opens a connection for the route's lock table, outside the
// pool, through the route's dial rate limit (compat.LockUpstream).
func (r *Route) DialLocks(ctx context.Context, params map[string]string) (*pgconn.PgConn, error) {
	if err := r.waitToDial(ctx); err != nil {
		return nil, err
	}
	conn, err := r.connect(ctx, r.user, params)
	if err != nil {
		r.backOffIfLimited(err)
		return nil, err
	}
	return conn, nil
}

// waitToDial waits for the route's cluster dial rate limit and any
// backoff in force, for every dial to the cluster: the pool's and the lock
// table's.
func (r *Route) waitToDial(ctx context.Context) error {
	if err := r.limiter.wait(ctx); err != nil {
		return &DialError{Route: r.Name, Retryable: true, Err: fmt.Errorf("waiting for the dial rate limit: %w", err)}
	}
	return nil
}

// backOffIfLimited pauses every dial to the route's cluster for a while
// when err is the cluster refusing a connection for its rate or its
// count (53400, 53300).
func (r *Route) backOffIfLimited(err error) {
	var de *DialError
	if errors.As(err, &de) && (de.SQLState == pgerrcode.ConfigurationLimitExceeded || de.SQLState == pgerrcode.TooManyConnections) {
		r.limiter.backoff(limitBackoff)
	}
}

// DialRetryable reports whether a DialLocks error may pass
// (compat.LockUpstream): ok is false when err holds no DialError.
func (r *Route) DialRetryable(err error) (retryable, ok bool) {
	var de *DialError
	if errors.As(err, &de) {
		return de.Retryable, true
	}
	return false, false
}
