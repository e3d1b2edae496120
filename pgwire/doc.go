// Package pgwire is the client side of dsqlgate: it speaks the PostgreSQL
// wire protocol (version 3.0) to clients and runs their sessions on
// upstream connections it takes from the routes' pools.
//
// It owns the listener, SSLRequest and direct-TLS negotiation (with a
// certificate reloaded when its files change), the startup packet, client
// authentication (SCRAM-SHA-256 and -PLUS through internal/scram, md5 and
// cleartext where a user allows them, users read by internal/users),
// per-address backoff after failed logins, the session relay, the admin
// console, and the client side of a reload (PrepareConfig, then
// ServerUpdate.Commit).
//
// # Sessions and upstreams
//
// A session is a relay (session.go) around a protocol engine with no I/O
// (engine.go). For each client message the client goroutine asks the
// engine, under the session's mutex, what to do: the engine queues the
// replies it expects (the reply queue, queue.go) and builds what goes
// upstream, and the client goroutine writes it. The replies are read by
// the client goroutine itself once the units it sent are complete, or by
// a server goroutine while the client must be heard meanwhile (a COPY
// FROM STDIN, a Flush without Sync, an open transaction); either forwards,
// swallows or rewrites every upstream message in order and detaches the
// upstream at a safe point: ReadyForQuery idle, nothing owed, no COPY. In
// transaction mode the upstream then goes back to the pool; in session
// mode it stays reserved for the client until its lifetime ends.
// ARCHITECTURE.md lists every goroutine of a session and the lock order.
//
// The engine keeps what the client asked for and what each upstream has
// (state.go): settings from the startup packet and from SET/RESET with
// transaction semantics, and protocol-level prepared statements under
// gateway-owned upstream names. Attaching an upstream applies the
// difference with statements whose replies the client never sees. loss.go
// is the failure semantics when an upstream is lost; poolmode.go what
// transaction pooling refuses on a PostgreSQL route. The DSQL
// compatibility rules are internal/compat's: it decides what happens to a
// statement, as data (compat.Rewrite), and compat.go and advisory.go here
// only carry that out and encode the replies. pgwire/sqllex lexes the
// statements the engine and compat classify.
//
// # The upstream side
//
// pgwire declares what it needs of the upstream side (upstream.go:
// Upstreams, Route, Pool, Upstream and the errors it tells apart) and
// imports no implementation of it: internal/gateway adapts authbridge to
// those interfaces, and the tests run sessions on upstreams that live in
// memory. It deliberately knows nothing about AWS: tokens, dials, pools
// and lifetimes are the upstream side's.
package pgwire
