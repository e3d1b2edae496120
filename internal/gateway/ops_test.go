package gateway

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/dsqlgate/dsqlgate/config"
	"github.com/dsqlgate/dsqlgate/internal/scram"
)

// startTestGateway starts a gateway whose one route (kind postgres) points
// at a closed port: enough for the metrics and health listener.
func startTestGateway(t *testing.T) *Gateway {
	t.Helper()
	v, err := scram.GenerateVerifier("secret")
	if err != nil {
		t.Fatal(err)
	}
	cfg := config.Default()
	cfg.Listen = "127.0.0.1:0"
	cfg.Metrics.Listen = "127.0.0.1:0"
	cfg.Users = []config.User{{Name: "u", Verifier: v.Encode()}}
	route := config.DefaultRoute(config.KindPostgres, "postgres")
	route.Endpoint, route.TLS = "127.0.0.1:1", "disable"
	route.User, route.Password = "postgres", "secret"
	cfg.Routes = []config.Route{route}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	g, err := Start(ctx, cfg, Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { g.Close() })
	return g
}

// TestOpsServerLimits: the metrics and health listener bounds how long a
// client may take to send its request, to read the answer and to keep an
// idle keep-alive connection, and how large its headers may be.
func TestOpsServerLimits(t *testing.T) {
	g := startTestGateway(t)
	s := g.ops
	if s == nil {
		t.Fatal("no metrics listener")
	}
	for name, d := range map[string]time.Duration{"ReadHeaderTimeout": s.ReadHeaderTimeout, "ReadTimeout": s.ReadTimeout, "WriteTimeout": s.WriteTimeout, "IdleTimeout": s.IdleTimeout} {
		if d <= 0 || d > time.Minute {
			t.Errorf("%s = %v, want a limit of at most a minute", name, d)
		}
	}
	if s.MaxHeaderBytes <= 0 || s.MaxHeaderBytes > 64<<10 {
		t.Errorf("MaxHeaderBytes = %d, want a limit of at most 64 KiB", s.MaxHeaderBytes)
	}

	// It still serves, keep-alive included.
	c := &http.Client{Timeout: 10 * time.Second}
	for _, path := range []string{"/livez", "/metrics", "/livez"} {
		resp, err := c.Get("http://" + g.OpsAddr + path)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("%s: %s", path, resp.Status)
		}
	}
	// Headers beyond the bound are refused.
	req, _ := http.NewRequest("GET", "http://"+g.OpsAddr+"/livez", nil)
	req.Header.Set("X-Big", strings.Repeat("x", 2*s.MaxHeaderBytes+8192))
	if resp, err := c.Do(req); err == nil {
		resp.Body.Close()
		if resp.StatusCode != http.StatusRequestHeaderFieldsTooLarge {
			t.Errorf("a request with %d bytes of headers: %s", 2*s.MaxHeaderBytes, resp.Status)
		}
	}
}

// TestOpsIdleConnectionClosed: the listener's server closes a keep-alive
// connection that stays idle for IdleTimeout (shortened here), and one
// that does not finish its request headers within ReadHeaderTimeout.
func TestOpsIdleConnectionClosed(t *testing.T) {
	g := startTestGateway(t)
	s := newOpsServer(g.health.handler())
	s.IdleTimeout = 300 * time.Millisecond
	s.ReadHeaderTimeout = 300 * time.Millisecond
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go s.Serve(l)
	t.Cleanup(func() { s.Close() })

	conn, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	br := bufio.NewReader(conn)
	for range 2 { // keep-alive: two requests on the connection
		if _, err := io.WriteString(conn, "GET /livez HTTP/1.1\r\nHost: ops\r\n\r\n"); err != nil {
			t.Fatal(err)
		}
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || resp.Close {
			t.Fatalf("keep-alive request: %s, close %v", resp.Status, resp.Close)
		}
	}
	idle := time.Now()
	if n, err := br.ReadByte(); !errors.Is(err, io.EOF) {
		t.Fatalf("idle connection: read %q, %v; want the server to close it", n, err)
	}
	if d := time.Since(idle); d > 5*time.Second {
		t.Fatalf("an idle connection was closed after %v, IdleTimeout %v", d, s.IdleTimeout)
	}

	// Half a request, then silence.
	slow, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer slow.Close()
	slow.SetDeadline(time.Now().Add(10 * time.Second))
	io.WriteString(slow, "GET /livez HTTP/1.1\r\nHost: ops\r\n")
	if _, err := io.ReadAll(slow); err != nil {
		t.Fatalf("a request without its end: %v; want the server to close", err)
	}
}
