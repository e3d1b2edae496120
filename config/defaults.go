package config

import "time"

// Default returns the top-level defaults: listen on 127.0.0.1:6432 (loopback
// only), log at info to the console with slow query logging off, client TLS
// off until a certificate is configured (required, once listen leaves
// loopback; see ClientTLSMode), the client limits, with login backoff after
// 5 failures a minute from one address, each delayed at most 5s (half the
// startup timeout), clients idle in a transaction closed after 1m, 30s for clients to finish at shutdown, metrics and
// health checks on 127.0.0.1:9187 (loopback only), and an admin console
// named dsqlgate that admits nobody. It has no users and no routes, so it
// does not validate on its own; DefaultRoute gives a route's defaults.
func Default() *Config {
	return &Config{
		Listen: "127.0.0.1:6432",
		Log:    Log{Level: "info", Format: "console", SlowQueryMaxLength: 200, Connections: true, Disconnections: true},
		Limits: Limits{
			StartupTimeout:           Duration(10 * time.Second),
			MaxStartupPacket:         10000,
			MaxMessageSize:           64 * MiB,
			MaxClientConn:            10000,
			AuthFailureLimit:         5,
			AuthFailureWindow:        Duration(time.Minute),
			AuthFailureMaxDelay:      Duration(5 * time.Second),
			IdleInTransactionTimeout: Duration(time.Minute),
			MaxPendingReplies:        100000,
			MaxClientStatements:      10000,
			MaxClientSettings:        1000,
		},
		ShutdownTimeout: Duration(30 * time.Second),
		ClientTLS:       ClientTLS{ACME: DefaultACME()},
		Metrics:         Metrics{Listen: "127.0.0.1:9187"},
		Admin:           Admin{Database: "dsqlgate"},
		Peers:           Peers{Refresh: Duration(5 * time.Second)},
	}
}

// DefaultACME is client_tls.acme's defaults, off until domains are set:
// Let's Encrypt's production directory, dns-01 through Route 53, http-01
// on port 80, the storage directory "acme" under the working directory
// (or the table dsqlgate_acme for a route: storage), and a renewal check
// every 10 minutes.
func DefaultACME() ACME {
	return ACME{
		Directory:          ACMEDirectoryLetsEncrypt,
		Challenge:          ACMEChallengeDNS01,
		DNSProvider:        ACMEDNSRoute53,
		HTTPListen:         ":80",
		StorageTable:       "dsqlgate_acme",
		RenewCheckInterval: Duration(10 * time.Minute),
	}
}

// DefaultRoute returns a route of kind (KindDSQL when empty) for clients
// asking for database, with every default: role admin, 15-minute tokens,
// direct TLS for dsql and SSLRequest then verify-full for postgres, the
// upstream database (postgres for dsql, database for postgres) and
// DefaultPool, and the OCC retry on for dsql only. The endpoint is left to the caller, and for kind postgres the
// user and password.
func DefaultRoute(kind, database string) Route {
	r := baseRoute()
	if kind != "" {
		r.Kind = kind
	}
	r.Database = database
	r.fillKindDefaults(false)
	return r
}

// DefaultPool returns a pool's defaults: transaction mode, 20 upstreams, none
// kept idle, no per-user limit, idle upstreams closed after 10m, retired after 55m less up to
// 5m of jitter, clients waiting up to 2m, dials bounded by 10s and limited
// to 100 per second, 500 prepared statements per upstream.
func DefaultPool() Pool {
	return Pool{
		Mode:                  PoolTransaction,
		Size:                  20,
		MinIdle:               0,
		MaxUserConnections:    0,
		IdleTimeout:           Duration(10 * time.Minute),
		MaxLifetime:           Duration(55 * time.Minute),
		LifetimeJitter:        Duration(5 * time.Minute),
		QueryWaitTimeout:      Duration(2 * time.Minute),
		DialTimeout:           Duration(10 * time.Second),
		DialRate:              100,
		MaxPreparedStatements: 500,
	}
}

// DefaultCompat turns every part of the DSQL compatibility layer on, with
// the lock table dsqlgate_advisory_locks and a 60-second lock lease.
func DefaultCompat() Compat {
	return Compat{
		Settings:          true,
		AdvisoryLocks:     true,
		AdvisoryLockTable: "dsqlgate_advisory_locks",
		AdvisoryLockLease: Duration(time.Minute),
		Truncate:          true,
	}
}

// DefaultOCCRetry is the retry of optimistic-concurrency failures on a
// kind dsql route: 10 attempts, waits from 5ms doubling up to 200ms with
// full jitter, 5s in all (64 clients on four hot rows, through a pool of 20,
// exhausted 5 attempts a few times in 10,000 updates; 10 none). A kind postgres route has it off unless its
// configuration turns it on.
func DefaultOCCRetry() OCCRetry {
	return OCCRetry{
		Enabled:     true,
		MaxAttempts: 10,
		Backoff:     Duration(5 * time.Millisecond),
		MaxBackoff:  Duration(200 * time.Millisecond),
		Budget:      Duration(5 * time.Second),
	}
}

// baseRoute holds the defaults that do not depend on the kind; Parse
// decodes each route over it, then calls fillKindDefaults.
func baseRoute() Route {
	return Route{
		Kind:        KindDSQL,
		Role:        "admin",
		TokenExpiry: Duration(15 * time.Minute),
		Pool:        DefaultPool(),
		Compat:      DefaultCompat(),
		OCCRetry:    DefaultOCCRetry(),
	}
}

// dsqlDatabase is the only database a DSQL cluster has.
const dsqlDatabase = "postgres"

// fillKindDefaults fills the empty fields whose default depends on the
// kind. occRetrySet: the configuration sets occ_retry.enabled itself.
func (r *Route) fillKindDefaults(occRetrySet bool) {
	if !occRetrySet {
		r.OCCRetry.Enabled = r.Kind == KindDSQL
	}
	switch r.Kind {
	case KindDSQL:
		if r.TLSNegotiation == "" {
			r.TLSNegotiation = NegotiateDirect
		}
		if r.UpstreamDatabase == "" {
			r.UpstreamDatabase = dsqlDatabase
		}
	case KindPostgres:
		if r.TLSNegotiation == "" {
			r.TLSNegotiation = NegotiatePostgres
		}
		if r.TLS == "" {
			r.TLS = TLSVerifyFull
		}
		if r.UpstreamDatabase == "" {
			r.UpstreamDatabase = r.Database
		}
	}
}
