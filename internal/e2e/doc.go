// Package e2e holds the end-to-end tests: real PostgreSQL, the DSQL
// emulator and the gateway, driven by real clients (psql, pgx). It has no
// code of its own beyond test helpers.
package e2e
