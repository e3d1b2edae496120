package dsqlsim

import (
	"errors"
	"fmt"
	"net"
	"strings"
	"time"

	"go.uber.org/zap"
)

// Credential is one static AWS credential whose signatures the emulator
// accepts. The secret never leaves this struct: it is not logged, not put in
// an error and not shown by the control API.
type Credential struct {
	AccessKeyID     string
	SecretAccessKey string
	// SessionToken, when set, must be carried by every token signed with this
	// key as X-Amz-Security-Token (temporary credentials). When empty, a token
	// that carries a security token is refused.
	SessionToken string
}

// Config tunes the emulator. The zero value of every optional field picks
// DSQL's own value.
type Config struct {
	// ListenAddr is the TCP address to listen on, e.g. "127.0.0.1:0".
	// Empty means "127.0.0.1:0".
	ListenAddr string
	// Region is the cluster's AWS region; tokens signed for another region are
	// refused. Required.
	Region string
	// Hostnames are the names the cluster answers to: the TLS SNI name must be
	// one of them (case-insensitive), and they are the leaf certificate's
	// SANs together with "localhost" and 127.0.0.1. Required.
	Hostnames []string
	// Credentials are the static AWS credentials whose signatures are
	// accepted. Required.
	Credentials []Credential
	// CAFile is where Start writes the generated CA certificate (PEM), for
	// clients' sslrootcert. Empty means do not write it.
	CAFile string
	// BackendSocketDir is the unix socket directory of the real PostgreSQL;
	// connections over it must be trusted (no password). Required.
	BackendSocketDir string
	// BackendPort is the real PostgreSQL's port (names its socket file).
	// Required.
	BackendPort int
	// BackendDatabase is the database on the real PostgreSQL that DSQL's only
	// database "postgres" maps to. Empty means "postgres".
	BackendDatabase string
	// MaxConnDuration is the age at which a connection is closed abruptly
	// (TCP close, no message), counted from its arrival; see MaxTxnDuration
	// for one inside a transaction. 0 means one hour.
	MaxConnDuration time.Duration
	// MaxTxnDuration is DSQL's transaction age limit: a statement sent in
	// a transaction block older than this fails with 54000 "transaction age
	// limit of 300s exceeded" (this value, in seconds) and aborts the
	// transaction. A connection that reaches MaxConnDuration inside a
	// transaction that began before then is closed when the transaction
	// ends or reaches this age, as DSQL lets such a transaction finish. 0
	// means 5 minutes.
	MaxTxnDuration time.Duration
	// MaxTxnRows is DSQL's limit on the rows a transaction changes
	// (inserted, updated or deleted); the statement that goes over fails with
	// 54000 "transaction row limit exceeded". 0 means 3000.
	MaxTxnRows int
	// MaxTxnBytes is DSQL's limit on the data a transaction changes (the
	// size of the rows it writes or deletes); the statement that goes over
	// fails with 54000 "transaction size limit 10mb exceeded" (the limit
	// in the message is this one). 0 means 10 MiB.
	MaxTxnBytes int64
	// BackendSuperuser is a superuser role of the real PostgreSQL, reached
	// over the trusted socket like the session roles. Start connects as it
	// to install the emulator's schema "dsqlsim" in BackendDatabase (the
	// triggers that enforce the transaction limits and DDL rules). Empty
	// means "admin", DSQL's own admin role.
	BackendSuperuser string
	// ClockSkew is how far a token's X-Amz-Date may lie in the future, and
	// how long past its expiry it is still accepted; it widens no other
	// check. 0 means 30 seconds: the allowance is for two clocks (the
	// signer's and the server's), each kept within a few seconds by NTP on
	// any host that can reach AWS, with room for a slow client between
	// minting and connecting. DSQL's own allowance is not documented, so the
	// emulator stays strict: a gateway that uses a token at the edge of its
	// life fails here rather than in production.
	ClockSkew time.Duration
	// ConnRate is the number of new connections accepted per second and
	// ConnBurst the bucket size; over them a connection gets
	// FATAL 53400. 0 means DSQL's 100 per second and a burst of 1000.
	ConnRate  float64
	ConnBurst int
	// MaxConns is the number of open connections; over it a connection gets
	// FATAL 53300. 0 means 10000.
	MaxConns int
	// Now is the clock for token checks, the rate limit and connection ages.
	// Nil means time.Now.
	Now func() time.Time
	// Logger receives the emulator's log. Nil means zap.NewNop().
	Logger *zap.Logger
}

// Defaults, DSQL's own values.
const (
	defaultListenAddr      = "127.0.0.1:0"
	defaultBackendDatabase = "postgres"
	defaultMaxConnDuration = time.Hour
	defaultMaxTxnDuration  = 5 * time.Minute
	defaultClockSkew       = 30 * time.Second
	defaultMaxTxnRows      = 3000
	defaultMaxTxnBytes     = 10 << 20 // bytes
	defaultSuperuser       = "admin"
	defaultConnRate        = 100  // connections per second
	defaultConnBurst       = 1000 // connections
	defaultMaxConns        = 10000
)

// withDefaults returns a copy of cfg with every zero optional field set, or
// an error naming the first missing or invalid field.
func (cfg Config) withDefaults() (Config, error) {
	if cfg.ListenAddr == "" {
		cfg.ListenAddr = defaultListenAddr
	}
	if cfg.BackendDatabase == "" {
		cfg.BackendDatabase = defaultBackendDatabase
	}
	if cfg.MaxConnDuration == 0 {
		cfg.MaxConnDuration = defaultMaxConnDuration
	}
	if cfg.MaxTxnDuration == 0 {
		cfg.MaxTxnDuration = defaultMaxTxnDuration
	}
	if cfg.MaxTxnRows == 0 {
		cfg.MaxTxnRows = defaultMaxTxnRows
	}
	if cfg.MaxTxnBytes == 0 {
		cfg.MaxTxnBytes = defaultMaxTxnBytes
	}
	if cfg.BackendSuperuser == "" {
		cfg.BackendSuperuser = defaultSuperuser
	}
	if cfg.ClockSkew == 0 {
		cfg.ClockSkew = defaultClockSkew
	}
	if cfg.ConnRate == 0 {
		cfg.ConnRate = defaultConnRate
	}
	if cfg.ConnBurst == 0 {
		cfg.ConnBurst = defaultConnBurst
	}
	if cfg.MaxConns == 0 {
		cfg.MaxConns = defaultMaxConns
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = zap.NewNop()
	}

	var errs []error
	if cfg.Region == "" {
		errs = append(errs, errors.New("region is required"))
	}
	if len(cfg.Hostnames) == 0 {
		errs = append(errs, errors.New("hostnames: at least one is required"))
	}
	for _, h := range cfg.Hostnames {
		if h == "" || strings.ContainsAny(h, "/?:@ ") || net.ParseIP(h) != nil {
			errs = append(errs, fmt.Errorf("hostnames: %q is not a DNS name", h))
		}
	}
	if len(cfg.Credentials) == 0 {
		errs = append(errs, errors.New("credentials: at least one is required"))
	}
	for i, c := range cfg.Credentials {
		if c.AccessKeyID == "" || c.SecretAccessKey == "" {
			errs = append(errs, fmt.Errorf("credentials[%d]: access key id and secret access key are required", i))
		}
	}
	if cfg.BackendSocketDir == "" {
		errs = append(errs, errors.New("backend socket dir is required"))
	}
	if cfg.BackendPort <= 0 || cfg.BackendPort > 65535 {
		errs = append(errs, fmt.Errorf("backend port %d is out of range", cfg.BackendPort))
	}
	if cfg.MaxConnDuration < 0 {
		errs = append(errs, errors.New("max conn duration must not be negative"))
	}
	if cfg.MaxTxnDuration < 0 {
		errs = append(errs, errors.New("max txn duration must not be negative"))
	}
	if cfg.MaxTxnRows < 0 || cfg.MaxTxnBytes < 0 {
		errs = append(errs, errors.New("max txn rows and max txn bytes must not be negative"))
	}
	if cfg.ClockSkew < 0 {
		errs = append(errs, errors.New("clock skew must not be negative"))
	}
	if cfg.ConnRate < 0 || cfg.ConnBurst < 0 {
		errs = append(errs, errors.New("conn rate and conn burst must not be negative"))
	}
	if cfg.MaxConns < 0 {
		errs = append(errs, errors.New("max conns must not be negative"))
	}
	if err := errors.Join(errs...); err != nil {
		return Config{}, fmt.Errorf("dsqlsim config: %w", err)
	}
	return cfg, nil
}
