// Package authbridge is the server side of dsqlgate: it turns the routes of
// the configuration into pools of upstream connections to Aurora DSQL (or,
// for kind postgres, to a plain PostgreSQL with a static password).
//
// It owns everything between the gateway and the database: AWS credentials
// and IAM token minting (a fresh token for every dial), the TLS dial with SNI
// and verify-full, the startup handshake, the pools with their lifetimes
// (DSQL closes every connection after 60 minutes), idle timeouts and the
// per-cluster dial rate limit (DSQL refuses more than 100 new connections a
// second). It also keeps the advisory locks pgwire answers for clients
// (LockManager, from Route.Locks) as leased rows of a table on the cluster
// itself, so they hold across every gateway serving it.
//
// It deliberately never speaks to clients: pgwire acquires a *ServerConn,
// reads and writes protocol messages on it, and releases it at a safe point.
// What a connection's session state is (settings, prepared statements) is
// pgwire's business too; authbridge only carries it in ServerConn.State.
package authbridge
