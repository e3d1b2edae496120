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
}

// Bridge holds every route of a configuration and their pools.
type Bridge struct {
	routes   map[string]*Route // by client-facing database name
	limiters map[string]*dialLimiter
	log      *zap.Logger
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
	b := &Bridge{routes: map[string]*Route{}, limiters: map[string]*dialLimiter{}, log: opts.Logger}

	creds := opts.Credentials
	for i := range cfg.Routes {
		rc := &cfg.Routes[i]
		if rc.Kind == kindDSQL && creds == nil {
			awsCfg, err := awsconfig.LoadDefaultConfig(ctx, awsconfig.WithSharedConfigProfile(cfg.AWS.Profile))
			if err != nil {
				return nil, fmt.Errorf("load AWS configuration: %w", err)
			}
			creds = awsCfg.Credentials
			break
		}
	}

	for i := range cfg.Routes {
		rc := &cfg.Routes[i]
		r, err := newRoute(rc, creds, opts)
		if err != nil {
			b.Close()
			return nil, fmt.Errorf("route %q: %w", rc.Database, err)
		}
		key := strings.ToLower(r.address)
		lim := b.limiters[key]
		if lim == nil {
			lim = newDialLimiter(rc.Pool.DialRate, int(rc.Pool.DialRate), opts.Now)
			b.limiters[key] = lim
		} else if rc.Pool.DialRate < lim.rate {
			// Routes sharing a cluster share its limit; the strictest wins.
			lim.rate, lim.burst = rc.Pool.DialRate, max(1, rc.Pool.DialRate)
		}
		r.limiter = lim
		b.routes[rc.Database] = r
	}
	for _, r := range b.routes {
		r.pool.start()
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
		log:              opts.Logger.With(zap.String("route", rc.Database)),
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

// Route returns the route for a client's startup database, or nil.
func (b *Bridge) Route(database string) *Route { return b.routes[database] }

// Routes returns every route, in no particular order.
func (b *Bridge) Routes() []*Route {
	out := make([]*Route, 0, len(b.routes))
	for _, r := range b.routes {
		out = append(out, r)
	}
	return out
}

// Close stops the routes' advisory lock renewals (the rows are left to
// expire by their lease), then closes every pool and the idle connections
// in them. Connections held by clients are closed when they are released.
func (b *Bridge) Close() {
	b.closed.Do(func() {
		for _, r := range b.routes {
			r.closeLocks()
		}
		for _, r := range b.routes {
			r.pool.close()
		}
	})
}

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
func (r *Route) Cancel(ctx context.Context, sc *ServerConn) error {
	return r.sendCancel(ctx, sc.PID, sc.Secret)
}
