package authbridge

import (
	"context"
	"crypto/tls"
	"fmt"
	"maps"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"go.uber.org/zap"

	"github.com/dsqlgate/dsqlgate/config"
	"github.com/dsqlgate/dsqlgate/internal/compat"
	"github.com/dsqlgate/dsqlgate/internal/metrics"
)

// Options are the parts of a Bridge that do not come from the config file.
type Options struct {
	// Credentials sign DSQL tokens. Nil means the AWS default chain
	// (with cfg.AWS.Profile), loaded once by New.
	Credentials aws.CredentialsProvider
	// Logger receives the bridge's logs; nil means none.
	Logger *zap.Logger
	// Now is the clock for lifetimes and timeouts; nil means time.Now.
	Now func() time.Time
	// Metrics receives the bridge's measurements; nil means a private,
	// unexported set.
	Metrics *metrics.Metrics
}

// Bridge holds every route of a configuration and their pools.
//
// A new configuration's routes are put in force in two steps (Prepare,
// then RouteUpdate.Commit) so that a reload that fails elsewhere can be
// abandoned with nothing changed, and so that nothing slow happens while
// logins wait for mu.
type Bridge struct {
	// update serialises configuration updates: Prepare takes it, the
	// RouteUpdate's Commit or Discard lets it go. Under it alone the
	// routes map, the routes' conf and limiters may be read.
	update   sync.Mutex
	limiters map[string]*dialLimiter // by cluster address; guarded by update

	mu      sync.RWMutex
	routes  map[string]*Route // by client-facing database name; written under mu and update
	retired []*Route          // routes replaced or removed, still serving their sessions; guarded by mu
	closed  bool              // Close has begun; guarded by mu
	// retiring counts the goroutines closing the idle upstreams of
	// replaced pools; Close waits for them. Added to only under mu while
	// closed is false.
	retiring sync.WaitGroup

	creds     aws.CredentialsProvider
	opts      Options
	log       *zap.Logger
	metrics   *metrics.Metrics
	closeOnce sync.Once
}

const (
	kindDSQL     = config.KindDSQL
	kindPostgres = config.KindPostgres
)

// Route is one configured upstream with its pool. Its fields are fixed at
// construction and safe to read from any goroutine.
type Route struct {
	Name             string // the database name clients ask for
	kind             string
	host             string // endpoint host: SNI, certificate name, token host
	port             int
	address          string // what is dialled
	region           string
	user             string // DSQL role, or the postgres login
	password         string // kind postgres only; a secret
	upstreamDatabase string
	negotiation      string // "direct" or "postgres"
	tlsConfig        *tls.Config
	minter           *TokenMinter            // for user, the route's role
	minters          map[string]*TokenMinter // by role: user and every role of user_roles
	userRoles        map[string]string       // user_roles: gateway user → DSQL role; read-only
	dialTimeout      time.Duration
	limiter          *dialLimiter
	pool             *Pool
	compat           config.Compat // advisory lock table and lease
	log              *zap.Logger
	metrics          *metrics.Metrics
	conf             config.Route // as configured; Pool changed by RouteUpdate.Commit; guarded by Bridge.update

	paramsMu sync.Mutex
	params   map[string]map[string]string // by role: ParameterStatus of its most recent handshake

	locksMu     sync.Mutex
	locks       *compat.LockManager // created by the first Locks; guarded by locksMu
	locksClosed bool                // Bridge.Close ran; guarded by locksMu
}

// New builds the routes and pools of cfg (already validated) and starts the
// pools' maintenance. Nothing is dialled unless a pool has min_idle > 0.
func New(ctx context.Context, cfg *config.Config, opts Options) (*Bridge, error) {
	if opts.Logger == nil {
		opts.Logger = zap.NewNop()
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Metrics == nil {
		opts.Metrics = metrics.New()
	}
	b := &Bridge{routes: map[string]*Route{}, limiters: map[string]*dialLimiter{}, log: opts.Logger, opts: opts,
		creds: opts.Credentials, metrics: opts.Metrics}
	u, err := b.Prepare(ctx, cfg)
	if err != nil {
		return nil, err
	}
	u.Commit()
	if err := b.metrics.Registry.Register(b); err != nil {
		b.Close()
		return nil, fmt.Errorf("register pool metrics: %w", err)
	}
	return b, nil
}

func newRoute(rc *config.Route, creds aws.CredentialsProvider, opts Options) (*Route, error) {
	if rc.Kind == config.KindDSQL {
		compat.ProtectLockTable(rc.Compat.AdvisoryLockTable) // out of clients' reach
	}
	r := &Route{
		Name:             rc.Database,
		kind:             rc.Kind,
		host:             rc.Host(),
		port:             rc.Port(),
		address:          rc.Address(),
		region:           rc.ResolvedRegion(),
		negotiation:      rc.TLSNegotiation,
		dialTimeout:      rc.Pool.DialTimeout.D(),
		upstreamDatabase: rc.UpstreamDatabase,
		compat:           rc.Compat,
		conf:             *rc,
		log:              opts.Logger.With(zap.String("route", rc.Database)),
		metrics:          opts.Metrics,
	}
	var err error
	switch rc.Kind {
	case kindDSQL:
		r.user = rc.Role
		r.upstreamDatabase = "postgres" // DSQL has no other database
		r.minter = NewTokenMinter(r.host, r.region, rc.Role, rc.TokenExpiry.D(), creds)
		r.userRoles = maps.Clone(rc.UserRoles)
		r.minters = map[string]*TokenMinter{rc.Role: r.minter}
		for _, role := range rc.UserRoles {
			if r.minters[role] == nil {
				r.minters[role] = NewTokenMinter(r.host, r.region, role, rc.TokenExpiry.D(), creds)
			}
		}
		r.tlsConfig, err = buildTLSConfig(r.host, rc.CAFile, rc.TLSNegotiation == config.NegotiateDirect, true)
	case kindPostgres:
		r.user = rc.User
		r.password = rc.Password // password_env resolved by users.ResolveRoutes
		if rc.TLS != "disable" {
			r.tlsConfig, err = buildTLSConfig(r.host, rc.CAFile, rc.TLSNegotiation == config.NegotiateDirect, rc.TLS == "verify-full")
		}
	default:
		err = fmt.Errorf("unknown kind %q", rc.Kind)
	}
	if err != nil {
		return nil, err
	}
	r.pool = newPool(r, rc.Pool, opts)
	return r, nil
}

// loadCredentials returns the credentials DSQL routes of cfg sign their
// tokens with: the bridge's, else the AWS default chain, loaded and
// retrieved once (see LoadCredentials: without credentials the update
// fails, and the gateway does not start); the update that first needs them
// keeps them when committed. Nil when cfg has no DSQL route and the bridge
// none.
func (b *Bridge) loadCredentials(ctx context.Context, cfg *config.Config) (aws.CredentialsProvider, error) {
	if b.creds != nil {
		return b.creds, nil
	}
	for i := range cfg.Routes {
		if cfg.Routes[i].Kind == kindDSQL {
			return LoadCredentials(ctx, cfg.AWS.Profile, b.log)
		}
	}
	return nil, nil
}

// Route returns the route for a client's startup database, or nil.
func (b *Bridge) Route(database string) *Route {
	b.mu.RLock()
	defer b.mu.RUnlock()
	return b.routes[database]
}

// Routes returns every route, in no particular order.
func (b *Bridge) Routes() []*Route {
	b.mu.RLock()
	defer b.mu.RUnlock()
	out := make([]*Route, 0, len(b.routes))
	for _, r := range b.routes {
		out = append(out, r)
	}
	return out
}

// RouteUpdate is a configuration's routes, built by Prepare and not yet in
// force: the next route table, the new routes with their pools (built, not
// started), and the settings to change. Commit puts it in force, Discard
// drops it; until one of them runs, no other update can be prepared.
type RouteUpdate struct {
	b        *Bridge
	creds    aws.CredentialsProvider
	routes   map[string]*Route        // the next route table
	created  []*Route                 // in routes; pools not started
	retire   []*Route                 // in force now, not in routes
	settings map[*Route]config.Pool   // kept routes whose pool settings change
	limiters map[string]*dialLimiter  // new clusters' dial limiters
	rates    map[*dialLimiter]float64 // stricter dial rates for limiters in use
	changes  []string
	done     bool
}

// Prepare builds the routes of a new (validated) configuration without
// changing anything in force, for a reload that puts them in force
// without dropping sessions: a route whose upstream is the same keeps its
// pool and takes the new pool settings; a route whose upstream changed
// gets a new pool (its current sessions finish on the old one); a removed
// route takes no new clients. It loads the AWS credentials when a DSQL
// route first needs them. The caller must Commit or Discard the result.
func (b *Bridge) Prepare(ctx context.Context, cfg *config.Config) (*RouteUpdate, error) {
	if a := cfg.ClientTLS.ACME; a.Enabled() {
		if _, ok := a.StorageRoute(); ok {
			// The certificate's private key, out of clients' reach: they
			// log in to that cluster with the storage's own role.
			compat.ProtectACMETables(a.StorageTable)
		}
	}
	b.update.Lock()
	creds, err := b.loadCredentials(ctx, cfg)
	if err != nil {
		b.update.Unlock()
		return nil, err
	}
	u := &RouteUpdate{b: b, creds: creds, routes: map[string]*Route{}, settings: map[*Route]config.Pool{},
		limiters: map[string]*dialLimiter{}, rates: map[*dialLimiter]float64{}}
	// b.routes is written only under b.update, which this goroutine holds.
	for i := range cfg.Routes {
		rc := &cfg.Routes[i]
		old := b.routes[rc.Database]
		if old != nil && sameUpstream(&old.conf, rc) {
			u.routes[rc.Database] = old
			if old.conf.Pool != rc.Pool {
				u.changes = append(u.changes, fmt.Sprintf("route %q: pool settings changed", rc.Database))
				u.settings[old] = rc.Pool
			}
			continue
		}
		r, err := u.newRoute(rc)
		if err != nil {
			u.Discard()
			return nil, fmt.Errorf("route %q: %w", rc.Database, err)
		}
		u.created = append(u.created, r)
		u.routes[rc.Database] = r
		if old == nil {
			u.changes = append(u.changes, fmt.Sprintf("route %q added", rc.Database))
		} else {
			u.changes = append(u.changes, fmt.Sprintf("route %q: upstream settings changed; new clients get a new pool, current sessions finish on the old one", rc.Database))
		}
	}
	for name, old := range b.routes {
		if u.routes[name] != old {
			u.retire = append(u.retire, old)
			if _, kept := u.routes[name]; !kept {
				u.changes = append(u.changes, fmt.Sprintf("route %q removed; its current sessions finish", name))
			}
		}
	}
	return u, nil
}

// newRoute builds a route (not started) with its cluster's dial limiter:
// the one in use, or a new one for a new cluster. Routes sharing a
// cluster share its limit, and the strictest rate wins; a limiter in use
// takes a stricter rate only at Commit.
func (u *RouteUpdate) newRoute(rc *config.Route) (*Route, error) {
	r, err := newRoute(rc, u.creds, u.b.opts)
	if err != nil {
		return nil, err
	}
	key := strings.ToLower(r.address)
	if lim := u.b.limiters[key]; lim != nil {
		rate, pending := u.rates[lim]
		if !pending {
			rate = lim.perSecond()
		}
		if rc.Pool.DialRate < rate {
			u.rates[lim] = rc.Pool.DialRate
		}
		r.limiter = lim
		return r, nil
	}
	lim := u.limiters[key]
	if lim == nil {
		lim = newDialLimiter(rc.Pool.DialRate, int(rc.Pool.DialRate), u.b.opts.Now)
		u.limiters[key] = lim
	} else {
		lim.tighten(rc.Pool.DialRate) // not in use yet: changed in place
	}
	r.limiter = lim
	return r, nil
}

// Commit puts the update in force and returns what changed, in words for
// the log. Under the bridge's lock it only swaps the route table and sets
// fields; the idle upstreams of the pools it replaces are closed after the
// lock is released, in the background (each graceful close may wait a
// second for its server), so logins never wait for them. Close waits for
// those closes. After Close, Commit discards the update instead.
func (u *RouteUpdate) Commit() []string {
	if u.done {
		return nil
	}
	u.done = true
	b := u.b
	defer b.update.Unlock()
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		u.closeCreated()
		return nil
	}
	for key, lim := range u.limiters {
		b.limiters[key] = lim
	}
	for lim, rate := range u.rates {
		lim.tighten(rate)
	}
	for _, r := range u.created {
		r.pool.start()
	}
	b.routes = u.routes
	b.retired = append(b.retired, u.retire...)
	b.retiring.Add(len(u.retire))
	if u.creds != nil {
		b.creds = u.creds
	}
	b.mu.Unlock()
	for r, settings := range u.settings {
		r.conf.Pool = settings
		r.pool.update(settings)
	}
	for _, r := range u.retire {
		go func() {
			defer b.retiring.Done()
			r.pool.retireAll()
		}()
	}
	return u.changes
}

// Discard drops an update that was not committed: the pools it built are
// closed (they never dialled) and nothing in force changed. It does
// nothing after Commit, so it may be deferred.
func (u *RouteUpdate) Discard() {
	if u.done {
		return
	}
	u.done = true
	u.closeCreated()
	u.b.update.Unlock()
}

func (u *RouteUpdate) closeCreated() {
	for _, r := range u.created {
		r.pool.close()
	}
}

// sameUpstream reports whether two route configurations open the same
// kind of upstream connection (so the pool can be kept).
func sameUpstream(a, b *config.Route) bool {
	return a.Kind == b.Kind && a.Endpoint == b.Endpoint && a.DialAddress == b.DialAddress &&
		a.ResolvedRegion() == b.ResolvedRegion() && a.Role == b.Role && maps.Equal(a.UserRoles, b.UserRoles) && a.TokenExpiry == b.TokenExpiry &&
		a.TLSNegotiation == b.TLSNegotiation && a.TLS == b.TLS && a.CAFile == b.CAFile && a.User == b.User &&
		a.Password == b.Password && a.UpstreamDatabase == b.UpstreamDatabase &&
		a.Compat == b.Compat
}

// Close stops the routes' advisory lock renewals (the rows are left to
// expire by their lease), then closes every pool and the idle connections
// in them, and waits for the closes a reload left running. Connections
// held by clients are closed when they are released.
func (b *Bridge) Close() {
	b.closeOnce.Do(func() {
		b.mu.Lock()
		b.closed = true
		all := append(b.routesLocked(), b.retired...)
		b.mu.Unlock()
		for _, r := range all {
			r.closeLocks()
		}
		for _, r := range all {
			r.pool.close()
		}
		b.retiring.Wait()
		if b.metrics != nil {
			b.metrics.Registry.Unregister(b)
		}
	})
}

// Metrics is the set of metrics the bridge reports to.
func (b *Bridge) Metrics() *metrics.Metrics { return b.metrics }

// Pool is the route's pool of upstream connections.
func (r *Route) Pool() *Pool { return r.pool }

// Kind is config.KindDSQL or config.KindPostgres.
func (r *Route) Kind() string { return r.kind }

// Endpoint is the upstream host name (SNI and token host).
func (r *Route) Endpoint() string { return r.host }

// Region is the route's AWS region ("" for kind postgres).
func (r *Route) Region() string { return r.region }

// User is the DSQL role or PostgreSQL login used upstream: for kind dsql,
// the route's role, which users without an entry in user_roles log in as.
func (r *Route) User() string { return r.user }

// RoleFor is the upstream login of the connections opened for the gateway
// user user: for kind dsql, its role in user_roles, else the route's role;
// for kind postgres, the route's user. user "" (connections opened before
// any user asked, health checks) gets the route's.
func (r *Route) RoleFor(user string) string {
	if role, ok := r.userRoles[user]; ok {
		return role
	}
	return r.user
}

// Minter returns the route's token minter (nil for kind postgres).
func (r *Route) Minter() *TokenMinter { return r.minter }

// Params returns the ParameterStatus values of the most recent upstream
// handshake on this route for the role user logs in as (RoleFor: with
// user_roles, session_authorization and is_superuser differ by role), or
// nil when no connection of that role has been dialled yet. The map must
// not be modified.
func (r *Route) Params(user string) map[string]string {
	r.paramsMu.Lock()
	defer r.paramsMu.Unlock()
	return r.params[r.RoleFor(user)]
}

func (r *Route) setParams(role string, p map[string]string) {
	r.paramsMu.Lock()
	if r.params == nil {
		r.params = map[string]map[string]string{}
	}
	r.params[role] = p
	r.paramsMu.Unlock()
}

// Cancel asks the upstream to cancel what sc is running now, over a new
// connection with the upstream's own key.
//
// The cancel's connection counts against the cluster's dial rate like any
// other: DSQL limits new connections per second, cancels included.
func (r *Route) Cancel(ctx context.Context, sc *ServerConn) error {
	if err := r.limiter.wait(ctx); err != nil {
		return fmt.Errorf("waiting for the dial rate limit: %w", err)
	}
	return r.sendCancel(ctx, sc.PID, sc.Secret)
}

// routesLocked lists the routes in force; the caller holds b.mu.
func (b *Bridge) routesLocked() []*Route {
	out := make([]*Route, 0, len(b.routes))
	for _, r := range b.routes {
		out = append(out, r)
	}
	return out
}
