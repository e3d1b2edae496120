// Package pgwire is the client side of dsqlgate: it speaks the PostgreSQL
// wire protocol (version 3.0) to clients and runs their sessions on
// upstream connections that authbridge provides.
//
// It owns the listener, SSLRequest and direct-TLS negotiation (with a
// certificate reloaded when its files change), the startup packet, client
// authentication (SCRAM-SHA-256 and -PLUS, md5 and cleartext where a user
// allows them), per-address backoff after failed logins, and the session
// loop.
//
// # Sessions and upstreams
//
// A session has two goroutines at most. The client goroutine reads client
// messages and writes them upstream; before writing it queues the reply it
// expects (a reply queue, queue.go), so the server goroutine, alive only
// while an upstream is attached, can forward, swallow or rewrite every
// upstream message in order, answer messages the gateway handles itself
// (a Parse of a statement the upstream already has, a Close), and detach the
// upstream at a safe point: ReadyForQuery idle, nothing owed, no COPY. In
// transaction mode the upstream then goes back to the pool; in session mode
// it stays reserved for the client until its lifetime ends.
//
// The session-state engine (state.go) keeps what the client asked for and
// what each upstream has: settings from the startup packet and from
// SET/RESET with transaction semantics, and protocol-level prepared
// statements under gateway-owned upstream names. Attaching an upstream
// applies the difference with statements whose replies the client never
// sees. loss.go is the failure semantics when an upstream is lost;
// compat.go and advisory.go are the DSQL compatibility layer.
//
// It deliberately knows nothing about AWS: tokens, dials, pools and
// lifetimes are authbridge's.
package pgwire
