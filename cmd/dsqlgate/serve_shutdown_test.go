package main

import (
	"context"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/dsqlgate/dsqlgate/internal/pgtest"
	"github.com/dsqlgate/dsqlgate/internal/scram"
)

// TestServeConsoleShutdown: the admin console's SHUTDOWN takes SIGTERM's
// path in serve: it is answered, then serve drains and returns, and the
// port accepts no one.
func TestServeConsoleShutdown(t *testing.T) {
	v, err := scram.GenerateVerifier("ops-password-3")
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "dsqlgate.yaml")
	// A kind postgres route to a closed port: serve starts without
	// dialling it, and the console needs no upstream.
	doc := "listen: 127.0.0.1:0\nmetrics: {listen: ''}\nshutdown_timeout: 1m\n" +
		"users: [{name: ops, verifier: '" + v.Encode() + "'}]\nadmin: {users: [ops]}\n" +
		"routes: [{database: app, kind: postgres, endpoint: '127.0.0.1:1', tls: disable, user: u, password: p}]\n"
	if err := os.WriteFile(path, []byte(doc), 0o600); err != nil {
		t.Fatal(err)
	}
	logs := &pgtest.SyncBuffer{}
	done := make(chan error, 1)
	go func() {
		done <- runServe(context.Background(), serveFlags{configPath: path}, streams{out: logs, err: logs})
	}()
	listening := regexp.MustCompile(`dsqlgate listening.*"address": "([^"]+)"`)
	var addr string
	for deadline := time.Now().Add(30 * time.Second); addr == ""; time.Sleep(20 * time.Millisecond) {
		if m := listening.FindStringSubmatch(logs.String()); m != nil {
			addr = m[1]
		}
		select {
		case err := <-done:
			t.Fatalf("serve ended before listening: %v\n%s", err, logs.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("serve did not start:\n%s", logs.String())
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	u := url.URL{Scheme: "postgres", User: url.UserPassword("ops", "ops-password-3"), Host: addr, Path: "/dsqlgate", RawQuery: "sslmode=disable"}
	c, err := pgconn.Connect(ctx, u.String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(ctx)
	res, err := c.Exec(ctx, "SHUTDOWN").ReadAll()
	if err != nil || len(res) != 1 || res[0].CommandTag.String() != "SHUTDOWN" {
		t.Fatalf("SHUTDOWN: %v, %v", res, err)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("serve after SHUTDOWN: %v", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatalf("serve did not stop after SHUTDOWN (shutdown_timeout is 1m: an open console must not hold the drain):\n%s", logs.String())
	}
	if conn, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
		conn.Close()
		t.Error("the port still accepts connections after SHUTDOWN")
	}
}
