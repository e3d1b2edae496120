package acme_test

import (
	"context"
	"crypto/x509"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/dsqlgate/dsqlgate/config"
	"github.com/dsqlgate/dsqlgate/internal/acme"
	"github.com/dsqlgate/dsqlgate/internal/scram"
)

// TestManagerDomainSpelling: config accepts a domain in upper case or with
// a trailing dot (it compares domains lower-cased, without the dot), so
// the manager must too: Start returns once the certificate is there,
// rather than waiting for ever for a name certmagic never indexes.
func TestManagerDomainSpelling(t *testing.T) {
	if testing.Short() {
		t.Skip("starts Pebble")
	}
	httpPort := freePorts(t, 1)[0]
	pebble := startPebble(t, time.Hour, httpPort)
	for i, domain := range []string{"Upper.DSQLGATE-acme.test", "dot.dsqlgate-acme.test."} {
		t.Run(strconv.Itoa(i), func(t *testing.T) {
			cfg := config.Default()
			cfg.ClientTLS.Mode = config.TLSAllow
			cfg.ClientTLS.ACME = pebble.http01ACME(t, domain)
			r := config.DefaultRoute(config.KindPostgres, "app")
			r.Endpoint, r.User, r.Password = "127.0.0.1:5432", "u", "p"
			cfg.Routes = []config.Route{r}
			v, err := scram.GenerateVerifier("x")
			if err != nil {
				t.Fatal(err)
			}
			cfg.Users = []config.User{{Name: "u", Verifier: v.Encode()}}
			if err := cfg.Validate(); err != nil {
				if strings.Contains(err.Error(), "domains") {
					t.Skipf("config refuses %q (fine): %v", domain, err)
				}
				t.Fatal(err)
			}
			m, err := acme.New(cfg.ClientTLS.ACME, acme.Options{})
			if err != nil {
				t.Fatal(err)
			}
			defer m.Close()
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			if err := m.Start(ctx); err != nil {
				t.Fatalf("Start for %q: %v", domain, err)
			}
			cert, err := m.GetCertificate(hello(t, ""))
			if err != nil {
				t.Fatal(err)
			}
			leaf, err := x509.ParseCertificate(cert.Certificate[0])
			if err != nil {
				t.Fatal(err)
			}
			if err := leaf.VerifyHostname(domain); err != nil {
				t.Error(err)
			}
		})
	}
}
