package gateway

import (
	"context"
	"net"
	"net/http"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/dsqlgate/dsqlgate/config"
	"github.com/dsqlgate/dsqlgate/internal/scram"
)

// freePort is a TCP port nothing listens on (a moment ago).
func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// TestStartACMEGivesUp: while ACME obtains the first certificate the
// health endpoints answer (/livez 200, /startupz and /readyz 503); when
// Start's context ends first, Start returns an error naming the domains
// and frees both ports.
func TestStartACMEGivesUp(t *testing.T) {
	v, err := scram.GenerateVerifier("secret")
	if err != nil {
		t.Fatal(err)
	}
	listen, ops, dead := freePort(t), freePort(t), freePort(t)
	cfg := config.Default()
	cfg.Listen = "127.0.0.1:" + strconv.Itoa(listen)
	cfg.Metrics.Listen = "127.0.0.1:" + strconv.Itoa(ops)
	cfg.Users = []config.User{{Name: "u", Verifier: v.Encode()}}
	route := config.DefaultRoute(config.KindPostgres, "postgres")
	route.Endpoint, route.TLS = "127.0.0.1:1", "disable"
	route.User, route.Password = "postgres", "secret"
	cfg.Routes = []config.Route{route}
	cfg.ClientTLS.Mode = config.TLSAllow
	a := &cfg.ClientTLS.ACME
	a.Domains = []string{"nowhere.dsqlgate-acme.test"}
	a.Directory = "https://127.0.0.1:" + strconv.Itoa(dead) + "/dir"
	a.DNSProvider = config.ACMEDNSChalltestsrv
	a.ChalltestsrvURL = "http://127.0.0.1:" + strconv.Itoa(dead)
	a.Storage = filepath.Join(t.TempDir(), "acme")
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	probed := make(chan map[string]int, 1)
	go func() {
		time.Sleep(time.Second)
		codes := map[string]int{}
		for _, p := range []string{"/livez", "/startupz", "/readyz"} {
			resp, err := http.Get("http://" + cfg.Metrics.Listen + p)
			if err != nil {
				codes[p] = -1
				continue
			}
			resp.Body.Close()
			codes[p] = resp.StatusCode
		}
		probed <- codes
	}()
	start := time.Now()
	g, err := Start(ctx, cfg, Options{})
	if err == nil {
		g.Close()
		t.Fatal("Start succeeded without an ACME server")
	}
	if time.Since(start) > 15*time.Second {
		t.Errorf("Start took %s after its context ended", time.Since(start))
	}
	if !strings.Contains(err.Error(), a.Domains[0]) {
		t.Errorf("error %q does not name the domain", err)
	}
	codes := <-probed
	if codes["/livez"] != 200 || codes["/startupz"] != 503 || codes["/readyz"] != 503 {
		t.Errorf("health while obtaining: %v, want /livez 200, /startupz and /readyz 503", codes)
	}
	for _, addr := range []string{cfg.Listen, cfg.Metrics.Listen} {
		l, err := net.Listen("tcp", addr)
		if err != nil {
			t.Errorf("%s still held after Start failed: %v", addr, err)
			continue
		}
		l.Close()
	}
}
