package acme_test

import (
	"net/http"
	"testing"

	"github.com/dsqlgate/dsqlgate/config"
)

// TestHTTP01OtherHosts: the http-01 port is open to the internet (the CA
// must reach it), and each challenge request makes certmagic look for the
// challenge in the storage, on the shared table's one connection. A
// request for a host that is none of the domains must not reach the
// storage.
func TestHTTP01OtherHosts(t *testing.T) {
	a := config.DefaultACME()
	a.Domains = []string{"db.dsqlgate-acme.test"}
	a.Challenge = config.ACMEChallengeHTTP01
	a.HTTPListen = "127.0.0.1:0"
	m, dials := managerWithoutCluster(t, a)
	for _, host := range []string{"random-1.example", "random-2.example", "127.0.0.1"} {
		req, err := http.NewRequest(http.MethodGet, "http://"+m.HTTPAddr()+"/.well-known/acme-challenge/abcdefghijklmnop", nil)
		if err != nil {
			t.Fatal(err)
		}
		req.Host = host
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusNotFound {
			t.Errorf("challenge for host %s: %s, want 404", host, resp.Status)
		}
	}
	if n := dials.Load(); n != 0 {
		t.Errorf("http-01 requests for other hosts reached the storage (%d dials)", n)
	}
}
