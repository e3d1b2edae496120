package gateway

import (
	"bufio"
	"context"
	"errors"
	"net"
	"time"

	"github.com/dsqlgate/dsqlgate/authbridge"
	"github.com/dsqlgate/dsqlgate/config"
	"github.com/dsqlgate/dsqlgate/internal/compat"
	"github.com/dsqlgate/dsqlgate/pgwire"
)

// The adapters here give pgwire the upstream side through the interfaces
// pgwire declares (pgwire/upstream.go), so that pgwire depends on no
// implementation of it. Each is a struct of one pointer: Go stores such a
// value in an interface without allocating, and two adapters of the same
// object compare equal, as the pointers did.

// upstreams adapts a Bridge.
type upstreams struct{ b *authbridge.Bridge }

// The adapters, and authbridge's errors, are what pgwire asks for.
var (
	_ pgwire.Upstreams = upstreams{}
	_ pgwire.Route     = route{}
	_ pgwire.Pool      = pool{}
	_ pgwire.Upstream  = upstreamConn{}
	_ pgwire.WaitError = (*authbridge.WaitError)(nil)
	_ pgwire.DialError = (*authbridge.DialError)(nil)
)

func (u upstreams) Route(database string) pgwire.Route {
	r := u.b.Route(database)
	if r == nil {
		return nil // no typed nil: pgwire compares with nil
	}
	return route{r}
}

func (u upstreams) Routes() []pgwire.Route {
	rs := u.b.Routes()
	out := make([]pgwire.Route, len(rs))
	for i, r := range rs {
		out[i] = route{r}
	}
	return out
}

// route adapts a Route.
type route struct{ r *authbridge.Route }

func (r route) Name() string                         { return r.r.Name }
func (r route) Kind() string                         { return r.r.Kind() }
func (r route) User() string                         { return r.r.User() }
func (r route) Address() string                      { return r.r.Address() }
func (r route) Compat() config.Compat                { return r.r.Compat() }
func (r route) Params(user string) map[string]string { return r.r.Params(user) }
func (r route) Pool() pgwire.Pool                    { return pool{r.r.Pool()} }
func (r route) Locks() compat.LockTable              { return r.r.Locks() }

// pool adapts a Pool. The connections it hands out are upstreamConns.
type pool struct{ p *authbridge.Pool }

func (p pool) Settings() config.Pool { return p.p.Settings() }

func (p pool) Acquire(ctx context.Context, user string, prefer pgwire.Upstream) (pgwire.Upstream, error) {
	sc, err := p.p.Acquire(ctx, user, serverConn(prefer))
	if err != nil {
		return nil, poolError(err)
	}
	return upstreamConn{sc}, nil
}

func (p pool) TakeIdle(user string, prefer pgwire.Upstream) pgwire.Upstream {
	if sc := p.p.TakeIdle(user, serverConn(prefer)); sc != nil {
		return upstreamConn{sc}
	}
	return nil
}

func (p pool) TryAcquire(ctx context.Context, user string) (pgwire.Upstream, error) {
	sc, err := p.p.TryAcquire(ctx, user)
	if err != nil {
		return nil, poolError(err)
	}
	if sc == nil {
		return nil, nil // no room: pgwire.Pool's (nil, nil)
	}
	return upstreamConn{sc}, nil
}

func (p pool) Release(u pgwire.Upstream)       { p.p.Release(serverConn(u)) }
func (p pool) Discard(u pgwire.Upstream)       { p.p.Discard(serverConn(u)) }
func (p pool) Retire(u pgwire.Upstream)        { p.p.Retire(serverConn(u)) }
func (p pool) ReplaceLead() time.Duration      { return p.p.ReplaceLead() }
func (p pool) Pause(ctx context.Context) error { return p.p.Pause(ctx) }
func (p pool) Resume()                         { p.p.Resume() }
func (p pool) Paused() bool                    { return p.p.Paused() }
func (p pool) Reconnect()                      { p.p.Reconnect() }

func (p pool) Stats() pgwire.PoolStats {
	st := p.p.Stats()
	return pgwire.PoolStats{Open: st.Open, Idle: st.Idle}
}

func (p pool) Conns() []pgwire.ConnInfo {
	cs := p.p.Conns()
	out := make([]pgwire.ConnInfo, len(cs))
	for i, c := range cs {
		out[i] = pgwire.ConnInfo{ID: c.ID, PID: c.PID, Role: c.Role, Created: c.Created, RetireAt: c.RetireAt, Idle: c.Idle, LastUsed: c.LastUsed}
	}
	return out
}

// serverConn is the ServerConn behind an upstream a pool handed out, or
// nil for none.
func serverConn(u pgwire.Upstream) *authbridge.ServerConn {
	if u == nil {
		return nil
	}
	return u.(upstreamConn).sc
}

// poolError makes a closed pool's error match pgwire.ErrPoolClosed;
// authbridge's wait and dial errors already match pgwire's interfaces.
func poolError(err error) error {
	if errors.Is(err, authbridge.ErrPoolClosed) {
		return closedError{err}
	}
	return err
}

// closedError is a closed pool's error as pgwire recognises it.
type closedError struct{ err error }

func (e closedError) Error() string        { return e.err.Error() }
func (e closedError) Unwrap() error        { return e.err }
func (e closedError) Is(target error) bool { return target == pgwire.ErrPoolClosed }

// upstreamConn adapts a ServerConn.
type upstreamConn struct{ sc *authbridge.ServerConn }

func (u upstreamConn) ID() uint64                       { return u.sc.ID }
func (u upstreamConn) Conn() net.Conn                   { return u.sc.Conn }
func (u upstreamConn) Reader() *bufio.Reader            { return u.sc.Reader }
func (u upstreamConn) Writer() *bufio.Writer            { return u.sc.Writer }
func (u upstreamConn) Params() map[string]string        { return u.sc.Params }
func (u upstreamConn) State() any                       { return u.sc.State }
func (u upstreamConn) SetState(v any)                   { u.sc.State = v }
func (u upstreamConn) RetireAt() time.Time              { return u.sc.RetireAt() }
func (u upstreamConn) Retiring(now time.Time) bool      { return u.sc.Retiring(now) }
func (u upstreamConn) Alive() bool                      { return u.sc.Alive() }
func (u upstreamConn) Pending() bool                    { return u.sc.Pending() }
func (u upstreamConn) Cancel(ctx context.Context) error { return u.sc.Route().Cancel(ctx, u.sc) }
