package pgwire

import (
	"context"
	"fmt"
	"reflect"
	"sort"
	"time"

	"go.uber.org/zap"

	"github.com/dsqlgate/dsqlgate/config"
	"github.com/dsqlgate/dsqlgate/internal/users"
	"github.com/jackc/pgerrcode"
)

// This file is the server's lifecycle beyond serving: putting a reloaded
// configuration in force, and draining at shutdown.

// restartOnly are the settings a running server cannot change.
var restartOnly = []string{"listen", "reuse_port", "metrics.listen", "admin.database", "peers.self"}

// ServerUpdate is a reloaded configuration's client side, built by
// PrepareConfig and not yet in force. One that is not committed is simply
// dropped: it holds nothing that needs closing.
type ServerUpdate struct {
	s       *Server
	conf    *config.Config
	tls     *serverTLS
	users   *userTable
	stamp   users.Stamp
	backoff *authBackoff
	notes   []string
}

// PrepareConfig builds what a reloaded, validated configuration puts in
// force for new connections and new authentications, without dropping
// sessions: users (reading the users file), client TLS (reading the
// certificate files), limits, log settings. (Routes and pools are the
// upstream side's, prepared beside this by internal/gateway's Reload.) It changes nothing: Commit does, so that
// a reload that fails on either side leaves both as they were. Settings
// that need a restart are left as they are, and reported.
//
// Updates must not overlap: an update is prepared against the
// configuration in force and must be committed (or dropped) before the
// next is prepared.
func (s *Server) PrepareConfig(cfg *config.Config) (*ServerUpdate, error) {
	old := s.currentConfig()
	next := *cfg
	var notes []string
	oldFlat, newFlat := map[string]string{}, map[string]string{}
	flatten("", reflect.ValueOf(*old), oldFlat)
	flatten("", reflect.ValueOf(next), newFlat)
	for _, key := range restartOnly {
		if oldFlat[key] != newFlat[key] {
			notes = append(notes, fmt.Sprintf("%s: %q → %q needs a restart; keeping %q", key, oldFlat[key], newFlat[key], oldFlat[key]))
		}
	}
	next.Listen = old.Listen
	next.ReusePort = old.ReusePort
	next.Metrics.Listen = old.Metrics.Listen
	next.Admin.Database = old.Admin.Database
	next.Peers.Self = old.Peers.Self // in every live cancel key

	t, err := newServerTLS(&next, s.certSource, s.now, s.log)
	if err != nil {
		return nil, err
	}
	tbl, stamp, err := loadUsers(&next)
	if err != nil {
		return nil, err
	}
	if err := checkRoleNames(&next, tbl); err != nil {
		return nil, err
	}
	l := next.Limits
	u := &ServerUpdate{s: s, conf: &next, tls: t, users: tbl, stamp: stamp,
		backoff: newAuthBackoff(l.AuthFailureLimit, l.AuthFailureWindow.D(), l.AuthFailureMaxDelay.D(), s.now)}

	keys := make([]string, 0, len(newFlat))
	for k := range newFlat {
		keys = append(keys, k)
	}
	for k := range oldFlat {
		if _, ok := newFlat[k]; !ok {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	for _, k := range keys {
		if oldFlat[k] == newFlat[k] || containsString(restartOnly, k) {
			continue
		}
		if oldFlat[k] == "(secret)" || newFlat[k] == "(secret)" {
			notes = append(notes, k+" changed")
			continue
		}
		notes = append(notes, fmt.Sprintf("%s: %q → %q", k, oldFlat[k], newFlat[k]))
	}
	u.notes = notes
	return u, nil
}

// Commit puts the update in force and returns what changed, in words for
// the log. Each part is one atomic pointer swap and no file is read: the
// users and certificate are those PrepareConfig read.
func (u *ServerUpdate) Commit() []string {
	s := u.s
	s.usersMu.Lock()
	s.conf.Store(u.conf)
	s.addRouteSeries(u.conf)
	s.tls.Store(u.tls)
	s.users.Store(u.users)
	s.usersStamp.Store(&u.stamp)
	s.usersMu.Unlock()
	s.backoff.Store(u.backoff)
	return u.notes
}

func containsString(xs []string, x string) bool {
	for _, v := range xs {
		if v == x {
			return true
		}
	}
	return false
}

// Shutdown drains the server: it stops accepting, closes idle clients at
// once and every other client at its next safe point (after its
// transaction), each with FATAL 57P01, drains the admin consoles, and
// returns when every client connection has ended (sessions, logins in
// progress and, while the listener stays open, cancel requests and
// refused logins). When ctx ends first, the remaining connections are
// closed.
//
// A client that logged in within drainGrace is owed its first request
// (see drain), and a client still logging in when the drain began is
// drained once its session starts: neither is left to the timeout.
//
// With peers (and without reuse_port), the client listener stays open
// until the last session and console end, as PostgreSQL's postmaster does in a
// shutdown: a CancelRequest for a session still draining here, forwarded
// by a peer or sent straight, must still reach it (the orchestrator has
// already taken this replica out of its load balancer and its DNS).
// A StartupMessage then gets FATAL 57P03. With reuse_port the listener
// closes at once: a successor shares the port, and the kernel would keep
// giving this process a share of new clients only to refuse them.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	s.draining = true
	keepListening := s.peers != nil && !s.currentConfig().ReusePort
	if !keepListening {
		for l := range s.listeners {
			l.Close()
		}
	}
	clients := len(s.sessions)
	s.mu.Unlock()
	if keepListening {
		s.log.Info("draining: new clients refused, cancel requests still served; closing clients at their next safe point", zap.Int("clients", clients))
	} else {
		s.log.Info("draining: no new connections; closing clients at their next safe point", zap.Int("clients", clients))
	}
	s.drainConsoles()
	drained := map[*session]bool{}
	for {
		s.mu.Lock()
		left := len(s.conns)
		if keepListening {
			// Sessions, consoles and logins past their startup packet:
			// the connections that keep arriving for cancels (or to be
			// refused) are short, but a steady stream of them must not
			// hold the drain up once the last session has gone.
			left = int(s.active.Load())
		}
		var fresh []*session
		for sess := range s.sessions {
			if !drained[sess] {
				drained[sess] = true
				fresh = append(fresh, sess)
			}
		}
		s.mu.Unlock()
		for _, sess := range fresh {
			// drain takes the session's mu, which a relay blocked writing
			// to a client that stopped reading may hold until Close below
			// closes that client: never wait for it here.
			go sess.drain()
		}
		if left == 0 {
			return s.Close()
		}
		select {
		case <-ctx.Done():
			s.log.Warn("shutdown timeout: closing the remaining connections", zap.Int("connections", left))
			s.Close()
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// Config is the configuration in force (a ServerUpdate's Commit replaces it).
func (s *Server) Config() *config.Config { return s.currentConfig() }

// Draining reports whether Shutdown has begun.
func (s *Server) Draining() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.draining
}

// drainGrace is how long after its login a session is left to send its
// first request when the drain finds it idle. A client that has just
// connected (pgbench -C, a pool opening a connection for a waiting
// caller) has its request on the way; closing it at once would fail that
// request, with nothing the client could have done differently, since it
// connected before the gateway stopped accepting. Its request runs and
// the session ends at the safe point after it; a client that sends
// nothing is closed when the grace is over. The server's shutdown_timeout
// bounds it as it bounds every session.
const drainGrace = time.Second

// drain ends the session at once when it is at a safe point, or marks it
// to end at its next one. A session younger than drainGrace is looked at
// again when it is that old, unless its next safe point comes first.
func (s *session) drain() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.draining = true
	if s.sc == nil && s.q.len() == 0 && s.txStatus == 'I' && !s.lostTx && !s.unitOpen {
		if wait := drainGrace - s.srv.now().Sub(s.started); wait > 0 {
			time.AfterFunc(wait, s.drain)
			return
		}
		s.terminateLocked()
	}
}

// terminateLocked tells the client the gateway is shutting down and closes
// its connection; the client goroutine then ends the session.
func (s *session) terminateLocked() {
	if s.closing {
		return
	}
	s.writeClientLocked(appendErrorResponse(nil, &pgError{Severity: severityFatal, Code: pgerrcode.AdminShutdown,
		Message: "terminating connection because the gateway is shutting down"}))
	s.closeClientLocked()
}
