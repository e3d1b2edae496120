package authbridge

import (
	"context"
	"crypto/tls"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsconfig "github.com/aws/aws-sdk-go-v2/config"
	"go.uber.org/zap"

	"github.com/dsqlgate/dsqlgate/config"
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
type Bridge struct {
	mu       sync.RWMutex
	routes   map[string]*Route // by client-facing database name; guarded by mu
	retired  []*Route          // routes replaced or removed by Update, still serving their sessions; guarded by mu
	limiters map[string]*dialLimiter
	creds    aws.CredentialsProvider
	opts     Options
	log      *zap.Logger
	metrics  *metrics.Metrics
	closed   sync.Once
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
	minter           *TokenMinter
	dialTimeout      time.Duration
	limiter          *dialLimiter
	pool             *Pool
	compat           config.Compat // advisory lock table and lease
	log              *zap.Logger
	metrics          *metrics.Metrics
	conf             config.Route // as configured; Pool updated by Bridge.Update under Bridge.mu

	paramsMu sync.Mutex
	params   map[string]string // ParameterStatus of the most recent handshake

	locksMu     sync.Mutex
	locks       *LockManager // created by the first Locks; guarded by locksMu
	locksClosed bool         // Bridge.Close ran; guarded by locksMu
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
	b := &Bridge{routes: map[string]*Route{}, limiters: map[string]*dialLimiter{}, log: opts.Logger, opts: opts, creds: opts.Credentials}
	if err := b.loadCredentials(ctx, cfg); err != nil {
		return nil, err
	}
	for i := range cfg.Routes {
		rc := &cfg.Routes[i]
		r, err := b.newRoute(rc)
		if err != nil {
			b.Close()
			return nil, fmt.Errorf("route %q: %w", rc.Database, err)
		}
		b.routes[rc.Database] = r
	}
	for _, r := range b.routes {
		r.pool.start()
	}
	b.metrics = opts.Metrics
	if err := b.metrics.Registry.Register(b); err != nil {
		b.Close()
		return nil, fmt.Errorf("register pool metrics: %w", err)
	}
	return b, nil
}

func newRoute(rc *config.Route, creds aws.CredentialsProvider, opts Options) (*Route, error) {
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
		r.tlsConfig, err = buildTLSConfig(r.host, rc.CAFile, rc.TLSNegotiation == config.NegotiateDirect, true)
	case kindPostgres:
		r.user = rc.User
		r.password = rc.ResolvedPassword()
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

// loadCredentials loads the AWS default chain once, when a DSQL route
// needs it and none was given.
func (b *Bridge) loadCredentials(ctx context.Context, cfg *config.Config) error {
	if b.creds != nil {
		return nil
	}
	for i := range cfg.Routes {
		if cfg.Routes[i].Kind == kindDSQL {
			awsCfg, err := awsconfig.LoadDefaultConfig(ctx, awsconfig.WithSharedConfigProfile(cfg.AWS.Profile))
			if err != nil {
				return fmt.Errorf("load AWS configuration: %w", err)
			}
			b.creds = awsCfg.Credentials
			return nil
		}
	}
	return nil
}

// newRoute builds a route (not started) with its cluster's dial limiter.
func (b *Bridge) newRoute(rc *config.Route) (*Route, error) {
	r, err := newRoute(rc, b.creds, b.opts)
	if err != nil {
		return nil, err
	}
	key := strings.ToLower(r.address)
	lim := b.limiters[key]
	if lim == nil {
		lim = newDialLimiter(rc.Pool.DialRate, int(rc.Pool.DialRate), b.opts.Now)
		b.limiters[key] = lim
	} else {
		lim.tighten(rc.Pool.DialRate)
	}
	r.limiter = lim
	return r, nil
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

// Update puts a new (validated) configuration's routes in force without
// dropping sessions: a route whose upstream is the same keeps its pool
// and takes the new pool settings; a route whose upstream changed gets a
// new pool (its current sessions finish on the old one); a removed route
// takes no new clients. Nothing changes when it returns an error. It
// returns what changed, in words for the log.
func (b *Bridge) Update(ctx context.Context, cfg *config.Config) ([]string, error) {
	if err := b.loadCredentials(ctx, cfg); err != nil {
		return nil, err
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	next := map[string]*Route{}
	var created, updated []*Route
	var changes []string
	for i := range cfg.Routes {
		rc := cfg.Routes[i]
		old := b.routes[rc.Database]
		if old != nil && sameUpstream(&old.conf, &rc) {
			next[rc.Database] = old
			if old.conf.Pool != rc.Pool {
				changes = append(changes, fmt.Sprintf("route %q: pool settings changed", rc.Database))
				old.conf.Pool = rc.Pool
				updated = append(updated, old)
			}
			continue
		}
		r, err := b.newRoute(&rc)
		if err != nil {
			for _, r := range created {
				r.pool.close()
			}
			return nil, fmt.Errorf("route %q: %w", rc.Database, err)
		}
		created = append(created, r)
		next[rc.Database] = r
		if old == nil {
			changes = append(changes, fmt.Sprintf("route %q added", rc.Database))
		} else {
			changes = append(changes, fmt.Sprintf("route %q: upstream settings changed; new clients get a new pool, current sessions finish on the old one", rc.Database))
		}
	}
	for name, old := range b.routes {
		if next[name] != old {
			b.retired = append(b.retired, old)
			old.pool.retireAll()
			if _, kept := next[name]; !kept {
				changes = append(changes, fmt.Sprintf("route %q removed; its current sessions finish", name))
			}
		}
	}
	for _, r := range updated {
		r.pool.update(r.conf.Pool)
	}
	for _, r := range created {
		r.pool.start()
	}
	b.routes = next
	return changes, nil
}

// sameUpstream reports whether two route configurations open the same
// kind of upstream connection (so the pool can be kept).
func sameUpstream(a, b *config.Route) bool {
	return a.Kind == b.Kind && a.Endpoint == b.Endpoint && a.DialAddress == b.DialAddress &&
		a.ResolvedRegion() == b.ResolvedRegion() && a.Role == b.Role && a.TokenExpiry == b.TokenExpiry &&
		a.TLSNegotiation == b.TLSNegotiation && a.TLS == b.TLS && a.CAFile == b.CAFile && a.User == b.User &&
		a.ResolvedPassword() == b.ResolvedPassword() && a.UpstreamDatabase == b.UpstreamDatabase &&
		a.Compat == b.Compat
}

// Close stops the routes' advisory lock renewals (the rows are left to
// expire by their lease), then closes every pool and the idle connections
// in them. Connections held by clients are closed when they are released.
func (b *Bridge) Close() {
	b.closed.Do(func() {
		b.mu.Lock()
		all := append(b.routesLocked(), b.retired...)
		b.mu.Unlock()
		for _, r := range all {
			r.closeLocks()
		}
		for _, r := range all {
			r.pool.close()
		}
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

// User is the DSQL role or PostgreSQL login used upstream.
func (r *Route) User() string { return r.user }

// Minter returns the route's token minter (nil for kind postgres).
func (r *Route) Minter() *TokenMinter { return r.minter }

// Params returns the ParameterStatus values of the most recent upstream
// handshake on this route, or nil when nothing has been dialled yet. The
// map must not be modified.
func (r *Route) Params() map[string]string {
	r.paramsMu.Lock()
	defer r.paramsMu.Unlock()
	return r.params
}

func (r *Route) setParams(p map[string]string) {
	r.paramsMu.Lock()
	r.params = p
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
