package config

import (
	"fmt"
	"maps"
	"math"
	"net"
	"net/netip"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Validate checks c and returns nil or a *ValidationError listing every
// problem, each naming its key path (routes[0].pool.size) and, for a Config
// from Load or Parse, the file and line, or the environment variable when
// ApplyEnv set the value. It runs before anything listens.
//
// Validate reads nothing: no file (the certificate, the users file) and no
// environment variable (verifier_env, password_env). It checks the
// configuration as written; Load also checks that the client certificate
// and key load, and the users package reads and checks the secrets. It
// must not run while other goroutines read c.
func (c *Config) Validate() error {
	return newValidationError(c.check())
}

// NewValidationError returns a *ValidationError listing problems, ordered
// as Validate orders its own, or nil when there is none, so that its result
// can be returned as an error directly. Code that checks what Validate
// cannot (the users package, reading secrets) reports through it.
func NewValidationError(problems []Problem) error {
	return newValidationError(problems)
}

// Problemf returns a problem with the value at key, placed as Validate
// places its own: at the environment variable that set key, or else at the
// key's line in c's file. The message must not show a secret.
func (c *Config) Problemf(key, format string, args ...any) Problem {
	k := checker{src: c.src}
	k.add(key, format, args...)
	return k.problems[0]
}

// checker collects problems, placing each at its key's line.
type checker struct {
	src      *origin // nil for a Config built in code
	problems []Problem
}

// add reports a problem at key: at the flag that set it, or else at the
// environment variable that set it, or else at its line in the file.
func (k *checker) add(key, format string, args ...any) {
	p := Problem{Key: key, Message: fmt.Sprintf(format, args...)}
	if p.Flag = k.src.flag(key); p.Flag == "" {
		if p.Env = k.src.envVar(key); p.Env == "" {
			p.File, p.Line = k.src.fileName(), k.src.line(key)
		}
	}
	k.problems = append(k.problems, p)
}

// oneOf checks that v is one of the allowed values.
func (k *checker) oneOf(key, v string, allowed ...string) {
	for _, a := range allowed {
		if v == a {
			return
		}
	}
	list := strings.Join(allowed, ", ")
	if v == "" {
		k.add(key, "required: one of %s", list)
		return
	}
	k.add(key, "%q is not one of %s", v, list)
}

// hostPort checks a host:port, offering example in messages; listen allows
// an empty host (every interface) and port 0 (any free port). It reports
// whether s is valid.
func (k *checker) hostPort(key, s, example string, listen bool) bool {
	if s == "" {
		k.add(key, "required: host:port, such as %s", example)
		return false
	}
	host, portText, err := net.SplitHostPort(s)
	if err != nil {
		k.add(key, "%q is not host:port, such as %s (an IPv6 address goes in brackets: [::1]:6432)", s, example)
		return false
	}
	low := 1
	if listen {
		low = 0
	}
	if port, err := strconv.Atoi(portText); err != nil || port < low || port > 65535 {
		k.add(key, "port %q is not a number from %d to 65535", portText, low)
		return false
	}
	if host == "" && !listen {
		k.add(key, "%q has no host", s)
		return false
	}
	return true
}

func (c *Config) check() []Problem {
	k := &checker{src: c.src}
	listenOK := k.hostPort("listen", c.Listen, "127.0.0.1:6432", true)
	c.Log.check(k)
	c.checkClientTLS(k, listenOK)
	c.Limits.check(k)
	if c.ShutdownTimeout <= 0 {
		k.add("shutdown_timeout", "must be positive, such as \"30s\"")
	}
	c.checkMetrics(k, listenOK)
	c.checkUsers(k)
	c.checkAdmin(k)
	c.checkUserRoleNames(k)
	c.checkRoutes(k)
	c.Peers.check(k)
	return k.problems
}

// minSlowQueryLength is the least log.slow_query_max_length: enough to
// tell one statement from another.
const minSlowQueryLength = 20

func (l *Log) check(k *checker) {
	k.oneOf("log.level", l.Level, "debug", "info", "warn", "error")
	k.oneOf("log.format", l.Format, "console", "json")
	if l.SlowQueryThreshold < 0 {
		k.add("log.slow_query_threshold", "must not be negative (0s turns slow query logging off)")
	}
	if l.SlowQueryMaxLength < minSlowQueryLength {
		k.add("log.slow_query_max_length", "must be at least %d characters", minSlowQueryLength)
	}
}

// checkMetrics checks metrics.listen, which must not take the port of
// listen (valid when listenOK).
func (c *Config) checkMetrics(k *checker, listenOK bool) {
	const key = "metrics.listen"
	addr := c.Metrics.Listen
	if addr == "" || !k.hostPort(key, addr, "127.0.0.1:9187", true) || !listenOK {
		return // "" turns the HTTP listener off
	}
	host, port, _ := net.SplitHostPort(addr)
	listenHost, listenPort, _ := net.SplitHostPort(c.Listen)
	if port != listenPort || port == "0" {
		return
	}
	if host == listenHost || isEveryInterface(host) || isEveryInterface(listenHost) {
		k.add(key, "%q uses the port of listen (%q): the HTTP listener needs a port of its own", addr, c.Listen)
	}
}

// isEveryInterface reports whether a listener on host listens on every
// interface: an empty host, 0.0.0.0 or ::.
func isEveryInterface(host string) bool {
	ip, err := netip.ParseAddr(host)
	return host == "" || err == nil && ip.IsUnspecified()
}

// checkAdmin checks the admin console's database name and users. Without
// users_file every admin user must be one of users; with it, the users
// package checks the names once it has read the file.
func (c *Config) checkAdmin(k *checker) {
	a := &c.Admin
	switch {
	case a.Database == "":
		k.add("admin.database", "required: the database name a client asks for to open the admin console, such as dsqlgate")
	case strings.ContainsRune(a.Database, 0):
		k.add("admin.database", "must not contain a NUL character")
	default:
		for i, r := range c.Routes {
			if r.Database != a.Database {
				continue
			}
			// Place the problem where the name was written: admin.database
			// when it is set, else the route, which collides with the default.
			if k.src.has("admin.database") {
				k.add("admin.database", "%q is also the database of routes[%d]: the admin console needs a name no route uses", a.Database, i)
			} else {
				k.add(fmt.Sprintf("routes[%d].database", i), "%q is the admin console's database (admin.database defaults to it): rename the route, or set admin.database to a name no route uses", r.Database)
			}
		}
	}
	known := map[string]bool{}
	for _, u := range c.Users {
		known[u.Name] = true
	}
	seen := map[string]int{}
	for i, name := range a.Users {
		p := fmt.Sprintf("admin.users[%d]", i)
		j, dup := seen[name]
		if !dup {
			seen[name] = i
		}
		switch {
		case name == "":
			k.add(p, "required: the name of a user in users or users_file")
		case dup:
			k.add(p, "%q is already admin.users[%d]", name, j)
		case c.UsersFile == "" && c.UsersEnv == "" && !known[name]:
			k.add(p, "%q is not a user in users or users_file: only the gateway's own users can open the admin console", name)
		}
	}
}

// ClientTLSMode returns the TLS mode towards clients that the gateway uses:
// client_tls.mode when it is set; otherwise TLSRequire when Listen's host
// is not a loopback address (127.0.0.0/8, ::1, localhost; an empty host,
// 0.0.0.0 and :: listen on every interface, so they are not loopback, and
// neither is an unparsable Listen), else TLSAllow when a certificate is
// configured, else TLSDisable.
func (c *Config) ClientTLSMode() string {
	switch {
	case c.ClientTLS.Mode != "":
		return c.ClientTLS.Mode
	case !isLoopbackListen(c.Listen):
		return TLSRequire
	case c.ClientTLS.CertFile != "" || c.ClientTLS.ACME.Enabled():
		return TLSAllow
	}
	return TLSDisable
}

// isLoopbackListen reports whether the host of listen, a host:port, is a
// loopback address or the name localhost. Any other name may resolve to
// anything, so it is not loopback.
func isLoopbackListen(listen string) bool {
	host, _, err := net.SplitHostPort(listen)
	if err != nil {
		return false
	}
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip, err := netip.ParseAddr(host)
	return err == nil && ip.Unmap().IsLoopback()
}

// describeListen says, for a message, why listen is not loopback.
func describeListen(listen string) string {
	host, _, _ := net.SplitHostPort(listen)
	if ip, err := netip.ParseAddr(host); host == "" || err == nil && ip.IsUnspecified() {
		return fmt.Sprintf("%q listens on every interface", listen)
	}
	return fmt.Sprintf("%q is not a loopback address (127.0.0.0/8, ::1, localhost)", listen)
}

// Fixes offered when client TLS is required without a certificate.
const (
	makeCertHint  = "`dsqlgate cert` makes a self-signed pair"
	plainConnHint = "or set client_tls.mode: disable explicitly to accept plain connections (only where something else encrypts the path, such as a tunnel)"
)

func (c *Config) checkClientTLS(k *checker, listenOK bool) {
	t := &c.ClientTLS
	switch t.Mode {
	case "", TLSDisable, TLSAllow, TLSRequire:
	default:
		k.add("client_tls.mode", "%q is not one of disable, allow, require (or leave it empty)", t.Mode)
	}
	switch {
	case t.CertFile != "" && t.KeyFile == "":
		k.add("client_tls.key_file", "required with cert_file")
	case t.CertFile == "" && t.KeyFile != "":
		k.add("client_tls.cert_file", "required with key_file")
	case t.CertFile != "":
	case t.ACME.Enabled():
	case t.Mode == TLSRequire:
		k.add("client_tls.mode", "require needs cert_file and key_file: clients must use TLS, which needs a certificate; set client_tls.cert_file and key_file (%s), %s", makeCertHint, plainConnHint)
	case t.Mode == TLSAllow:
		k.add("client_tls.mode", "allow needs cert_file and key_file (%s)", makeCertHint)
	case t.Mode == "" && listenOK && c.ClientTLSMode() == TLSRequire:
		k.add("listen", "%s, so client TLS is required (client_tls.mode resolves to require) and needs a certificate: a listener other hosts can reach must not accept passwords in clear. Set client_tls.cert_file and key_file (%s), %s",
			describeListen(c.Listen), makeCertHint, plainConnHint)
	}
	c.checkACME(k)
}

// checkACME checks client_tls.acme when its domains turn it on.
func (c *Config) checkACME(k *checker) {
	t := &c.ClientTLS
	a := &t.ACME
	const p = "client_tls.acme"
	if !a.Enabled() {
		return
	}
	if t.CertFile != "" || t.KeyFile != "" {
		k.add(p+".domains", "ACME obtains the certificate, so client_tls.cert_file and key_file must be empty: use one or the other")
	}
	if c.ClientTLSMode() == TLSDisable {
		k.add("client_tls.mode", "disable turns client TLS off, but client_tls.acme.domains obtains a certificate for it: set mode allow or require, or remove acme.domains")
	}
	k.oneOf(p+".challenge", a.Challenge, ACMEChallengeDNS01, ACMEChallengeHTTP01)
	seen := map[string]int{}
	for i, d := range a.Domains {
		key := fmt.Sprintf("%s.domains[%d]", p, i)
		name := strings.ToLower(strings.TrimSuffix(d, "."))
		if j, dup := seen[name]; dup {
			k.add(key, "%q is already domains[%d]", d, j)
			continue
		}
		seen[name] = i
		wild := strings.HasPrefix(name, "*.")
		switch {
		case !validDNSName(strings.TrimPrefix(name, "*.")):
			k.add(key, "%q is not a DNS name such as db.example.com (letters, digits and -, in dot-separated labels, with at least one dot; a wildcard is *. followed by such a name)", d)
		case wild && a.Challenge == ACMEChallengeHTTP01:
			k.add(key, "%q is a wildcard, which ACME issues only with challenge dns-01", d)
		}
	}
	if a.Directory == "" {
		k.add(p+".directory", "required: the ACME directory URL, such as %s", ACMEDirectoryLetsEncrypt)
	} else if u, err := url.Parse(a.Directory); err != nil || u.Host == "" || (u.Scheme != "https" && u.Scheme != "http") {
		k.add(p+".directory", "%q is not an http(s) URL such as %s", a.Directory, ACMEDirectoryLetsEncrypt)
	}
	if a.Email != "" && (!strings.Contains(a.Email, "@") || strings.ContainsAny(a.Email, " \t\r\n,<>")) {
		k.add(p+".email", "%q is not an e-mail address such as ops@example.com", a.Email)
	}
	switch a.Challenge {
	case ACMEChallengeDNS01:
		k.oneOf(p+".dns_provider", a.DNSProvider, ACMEDNSRoute53, ACMEDNSChalltestsrv)
		if a.DNSProvider == ACMEDNSChalltestsrv {
			if u, err := url.Parse(a.ChalltestsrvURL); a.ChalltestsrvURL == "" || err != nil || u.Host == "" || u.Scheme != "http" && u.Scheme != "https" {
				k.add(p+".challtestsrv_url", "%q is not the URL of pebble-challtestsrv's management API, such as http://127.0.0.1:8055 (dns_provider pebble-challtestsrv needs it)", a.ChalltestsrvURL)
			}
		}
	case ACMEChallengeHTTP01:
		k.hostPort(p+".http_listen", a.HTTPListen, ":80", true)
	}
	if db, ok := a.StorageRoute(); ok {
		var route *Route
		for i := range c.Routes {
			if r := &c.Routes[i]; r.Database == db && db != "" {
				route = r
			}
		}
		switch {
		case route == nil:
			k.add(p+".storage", "%q names no route: route:<database> stores certificates in a table on that route's upstream, so <database> must be a routes[].database", a.Storage)
		case route.Kind != KindDSQL:
			k.add(p+".storage", "%q is a route of kind %s: the table would hold the certificate's private key where the route's clients, who log in with the same user, can read it (the gateway keeps them from the table on Aurora DSQL only); use a kind dsql route or a directory", a.Storage, route.Kind)
		}
		tableOf := func(name string) string { return name[strings.LastIndexByte(name, '.')+1:] }
		switch {
		case !validLockTable(a.StorageTable):
			k.add(p+".storage_table", "%q is not a table name: use letters, digits and _ (optionally schema.table), starting with a letter or _", a.StorageTable)
		case len(tableOf(a.StorageTable)) > 63-len("_locks"):
			k.add(p+".storage_table", "%q is too long: at most %d characters, so that its lock table %s_locks fits PostgreSQL's 63", a.StorageTable, 63-len("_locks"), tableOf(a.StorageTable))
		default:
			for _, r := range c.Routes {
				lt := tableOf(r.Compat.AdvisoryLockTable)
				if name := tableOf(a.StorageTable); r.Kind == KindDSQL && (name == lt || name+"_locks" == lt) {
					k.add(p+".storage_table", "%q (with its lock table %s_locks) would share a name with route %q's advisory lock table %q: choose another name", a.StorageTable, name, r.Database, r.Compat.AdvisoryLockTable)
					break
				}
			}
		}
	}
	if a.RenewCheckInterval.D() < time.Second {
		k.add(p+".renew_check_interval", "must be at least 1s, such as \"10m\"")
	}
}

// validDNSName accepts a host name of at least two labels, each of 1 to
// 63 letters, digits and hyphens, not starting or ending with a hyphen;
// 253 characters at most.
func validDNSName(name string) bool {
	if len(name) > 253 || !strings.Contains(name, ".") {
		return false
	}
	for label := range strings.SplitSeq(name, ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for _, c := range label {
			if !(c == '-' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9') {
				return false
			}
		}
	}
	return true
}

func (l *Limits) check(k *checker) {
	if l.StartupTimeout <= 0 {
		k.add("limits.startup_timeout", "must be positive, such as \"10s\"")
	}
	if l.MaxStartupPacket < KiB || l.MaxStartupPacket > GiB {
		k.add("limits.max_startup_packet", "%s is out of range: from 1KiB to 1GiB", l.MaxStartupPacket)
	}
	if l.MaxMessageSize < 8*KiB || l.MaxMessageSize > GiB {
		k.add("limits.max_message_size", "%s is out of range: from 8KiB to 1GiB", l.MaxMessageSize)
	}
	switch {
	case l.MaxClientConn < 1:
		k.add("limits.max_client_conn", "must be at least 1")
	case l.MaxClientConn > MaxSessions:
		k.add("limits.max_client_conn", "%d is more than %d: a cancel key has a 16-bit session slot, so one replica serves at most %d sessions (run more replicas for more)", l.MaxClientConn, MaxSessions, MaxSessions)
	}
	if l.AuthFailureLimit < 0 {
		k.add("limits.auth_failure_limit", "must not be negative (0 turns login backoff off)")
	}
	if l.AuthFailureWindow <= 0 {
		k.add("limits.auth_failure_window", "must be positive, such as \"1m\" (auth_failure_limit: 0 turns login backoff off)")
	}
	switch {
	case l.AuthFailureMaxDelay <= 0:
		k.add("limits.auth_failure_max_delay", "must be positive, such as \"10s\"")
	case l.StartupTimeout > 0 && l.AuthFailureMaxDelay >= l.StartupTimeout:
		k.add("limits.auth_failure_max_delay", "%s must be less than startup_timeout (%s): a delayed failure must still be answered before the startup deadline closes the connection", l.AuthFailureMaxDelay, l.StartupTimeout)
	}
	if l.IdleInTransactionTimeout < 0 {
		k.add("limits.idle_in_transaction_timeout", "must not be negative (0s turns it off)")
	}
	if l.MaxPendingReplies < minPendingReplies {
		k.add("limits.max_pending_replies", "must be at least %d", minPendingReplies)
	}
	if l.MaxClientStatements < 1 {
		k.add("limits.max_client_statements", "must be at least 1")
	}
	if l.MaxClientSettings < 1 {
		k.add("limits.max_client_settings", "must be at least 1")
	}
}

// minPendingReplies is the least limits.max_pending_replies: room for an
// ordinary pipeline.
const minPendingReplies = 100

func (c *Config) checkRoutes(k *checker) {
	if len(c.Routes) == 0 {
		k.add("routes", "at least one route is required: a route maps the database a client asks for to an upstream")
	}
	byDatabase := map[string]int{}
	byHost := map[string]int{} // lower-case endpoint host → first route naming it
	for i := range c.Routes {
		r := &c.Routes[i]
		p := fmt.Sprintf("routes[%d]", i)
		switch j, dup := byDatabase[r.Database]; {
		case r.Database == "":
		case dup:
			k.add(p+".database", "%q is already routed by routes[%d]", r.Database, j)
		default:
			byDatabase[r.Database] = i
		}
		r.check(k, p)
		if r.Endpoint == "" {
			continue
		}
		host := strings.ToLower(strings.TrimSuffix(r.Host(), "."))
		if j, seen := byHost[host]; !seen {
			byHost[host] = i
		} else if rate := c.Routes[j].Pool.DialRate; rate != r.Pool.DialRate {
			k.add(p+".pool.dial_rate", "%v differs from %v in routes[%d], which names the same endpoint: the dial rate is shared per cluster", r.Pool.DialRate, rate, j)
		}
	}
}

func (r *Route) check(k *checker, p string) {
	switch {
	case r.Database == "":
		k.add(p+".database", "required: the database name clients send")
	case strings.ContainsRune(r.Database, 0):
		k.add(p+".database", "must not contain a NUL character")
	}
	host := ""
	if r.Endpoint == "" {
		k.add(p+".endpoint", "required: the upstream host name, with :port when it is not 5432")
	} else if h, _, err := splitEndpoint(r.Endpoint); err != nil {
		k.add(p+".endpoint", "%v", err)
	} else {
		host = h
	}
	if r.DialAddress != "" {
		k.hostPort(p+".dial_address", r.DialAddress, "127.0.0.1:5432", false)
	}
	switch r.Kind {
	case KindDSQL:
		r.checkDSQL(k, p, host)
	case KindPostgres:
		r.checkPostgres(k, p)
	default:
		k.oneOf(p+".kind", r.Kind, KindDSQL, KindPostgres)
		return // the other checks depend on the kind
	}
	k.oneOf(p+".tls_negotiation", r.TLSNegotiation, NegotiateDirect, NegotiatePostgres)
	r.Pool.check(k, p+".pool", r.Kind)
	r.Compat.check(k, p+".compat")
	r.OCCRetry.check(k, p+".occ_retry")
}

// Token lifetimes DSQL accepts.
const (
	minTokenExpiry = time.Second
	maxTokenExpiry = 168 * time.Hour
)

// dsqlMaxConnAge is DSQL's hard cap on a connection's age.
const dsqlMaxConnAge = 60 * time.Minute

func (r *Route) checkDSQL(k *checker, p, host string) {
	if net.ParseIP(host) != nil {
		k.add(p+".endpoint", "must be the cluster's host name, not an IP address: DSQL needs the name for SNI and the token; put an address in dial_address")
	}
	parsed, fromEndpoint := RegionFromEndpoint(host)
	switch {
	case r.Region == "" && !fromEndpoint && host != "":
		k.add(p+".region", "required: %s does not have the form <cluster-id>.dsql.<region>.on.aws, so the region cannot be read from it", host)
	case r.Region == "":
	case !validRegion(r.Region):
		k.add(p+".region", "%q is not an AWS region name such as us-east-1", r.Region)
	case fromEndpoint && r.Region != parsed:
		k.add(p+".region", "%s differs from the endpoint's region %s: a token signed for one region is refused in another", r.Region, parsed)
	}
	switch {
	case r.Role == "":
		k.add(p+".role", "required: the DSQL database role to log in as, such as admin")
	case strings.ContainsRune(r.Role, 0):
		k.add(p+".role", "must not contain a NUL character")
	}
	for _, user := range slices.Sorted(maps.Keys(r.UserRoles)) {
		switch role := r.UserRoles[user]; {
		case role == "":
			k.add(p+".user_roles."+user, "required: the DSQL database role this user logs in as, such as app_writer")
		case strings.ContainsRune(role, 0) || strings.ContainsRune(user, 0):
			k.add(p+".user_roles."+user, "must not contain a NUL character")
		}
	}
	if d := r.TokenExpiry.D(); d < minTokenExpiry || d > maxTokenExpiry {
		k.add(p+".token_expiry", "%s is out of range: DSQL tokens last from 1s to 168h", d)
	}
	if r.TLS != "" && r.TLS != TLSVerifyFull {
		k.add(p+".tls", "is only for kind postgres: connections to DSQL are always verify-full")
	}
	for _, f := range []struct{ key, v string }{{"user", r.User}, {"password", r.Password}, {"password_env", r.PasswordEnv}} {
		if f.v != "" {
			k.add(p+"."+f.key, "is only for kind postgres: a dsql route logs in as its role with an IAM token")
		}
	}
	if r.UpstreamDatabase != dsqlDatabase {
		k.add(p+".upstream_database", "must be %s for kind dsql: DSQL has no other database", dsqlDatabase)
	}
}

// checkUserRoleNames checks that each routes[].user_roles entry names a
// user of users, when users is all there is (users_file and users_env are
// checked by users.Load): a misspelt name would leave the user it meant on
// the route's role, admin by default.
func (c *Config) checkUserRoleNames(k *checker) {
	if c.UsersFile != "" || c.UsersEnv != "" {
		return
	}
	known := map[string]bool{}
	for _, u := range c.Users {
		known[u.Name] = true
	}
	for i, r := range c.Routes {
		for _, user := range slices.Sorted(maps.Keys(r.UserRoles)) {
			if !known[user] {
				k.add(fmt.Sprintf("routes[%d].user_roles.%s", i, user), "%q is not a user in users: each entry maps a gateway user to its DSQL role (a user without one logs in as the route's role)", user)
			}
		}
	}
}

// RoleFor is the DSQL role the gateway user user logs in as on this route:
// its entry in UserRoles, else Role. For kind dsql.
func (r *Route) RoleFor(user string) string {
	if role, ok := r.UserRoles[user]; ok {
		return role
	}
	return r.Role
}

func (r *Route) checkPostgres(k *checker, p string) {
	if len(r.UserRoles) > 0 {
		k.add(p+".user_roles", "is only for kind dsql: a postgres route logs every user in as its user")
	}
	if r.User == "" {
		k.add(p+".user", "required for kind postgres: the upstream login")
	}
	switch {
	case r.Password != "" && r.PasswordEnv != "":
		k.add(p+".password_env", "set password or password_env, not both")
	case r.Password == "" && r.PasswordEnv == "":
		k.add(p, "kind postgres needs password_env (or password): the upstream login's password")
	}
	k.oneOf(p+".tls", r.TLS, TLSDisable, TLSRequire, TLSVerifyFull)
	if r.TLS == TLSDisable && r.TLSNegotiation == NegotiateDirect {
		k.add(p+".tls_negotiation", "direct starts with TLS, which tls: disable turns off; use postgres")
	}
	if r.UpstreamDatabase == "" {
		k.add(p+".upstream_database", "required: the database to open upstream")
	}
}

func (pl *Pool) check(k *checker, p, kind string) {
	k.oneOf(p+".mode", pl.Mode, PoolTransaction, PoolSession)
	if pl.Size < 1 {
		k.add(p+".size", "must be at least 1")
	}
	if pl.MinIdle < 0 || pl.MinIdle > max(pl.Size, 0) {
		k.add(p+".min_idle", "must be from 0 to size (%d)", pl.Size)
	}
	if pl.MaxUserConnections < 0 {
		k.add(p+".max_user_connections", "must not be negative (0: no limit but size)")
	}
	for _, f := range []struct {
		key string
		d   Duration
	}{
		{"idle_timeout", pl.IdleTimeout},
		{"max_lifetime", pl.MaxLifetime},
		{"query_wait_timeout", pl.QueryWaitTimeout},
		{"dial_timeout", pl.DialTimeout},
	} {
		if f.d <= 0 {
			k.add(p+"."+f.key, "must be positive, such as \"10m\"")
		}
	}
	switch {
	case pl.LifetimeJitter < 0:
		k.add(p+".lifetime_jitter", "must not be negative (0s turns jitter off)")
	case pl.MaxLifetime > 0 && pl.LifetimeJitter >= pl.MaxLifetime:
		k.add(p+".lifetime_jitter", "%s must be less than max_lifetime (%s)", pl.LifetimeJitter, pl.MaxLifetime)
	}
	if kind == KindDSQL && pl.MaxLifetime.D() > dsqlMaxConnAge {
		k.add(p+".max_lifetime", "%s is more than 60m: DSQL closes every connection at 60 minutes, abruptly, so a longer lifetime would lose upstreams mid-session instead of retiring them at a safe point", pl.MaxLifetime)
	}
	if math.IsNaN(pl.DialRate) || math.IsInf(pl.DialRate, 0) || pl.DialRate <= 0 {
		k.add(p+".dial_rate", "must be a positive number of new connections per second")
	}
	if pl.MaxPreparedStatements < 1 {
		k.add(p+".max_prepared_statements", "must be at least 1")
	}
}

func (o *OCCRetry) check(k *checker, p string) {
	if o.MaxAttempts < 1 {
		k.add(p+".max_attempts", "must be at least 1 (the first attempt counts)")
	}
	if o.Backoff.D() < 0 {
		k.add(p+".backoff", "must not be negative")
	}
	if o.MaxBackoff.D() < o.Backoff.D() {
		k.add(p+".max_backoff", "must be at least backoff (%s)", o.Backoff.D())
	}
	if o.Budget.D() < 0 {
		k.add(p+".budget", "must not be negative")
	}
}

func (c *Compat) check(k *checker, p string) {
	if c.AdvisoryLocks && !validLockTable(c.AdvisoryLockTable) {
		k.add(p+".advisory_lock_table", "%q is not a table name: use letters, digits and _ (optionally schema.table), starting with a letter or _", c.AdvisoryLockTable)
	}
	if c.AdvisoryLocks && c.AdvisoryLockLease.D() < time.Second {
		k.add(p+".advisory_lock_lease", "must be at least 1s: locks are renewed every third of it")
	}
}

// validLockTable accepts [schema.]table written with lower-case letters,
// digits and underscores, so it can go into SQL unquoted.
func validLockTable(name string) bool {
	parts := strings.Split(name, ".")
	if len(parts) > 2 {
		return false
	}
	for _, part := range parts {
		if part == "" || len(part) > 63 {
			return false
		}
		for i, c := range part {
			if !(c == '_' || c >= 'a' && c <= 'z' || i > 0 && c >= '0' && c <= '9') {
				return false
			}
		}
	}
	return true
}

// MaxSessions is the most sessions one replica serves at once: a cancel
// key names its session by a 16-bit slot, and slot 0 is never used.
const MaxSessions = 1<<16 - 1

// check checks the peers: every address a host:port a replica can dial
// (a host and a port), the DNS name with its port, a positive refresh,
// and self, when set, a host:port too.
func (p *Peers) check(k *checker) {
	for i, a := range p.Addresses {
		k.hostPort(fmt.Sprintf("peers.addresses[%d]", i), a, "10.0.1.11:6432", false)
	}
	if p.DNS != "" {
		k.hostPort("peers.dns", p.DNS, "dsqlgate-peers.dsqlgate.svc.cluster.local:6432", false)
	}
	if p.Refresh <= 0 {
		k.add("peers.refresh", "must be positive, such as \"5s\"")
	}
	if p.Self != "" && k.hostPort("peers.self", p.Self, "10.0.1.11:6432", false) {
		if host, _, _ := net.SplitHostPort(p.Self); isEveryInterface(host) {
			k.add("peers.self", "%q is every interface, not an address the other replicas can reach", p.Self)
		}
	}
}
