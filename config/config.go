// Package config holds dsqlgate's configuration as plain data: the types,
// their defaults, loading from a YAML file, and validation that names the
// offending key and its line before anything listens.
//
// Load and Parse start from Default, decode the file over it (a route's
// defaults are applied to each route, so a route that sets only pool.size
// keeps every other pool default), apply the environment's overrides
// (ApplyEnv), then the command line's (Flag), then run Validate on the
// result. Every problem is reported at once in a *ValidationError, each as
//
//	dsqlgate.yaml:12: routes[0].pool.size: must be at least 1
//	DSQLGATE_SHUTDOWN_TIMEOUT: shutdown_timeout: must be positive, such as "30s"
//	--listen: listen: "6432" is not host:port, ...
//
// The precedence is defaults < file < environment < command-line flags: every
// key outside a list has a variable, EnvPrefix followed by its path in upper
// case with dots as underscores (DSQLGATE_LOG_LEVEL; see EnvVar), and the
// same keys can be set by a Flag. The reference of every key, docs/CONFIG.md,
// is generated from this package's types and defaults and the descriptions
// in internal/reference/keys.md (go run ./config/internal/genref); a test
// fails when it is out of date or a key has no description.
//
// Validate does no I/O and keeps nothing: it checks the configuration as
// written. The secrets the configuration points at (the variables named by
// verifier_env and password_env, users_file) are read and checked by the
// users package, which places its problems at their keys through Problemf;
// Load and Parse also check that the TLS files named here load. Secrets
// (passwords, verifiers, md5 hashes) never appear in an error.
//
// Client TLS is on by default wherever it matters: ClientTLSMode resolves an
// empty client_tls.mode to require when listen is not a loopback address,
// and Validate refuses that without a certificate, so a gateway reachable
// from other hosts never takes passwords in clear unless the file says
// client_tls.mode: disable.
//
// A validated *Config is read-only: any number of goroutines may read it.
// Config carries unexported fields (where each key came from, for
// messages), so compare Configs with cmpopts.IgnoreUnexported.
//
// It deliberately knows nothing about the wire protocol, credentials or
// AWS, and imports nothing of the gateway: pgwire, authbridge and the users
// package read a validated *Config and act on it.
package config

import (
	"strings"
	"time"
)

// Config is the whole gateway configuration. Default holds every top-level
// default (DefaultRoute every route default); Load and Parse start from them
// and fill in the rest. A Config is usable only after Validate returns nil.
type Config struct {
	// Listen is the client-facing address, host:port. Default 127.0.0.1:6432.
	Listen string `yaml:"listen"`
	// ReusePort shares the client and metrics ports with other processes
	// that set it too (SO_REUSEPORT, unix systems but Solaris), so that a
	// new gateway can take over both while the old one drains. Default
	// false: a port in use is an error at start-up.
	ReusePort bool `yaml:"reuse_port"`
	// Log configures the logger.
	Log Log `yaml:"log"`
	// ClientTLS configures TLS towards clients.
	ClientTLS ClientTLS `yaml:"client_tls"`
	// Limits bound what a client may send and how long it may take.
	Limits Limits `yaml:"limits"`
	// ShutdownTimeout is how long SIGTERM waits for each client to reach a
	// safe point (between transactions) before its connection is closed
	// anyway. Default 30s; positive.
	ShutdownTimeout Duration `yaml:"shutdown_timeout"`
	// Metrics configures the HTTP listener for metrics and health checks.
	Metrics Metrics `yaml:"metrics"`
	// Users are the gateway's own users. With UsersFile, more users come
	// from that file, which the users package reads.
	Users []User `yaml:"users"`
	// UsersFile, when set, is a users file in PgBouncer's userlist.txt
	// format, read by the users package (users.ReadFile) when the gateway
	// starts or reloads and again by the server when it changes; Validate
	// does not read it. A relative path is relative to the working
	// directory. A name must not be both in Users and in the file.
	UsersFile string `yaml:"users_file"`
	// UsersEnv, when set, names an environment variable holding more users
	// in the users file format: a secret that an orchestrator injects (ECS
	// from AWS Secrets Manager, a Kubernetes Secret). The users package
	// reads it when the gateway starts or reloads; Validate does not. A
	// name must be in only one of Users, the file and the variable.
	UsersEnv string `yaml:"users_env"`
	// Admin configures the admin console.
	Admin Admin `yaml:"admin"`
	// Routes map a client's startup "database" to an upstream.
	Routes []Route `yaml:"routes"`
	// AWS configures how AWS credentials are found for minting tokens.
	AWS AWS `yaml:"aws"`
	// Peers are the other replicas of this gateway behind the same load
	// balancer: a CancelRequest that reaches this replica for a session of
	// another is forwarded to it. Empty: the gateway runs alone.
	Peers Peers `yaml:"peers"`

	// src records where Parse found each key and which keys ApplyEnv
	// set, for messages; nil for a Config built in code.
	src *origin
}

// Log configures logging.
type Log struct {
	// Level is debug, info, warn or error. Default info.
	Level string `yaml:"level"`
	// Format is console or json. Default console.
	Format string `yaml:"format"`
	// SlowQueryThreshold logs every query that runs longer than this, with
	// its text cut to SlowQueryMaxLength characters; parameter values are
	// never logged. Default 0s, which turns slow query logging off; not
	// negative.
	SlowQueryThreshold Duration `yaml:"slow_query_threshold"`
	// SlowQueryMaxLength is how many characters (Unicode code points) of a
	// slow query's text are logged. Default 200; at least 20.
	SlowQueryMaxLength int `yaml:"slow_query_max_length"`
	// Connections logs a line at info for each client that logs in.
	// Default true.
	Connections bool `yaml:"connections"`
	// Disconnections logs a line at info for each session that ends, with
	// its totals. Default true.
	Disconnections bool `yaml:"disconnections"`
}

// ClientTLS configures TLS between clients and the gateway.
type ClientTLS struct {
	// Mode is disable, allow or require. Empty means require when Listen
	// is not a loopback address, else allow when a certificate is
	// configured, else disable: see Config.ClientTLSMode, which is the
	// mode the gateway uses.
	Mode string `yaml:"mode"`
	// CertFile is a PEM file holding the certificate and its chain; set
	// both or neither of CertFile and KeyFile. Load loads them as a pair;
	// Validate reads neither. A relative path is relative to the working
	// directory.
	CertFile string `yaml:"cert_file"`
	// KeyFile is a PEM file holding the certificate's private key; set
	// both or neither of CertFile and KeyFile. A relative path is relative
	// to the working directory.
	KeyFile string `yaml:"key_file"`
	// ACME, when its Domains are set, obtains and renews a publicly
	// trusted certificate for them instead of CertFile and KeyFile.
	ACME ACME `yaml:"acme"`
}

// ACME configures certificates obtained from an ACME certificate authority
// (Let's Encrypt, or Pebble in tests) for the client listener. Domains
// turns it on; the internal/acme package acts on it.
type ACME struct {
	// Domains are the DNS names the certificate is for; non-empty turns
	// ACME on, and then CertFile and KeyFile must be empty. A wildcard
	// (*.example.com) needs Challenge dns-01.
	Domains []string `yaml:"domains"`
	// Email is the ACME account's contact address; optional.
	Email string `yaml:"email"`
	// Directory is the ACME directory URL. Default Let's Encrypt's
	// production directory (ACMEDirectoryLetsEncrypt).
	Directory string `yaml:"directory"`
	// CAFile is a PEM file of roots to trust for the ACME server's own
	// HTTPS (Pebble in tests); empty: the system roots.
	CAFile string `yaml:"ca_file"`
	// Challenge is ACMEChallengeDNS01 (default) or ACMEChallengeHTTP01.
	Challenge string `yaml:"challenge"`
	// DNSProvider sets the DNS records of dns-01: ACMEDNSRoute53
	// (default) or ACMEDNSChalltestsrv (tests).
	DNSProvider string `yaml:"dns_provider"`
	// Route53HostedZoneID is the Route 53 hosted zone of the domains;
	// empty: found from the domain name.
	Route53HostedZoneID string `yaml:"route53_hosted_zone_id"`
	// ChalltestsrvURL is the management API of pebble-challtestsrv, only
	// for DNSProvider pebble-challtestsrv, such as http://127.0.0.1:8055.
	ChalltestsrvURL string `yaml:"challtestsrv_url"`
	// HTTPListen is where http-01 challenges are answered, host:port.
	// Default ":80".
	HTTPListen string `yaml:"http_listen"`
	// Storage is where certificates, keys, the account and ACME locks
	// live: "route:<database>" for a table on that route's upstream
	// (shared by every replica), or a directory; empty: the directory
	// "acme" under the working directory.
	Storage string `yaml:"storage"`
	// StorageTable is the table of a route: storage. Default
	// dsqlgate_acme.
	StorageTable string `yaml:"storage_table"`
	// RenewCheckInterval is how often certificates are checked for
	// renewal. Default 10m.
	RenewCheckInterval Duration `yaml:"renew_check_interval"`
}

// Enabled reports whether ACME obtains the client certificate.
func (a *ACME) Enabled() bool { return len(a.Domains) > 0 }

// StorageRoute returns the database of a "route:<database>" storage and
// true, or "" and false for a directory.
func (a *ACME) StorageRoute() (string, bool) {
	db, ok := strings.CutPrefix(a.Storage, ACMEStorageRoutePrefix)
	return db, ok
}

// ACME values.
const (
	ACMEDirectoryLetsEncrypt = "https://acme-v02.api.letsencrypt.org/directory"
	ACMEChallengeDNS01       = "dns-01"
	ACMEChallengeHTTP01      = "http-01"
	ACMEDNSRoute53           = "route53"
	ACMEDNSChalltestsrv      = "pebble-challtestsrv"
	// ACMEStorageRoutePrefix starts a storage that is a table on a
	// route's upstream: "route:<database>".
	ACMEStorageRoutePrefix = "route:"
	// ACMEStorageDir is the directory of an empty storage.
	ACMEStorageDir = "acme"
)

// ResolvedMode returns Mode, or when it is empty, TLSAllow if a certificate
// is configured and TLSDisable otherwise. It does not know the listen
// address, so it never requires TLS on its own.
//
// Deprecated: use Config.ClientTLSMode, which also resolves an empty Mode
// to TLSRequire on a listener that is not loopback.
func (t *ClientTLS) ResolvedMode() string {
	switch {
	case t.Mode != "":
		return t.Mode
	case t.CertFile != "" || t.ACME.Enabled():
		return TLSAllow
	}
	return TLSDisable
}

// TLS modes towards clients (ClientTLS.Mode). Route.TLS takes TLSDisable,
// TLSRequire and TLSVerifyFull.
const (
	TLSDisable    = "disable"
	TLSAllow      = "allow"
	TLSRequire    = "require"
	TLSVerifyFull = "verify-full" // Route.TLS only
)

// Limits are the edges of the client protocol.
type Limits struct {
	// StartupTimeout bounds the time from accept to the end of
	// authentication. Default 10s.
	StartupTimeout Duration `yaml:"startup_timeout"`
	// MaxStartupPacket is the largest startup or authentication message
	// accepted, in bytes. Default 10000, PostgreSQL's own limit on a
	// startup packet; at least 1 KiB, at most 1 GiB.
	MaxStartupPacket ByteSize `yaml:"max_startup_packet"`
	// MaxMessageSize is the largest message accepted from a client after
	// authentication, in bytes. Default 64 MiB; at least 8 KiB, at most
	// 1 GiB.
	MaxMessageSize ByteSize `yaml:"max_message_size"`
	// MaxClientConn is the number of client connections served at once;
	// one more gets SQLSTATE 53300. Default 10000.
	MaxClientConn int `yaml:"max_client_conn"`
	// AuthFailureLimit is how many failed logins one source address may
	// have within AuthFailureWindow before each further failure from it is
	// answered only after a growing delay. Default 5; 0 turns backoff off.
	AuthFailureLimit int `yaml:"auth_failure_limit"`
	// AuthFailureWindow is the span over which failures are counted.
	// Default 1m; positive.
	AuthFailureWindow Duration `yaml:"auth_failure_window"`
	// AuthFailureMaxDelay caps the delay of one failure. Default 5s;
	// positive and less than StartupTimeout, so that a delayed failure is
	// still answered within the startup deadline (the default leaves half
	// of the default 10s for the login itself).
	AuthFailureMaxDelay Duration `yaml:"auth_failure_max_delay"`
	// IdleInTransactionTimeout closes a client that stays idle inside a
	// transaction longer than this, with FATAL 25P03, whatever the client
	// set itself (idle_in_transaction_session_timeout), so that no client
	// keeps upstreams idle in a transaction. Default 1m; 0s turns it off;
	// not negative.
	IdleInTransactionTimeout Duration `yaml:"idle_in_transaction_timeout"`
	// MaxPendingReplies is how many replies one client may have
	// outstanding: messages it sent, or that the gateway answered, whose
	// replies it has not been sent yet. One more gets FATAL 54000 and the
	// client is disconnected. Default 100000; at least 100.
	MaxPendingReplies int `yaml:"max_pending_replies"`
	// MaxClientStatements is how many named prepared statements one client
	// connection may hold, and separately how many portals; a Parse (or a
	// Bind of a new portal) beyond it fails with ERROR 54000. Default
	// 10000; at least 1.
	MaxClientStatements int `yaml:"max_client_statements"`
	// MaxClientSettings is how many custom settings (names with a dot, set
	// by SET) one client connection may hold; a SET beyond it fails with
	// ERROR 54000. Default 1000; at least 1.
	MaxClientSettings int `yaml:"max_client_settings"`
}

// Authentication methods the gateway asks a user for (User.Auth).
const (
	// AuthSCRAM is SCRAM-SHA-256, the default: the password never crosses
	// the network and the gateway keeps only a verifier.
	AuthSCRAM = "scram-sha-256"
	// AuthMD5 is PostgreSQL's md5 challenge, for old clients. The stored
	// hash is as good as the password for logging in, so guard it as one.
	AuthMD5 = "md5"
	// AuthPassword is a cleartext password, checked against the SCRAM
	// verifier; only over TLS.
	AuthPassword = "password"
)

// User is a client-facing user of the gateway.
//
// Its secret is exactly one of Verifier, VerifierEnv and PasswordEnv, except
// that a user with Auth md5 may have only MD5. Validate checks which are
// set; the users package reads and checks the secrets themselves
// (users.Load), which is how the rest of the gateway gets them.
type User struct {
	// Name is the user name clients send in their startup message.
	Name string `yaml:"name"`
	// Verifier is the password as a SCRAM verifier,
	// SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>
	// (`dsqlgate passwd NAME` prints one).
	Verifier string `yaml:"verifier"`
	// VerifierEnv names an environment variable holding the verifier,
	// read by users.Load.
	VerifierEnv string `yaml:"verifier_env"`
	// PasswordEnv names an environment variable holding the password
	// itself (for containers whose secrets arrive that way), used exactly
	// as set. users.Load reads it and keeps only a SCRAM verifier (its
	// salt derived from the password and the name, so that it is the same
	// at every start) and the md5 hash made from it, never the password;
	// it never appears in a Config.
	PasswordEnv string `yaml:"password_env"`
	// MD5 is the password as PostgreSQL stores md5 passwords: "md5"
	// followed by the lower-case hex of md5(password + Name), 35
	// characters. Needed for Auth md5 unless PasswordEnv is set; not with
	// PasswordEnv. Anyone holding it can log in with md5: keep it secret.
	MD5 string `yaml:"md5"`
	// Auth is the method the gateway asks this user for: scram-sha-256
	// (AuthSCRAM, the default when empty), md5 (AuthMD5, opt-in for old
	// clients; needs MD5 or PasswordEnv) or password (AuthPassword,
	// cleartext, opt-in; needs a SCRAM verifier, and Validate refuses it
	// when ClientTLSMode is disable). Under client TLS mode allow, pgwire
	// must not ask for a cleartext password on a connection without TLS.
	// ResolvedAuth applies the default.
	Auth string `yaml:"auth"`
	// Databases are the route databases (Route.Database) this user may
	// connect to; empty means every route (users.User.AllowsDatabase).
	Databases []string `yaml:"databases"`
}

// Route kinds.
const (
	KindDSQL     = "dsql"
	KindPostgres = "postgres"
)

// Upstream TLS negotiation styles.
const (
	NegotiateDirect   = "direct"   // TLS from the first byte, ALPN "postgresql"
	NegotiatePostgres = "postgres" // classic SSLRequest, then TLS
)

// Route sends clients that ask for Database to one upstream.
type Route struct {
	// Database is the database name clients put in their startup message.
	Database string `yaml:"database"`
	// Kind is dsql (default) or postgres (a plain PostgreSQL with a static
	// password, for local use and fair benchmarks).
	Kind string `yaml:"kind"`
	// Endpoint is the upstream host name, with an optional :port (default
	// 5432). For DSQL it is the cluster endpoint
	// <id>.dsql.<region>.on.aws: it is also the TLS server name (SNI), the
	// name the certificate must carry, and the host the token is signed for.
	Endpoint string `yaml:"endpoint"`
	// DialAddress, when set, is the host:port actually dialled instead of
	// resolving Endpoint (a local emulator, a tunnel). SNI, certificate
	// checks and tokens still use Endpoint.
	DialAddress string `yaml:"dial_address"`
	// Region is the AWS region (kind dsql). Empty means parsed from the
	// endpoint (see ResolvedRegion); when both are known they must agree.
	Region string `yaml:"region"`
	// Role is the DSQL database role (the upstream startup "user"). admin
	// gets an admin token, any other role a DbConnect token. Default admin.
	// Used only for kind dsql.
	Role string `yaml:"role"`
	// UserRoles maps gateway users to the DSQL role each logs in as
	// upstream, instead of Role; users not listed use Role. Each upstream
	// connection is opened for the user it serves (connections are never
	// shared between users), with a token for that user's role. Used only
	// for kind dsql.
	UserRoles map[string]string `yaml:"user_roles"`
	// TokenExpiry is the lifetime of each minted token. Default 15m;
	// from 1s to 168h. Used only for kind dsql.
	TokenExpiry Duration `yaml:"token_expiry"`
	// TLSNegotiation is direct (default for dsql) or postgres (SSLRequest;
	// default for kind postgres).
	TLSNegotiation string `yaml:"tls_negotiation"`
	// TLS is used only for kind postgres: disable, require (encrypt, no
	// certificate check) or verify-full (default). DSQL is always
	// verify-full.
	TLS string `yaml:"tls"`
	// CAFile is a PEM file of CAs to trust instead of the system roots.
	CAFile string `yaml:"ca_file"`
	// User is the upstream login of a kind postgres route; used only for
	// kind postgres.
	User string `yaml:"user"`
	// Password is the password of User itself, in the file; used only for
	// kind postgres, which needs exactly one of Password and PasswordEnv.
	// Prefer PasswordEnv. authbridge dials with this field, after
	// users.ResolveRoutes has filled it from PasswordEnv.
	Password string `yaml:"password"`
	// PasswordEnv names an environment variable holding the password of
	// User; used only for kind postgres, which needs exactly one of
	// Password and PasswordEnv. users.ResolveRoutes reads it.
	PasswordEnv string `yaml:"password_env"`
	// UpstreamDatabase is the database opened upstream. For kind postgres
	// it defaults to Database; for kind dsql it is always postgres, the
	// only database DSQL has.
	UpstreamDatabase string `yaml:"upstream_database"`
	// Pool configures the upstream connections of this route.
	Pool Pool `yaml:"pool"`
	// Compat configures what the gateway does for statements DSQL refuses
	// but clients send. It applies to kind dsql routes only: a plain
	// PostgreSQL does all of it itself.
	Compat Compat `yaml:"compat"`
	// OCCRetry retries units of work that failed an optimistic-concurrency
	// check (SQLSTATE 40001, OC000, OC001) where no client can tell.
	OCCRetry OCCRetry `yaml:"occ_retry"`
}

// OCCRetry configures the gateway's retry of units of work that lost an
// optimistic-concurrency conflict: an autocommit Query or batch, or a
// whole BEGIN ... COMMIT the client sent in one piece, none of whose
// replies reached the client yet.
type OCCRetry struct {
	// Enabled turns the retry on. Default true for kind dsql, false for
	// kind postgres (where 40001 is a serialization failure). A unit with
	// a CALL, a DO block or a CONCURRENTLY index build or drop is never
	// retried: those can COMMIT part of their work before they fail, and
	// a retry would run that part again.
	Enabled bool `yaml:"enabled"`
	// MaxAttempts is the most times a unit runs, the first included.
	// Default 10; at least 1 (1: no retry).
	MaxAttempts int `yaml:"max_attempts"`
	// Backoff is the longest wait before the first retry; each later wait
	// may be twice as long, up to MaxBackoff, and the wait is drawn at
	// random below it (full jitter). Default 5ms.
	Backoff Duration `yaml:"backoff"`
	// MaxBackoff caps one wait. Default 200ms.
	MaxBackoff Duration `yaml:"max_backoff"`
	// Budget is the most time spent retrying one unit, from its first
	// failure: no retry starts past it. Default 5s.
	Budget Duration `yaml:"budget"`
}

// Pool modes.
const (
	PoolTransaction = "transaction"
	PoolSession     = "session"
)

// Pool configures one route's upstream connections.
type Pool struct {
	// Mode is transaction (default) or session.
	Mode string `yaml:"mode"`
	// Size is the most upstream connections open at once. Default 20.
	Size int `yaml:"size"`
	// MinIdle upstreams are kept open and idle, ready for clients. May be
	// 0 so that an idle gateway holds no upstream. Default 0.
	MinIdle int `yaml:"min_idle"`
	// MaxUserConnections is the most upstreams one gateway user may hold
	// at once (each upstream belongs to one user and serves no other); a
	// user holding that many waits, up to QueryWaitTimeout, for one of its
	// own to come back, without holding up other users. Default 0: no
	// limit but Size; not negative.
	MaxUserConnections int `yaml:"max_user_connections"`
	// IdleTimeout closes upstreams idle longer than this, beyond MinIdle.
	// Default 10m.
	IdleTimeout Duration `yaml:"idle_timeout"`
	// MaxLifetime retires an upstream at its first safe point past this
	// age, minus a random jitter. Default 55m; at most 60m for kind dsql
	// (DSQL closes every connection at 60m).
	MaxLifetime Duration `yaml:"max_lifetime"`
	// LifetimeJitter is the most that is taken off MaxLifetime, chosen at
	// random per upstream. Default 5m; 0 turns jitter off; less than
	// MaxLifetime.
	LifetimeJitter Duration `yaml:"lifetime_jitter"`
	// QueryWaitTimeout is how long a client waits for an upstream before
	// it gets an error. Default 2m.
	QueryWaitTimeout Duration `yaml:"query_wait_timeout"`
	// DialTimeout bounds one upstream dial including TLS and the
	// handshake. Default 10s.
	DialTimeout Duration `yaml:"dial_timeout"`
	// DialRate is the most new upstream connections per second towards
	// this route's cluster (shared by every route naming the same
	// endpoint, which must therefore agree on it), with a burst of the same
	// size. Default 100.
	DialRate float64 `yaml:"dial_rate"`
	// MaxPreparedStatements caps the prepared statements kept on each
	// upstream (least recently used are closed). Default 500.
	MaxPreparedStatements int `yaml:"max_prepared_statements"`
}

// Compat is the DSQL compatibility layer of a route. Every part is on by
// default and can be turned off.
type Compat struct {
	// Settings emulates the session settings DSQL refuses but tools send
	// (statement_timeout, idle_in_transaction_session_timeout,
	// client_min_messages, standard_conforming_strings, lock_timeout,
	// synchronous_commit, default_transaction_isolation, SET TRANSACTION
	// ISOLATION LEVEL): accepted and enforced or ignored by the gateway,
	// never sent to DSQL. Default true.
	Settings bool `yaml:"settings"`
	// AdvisoryLocks answers pg_advisory_lock and friends (whole-statement
	// calls) with locks kept in a table on the cluster itself, so they
	// hold across every gateway serving it. Default true.
	AdvisoryLocks bool `yaml:"advisory_locks"`
	// AdvisoryLockTable is the lock table, created on first use. Default
	// dsqlgate_advisory_locks.
	AdvisoryLockTable string `yaml:"advisory_lock_table"`
	// AdvisoryLockLease is how long a lock outlives a gateway that stops
	// renewing it (one that crashed or lost the network). Default 60s.
	AdvisoryLockLease Duration `yaml:"advisory_lock_lease"`
	// Truncate runs TRUNCATE of plain tables (no CASCADE, no RESTART
	// IDENTITY) as DELETEs: batched under DSQL's row limit when sent alone
	// outside a transaction, one guarded DELETE inside one. Default true.
	Truncate bool `yaml:"truncate"`
}

// Metrics configures the gateway's HTTP listener, for Prometheus and for
// health checks by an orchestrator.
type Metrics struct {
	// Listen is the HTTP address, host:port, that serves /metrics
	// (Prometheus), /livez, /readyz and /startupz. Default 127.0.0.1:9187,
	// loopback only; "" turns the HTTP listener off. It must not use the
	// port of listen. The endpoints ask for no credentials: keep them on
	// loopback or a private network.
	Listen string `yaml:"listen"`
}

// Admin configures the admin console: a virtual database, named by
// Database, that the users in Users reach with any PostgreSQL client to
// inspect and operate the gateway; no upstream is involved.
type Admin struct {
	// Users are the gateway users (from users or users_file) allowed into
	// the admin console; they log in with their usual password. Each must
	// be a known user. Default empty: the console admits nobody.
	Users []string `yaml:"users"`
	// Database is the database name a client asks for to open the admin
	// console. Default dsqlgate; it must not be the database of a route.
	Database string `yaml:"database"`
}

// Peers lists the replicas of one gateway deployment, so that a
// CancelRequest reaches the replica that holds its session whichever
// replica the load balancer gave it to. Each replica puts an identifier
// derived from its own address in the cancel keys it issues; a replica
// that receives a key of another forwards the request to it, once.
// Addresses and DNS may both be set; the peers are their union.
type Peers struct {
	// Addresses are the replicas' client addresses (host:port) as the
	// replicas reach each other; this replica's own may be among them.
	Addresses []string `yaml:"addresses"`
	// DNS is a name:port that resolves to every replica's address (a
	// Kubernetes headless Service, an ECS service discovery name), looked
	// up every Refresh. Empty: no DNS discovery.
	DNS string `yaml:"dns"`
	// Refresh is how often DNS is looked up again. Default 5s; positive.
	Refresh Duration `yaml:"refresh"`
	// Self is this replica's own address as its peers reach it (host:port).
	// Empty: the listen address when it names one IP, else the one
	// non-loopback, non-link-local address of this host with listen's port.
	Self string `yaml:"self"`
}

// Enabled reports whether any peer is configured.
func (p Peers) Enabled() bool { return len(p.Addresses) > 0 || p.DNS != "" }

// AWS configures the credential chain used to mint DSQL tokens.
type AWS struct {
	// Profile selects a shared-config profile. Empty means the default
	// chain (environment, shared config, SSO, web identity, ECS/EC2).
	Profile string `yaml:"profile"`
}

// Duration is a time.Duration written as a Go duration string ("90s"). A
// bare number is refused: write "30s", not 30.
type Duration time.Duration

// ByteSize is a size in bytes, written as a whole number or with a unit
// suffix (B, KiB, MiB, GiB: powers of 1024), such as 1048576 or "1MiB".
type ByteSize int64
