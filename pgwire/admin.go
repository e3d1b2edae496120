package pgwire

import (
	"bufio"
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"reflect"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/dsqlgate/dsqlgate/config"
	"github.com/jackc/pgerrcode"
)

// This file is the admin console: a virtual database (admin.database,
// default "dsqlgate") that admin users connect to with psql and query with
// PgBouncer-style commands. Column names follow PgBouncer's where the
// concept is the same.

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
	for _, u := range s.currentConfig().Admin.Users {
		if u == user {
			return true
		}
	}
	return false
}

// serveAdmin runs an admin console session for an authenticated admin.
func (s *Server) serveAdmin(conn net.Conn, br *bufio.Reader, user string, log *zap.Logger) error {
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
		switch msg[0] {
		case 'Q':
			text, _, _ := readCString(body(msg))
			out := s.adminCommand(strings.TrimSpace(text), user, log)
			w.Write(out)
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
		if fr.buffered() == 0 {
			if err := w.Flush(); err != nil {
				return err
			}
		}
	}
}

// adminResult builds a result set of text columns.
type adminResult struct {
	cols []string
	rows [][]string
}

func (r *adminResult) add(vals ...any) {
	row := make([]string, len(vals))
	for i, v := range vals {
		switch v := v.(type) {
		case time.Time:
			if v.IsZero() {
				row[i] = ""
			} else {
				row[i] = v.UTC().Format("2006-01-02 15:04:05 UTC")
			}
		default:
			row[i] = fmt.Sprint(v)
		}
	}
	r.rows = append(r.rows, row)
}

func (r *adminResult) encode(tag string) []byte {
	out, start := beginMessage(nil, 'T')
	out = appendInt16(out, int16(len(r.cols)))
	for _, c := range r.cols {
		out = appendCString(out, c)
		out = appendInt32(out, 0)
		out = appendInt16(out, 0)
		out = appendInt32(out, oidText)
		out = appendInt16(out, -1)
		out = appendInt32(out, -1)
		out = appendInt16(out, 0)
	}
	out = finishMessage(out, start)
	for _, row := range r.rows {
		var st int
		out, st = beginMessage(out, 'D')
		out = appendInt16(out, int16(len(row)))
		for _, v := range row {
			out = appendInt32(out, int32(len(v)))
			out = append(out, v...)
		}
		out = finishMessage(out, st)
	}
	return append(out, commandComplete(tag)...)
}

// adminCommand runs one console command and returns its reply (without
// the ReadyForQuery).
func (s *Server) adminCommand(text, user string, log *zap.Logger) []byte {
	text = strings.TrimSpace(strings.TrimRight(text, "; \t\n"))
	words := strings.Fields(text)
	fail := func(code, msg, hint string) []byte {
		return appendErrorResponse(nil, &pgError{Severity: severityError, Code: code, Message: msg, Hint: hint})
	}
	if len(words) == 0 {
		return []byte{'I', 0, 0, 0, 4} // EmptyQueryResponse
	}
	verb := strings.ToUpper(words[0])
	arg := ""
	if len(words) > 1 {
		arg = strings.Trim(words[1], `"`)
	}
	log.Info("admin command", zap.String("admin", user), zap.String("command", strings.ToUpper(strings.Join(words, " "))))
	switch verb {
	case "SHOW":
		if len(words) != 2 {
			return fail(pgerrcode.SyntaxError, "SHOW needs one of POOLS, CLIENTS, SERVERS, STATS, CONFIG, VERSION", "")
		}
		var r *adminResult
		switch strings.ToUpper(arg) {
		case "POOLS":
			r = s.showPools()
		case "CLIENTS":
			r = s.showClients()
		case "SERVERS":
			r = s.showServers()
		case "STATS":
			r = s.showStats()
		case "CONFIG":
			r = s.showConfig()
		case "VERSION":
			r = &adminResult{cols: []string{"version"}}
			r.add("dsqlgate " + s.version)
		default:
			return fail(pgerrcode.SyntaxError, fmt.Sprintf("unknown SHOW %s", arg), "SHOW POOLS, CLIENTS, SERVERS, STATS, CONFIG or VERSION.")
		}
		return r.encode("SHOW")
	case "RELOAD":
		if s.reload == nil {
			return fail(pgerrcode.FeatureNotSupported, "this gateway cannot reload its configuration", "")
		}
		if err := s.reload(); err != nil {
			return fail(pgerrcode.ConfigFileError, "reload refused: "+err.Error(), "The previous configuration stays in force.")
		}
		return commandComplete("RELOAD")
	case "PAUSE", "RESUME", "RECONNECT":
		routes := s.upstreams.Routes()
		if arg != "" {
			r := s.upstreams.Route(arg)
			if r == nil {
				return fail(pgerrcode.InvalidCatalogName, fmt.Sprintf("no route for database %q", arg), "")
			}
			routes = routes[:0]
			routes = append(routes, r)
		}
		for _, r := range routes {
			switch verb {
			case "PAUSE":
				ctx, cancel := context.WithTimeout(context.Background(), s.currentConfig().ShutdownTimeout.D())
				err := r.Pool().Pause(ctx)
				cancel()
				if err != nil {
					return fail(pgerrcode.QueryCanceled, err.Error(), "The route stays paused; RESUME lets clients go on.")
				}
			case "RESUME":
				r.Pool().Resume()
			case "RECONNECT":
				r.Pool().Reconnect()
			}
		}
		return commandComplete(verb)
	}
	return fail(pgerrcode.SyntaxError, fmt.Sprintf("unknown admin command %q", verb),
		"Commands: SHOW POOLS|CLIENTS|SERVERS|STATS|CONFIG|VERSION, RELOAD, PAUSE [db], RESUME [db], RECONNECT [db].")
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

func (s *Server) showPools() *adminResult {
	r := &adminResult{cols: []string{"database", "user", "cl_active", "cl_waiting", "sv_active", "sv_idle", "sv_used", "sv_tested", "sv_login", "maxwait", "maxwait_us", "pool_mode", "paused"}}
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
	routes := s.upstreams.Routes()
	sort.Slice(routes, func(i, j int) bool { return routes[i].Name() < routes[j].Name() })
	for _, rt := range routes {
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
	r := &adminResult{cols: []string{"type", "user", "database", "state", "addr", "port", "local_addr", "local_port",
		"connect_time", "request_time", "wait", "wait_us", "ptr", "link", "tls", "application_name"}}
	now := s.now()
	for _, sess := range s.liveSessions() {
		v := sess.view()
		addr, port := splitAddr(v.remote)
		laddr, lport := splitAddr(v.local)
		var wait time.Duration
		if v.state == stateWaiting {
			wait = now.Sub(v.waitSince)
		}
		link := ""
		if v.serverID != 0 {
			link = strconv.FormatUint(v.serverID, 10)
		}
		r.add("C", v.user, v.database, v.state, addr, port, laddr, lport, v.started, v.lastRequest,
			int64(wait/time.Second), int64(wait%time.Second/time.Microsecond), v.pid, link, v.tls, v.appName)
	}
	return r
}

func (s *Server) showServers() *adminResult {
	r := &adminResult{cols: []string{"type", "user", "database", "state", "addr", "port", "connect_time", "request_time",
		"ptr", "link", "remote_pid", "age_seconds", "retire_at"}}
	links := map[uint64]uint32{}
	for _, sess := range s.liveSessions() {
		if v := sess.view(); v.serverID != 0 {
			links[v.serverID] = v.pid
		}
	}
	routes := s.upstreams.Routes()
	sort.Slice(routes, func(i, j int) bool { return routes[i].Name() < routes[j].Name() })
	now := s.now()
	for _, rt := range routes {
		addr, port := splitAddr(nil)
		if host, p, err := net.SplitHostPort(rt.Address()); err == nil {
			addr, port = host, p
		}
		for _, c := range rt.Pool().Conns() {
			state := "active"
			if c.Idle {
				state = "idle"
			}
			link := ""
			if pid, ok := links[c.ID]; ok {
				link = strconv.FormatUint(uint64(pid), 10)
			}
			r.add("S", c.Role, rt.Name(), state, addr, port, c.Created, c.LastUsed, c.ID, link, c.PID,
				int64(now.Sub(c.Created)/time.Second), c.RetireAt)
		}
	}
	return r
}

func (s *Server) showStats() *adminResult {
	r := &adminResult{cols: []string{"database", "total_xact_count", "total_query_count", "total_received", "total_sent",
		"total_xact_time", "total_query_time", "total_wait_time", "avg_xact_time", "avg_query_time"}}
	routes := s.upstreams.Routes()
	sort.Slice(routes, func(i, j int) bool { return routes[i].Name() < routes[j].Name() })
	for _, rt := range routes {
		c := s.countersFor(rt.Name())
		xacts, queries := c.xacts.Load(), c.queries.Load()
		avg := func(total, n uint64) uint64 {
			if n == 0 {
				return 0
			}
			return total / n
		}
		r.add(rt.Name(), xacts, queries, c.received.Load(), c.sent.Load(), c.xactUs.Load(), c.queryUs.Load(), c.waitUs.Load(),
			avg(c.xactUs.Load(), xacts), avg(c.queryUs.Load(), queries))
	}
	return r
}

// showConfig lists the configuration's settings, key by key, with their
// defaults; secrets are never shown.
func (s *Server) showConfig() *adminResult {
	r := &adminResult{cols: []string{"key", "value", "default", "changeable"}}
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
		case slices.Contains(restartOnly, k) || strings.HasPrefix(k, "metrics."):
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
