package pgwire

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"reflect"
	"runtime"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/jackc/pgerrcode"
	"go.uber.org/zap"

	"github.com/dsqlgate/dsqlgate/config"
	"github.com/dsqlgate/dsqlgate/internal/compat"
)

// This file is the admin console: a virtual database (admin.database,
// default "dsqlgate") that admin users connect to with psql and query with
// PgBouncer-style commands. Column names follow PgBouncer's where the
// concept is the same; a PgBouncer column dsqlgate has no meaning for is
// left out rather than filled with a made-up value.

// routeCounters are a route's totals for SHOW STATS. Atomic: sessions on
// any goroutine add to them.
type routeCounters struct {
	xacts, queries          atomic.Uint64
	received, sent          atomic.Uint64
	xactUs, queryUs, waitUs atomic.Uint64
}

// countersFor returns the route's counters, creating them on first use.
func (s *Server) countersFor(route string) *routeCounters {
	if c, ok := s.stats.Load(route); ok {
		return c.(*routeCounters)
	}
	c, _ := s.stats.LoadOrStore(route, &routeCounters{})
	return c.(*routeCounters)
}

// isAdmin reports whether user may use the admin console.
func (s *Server) isAdmin(user string) bool {
	return slices.Contains(s.currentConfig().Admin.Users, user)
}

// adminCommand is one console command, for SHOW HELP and the hint of an
// unknown command: the one list of what the console understands.
type adminCommand struct{ syntax, what string }

var adminCommands = []adminCommand{
	{"SHOW HELP", "this list"},
	{"SHOW DATABASES", "the routes and their pool settings"},
	{"SHOW POOLS", "clients and upstreams per route"},
	{"SHOW CLIENTS", "every client session"},
	{"SHOW SERVERS", "every upstream connection"},
	{"SHOW USERS", "the gateway users"},
	{"SHOW STATS", "per route totals and averages"},
	{"SHOW STATS_TOTALS", "per route totals"},
	{"SHOW LISTS", "how many of each thing there are"},
	{"SHOW MEM", "memory per kind of object and the Go runtime's"},
	{"SHOW CONFIG", "every setting, its default, whether a reload changes it"},
	{"SHOW VERSION", "the version"},
	{"RELOAD", "reload the configuration (as SIGHUP)"},
	{"PAUSE [db]", "hand out no upstream until RESUME"},
	{"RESUME [db]", "end a PAUSE"},
	{"RECONNECT [db]", "replace every upstream at its next safe point"},
	{"KILL_CLIENT id", "close the client whose SHOW CLIENTS ptr is id"},
	{"KILL db", "close every client and upstream of a route now"},
	{"SHUTDOWN", "drain and stop the gateway (as SIGTERM)"},
}

// adminHint lists the commands, for the hint of an unknown one.
func adminHint() string {
	names := make([]string, len(adminCommands))
	for i, c := range adminCommands {
		names[i] = c.syntax
	}
	return "Commands: " + strings.Join(names, ", ") + "."
}

// maxAdminCommands bounds the commands of one console query: each runs
// and answers in full, so one query must not queue unbounded work.
const maxAdminCommands = 64

// splitAdminQuery splits a console query into its commands at each ';'
// outside single or double quotes, dropping empty ones (";;", a trailing
// ';'). More than maxAdminCommands is an error.
func splitAdminQuery(text string) ([]string, error) {
	var out []string
	var quote byte
	start := 0
	flush := func(end int) error {
		if cmd := strings.TrimSpace(text[start:end]); cmd != "" {
			if len(out) == maxAdminCommands {
				return fmt.Errorf("more than %d commands in one query", maxAdminCommands)
			}
			out = append(out, cmd)
		}
		start = end + 1
		return nil
	}
	for i := 0; i < len(text); i++ {
		c := text[i]
		switch {
		case quote != 0:
			if c == quote { // a doubled quote closes and reopens: same result
				quote = 0
			}
		case c == '\'' || c == '"':
			quote = c
		case c == ';':
			if err := flush(i); err != nil {
				return nil, err
			}
		}
	}
	if quote != 0 {
		return nil, errors.New("unterminated quoted string")
	}
	if err := flush(len(text)); err != nil {
		return nil, err
	}
	return out, nil
}

// console is one admin console connection. Its query loop and a drain
// (Shutdown) meet under mu: a console waiting for a query is closed at
// once, one running a query after its reply.
type console struct {
	conn     net.Conn
	mu       sync.Mutex
	busy     bool // running a query
	draining bool // the gateway is shutting down: end after the reply
	ended    bool // told to go and closed
}

// endLocked tells the client the gateway is shutting down and closes the
// connection; the query loop's read then fails.
func (c *console) endLocked() {
	if c.ended {
		return
	}
	c.ended = true
	c.conn.SetWriteDeadline(time.Now().Add(time.Second))
	c.conn.Write(appendErrorResponse(nil, &pgError{Severity: severityFatal, Code: pgerrcode.AdminShutdown,
		Message: "terminating connection because the gateway is shutting down"}))
	c.conn.Close()
}

// drainConsoles ends every admin console at its next safe point: now for
// one waiting for a query, after its reply for one running a query. An
// open console must not hold a drain up until shutdown_timeout.
func (s *Server) drainConsoles() {
	s.mu.Lock()
	all := make([]*console, 0, len(s.consoles))
	for c := range s.consoles {
		all = append(all, c)
	}
	s.mu.Unlock()
	for _, c := range all {
		c.mu.Lock()
		c.draining = true
		if !c.busy {
			c.endLocked()
		}
		c.mu.Unlock()
	}
}

// addConsole registers c for drainConsoles; false when a drain has
// begun already (the console is then not served).
func (s *Server) addConsole(c *console) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.draining {
		return false
	}
	if s.consoles == nil {
		s.consoles = map[*console]struct{}{}
	}
	s.consoles[c] = struct{}{}
	return true
}

// removeConsole forgets c when its connection ends.
func (s *Server) removeConsole(c *console) {
	s.mu.Lock()
	delete(s.consoles, c)
	s.mu.Unlock()
}

// serveAdmin runs an admin console session for an authenticated admin.
func (s *Server) serveAdmin(conn net.Conn, br *bufio.Reader, user string, log *zap.Logger) error {
	c := &console{conn: conn}
	if !s.addConsole(c) {
		c.endLocked() // no other goroutine knows c
		return nil
	}
	defer s.removeConsole(c)
	w := bufio.NewWriter(conn)
	for _, p := range [][2]string{
		{"server_version", "16.0"}, {"server_encoding", "UTF8"}, {"client_encoding", "UTF8"},
		{"DateStyle", "ISO, MDY"}, {"integer_datetimes", "on"}, {"standard_conforming_strings", "on"},
		{"application_name", ""},
	} {
		w.Write(parameterStatus(p[0], p[1]))
	}
	w.Write(cancelKey{}.backendKeyData())
	w.Write(readyForQuery('I'))
	if err := w.Flush(); err != nil {
		return err
	}
	fr := frameReader{r: br, maxSize: s.currentConfig().Limits.MaxMessageSize.Int()}
	skip := false
	for {
		msg, err := fr.next()
		if err != nil {
			return nil
		}
		c.mu.Lock()
		if c.ended {
			c.mu.Unlock()
			return nil
		}
		c.busy = true
		c.mu.Unlock()
		shutdown := false
		switch msg[0] {
		case 'Q':
			text, _, _ := readCString(body(msg))
			shutdown = s.adminQuery(w, text, user, log)
			w.Write(readyForQuery('I'))
		case 'X':
			return nil
		case 'S':
			skip = false
			w.Write(readyForQuery('I'))
		default:
			if !skip {
				w.Write(appendErrorResponse(nil, &pgError{Severity: severityError, Code: pgerrcode.FeatureNotSupported,
					Message: "the admin console accepts simple queries only"}))
				skip = true
			}
		}
		if fr.buffered() == 0 || shutdown {
			if err := w.Flush(); err != nil {
				return err
			}
		}
		c.mu.Lock()
		c.busy = false
		if c.draining {
			c.endLocked()
		}
		c.mu.Unlock()
		if shutdown {
			// After the reply went out: the drain then closes this
			// console like any other.
			s.shutdown()
		}
	}
}

// adminQuery runs the commands of one simple query in order, each
// answered in full, and stops at the first error (as PostgreSQL does with
// a multi-statement query). shutdown: SHUTDOWN ran; the drain is for the
// caller to start once the reply is sent.
//
// Each command's reply goes to w as soon as it is built, so a query of
// many large SHOWs holds one reply in memory at a time.
func (s *Server) adminQuery(w io.Writer, text, user string, log *zap.Logger) (shutdown bool) {
	cmds, err := splitAdminQuery(text)
	if err != nil {
		w.Write(appendErrorResponse(nil, &pgError{Severity: severityError, Code: pgerrcode.SyntaxError,
			Message: err.Error(), Hint: fmt.Sprintf("Send at most %d commands per query, separated by ';'.", maxAdminCommands)}))
		return false
	}
	if len(cmds) == 0 {
		w.Write([]byte{'I', 0, 0, 0, 4}) // EmptyQueryResponse
		return false
	}
	// admin.users as in force now, not at login: a reload that removes an
	// admin takes the console from the sessions it has open too.
	if !s.isAdmin(user) {
		w.Write(appendErrorResponse(nil, &pgError{Severity: severityError, Code: pgerrcode.InsufficientPrivilege,
			Message: fmt.Sprintf("user %q is no longer an admin user", user), Hint: "Admin users are listed in admin.users."}))
		return false
	}
	for _, cmd := range cmds {
		reply, perr := s.runAdminCommand(cmd, user, log)
		if perr != nil {
			perr.Severity = severityError
			w.Write(appendErrorResponse(nil, perr))
			return shutdown
		}
		w.Write(reply)
		shutdown = shutdown || strings.EqualFold(strings.TrimSpace(cmd), "SHUTDOWN")
	}
	return shutdown
}

// adminError is a console command's failure.
func adminError(code, msg, hint string) *pgError {
	return &pgError{Severity: severityError, Code: code, Message: msg, Hint: hint}
}

// showCommands are the SHOW commands by name.
var showCommands = map[string]func(*Server) *adminResult{
	"DATABASES":    (*Server).showDatabases,
	"POOLS":        (*Server).showPools,
	"CLIENTS":      (*Server).showClients,
	"SERVERS":      (*Server).showServers,
	"USERS":        (*Server).showUsers,
	"STATS":        (*Server).showStats,
	"STATS_TOTALS": (*Server).showStatsTotals,
	"LISTS":        (*Server).showLists,
	"MEM":          (*Server).showMem,
	"CONFIG":       (*Server).showConfig,
	"VERSION":      (*Server).showVersion,
}

// runAdminCommand runs one console command and returns its reply
// (without the ReadyForQuery), or why it failed.
func (s *Server) runAdminCommand(text, user string, log *zap.Logger) ([]byte, *pgError) {
	words := strings.Fields(text)
	verb := strings.ToUpper(words[0])
	arg := ""
	if len(words) > 1 {
		arg = strings.Trim(words[1], `"`)
	}
	log.Info("admin command", zap.String("admin", user), zap.String("command", strings.ToUpper(strings.Join(words, " "))))
	if len(words) > 2 || len(words) == 2 && !slices.Contains([]string{"SHOW", "PAUSE", "RESUME", "RECONNECT", "KILL", "KILL_CLIENT"}, verb) {
		return nil, adminError(pgerrcode.SyntaxError, fmt.Sprintf("too many words in %q", text), adminHint())
	}
	switch verb {
	case "SHOW":
		if arg == "" {
			return nil, adminError(pgerrcode.SyntaxError, "SHOW needs what to show", "See SHOW HELP.")
		}
		what := strings.ToUpper(arg)
		if what == "HELP" {
			return showHelp(), nil
		}
		show, ok := showCommands[what]
		if !ok {
			return nil, adminError(pgerrcode.SyntaxError, fmt.Sprintf("unknown SHOW %s", arg), adminHint())
		}
		return show(s).encode("SHOW"), nil
	case "RELOAD":
		if s.reload == nil {
			return nil, adminError(pgerrcode.FeatureNotSupported, "this gateway cannot reload its configuration", "")
		}
		if err := s.reload(); err != nil {
			return nil, adminError(pgerrcode.ConfigFileError, "reload refused: "+err.Error(), "The previous configuration stays in force.")
		}
		return commandComplete("RELOAD"), nil
	case "PAUSE", "RESUME", "RECONNECT":
		return s.poolCommand(verb, arg)
	case "KILL_CLIENT":
		return s.killClient(arg)
	case "KILL":
		return s.killRoute(arg)
	case "SHUTDOWN":
		if s.shutdown == nil {
			return nil, adminError(pgerrcode.FeatureNotSupported, "this gateway cannot be shut down from the console",
				"Send the process SIGTERM instead.")
		}
		return commandComplete("SHUTDOWN"), nil
	}
	return nil, adminError(pgerrcode.SyntaxError, fmt.Sprintf("unknown admin command %q", verb), adminHint())
}

// showHelp is PgBouncer's SHOW HELP: the commands in a NOTICE.
func showHelp() []byte {
	var b strings.Builder
	b.WriteString("Console usage")
	for _, c := range adminCommands {
		fmt.Fprintf(&b, "\n\t%-18s %s", c.syntax, c.what)
	}
	out := appendErrorResponse(nil, &pgError{Severity: "NOTICE", Code: pgerrcode.SuccessfulCompletion, Message: b.String()})
	return append(out, commandComplete("SHOW")...)
}

// poolCommand runs PAUSE, RESUME or RECONNECT on one route, or on all.
func (s *Server) poolCommand(verb, arg string) ([]byte, *pgError) {
	routes := s.upstreams.Routes()
	if arg != "" {
		r := s.upstreams.Route(arg)
		if r == nil {
			return nil, adminError(pgerrcode.InvalidCatalogName, fmt.Sprintf("no route for database %q", arg), "SHOW DATABASES lists them.")
		}
		routes = []Route{r}
	}
	for _, r := range routes {
		switch verb {
		case "PAUSE":
			ctx, cancel := context.WithTimeout(context.Background(), s.currentConfig().ShutdownTimeout.D())
			err := r.Pool().Pause(ctx)
			cancel()
			if err != nil {
				return nil, adminError(pgerrcode.QueryCanceled, err.Error(), "The route stays paused; RESUME lets clients go on.")
			}
		case "RESUME":
			r.Pool().Resume()
		case "RECONNECT":
			r.Pool().Reconnect()
		}
	}
	return commandComplete(verb), nil
}

// killClient is KILL_CLIENT: it closes the session whose cancel pid (the
// ptr of SHOW CLIENTS) is arg.
func (s *Server) killClient(arg string) ([]byte, *pgError) {
	if arg == "" {
		return nil, adminError(pgerrcode.SyntaxError, "KILL_CLIENT needs a client id", "The id is the ptr column of SHOW CLIENTS.")
	}
	pid, err := strconv.ParseUint(arg, 10, 32)
	if err != nil {
		return nil, adminError(pgerrcode.InvalidParameterValue, fmt.Sprintf("client id %q is not a number", arg), "The id is the ptr column of SHOW CLIENTS.")
	}
	for _, sess := range s.liveSessions() {
		if sess.key.pid == uint32(pid) {
			go sess.kill()
			return commandComplete("KILL_CLIENT"), nil
		}
	}
	return nil, adminError(pgerrcode.UndefinedObject, fmt.Sprintf("no client with id %d", pid),
		"The id is the ptr column of SHOW CLIENTS; the client may have left already.")
}

// killRoute is KILL db: every client of the route is closed now, and its
// upstreams with them (a session's upstream is cancelled and closed, or
// rolled back and returned, as when a client leaves); the idle ones are
// replaced (RECONNECT). Unlike PgBouncer, the route is not left paused:
// new clients are served at once (and a client still logging in when KILL
// runs is not among those closed).
func (s *Server) killRoute(arg string) ([]byte, *pgError) {
	if arg == "" {
		return nil, adminError(pgerrcode.SyntaxError, "KILL needs a database", "KILL_CLIENT id closes one client.")
	}
	r := s.upstreams.Route(arg)
	if r == nil {
		return nil, adminError(pgerrcode.InvalidCatalogName, fmt.Sprintf("no route for database %q", arg), "SHOW DATABASES lists them.")
	}
	for _, sess := range s.liveSessions() {
		if sess.route.Name() == r.Name() {
			go sess.kill()
		}
	}
	r.Pool().Reconnect()
	return commandComplete("KILL"), nil
}

// kill ends the session now, whatever it is doing, with the error
// PostgreSQL's pg_terminate_backend gives; ending the session then deals
// with its upstream as when a client leaves. A client waiting for an
// upstream is closed now but its session ends when the wait does (as when
// such a client leaves by itself). Run on a goroutine of its
// own: mu may be held for a while by a relay (never across a write to the
// client, which closing the connection ends).
func (sess *session) kill() {
	sess.mu.Lock()
	defer sess.mu.Unlock()
	if sess.closing {
		return
	}
	sess.log.Info("client closed by an administrator (KILL)")
	sess.writeClientLocked(appendErrorResponse(nil, &pgError{Severity: severityFatal, Code: pgerrcode.AdminShutdown,
		Message: "terminating connection due to administrator command",
		Detail:  "A gateway administrator closed this client (KILL_CLIENT or KILL in the admin console)."}))
	sess.closeClientLocked()
	if sess.writing {
		// The close waits for the write in flight, which a client that
		// does not read holds up to clientWriteTimeout: a KILL gives it
		// killGrace to take the FATAL, then closes.
		time.AfterFunc(killGrace, func() { sess.conn.Close() })
	}
}

// killGrace is how long a killed client that is being written to has to
// read what is sent before its connection is closed under the write.
const killGrace = time.Second

// adminColumn is one column of a console result: int8, bool or text, so
// that psql aligns numbers right and clients get typed values.
type adminColumn struct {
	name string
	oid  uint32
}

// adminResult is a console result set.
type adminResult struct {
	cols []adminColumn
	rows [][]string
}

// nullValue marks a NULL in adminResult.rows: PostgreSQL text cannot hold
// a NUL byte, so no real value is this.
const nullValue = "\x00"

// newResult starts a result with the given columns, each "name" (text) or
// "name int" or "name bool".
func newResult(cols ...string) *adminResult {
	r := &adminResult{cols: make([]adminColumn, len(cols))}
	for i, c := range cols {
		name, typ, _ := strings.Cut(c, " ")
		r.cols[i] = adminColumn{name: name, oid: oidText}
		switch typ {
		case "int":
			r.cols[i].oid = compat.OIDInt8
		case "bool":
			r.cols[i].oid = compat.OIDBool
		}
	}
	return r
}

// add appends a row: times as text (empty when zero), booleans as t or f,
// nil as NULL, anything else as fmt prints it.
func (r *adminResult) add(vals ...any) {
	if len(vals) != len(r.cols) {
		panic(fmt.Sprintf("admin result: %d values for %d columns", len(vals), len(r.cols)))
	}
	row := make([]string, len(vals))
	for i, v := range vals {
		switch v := v.(type) {
		case nil:
			row[i] = nullValue
		case time.Time:
			if !v.IsZero() {
				row[i] = v.UTC().Format("2006-01-02 15:04:05 UTC")
			}
		case bool:
			row[i] = "f"
			if v {
				row[i] = "t"
			}
		default:
			row[i] = fmt.Sprint(v)
		}
	}
	r.rows = append(r.rows, row)
}

// encode is the RowDescription, the DataRows and the CommandComplete.
func (r *adminResult) encode(tag string) []byte {
	out, start := beginMessage(nil, 'T')
	out = appendInt16(out, int16(len(r.cols)))
	for _, c := range r.cols {
		size := int16(-1)
		switch c.oid {
		case compat.OIDInt8:
			size = 8
		case compat.OIDBool:
			size = 1
		}
		out = appendCString(out, c.name)
		out = appendInt32(out, 0)
		out = appendInt16(out, 0)
		out = appendInt32(out, int32(c.oid))
		out = appendInt16(out, size)
		out = appendInt32(out, -1)
		out = appendInt16(out, 0)
	}
	out = finishMessage(out, start)
	for _, row := range r.rows {
		var st int
		out, st = beginMessage(out, 'D')
		out = appendInt16(out, int16(len(row)))
		for _, v := range row {
			if v == nullValue {
				out = appendInt32(out, -1)
				continue
			}
			out = appendInt32(out, int32(len(v)))
			out = append(out, v...)
		}
		out = finishMessage(out, st)
	}
	return append(out, commandComplete(tag)...)
}

// liveSessions returns the sessions being served now.
func (s *Server) liveSessions() []*session {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]*session, 0, len(s.sessions))
	for sess := range s.sessions {
		out = append(out, sess)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].key.pid < out[j].key.pid })
	return out
}

// sortedRoutes are the routes by name.
func (s *Server) sortedRoutes() []Route {
	routes := s.upstreams.Routes()
	sort.Slice(routes, func(i, j int) bool { return routes[i].Name() < routes[j].Name() })
	return routes
}

// sessionSeen is the part of a session's state the console shows that
// changes while it runs; session.seen, guarded by session.cmu.
type sessionSeen struct {
	state, appName         string
	lastRequest, waitSince time.Time
	serverID               uint64 // the upstream held: attached, or reserved in session mode
}

// sessionView is what the console shows of a session.
type sessionView struct {
	route, user, database, state, appName string
	remote, local                         net.Addr
	started, lastRequest, waitSince       time.Time
	serverID                              uint64
	tls                                   bool
	pid                                   uint32
}

// view reads what the console shows under cmu only: a session busy (or
// blocked writing to its client) never holds the console up.
func (sess *session) view() sessionView {
	sess.cmu.Lock()
	defer sess.cmu.Unlock()
	seen := sess.seen
	v := sessionView{route: sess.route.Name(), user: sess.user, database: sess.database, state: seen.state,
		appName: seen.appName, remote: sess.conn.RemoteAddr(), local: sess.conn.LocalAddr(),
		started: sess.started, lastRequest: seen.lastRequest, waitSince: seen.waitSince, pid: sess.key.pid}
	v.serverID = seen.serverID
	_, v.tls = sess.conn.(*tls.Conn)
	return v
}

func splitAddr(a net.Addr) (string, string) {
	if a == nil {
		return "", ""
	}
	host, port, err := net.SplitHostPort(a.String())
	if err != nil {
		return a.String(), ""
	}
	return host, port
}

func (s *Server) showVersion() *adminResult {
	r := newResult("version")
	r.add("dsqlgate " + s.version)
	return r
}

// showDatabases is one row per route: PgBouncer's SHOW DATABASES columns
// that mean something here (reserve_pool, load_balance_hosts, disabled
// and the client connection limits do not), then dsqlgate's kind and
// per-user upstream limit. host and port are what is dialled; force_user
// is the upstream login (the DSQL role).
func (s *Server) showDatabases() *adminResult {
	r := newResult("name", "host", "port int", "database", "force_user", "pool_size int", "min_pool_size int",
		"server_lifetime int", "pool_mode", "max_connections int", "current_connections int",
		"current_client_connections int", "paused bool", "kind", "max_user_connections int")
	clients := map[string]int{}
	for _, sess := range s.liveSessions() {
		clients[sess.route.Name()]++
	}
	conf := map[string]*config.Route{}
	cfg := s.currentConfig()
	for i := range cfg.Routes {
		conf[cfg.Routes[i].Database] = &cfg.Routes[i]
	}
	for _, rt := range s.sortedRoutes() {
		host, port, err := net.SplitHostPort(rt.Address())
		if err != nil {
			host, port = rt.Address(), ""
		}
		var portNum any
		if n, err := strconv.Atoi(port); err == nil {
			portNum = n
		}
		upstreamDB := ""
		if c := conf[rt.Name()]; c != nil {
			upstreamDB = c.UpstreamDatabase
		}
		p := rt.Pool().Settings()
		r.add(rt.Name(), host, portNum, upstreamDB, rt.User(), p.Size, p.MinIdle, int64(p.MaxLifetime.D()/time.Second),
			p.Mode, p.Size, rt.Pool().Stats().Open, clients[rt.Name()], rt.Pool().Paused(), rt.Kind(), p.MaxUserConnections)
	}
	return r
}

// showUsers is one row per gateway user: how it logs in, whether it may
// use this console, the routes it may use, and its client sessions now.
// PgBouncer's pool_mode and connection limits are per route here (SHOW
// DATABASES). No secret is read.
func (s *Server) showUsers() *adminResult {
	r := newResult("name", "auth", "admin bool", "databases", "current_client_connections int")
	clients := map[string]int{}
	for _, sess := range s.liveSessions() {
		clients[sess.user]++
	}
	for _, u := range s.users.Load().sorted {
		dbs := "(all)"
		if u.databases != nil {
			dbs = strings.Join(slices.Sorted(maps.Keys(u.databases)), ",")
		}
		r.add(u.name, u.auth, s.isAdmin(u.name), dbs, clients[u.name])
	}
	return r
}

// showLists is PgBouncer's SHOW LISTS, for the lists dsqlgate has:
// databases (routes), users, pools (one per route), used_clients (client
// sessions), login_clients (connections in their startup phase),
// admin_clients (consoles), used_servers and free_servers (upstreams
// attached or idle).
func (s *Server) showLists() *adminResult {
	r := newResult("list", "items int")
	s.mu.Lock()
	conns, sessions, consoles := len(s.conns), len(s.sessions), len(s.consoles)
	s.mu.Unlock()
	routes := s.upstreams.Routes()
	var open, idle int
	for _, rt := range routes {
		st := rt.Pool().Stats()
		open, idle = open+st.Open, idle+st.Idle
	}
	r.add("databases", len(routes))
	r.add("users", len(s.users.Load().sorted))
	r.add("pools", len(routes))
	r.add("used_clients", sessions)
	r.add("login_clients", max(conns-sessions-consoles, 0))
	r.add("admin_clients", consoles)
	r.add("used_servers", open-idle)
	r.add("free_servers", idle)
	return r
}

// showMem is dsqlgate's SHOW MEM. PgBouncer lists its slab caches; a Go
// program has none, so the rows are what holds memory per kind of object,
// where it can be told without stopping a session, and the Go runtime's
// totals (README, Admin console, says what each row is). Unknown values
// are NULL.
func (s *Server) showMem() *adminResult {
	r := newResult("name", "size int", "used int", "free int", "memtotal int")
	sessions := len(s.liveSessions())
	var active, idle int
	for _, rt := range s.upstreams.Routes() {
		st := rt.Pool().Stats()
		active, idle = active+st.Open-st.Idle, idle+st.Idle
	}
	size := int(unsafe.Sizeof(session{}))
	r.add("client_session", size, sessions, nil, size*sessions)
	r.add("upstream_conn", nil, active, idle, nil)
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	r.add("go_heap", nil, m.HeapObjects, nil, m.HeapInuse)
	r.add("go_heap_free", nil, nil, nil, m.HeapIdle-m.HeapReleased)
	r.add("go_stack", nil, runtime.NumGoroutine(), nil, m.StackInuse)
	r.add("go_sys", nil, nil, nil, m.Sys)
	return r
}

func (s *Server) showPools() *adminResult {
	r := newResult("database", "user", "cl_active int", "cl_waiting int", "sv_active int", "sv_idle int", "sv_used int",
		"sv_tested int", "sv_login int", "maxwait int", "maxwait_us int", "pool_mode", "paused bool")
	type counts struct {
		active, waiting int
		maxWait         time.Duration
	}
	byRoute := map[string]*counts{}
	now := s.now()
	for _, sess := range s.liveSessions() {
		v := sess.view()
		c := byRoute[v.route]
		if c == nil {
			c = &counts{}
			byRoute[v.route] = c
		}
		if v.state == stateWaiting {
			c.waiting++
			c.maxWait = max(c.maxWait, now.Sub(v.waitSince))
		} else {
			c.active++
		}
	}
	for _, rt := range s.sortedRoutes() {
		c := byRoute[rt.Name()]
		if c == nil {
			c = &counts{}
		}
		st := rt.Pool().Stats()
		r.add(rt.Name(), rt.User(), c.active, c.waiting, st.Open-st.Idle, st.Idle, 0, 0, 0,
			int64(c.maxWait/time.Second), int64(c.maxWait%time.Second/time.Microsecond), rt.Pool().Settings().Mode, rt.Pool().Paused())
	}
	return r
}

func (s *Server) showClients() *adminResult {
	r := newResult("type", "user", "database", "state", "addr", "port int", "local_addr", "local_port int",
		"connect_time", "request_time", "wait int", "wait_us int", "ptr int", "link int", "tls bool", "application_name")
	now := s.now()
	for _, sess := range s.liveSessions() {
		v := sess.view()
		addr, port := splitAddr(v.remote)
		laddr, lport := splitAddr(v.local)
		var wait time.Duration
		if v.state == stateWaiting {
			wait = now.Sub(v.waitSince)
		}
		var link any
		if v.serverID != 0 {
			link = v.serverID
		}
		r.add("C", v.user, v.database, v.state, addr, portValue(port), laddr, portValue(lport), v.started, v.lastRequest,
			int64(wait/time.Second), int64(wait%time.Second/time.Microsecond), v.pid, link, v.tls, v.appName)
	}
	return r
}

// portValue is a port for an int column: NULL when there is none (a Unix
// socket).
func portValue(port string) any {
	if n, err := strconv.Atoi(port); err == nil {
		return n
	}
	return nil
}

func (s *Server) showServers() *adminResult {
	r := newResult("type", "user", "database", "state", "addr", "port int", "connect_time", "request_time",
		"ptr int", "link int", "remote_pid int", "age_seconds int", "retire_at")
	links := map[uint64]uint32{}
	for _, sess := range s.liveSessions() {
		if v := sess.view(); v.serverID != 0 {
			links[v.serverID] = v.pid
		}
	}
	now := s.now()
	for _, rt := range s.sortedRoutes() {
		addr, port := rt.Address(), ""
		if host, p, err := net.SplitHostPort(rt.Address()); err == nil {
			addr, port = host, p
		}
		for _, c := range rt.Pool().Conns() {
			state := "active"
			if c.Idle {
				state = "idle"
			}
			var link any
			if pid, ok := links[c.ID]; ok {
				link = pid
			}
			r.add("S", c.Role, rt.Name(), state, addr, portValue(port), c.Created, c.LastUsed, c.ID, link, c.PID,
				int64(now.Sub(c.Created)/time.Second), c.RetireAt)
		}
	}
	return r
}

func (s *Server) showStats() *adminResult {
	r := newResult("database", "total_xact_count int", "total_query_count int", "total_received int", "total_sent int",
		"total_xact_time int", "total_query_time int", "total_wait_time int", "avg_xact_time int", "avg_query_time int")
	avg := func(total, n uint64) uint64 {
		if n == 0 {
			return 0
		}
		return total / n
	}
	for _, rt := range s.sortedRoutes() {
		c := s.countersFor(rt.Name())
		xacts, queries, xactUs, queryUs := c.xacts.Load(), c.queries.Load(), c.xactUs.Load(), c.queryUs.Load()
		r.add(rt.Name(), xacts, queries, c.received.Load(), c.sent.Load(), xactUs, queryUs, c.waitUs.Load(),
			avg(xactUs, xacts), avg(queryUs, queries))
	}
	return r
}

// showStatsTotals is PgBouncer's SHOW STATS_TOTALS: the route's totals
// (times in microseconds) without the total_ prefix. PgBouncer's
// server_assignment_count and the prepared-statement columns have no
// counter here and are left out.
func (s *Server) showStatsTotals() *adminResult {
	r := newResult("database", "xact_count int", "query_count int", "bytes_received int", "bytes_sent int",
		"xact_time int", "query_time int", "wait_time int")
	for _, rt := range s.sortedRoutes() {
		c := s.countersFor(rt.Name())
		r.add(rt.Name(), c.xacts.Load(), c.queries.Load(), c.received.Load(), c.sent.Load(),
			c.xactUs.Load(), c.queryUs.Load(), c.waitUs.Load())
	}
	return r
}

// showConfig lists the configuration's settings, key by key, with their
// defaults; secrets are never shown.
func (s *Server) showConfig() *adminResult {
	r := newResult("key", "value", "default", "changeable") // yes or no, as PgBouncer
	values := map[string]string{}
	flatten("", reflect.ValueOf(*s.currentConfig()), values)
	defaults := map[string]string{}
	flatten("", reflect.ValueOf(*config.Default()), defaults)
	routeDefaults := map[string]string{}
	dr := config.DefaultRoute(config.KindDSQL, "")
	flatten("", reflect.ValueOf(dr), routeDefaults)
	keys := make([]string, 0, len(values))
	for k := range values {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		def, ok := defaults[k]
		if !ok {
			if i := strings.Index(k, "]."); strings.HasPrefix(k, "routes[") && i > 0 {
				def = routeDefaults[k[i+2:]]
			}
		}
		changeable := "yes"
		switch {
		case slices.Contains(restartOnly, k) || strings.HasPrefix(k, "metrics.") || strings.HasPrefix(k, "client_tls.acme."):
			changeable = "no"
		}
		r.add(k, values[k], def, changeable)
	}
	return r
}

// secretKeys name fields never shown by SHOW CONFIG.
var secretKeys = map[string]bool{"verifier": true, "password": true, "md5": true}

// flatten writes every scalar of v under its yaml key path.
func flatten(prefix string, v reflect.Value, out map[string]string) {
	switch v.Kind() {
	case reflect.Struct:
		t := v.Type()
		for i := 0; i < t.NumField(); i++ {
			f := t.Field(i)
			tag := strings.Split(f.Tag.Get("yaml"), ",")[0]
			if tag == "" || tag == "-" || !f.IsExported() {
				continue
			}
			key := tag
			if prefix != "" {
				key = prefix + "." + tag
			}
			if secretKeys[tag] {
				if !v.Field(i).IsZero() {
					out[key] = "(secret)"
				} else {
					out[key] = ""
				}
				continue
			}
			flatten(key, v.Field(i), out)
		}
	case reflect.Slice:
		if v.Type().Elem().Kind() == reflect.Struct {
			for i := 0; i < v.Len(); i++ {
				flatten(fmt.Sprintf("%s[%d]", prefix, i), v.Index(i), out)
			}
			return
		}
		parts := make([]string, v.Len())
		for i := range parts {
			parts[i] = fmt.Sprint(v.Index(i).Interface())
		}
		out[prefix] = strings.Join(parts, ",")
	case reflect.Map: // user_roles: one row per name
		if v.Len() == 0 {
			out[prefix] = ""
		}
		for it := v.MapRange(); it.Next(); {
			out[prefix+"."+fmt.Sprint(it.Key().Interface())] = fmt.Sprint(it.Value().Interface())
		}
	default:
		if s, ok := v.Interface().(fmt.Stringer); ok {
			out[prefix] = s.String()
		} else {
			out[prefix] = fmt.Sprint(v.Interface())
		}
	}
}
