// Package authbridge is the server side of dsqlgate: it turns the routes of
// the configuration into pools of upstream connections to Aurora DSQL (or,
// for kind postgres, to a plain PostgreSQL with a static password).
//
// It owns everything between the gateway and the database: AWS credentials
// and IAM token minting (a fresh token for every dial), the TLS dial with SNI
// and verify-full, the startup handshake, the pools with their lifetimes
// (DSQL closes every connection after 60 minutes), idle timeouts, the
// per-user isolation of connections, and the per-cluster dial rate limit
// (DSQL refuses more than 100 new connections a second). A reload puts new
// routes in force in two steps (Bridge.Prepare, then RouteUpdate.Commit or
// Discard).
//
// The DSQL compatibility layer's advisory lock table is internal/compat's
// (compat.LockManager); authbridge only makes one per route (Route.Locks)
// and gives it connections of its own through the route's dial
// (Route.DialLocks and Route.DialRetryable, compat.LockUpstream), and
// closes it with the bridge.
//
// It deliberately never speaks to clients and does not import pgwire:
// internal/gateway adapts a Bridge, its Routes and Pools and each
// *ServerConn to the interfaces pgwire declares. A session acquires a
// connection, reads and writes protocol messages on it, and releases it at
// a safe point. What a connection's session state is (settings, prepared
// statements) is pgwire's business too; authbridge only carries it in
// ServerConn.State.
package authbridge
